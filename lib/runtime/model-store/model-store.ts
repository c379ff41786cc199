/**
 * The model store: a local path or `s3://bucket/key` → verified bytes in memory, or, for an S3 model above the
 * memory budget, a verified file under the temp dir (see s3-fetch.ts for the parallel fetch).
 * S3 is reached through the standard AWS SDK chain; AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL point it at any
 * S3-compatible server (path-style addressing then).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { S3Client, S3ServiceException, type S3ClientConfig } from '@aws-sdk/client-s3';
import { checkSha256, normalizeSha256 } from './model-integrity.js';
import { fetchOptionsFromEnv, fetchS3Object, type FetchStats, type S3FetchOptions } from './s3-fetch.js';
import { StartupError } from '../startup-error.js';

export type { FetchStats } from './s3-fetch.js';

/** A model's bytes and where they came from. */
export interface ModelBytes {
  /** The model in memory; empty when the model was too large for memory and lies in `path` instead. */
  readonly bytes: Uint8Array;
  /** Set when the model went to a verified file (above the memory budget): open it from there. */
  readonly path?: string;
  /** The model's size in bytes (whether in memory or in `path`). */
  readonly size: number;
  readonly sha256: string;
  /**
   * Milliseconds spent computing and checking the sha256 (for S3, hashing as the bytes arrived, overlapped with the
   * transfer; for a local file, one pass after the read).
   */
  readonly verifyMs: number;
  /** The URI or path the bytes were read from. */
  readonly source: string;
  /** How the S3 fetch went (S3 models only), for telemetry. */
  readonly stats?: FetchStats;
}

export interface S3Location {
  readonly bucket: string;
  readonly key: string;
}

export interface LoadModelOptions {
  /** When set, bytes whose sha256 differs are refused. */
  readonly expectedSha256?: string;
  /** Environment to read endpoint overrides and fetch settings from. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Tuning of the S3 fetch (part size, concurrency, timeouts, memory budget); overrides the environment. */
  readonly fetch?: Omit<S3FetchOptions, 'expectedSha256' | 'onProgress'>;
  /** Called as an S3 model's bytes arrive (bytes so far, total), for a progress bar. @default none */
  readonly onProgress?: (received: number, total: number) => void;
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
  const expected = normalizeSha256(options.expectedSha256);
  if (isS3Uri(uri)) {
    const location = parseS3Uri(uri);
    const env = options.env ?? process.env;
    // The fetch checks the sha256 itself, before a spilled file gets its final name.
    return readS3Object(location, env, {
      ...fetchOptionsFromEnv(env),
      ...options.fetch,
      expectedSha256: expected,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
  }
  const bytes = await readLocalFile(uri);
  if (bytes.length === 0) throw new StartupError(`model ${uri} is empty (0 bytes)`, 'Upload the model file again');
  const verifyStarted = performance.now();
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  checkSha256(uri, expected, sha256);
  return { bytes, size: bytes.length, sha256, verifyMs: performance.now() - verifyStarted, source: uri };
}

async function readLocalFile(path: string): Promise<Uint8Array> {
  try {
    return await readFile(path);
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

/** An S3 client from the standard chain, honouring the endpoint override variables; `overrides` win. */
export function createS3Client(env: NodeJS.ProcessEnv = process.env, overrides: S3ClientConfig = {}): S3Client {
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
    ...overrides,
  });
}

async function readS3Object(
  location: S3Location,
  env: NodeJS.ProcessEnv,
  options: S3FetchOptions,
): Promise<ModelBytes> {
  const uri = `s3://${location.bucket}/${location.key}`;
  // Retries are the fetch's own, per part (and counted); the SDK's would multiply them.
  const client = createS3Client(env, { maxAttempts: 1 });
  try {
    const fetched = await fetchS3Object(client, location, options);
    return {
      bytes: fetched.bytes ?? new Uint8Array(0),
      ...(fetched.path === undefined ? {} : { path: fetched.path }),
      size: fetched.size,
      sha256: fetched.sha256,
      verifyMs: fetched.stats.verifyMs,
      source: uri,
      stats: fetched.stats,
    };
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
      case 'Forbidden':
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
