/**
 * Input objects into requests: a JSON Lines object (`.jsonl`, `.ndjson`) is one request per non-blank line, sent as
 * `application/json`; any other object is one request whose body is the object's bytes, its content type from the
 * object (S3's `Content-Type`) or its extension, as the predictor would get it over HTTP.
 */
import { extname } from 'node:path';
import type { ItemRef } from './batch-layout.js';

/** One request of a job. */
export interface BatchItem extends ItemRef {
  readonly body: Buffer;
  readonly contentType: string;
}

const JSON_LINES_EXTENSIONS = new Set(['.jsonl', '.ndjson']);

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.json': 'application/json',
  '.txt': 'text/plain',
  '.csv': 'text/csv',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.webp': 'image/webp',
  '.bmp': 'image/bmp',
  '.tif': 'image/tiff',
  '.tiff': 'image/tiff',
  '.wav': 'audio/wav',
  '.mp3': 'audio/mpeg',
  '.flac': 'audio/flac',
  '.pdf': 'application/pdf',
};

/** Content types that say nothing (S3's default for uploads without one). */
const UNINFORMATIVE = new Set(['binary/octet-stream', 'application/octet-stream']);

export function isJsonLines(key: string): boolean {
  return JSON_LINES_EXTENSIONS.has(extname(key).toLowerCase());
}

/** The item id of a line of a source, or of a whole source. */
export function itemId(source: string, line?: number): string {
  return line === undefined ? source : `${source}#${line}`;
}

/** The requests in one input object. */
export function itemsOf(source: string, bytes: Buffer, storedContentType?: string): BatchItem[] {
  if (isJsonLines(source)) return linesOf(source, bytes);
  return [{ id: itemId(source), source, body: bytes, contentType: contentTypeOf(source, storedContentType) }];
}

function contentTypeOf(source: string, stored: string | undefined): string {
  if (stored !== undefined && !UNINFORMATIVE.has(stored.toLowerCase())) return stored;
  return CONTENT_TYPES[extname(source).toLowerCase()] ?? 'application/octet-stream';
}

/** Splits on `\n` without decoding the whole object to a string: each line's bytes go to the request as they are. */
function linesOf(source: string, bytes: Buffer): BatchItem[] {
  const items: BatchItem[] = [];
  let start = 0;
  let line = 0;
  while (start <= bytes.length) {
    const newline = bytes.indexOf(0x0a, start);
    const end = newline === -1 ? bytes.length : newline;
    line += 1;
    // CRLF files: the \r is no part of the JSON.
    const body = bytes.subarray(start, end > start && bytes[end - 1] === 0x0d ? end - 1 : end);
    if (!isBlank(body)) items.push({ id: itemId(source, line), source, line, body, contentType: 'application/json' });
    if (newline === -1) break;
    start = newline + 1;
  }
  return items;
}

function isBlank(bytes: Buffer): boolean {
  for (const byte of bytes) if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0d) return false;
  return true;
}
