/**
 * The output layout of a batch job, the same locally and on AWS (README "Batch jobs"):
 *
 * ```
 * <output>/results/part-<attempt>-<tag>.jsonl   one line per succeeded item: {"id","source","line"?,"status","output"|"outputBase64","contentType"}
 * <output>/failures/part-<attempt>-<tag>.jsonl  the same per failed item, staged per part
 * <output>/failures.jsonl                       the manifest: every item that failed in the latest attempt, with the contract's error
 * <output>/summary.json                         counts, attempts, input, times
 * <output>/_SUCCESS                             written when the manifest is empty
 * ```
 * An attempt's parts are named by what they hold, so a part retried (a Lambda retry) replaces itself: no item is
 * ever counted twice.
 */
import type { ErrorBody } from '../codec/json.js';

export const LAYOUT = {
  results: 'results/',
  failureParts: 'failures/',
  failures: 'failures.jsonl',
  summary: 'summary.json',
  success: '_SUCCESS',
} as const;

export const JSONL_CONTENT_TYPE = 'application/x-ndjson';

/** Where one item came from. */
export interface ItemRef {
  /** `<source>#<line>` for a JSON Lines item, `<source>` for a whole object. */
  readonly id: string;
  /** The input object's key, relative to the input location. */
  readonly source: string;
  /** 1-based line number in a JSON Lines source. */
  readonly line?: number;
}

/** A results line. */
export interface ResultRecord extends ItemRef {
  readonly status: number;
  readonly contentType: string;
  /** JSON answers as JSON, text as a string. */
  readonly output?: unknown;
  /** Any other answer (bytes), base64-encoded. */
  readonly outputBase64?: string;
}

/** A failures line: the item and the contract's error body its request got. */
export interface FailureRecord extends ItemRef {
  readonly status: number;
  readonly error: ErrorBody;
}

export interface BatchSummary {
  /** The input location as given to the first attempt; later attempts must name the same. */
  readonly input: string;
  readonly output: string;
  /** 1 for the first run, +1 for each rerun of the failures. */
  readonly attempt: number;
  /** Items seen by the first attempt. */
  readonly items: number;
  /** Items with a result, over every attempt. */
  readonly succeeded: number;
  /** Items in the failures manifest now. */
  readonly failed: number;
  /** This attempt's own counts. */
  readonly lastAttempt: { readonly processed: number; readonly succeeded: number; readonly failed: number };
  readonly startedAt: string;
  readonly finishedAt: string;
}

/** `part-0001-<tag>.jsonl`: parts sort by attempt. */
export function partName(attempt: number, tag: string): string {
  return `part-${String(attempt).padStart(4, '0')}-${tag}.jsonl`;
}

/** The part prefix of one attempt, to list only its parts. */
export function attemptPrefix(attempt: number): string {
  return `part-${String(attempt).padStart(4, '0')}-`;
}

export function toJsonLines(records: readonly unknown[]): Buffer {
  return Buffer.from(records.map((record) => `${JSON.stringify(record)}\n`).join(''));
}

/** Parses a JSON Lines file of our own making; a damaged line is an error naming it. */
export function parseJsonLines<T>(bytes: Buffer, name: string): T[] {
  const records: T[] = [];
  const lines = bytes.toString('utf8').split('\n');
  lines.forEach((line, index) => {
    if (line.trim() === '') return;
    try {
      records.push(JSON.parse(line) as T);
    } catch {
      throw new Error(`${name} line ${index + 1} is not JSON: the file was damaged`);
    }
  });
  return records;
}
