/**
 * SigV4 signing of `arclight predict`'s requests to IAM-protected APIs (service `execute-api`), with the AWS SDK's own
 * signer and the standard credential chain, so what is signed here is what API Gateway verifies.
 */
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto';
import { fromNodeProviderChain } from '@aws-sdk/credential-providers';
import { SignatureV4 } from '@smithy/signature-v4';
import { StartupError } from '../../runtime/startup-error.js';

/** The service API Gateway's IAM authorization verifies signatures for. */
export const EXECUTE_API = 'execute-api';

/** AWS credentials, as the SDK's providers resolve them. */
export interface AwsCredentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Temporary credentials' session token (sent as `x-amz-security-token`). */
  readonly sessionToken?: string;
}

/** SHA-256 (and HMAC-SHA256 with a secret) in the shape the SDK's signer takes, over node:crypto. */
class NodeSha256 {
  private hash: Hash | Hmac;
  constructor(private readonly secret?: string | ArrayBuffer | ArrayBufferView) {
    this.hash = this.fresh();
  }
  update(data: string | ArrayBuffer | ArrayBufferView): void {
    this.hash.update(toBuffer(data));
  }
  digest(): Promise<Uint8Array> {
    return Promise.resolve(new Uint8Array(this.hash.digest()));
  }
  reset(): void {
    this.hash = this.fresh();
  }
  private fresh(): Hash | Hmac {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
}

function toBuffer(data: string | ArrayBuffer | ArrayBufferView): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

/** What a signature covers: the request as it will go on the wire. */
export interface RequestToSign {
  readonly method: string;
  readonly url: URL;
  /** Headers to sign and send (names in any case); `host` is added from the URL. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body?: Uint8Array | string;
}

export interface SigningOptions {
  readonly credentials: AwsCredentials;
  readonly region: string;
  /** @default 'execute-api' */
  readonly service?: string;
  /** @default now */
  readonly signingDate?: Date;
}

/**
 * The headers to send: the request's own, `host`, `x-amz-date`, `authorization` (and `x-amz-security-token` for
 * temporary credentials). Only the headers given here are signed, so nothing a client adds later (content-length)
 * can break the signature.
 */
export async function signRequest(request: RequestToSign, options: SigningOptions): Promise<Record<string, string>> {
  const signer = new SignatureV4({
    service: options.service ?? EXECUTE_API,
    region: options.region,
    credentials: options.credentials,
    sha256: NodeSha256,
    // API Gateway, like every service but S3, signs the path with each segment escaped once more.
    uriEscapePath: true,
    applyChecksum: false,
  });
  const headers: Record<string, string> = { host: request.url.host };
  for (const [name, value] of Object.entries(request.headers)) headers[name.toLowerCase()] = value;
  const signed = await signer.sign(
    {
      method: request.method.toUpperCase(),
      protocol: request.url.protocol,
      hostname: request.url.hostname,
      port: request.url.port === '' ? undefined : Number(request.url.port),
      path: request.url.pathname,
      query: queryOf(request.url),
      headers,
      body: request.body,
    },
    { signingDate: options.signingDate ?? new Date() },
  );
  return signed.headers;
}

/** The query as the signer takes it: repeated names as arrays, in the order given. */
function queryOf(url: URL): Record<string, string | string[]> {
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of url.searchParams) {
    const existing = query[name];
    query[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  return query;
}

/** The region of an API Gateway URL (`https://{id}.execute-api.{region}.amazonaws.com/…`), if it is one. */
export function regionOfApiUrl(url: URL): string | undefined {
  return /^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$/.exec(url.hostname)?.[1];
}

/** A failure to find AWS credentials: one line saying where they are looked for. */
export class CredentialsError extends StartupError {}

/**
 * Credentials from the standard chain (environment, SSO, shared config and credentials files with `profile`,
 * web identity, container and instance metadata), resolved once; a CredentialsError in one line when none are found.
 */
export async function loadCredentials(profile?: string): Promise<AwsCredentials> {
  try {
    return await fromNodeProviderChain(profile === undefined ? {} : { profile })();
  } catch (error) {
    const why = ((error as Error).message.split('\n')[0] ?? '').trim();
    throw new CredentialsError(
      `no AWS credentials to sign the request with${profile === undefined ? '' : ` (profile '${profile}')`}: ${why}`,
      'Set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws sso login`',
      { cause: error },
    );
  }
}
