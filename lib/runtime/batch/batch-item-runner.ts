/**
 * One item through the runtime's own request handling (`POST /`, as a client's request would go), so a batch result
 * equals the synchronous answer and a failure carries the contract's error body. A 503 (not ready, overloaded) is
 * tried again after a short wait; every other answer is final.
 */
import { randomUUID } from 'node:crypto';
import { REQUEST_ID_HEADER } from '../../contract.js';
import { isJsonContentType, mediaType, readErrorBody, type ErrorBody } from '../codec/json.js';
import type { Runtime } from '../runtime.js';
import type { BatchItem } from './batch-items.js';
import type { FailureRecord, ItemRef, ResultRecord } from './batch-layout.js';

export type ItemOutcome =
  { readonly ok: true; readonly record: ResultRecord } | { readonly ok: false; readonly record: FailureRecord };

export interface ItemRunnerOptions {
  /** Per-item timeout; past it the item fails with 504 `predictor_timeout`. @default the runtime's */
  readonly timeoutMs?: number;
  /** Tries for an item answered 503, the first included. @default 3 */
  readonly maxAttempts?: number;
  /** First wait before a retry, doubled each time. @default 200 */
  readonly retryDelayMs?: number;
}

/** How long an error body's text may be when the predictor answered with a body of its own (full control). */
const MAX_FOREIGN_ERROR = 1000;

export async function runItem(
  runtime: Runtime,
  item: BatchItem,
  options: ItemRunnerOptions = {},
): Promise<ItemOutcome> {
  const maxAttempts = options.maxAttempts ?? 3;
  const delayMs = options.retryDelayMs ?? 200;
  const requestId = randomUUID();
  for (let attempt = 1; ; attempt += 1) {
    const response = await runtime.handle(
      {
        method: 'POST',
        path: '/',
        query: {},
        headers: { 'content-type': item.contentType, [REQUEST_ID_HEADER]: requestId },
        body: item.body,
      },
      { requestId, ...(options.timeoutMs === undefined ? {} : { timeoutMs: options.timeoutMs }) },
    );
    if (response.status === 503 && attempt < maxAttempts) {
      await new Promise((resolve) => setTimeout(resolve, delayMs * 2 ** (attempt - 1)));
      continue;
    }
    const ref = refOf(item);
    const contentType = response.headers['content-type'] ?? 'application/octet-stream';
    if (response.status < 400)
      return { ok: true, record: resultRecord(ref, response.status, contentType, response.body) };
    return {
      ok: false,
      record: { ...ref, status: response.status, error: errorBodyOf(response.body, contentType, requestId) },
    };
  }
}

function refOf(item: BatchItem): ItemRef {
  return { id: item.id, source: item.source, ...(item.line === undefined ? {} : { line: item.line }) };
}

export function resultRecord(ref: ItemRef, status: number, contentType: string, body: Buffer): ResultRecord {
  if (isJsonContentType(contentType)) {
    try {
      return {
        ...ref,
        status,
        contentType,
        output: body.length === 0 ? null : (JSON.parse(body.toString('utf8')) as unknown),
      };
    } catch {
      // A full-control answer labelled JSON that is not: kept as its text, not lost.
      return { ...ref, status, contentType, output: body.toString('utf8') };
    }
  }
  if (mediaType(contentType).startsWith('text/')) return { ...ref, status, contentType, output: body.toString('utf8') };
  return { ...ref, status, contentType, outputBase64: body.toString('base64') };
}

/** The contract's error body; a predictor's own error body (full control) is kept as the message. */
export function errorBodyOf(body: Buffer, contentType: string, requestId: string): ErrorBody {
  const text = body.toString('utf8');
  if (isJsonContentType(contentType)) {
    try {
      const parsed = readErrorBody(JSON.parse(text));
      if (parsed?.code !== undefined)
        return { error: parsed.error, code: parsed.code, requestId: parsed.requestId ?? requestId };
    } catch {
      // Not JSON after all: kept as text below.
    }
  }
  return {
    error: text.slice(0, MAX_FOREIGN_ERROR) || 'the predictor answered an error without a body',
    code: 'predictor_error',
    requestId,
  };
}
