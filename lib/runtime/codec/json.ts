import { httpError } from './http-errors.js';

/** Parses a JSON body; a syntax error (or nesting deep enough to exhaust the stack) is a 400. */
export function parseJsonBody(body: Buffer | string): unknown {
  if (body.length === 0) throw httpError('malformed_json', 'request body is empty; send a JSON document');
  try {
    return JSON.parse(typeof body === 'string' ? body : body.toString('utf8')) as unknown;
  } catch (error) {
    const reason = error instanceof RangeError ? 'nested too deeply' : printable((error as Error).message);
    throw httpError('malformed_json', `request body is not valid JSON: ${reason}`);
  }
}

/**
 * Text a client sent, as an error message may quote it: control characters (a compressed or binary body that
 * JSON.parse quotes back) escaped, at most `maxLength` characters.
 */
export function printable(text: string, maxLength = 160): string {
  // eslint-disable-next-line no-control-regex
  const escaped = text.replace(/[\u0000-\u001f\u007f-\u009f\ufffd]/g, (c) =>
    c === '\ufffd' ? '\\ufffd' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`,
  );
  return clipText(escaped, maxLength);
}

/**
 * JSON text of a value; BigInt becomes a string when exact as a number is impossible, and a typed array (a tensor's
 * data, such as `out.logits.data`) a JSON array rather than an object keyed by index.
 */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) return Array.from(v as unknown as ArrayLike<unknown>);
    return v;
  });
}

/**
 * The HTTP contract's error body as JSON text: the Open Inference Protocol's `{"error":"<message>"}` (its clients read
 * `error` as a string) with our `code` and `requestId` beside it, which those clients ignore.
 */
export function errorBodyJson(code: string, message: string, requestId: string): string {
  return JSON.stringify({ error: message, code, requestId } satisfies ErrorBody);
}

/** The HTTP contract's error body. */
export interface ErrorBody {
  /** What went wrong, for a person. */
  readonly error: string;
  /** The contract's error code (`invalid_input`, `not_ready`, ...). */
  readonly code: string;
  /** The request's id; the logs carry it too. */
  readonly requestId: string;
}

/** An error body as a client reads it: the message, and our fields when present; undefined when it is none. */
export function readErrorBody(value: unknown): (Partial<ErrorBody> & { readonly error: string }) | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const { error, code, requestId } = value as Record<string, unknown>;
  if (typeof error !== 'string') return undefined;
  return {
    error,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof requestId === 'string' ? { requestId } : {}),
  };
}

export function isJsonContentType(contentType: string): boolean {
  const type = mediaType(contentType);
  return type === 'application/json' || type.endsWith('+json');
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(contentType: string): string {
  return contentType.split(';', 1)[0]!.trim().toLowerCase();
}

/** A client-supplied string (a name, a path) as an error message quotes it: at most `maxLength` characters. */
export function clipText(text: string, maxLength = 64): string {
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

/**
 * A request value as an error message shows it: JSON, at most `maxLength` characters and a few levels deep, so a
 * hostile value (nested 100000 deep, megabytes long) can neither exhaust the stack nor swell the message.
 */
export function previewJson(value: unknown, maxLength = 64): string {
  const text = preview(value, 3);
  return text.length > maxLength ? `${text.slice(0, maxLength - 1)}…` : text;
}

function preview(value: unknown, depth: number): string {
  if (Array.isArray(value)) {
    if (depth === 0) return value.length === 0 ? '[]' : '[…]';
    const items = value.slice(0, 8).map((item: unknown) => preview(item, depth - 1));
    return `[${items.join(',')}${value.length > 8 ? ',…' : ''}]`;
  }
  if (typeof value === 'object' && value !== null) {
    const entries = Object.entries(value);
    if (depth === 0) return entries.length === 0 ? '{}' : '{…}';
    const items = entries.slice(0, 8).map(([key, item]) => `${JSON.stringify(key)}:${preview(item, depth - 1)}`);
    return `{${items.join(',')}${entries.length > 8 ? ',…' : ''}}`;
  }
  if (typeof value === 'string') return JSON.stringify(value.length > 64 ? `${value.slice(0, 64)}…` : value);
  return typeof value === 'bigint' ? value.toString() : (JSON.stringify(value) ?? String(value));
}
