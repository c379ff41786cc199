/**
 * The codec between bytes and predictors: request payloads by content type, and predictor results
 * (JSON, text, bytes or a full-control response) back to status, headers and body.
 */
import { validateHeaderName, validateHeaderValue } from 'node:http';
import type { PredictorResponse } from '../../predictor.js';
import { httpError } from './http-errors.js';
import { isJsonContentType, mediaType, parseJsonBody, previewJson, stringifyJson } from './json.js';

/** The transport-neutral request every adapter produces. */
export interface InternalRequest {
  readonly method: string;
  readonly path: string;
  readonly query: Readonly<Record<string, string>>;
  /** Lower-cased names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  /** The body as text, when the transport delivered it as text (a Lambda event): JSON parses from it, no copy. */
  readonly text?: string;
}

/** The transport-neutral response every adapter sends. */
export interface InternalResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: Buffer;
  /** `Set-Cookie` values, each sent as its own header (payload 2.0: the result's `cookies`); never folded into one. */
  readonly cookies?: readonly string[];
}

/** The payload a predictor sees: JSON → value, text → string, anything else → the bytes. */
export function decodePayload(request: InternalRequest): unknown {
  const contentType = request.headers['content-type'];
  if (contentType === undefined) return request.body.length === 0 ? undefined : request.body;
  if (isJsonContentType(contentType)) return parseJsonBody(request.text ?? request.body);
  if (mediaType(contentType).startsWith('text/')) return request.text ?? request.body.toString('utf8');
  return request.body;
}

const RESPONSE_KEYS = new Set(['status', 'headers', 'body']);

/** A full-control response: `status` (an HTTP status) plus only `headers` and `body`. */
export function isPredictorResponse(value: unknown): value is PredictorResponse {
  if (typeof value !== 'object' || value === null || Array.isArray(value) || ArrayBuffer.isView(value)) return false;
  const status = (value as { status?: unknown }).status;
  return (
    typeof status === 'number' &&
    Number.isInteger(status) &&
    status >= 100 &&
    status <= 599 &&
    Object.keys(value).every((key) => RESPONSE_KEYS.has(key))
  );
}

/** Turns what a predictor returned into a response; what cannot be encoded is a predictor failure. */
export function encodeResult(result: unknown): InternalResponse {
  if (isPredictorResponse(result)) {
    // `body` is optional in a full-control response (`{ status: 204 }`): no body then, not a failure.
    const encoded = result.body === undefined ? { headers: {}, body: Buffer.alloc(0) } : encodeBody(result.body);
    const { headers, cookies } = lowerCaseKeys(result.headers ?? {});
    return {
      status: result.status,
      headers: { ...encoded.headers, ...headers },
      body: encoded.body,
      ...(cookies.length > 0 ? { cookies } : {}),
    };
  }
  return { status: 200, ...encodeBody(result) };
}

function encodeBody(body: unknown): { headers: Record<string, string>; body: Buffer } {
  if (body === undefined) {
    throw httpError(
      'predictor_error',
      'the predictor returned nothing (undefined); return a JSON value, a string or bytes',
    );
  }
  if (typeof body === 'string')
    return { headers: { 'content-type': 'text/plain; charset=utf-8' }, body: Buffer.from(body) };
  if (body instanceof Uint8Array) {
    return {
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from(body.buffer, body.byteOffset, body.byteLength),
    };
  }
  let json: string | undefined;
  try {
    json = stringifyJson(body);
  } catch (error) {
    throw httpError(
      'predictor_error',
      `the predictor returned a value JSON cannot encode (${(error as Error).message.split('\n', 1)[0]})`,
    );
  }
  if (json === undefined)
    throw httpError('predictor_error', `the predictor returned a ${typeof body}, which JSON cannot encode`);
  return { headers: { 'content-type': 'application/json' }, body: Buffer.from(json) };
}

/**
 * A full-control response's headers, lower-cased and checked: a name or value HTTP cannot carry (a newline, a
 * space in a name) would make node:http drop the connection unanswered, and API Gateway fail the invocation.
 * `set-cookie` (one value or a list) comes out as the cookies, one header each: a cookie's `Expires` holds a comma,
 * so folded values could not be told apart. A list under any other name is joined with `, ` as HTTP allows.
 */
function lowerCaseKeys(headers: Readonly<Record<string, string | readonly string[]>>): {
  headers: Record<string, string>;
  cookies: string[];
} {
  const out: Record<string, string> = {};
  const cookies: string[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const values = Array.isArray(value) ? value.map(String) : [String(value)];
    try {
      validateHeaderName(name);
      for (const text of values) validateHeaderValue(name, text);
    } catch {
      throw httpError('predictor_error', `the predictor returned a header HTTP cannot carry: ${previewJson(name)}`);
    }
    const lower = name.toLowerCase();
    if (lower === 'set-cookie') cookies.push(...values);
    else out[lower] = values.join(', ');
  }
  return { headers: out, cookies };
}
