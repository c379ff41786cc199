/**
 * Verifies a received request's SigV4 signature the way API Gateway does: the AWS SDK's own signer (SignatureV4 with
 * the SDK's node Hash) recomputes the Authorization header from the method, path, query, the headers the request says
 * it signed, the body and its x-amz-date, for the secret the test knows.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { Hash } from '@smithy/core/serde';
import { SignatureV4 } from '@smithy/signature-v4';

export interface ReceivedRequest {
  readonly method: string;
  /** The request target as received (`/path?query`). */
  readonly target: string;
  readonly headers: IncomingHttpHeaders;
  readonly body: Buffer;
}

export const SDK_SHA256 = Hash.bind(null, 'sha256');

/** The Authorization header the AWS SDK's signer computes for `request`. */
export async function expectedAuthorization(
  request: ReceivedRequest,
  credentials: { accessKeyId: string; secretAccessKey: string; sessionToken?: string },
  region: string,
  service = 'execute-api',
): Promise<string> {
  const authorization = String(request.headers['authorization'] ?? '');
  const signedHeaders = /SignedHeaders=([^,]+)/.exec(authorization)?.[1]?.split(';') ?? [];
  const amzDate = String(request.headers['x-amz-date'] ?? '');
  const signingDate = new Date(amzDate.replace(/^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/, '$1-$2-$3T$4:$5:$6Z'));
  const url = new URL(request.target, 'http://placeholder');
  const headers: Record<string, string> = {};
  for (const name of signedHeaders) headers[name] = String(request.headers[name] ?? '');
  const query: Record<string, string | string[]> = {};
  for (const [name, value] of url.searchParams) {
    const existing = query[name];
    query[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
  }
  const signer = new SignatureV4({
    service,
    region,
    credentials,
    sha256: SDK_SHA256,
    uriEscapePath: true,
    applyChecksum: false,
  });
  const signed = await signer.sign(
    {
      method: request.method,
      protocol: 'https:',
      hostname: headers['host'] ?? '',
      path: url.pathname,
      query,
      headers,
      body: request.body.length === 0 ? undefined : request.body,
    },
    { signingDate },
  );
  return signed.headers['authorization']!;
}
