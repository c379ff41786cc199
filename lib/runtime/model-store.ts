/**
 * The model store: a local path or `s3://bucket/key` → verified bytes in memory.
 * S3 is reached through the standard AWS SDK chain; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL point it at any
 * S3-compatible server (path-style addressing then).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { GetObjectCommand, S3Client, S3ServiceException } from '@aws-sdk/client-s3';
import { StartupError } from './startup-error.js';

/** A model's bytes and where they came from. */
export interface ModelBytes {
  readonly bytes: Uint8Array;
  readonly sha256: string;
  /** The URI or path the bytes were read from. */
  readonly source: string;
}

export interface S3Location {
  readonly bucket: string;
  readonly key: string;
}

export interface LoadModelOptions {
  /** When set, bytes whose sha256 differs are refused. */
  readonly expectedSha256?: string;
  /** Environment to read endpoint overrides from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/;

export function isS3Uri(uri: string): boolean {
  return uri.startsWith('s3://');
}

/** Parses `s3://bucket/key`, refusing anything that is not one. */
export function parseS3Uri(uri: string): S3Location {
  const match = S3_URI.exec(uri);
  if (!match) {
    throw new StartupError(`'${uri}' is not a valid S3 URI`, 'Write it as s3://bucket/key');
  }
  return { bucket: match[1]!, key: match[2]! };
}

/** Reads a model from a local path or S3 and verifies its sha256 when one is expected. */
export async function loadModelBytes(uri: string, options: LoadModelOptions = {}): Promise<ModelBytes> {
  const expected = options.expectedSha256?.toLowerCase();
  if (expected !== undefined && !/^[0-9a-f]{64}$/.test(expected)) {
    throw new StartupError(`expected sha256 '${options.expectedSha256}' is not 64 hex digits`);
  }
  const { bytes, sha256 } = isS3Uri(uri)
    ? await readS3Object(parseS3Uri(uri), options.env ?? process.env)
    : await readLocalFile(uri);
  if (bytes.length === 0) throw new StartupError(`model ${uri} is empty (0 bytes)`, 'Upload the model file again');
  if (expected !== undefined && sha256 !== expected) {
    throw new StartupError(
      `model ${uri} failed its integrity check: expected sha256 ${expected}, got ${sha256}`,
      'The object was changed or corrupted after deployment; redeploy, or upload the model that was deployed',
    );
  }
  return { bytes, sha256, source: uri };
}

async function readLocalFile(path: string): Promise<{ bytes: Uint8Array; sha256: string }> {
  try {
    const bytes = await readFile(path);
    return { bytes, sha256: createHash('sha256').update(bytes).digest('hex') };
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT')
      throw new StartupError(`model file ${path} does not exist`, 'Check the path', { cause: error });
    if (code === 'EISDIR')
      throw new StartupError(`model path ${path} is a directory`, 'Give the path of the model file itself', {
        cause: error,
      });
    if (code === 'EACCES')
      throw new StartupError(`model file ${path} cannot be read (permission denied)`, undefined, { cause: error });
    throw new StartupError(`model file ${path} cannot be read: ${(error as Error).message}`, undefined, {
      cause: error,
    });
  }
}

/** An S3 client from the standard chain, honouring the endpoint override variables. */
export function createS3Client(env: NodeJS.ProcessEnv = process.env): S3Client {
  const endpoint = env['AWS_ENDPOINT_URL_S3'] ?? env['AWS_ENDPOINT_URL'];
  const accessKeyId = env['AWS_ACCESS_KEY_ID'];
  const secretAccessKey = env['AWS_SECRET_ACCESS_KEY'];
  return new S3Client({
    region: env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'] ?? 'us-east-1',
    maxAttempts: 3,
    ...(endpoint ? { endpoint, forcePathStyle: true } : {}),
    // The env provider comes first in the standard chain anyway; reading the given env keeps one source of truth.
    ...(accessKeyId && secretAccessKey
      ? { credentials: { accessKeyId, secretAccessKey, sessionToken: env['AWS_SESSION_TOKEN'] } }
      : {}),
  });
}

async function readS3Object(
  location: S3Location,
  env: NodeJS.ProcessEnv,
): Promise<{ bytes: Uint8Array; sha256: string }> {
  const uri = `s3://${location.bucket}/${location.key}`;
  const client = createS3Client(env);
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }));
    if (!response.Body) throw new StartupError(`S3 returned no body for ${uri}`);
    const hash = createHash('sha256');
    const chunks: Uint8Array[] = [];
    let length = 0;
    for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
      hash.update(chunk);
      chunks.push(chunk);
      length += chunk.length;
    }
    if (response.ContentLength !== undefined && length !== response.ContentLength) {
      throw new StartupError(
        `download of ${uri} was cut short: got ${length} of ${response.ContentLength} bytes`,
        'Retry',
      );
    }
    return { bytes: Buffer.concat(chunks, length), sha256: hash.digest('hex') };
  } catch (error) {
    throw describeS3Failure(error, uri, env);
  } finally {
    client.destroy();
  }
}

function describeS3Failure(error: unknown, uri: string, env: NodeJS.ProcessEnv): StartupError {
  if (error instanceof StartupError) return error;
  const options = { cause: error };
  if (error instanceof S3ServiceException) {
    switch (error.name) {
      case 'NoSuchKey':
      case 'NotFound':
        return new StartupError(`model ${uri} does not exist`, 'Check the key, or upload the model there', options);
      case 'NoSuchBucket':
        return new StartupError(`bucket of ${uri} does not exist`, 'Check the bucket name and region', options);
      case 'InvalidAccessKeyId':
      case 'SignatureDoesNotMatch':
      case 'ExpiredToken':
      case 'InvalidToken':
        return new StartupError(
          `S3 refused the credentials reading ${uri} (${error.name})`,
          'Check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the AWS profile in use',
          options,
        );
      case 'AccessDenied':
        return new StartupError(
          `access denied reading ${uri}`,
          'Grant s3:GetObject on exactly this object to the role in use',
          options,
        );
      default:
        return new StartupError(`S3 error reading ${uri}: ${error.name}: ${error.message}`, undefined, options);
    }
  }
  const name = (error as Error).name;
  if (name === 'CredentialsProviderError') {
    return new StartupError(
      `no AWS credentials found to read ${uri}`,
      'Set AWS_PROFILE or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY',
      options,
    );
  }
  const endpoint = env['AWS_ENDPOINT_URL_S3'] ?? env['AWS_ENDPOINT_URL'] ?? 'the S3 endpoint of the region';
  return new StartupError(
    `cannot reach S3 at ${endpoint} to read ${uri}: ${networkReason(error)}`,
    'Check the network, the region and AWS_ENDPOINT_URL_S3',
    options,
  );
}

function networkReason(error: unknown): string {
  const err = error as NodeJS.ErrnoException & { errors?: NodeJS.ErrnoException[] };
  return err.code ?? err.errors?.[0]?.code ?? err.message;
}
