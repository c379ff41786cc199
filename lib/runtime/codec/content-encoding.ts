/**
 * Compressed request bodies (`Content-Encoding: gzip` or `deflate`, as Triton and tritonclient send them) and
 * compressed responses (`Accept-Encoding`). A body is inflated as it streams, and what it inflates to counts against
 * the body limit: a small body that would inflate past it is refused once the limit is passed, never allocated whole.
 */
import { constants, createGunzip, createInflate, gunzipSync, inflateSync, type Gunzip, type Inflate } from 'node:zlib';
import type { HttpError } from '../../predictor.js';
import { httpError } from './http-errors.js';
import { clipText } from './json.js';

/** The codings a request body may arrive in. */
export type ContentCoding = 'identity' | 'gzip' | 'deflate';

export const SUPPORTED_CODINGS: readonly ContentCoding[] = ['gzip', 'deflate', 'identity'];

const ALIASES: Readonly<Record<string, ContentCoding>> = {
  identity: 'identity',
  gzip: 'gzip',
  'x-gzip': 'gzip',
  deflate: 'deflate',
};

/** A request's coding from its Content-Encoding header; one the server cannot decode is a 415 naming those it can. */
export function requestCoding(header: string | undefined): ContentCoding {
  if (header === undefined) return 'identity';
  const codings = header
    .split(',')
    .map((c) => c.trim().toLowerCase())
    .filter((c) => c !== '' && c !== 'identity');
  if (codings.length === 0) return 'identity';
  const coding = codings.length === 1 ? ALIASES[codings[0]!] : undefined;
  if (coding === undefined) {
    throw httpError(
      'unsupported_media_type',
      `Content-Encoding '${clipText(header, 48)}' is not supported; send the body as ${SUPPORTED_CODINGS.join(', ')}`,
    );
  }
  return coding;
}

/** A streaming decoder for a coding (undefined for identity). */
export function decoder(coding: ContentCoding): Gunzip | Inflate | undefined {
  if (coding === 'gzip') return createGunzip();
  if (coding === 'deflate') return createInflate();
  return undefined;
}

/** The 400 for a body that its Content-Encoding header lies about (or that is cut short). */
export function badlyEncoded(coding: ContentCoding, error: unknown): HttpError {
  const reason = (error as NodeJS.ErrnoException)?.code ?? 'corrupt';
  return httpError(
    'invalid_input',
    `the body is not valid ${coding} data (${clipText(String(reason), 40)}), as its Content-Encoding header says`,
  );
}

/** The 413 for a body larger than the limit, compressed or once inflated. */
export function tooLarge(maxBodyBytes: number, inflated: boolean): HttpError {
  return httpError(
    'payload_too_large',
    `request body exceeds the limit of ${maxBodyBytes} bytes${inflated ? ' once decompressed' : ''}`,
  );
}

/**
 * Decodes a body already in memory (a Lambda event's): at most `maxBodyBytes` are ever inflated (zlib stops there and
 * throws), so memory stays bounded whatever the body claims.
 */
export function decodeBody(body: Buffer, coding: ContentCoding, maxBodyBytes: number): Buffer {
  if (coding === 'identity') return body;
  const options = { maxOutputLength: Math.max(1, maxBodyBytes) };
  try {
    return coding === 'gzip' ? gunzipSync(body, options) : inflateSync(body, options);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw tooLarge(maxBodyBytes, true);
    throw badlyEncoded(coding, error);
  }
}

/** Responses at least this large are compressed when the client accepts it; smaller ones gain too little. */
export const COMPRESS_MIN_BYTES = 1024;

/** The coding a response should use for a client's Accept-Encoding: gzip or deflate when accepted (q > 0), else none. */
export function responseCoding(acceptEncoding: string | undefined): 'gzip' | 'deflate' | undefined {
  if (acceptEncoding === undefined) return undefined;
  const weights = new Map<string, number>();
  for (const part of acceptEncoding.split(',')) {
    const [name, ...params] = part.split(';').map((p) => p.trim().toLowerCase());
    if (!name) continue;
    const q = params.find((p) => p.startsWith('q='));
    const weight = q === undefined ? 1 : Number(q.slice(2));
    weights.set(name, Number.isFinite(weight) ? weight : 0);
  }
  const weightOf = (name: string): number => weights.get(name) ?? weights.get('*') ?? 0;
  const gzip = weightOf('gzip');
  const deflate = weightOf('deflate');
  if (gzip <= 0 && deflate <= 0) return undefined;
  return gzip >= deflate ? 'gzip' : 'deflate';
}

/** zlib settings for responses: a fast level, as the response is on the request's critical path. */
export const RESPONSE_ZLIB_OPTIONS = { level: constants.Z_BEST_SPEED };
