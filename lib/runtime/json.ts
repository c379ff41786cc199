import { httpError } from './http-errors.js';

/** Parses a JSON body; a syntax error (or nesting deep enough to exhaust the stack) is a 400. */
export function parseJsonBody(body: Buffer): unknown {
  if (body.length === 0) throw httpError('malformed_json', 'request body is empty; send a JSON document');
  try {
    return JSON.parse(body.toString('utf8')) as unknown;
  } catch (error) {
    const reason = error instanceof RangeError ? 'nested too deeply' : (error as Error).message;
    throw httpError('malformed_json', `request body is not valid JSON: ${reason}`);
  }
}

/** JSON text of a value; BigInt becomes a string when exact as a number is impossible. */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    typeof v === 'bigint' ? (Number.isSafeInteger(Number(v)) ? Number(v) : v.toString()) : v,
  );
}

export function isJsonContentType(contentType: string): boolean {
  const type = mediaType(contentType);
  return type === 'application/json' || type.endsWith('+json');
}

/** The media type of a Content-Type header, lower-cased, without parameters. */
export function mediaType(contentType: string): string {
  return contentType.split(';', 1)[0]!.trim().toLowerCase();
}
