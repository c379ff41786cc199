/**
 * The GPU BatchJob's steps around SageMaker batch transform. The transform writes
 * `<run>/transform/<attempt>/<input key>.out`, one envelope
 * line per record (transform-records.ts; `SplitType: Line` + `AssembleWith: Line` keep a JSON Lines input's records
 * in order, one output line each); this splits them into the layout every batch job writes (results/ and failures/
 * parts, failures.jsonl, summary.json, `_SUCCESS`), so the GPU job reads and reruns like the CPU one. Never silently
 * wrong: an input with no output (the job failed before it) or whose output has another number of lines than its
 * records fails all its items, with `transform_failed` or `transform_output_mismatch`. A rerun's transform reads only
 * the failed records (`<run>/retry/<attempt>/input/records.jsonl`, written by `planTransform`), and its output line k
 * is the k-th of `retry/<attempt>/items.jsonl`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { finishAttempt, readJobState, writePart } from './batch-attempt.js';
import type { ItemOutcome } from './batch-item-runner.js';
import { itemsOf } from './batch-items.js';
import { BatchJobError } from './batch-job-error.js';
import {
  JSONL_CONTENT_TYPE,
  parseJsonLines,
  toJsonLines,
  type BatchSummary,
  type FailureRecord,
  type ItemRef,
} from './batch-layout.js';
import type { BatchStore } from './batch-store.js';
import type { TransformRecord } from './transform-records.js';

/** Where attempt `n`'s transform job writes, under the run's output. */
export function transformOutputPrefix(attempt: number): string {
  return `transform/${attempt}/`;
}

/** A rerun's input (the failed records, one per line) and the items they are, in the same order. */
export function retryPrefix(attempt: number): { readonly input: string; readonly items: string } {
  return { input: `retry/${attempt}/input/`, items: `retry/${attempt}/items.jsonl` };
}

/** The record file of a rerun's input. */
const RETRY_RECORDS = 'records.jsonl';

/** What the state machine runs next: the transform over `transformInput`, writing to `transformOutput`. */
export interface TransformPlan {
  readonly attempt: number;
  readonly input: string;
  readonly output: string;
  readonly transformInput: string;
  readonly transformOutput: string;
  readonly startedAt: string;
  /** A rerun: the records the transform will run (0: nothing to rerun). Absent on attempt 1 (every input). */
  readonly records?: number;
}

/**
 * Plans attempt 1 over the input prefix, or a rerun: the failed records of the last attempt written as one JSON Lines
 * object (each failure's own line of its input), so the transform runs those and nothing else.
 */
export async function planTransform(input: BatchStore, output: BatchStore, rerun: boolean): Promise<TransformPlan> {
  const state = await readJobState(output);
  const startedAt = new Date().toISOString();
  const base = { input: input.uri, output: output.uri, startedAt };
  if (!rerun) {
    if (state.kind !== 'empty') throw new BatchJobError(`${output.uri} already holds a batch job's output`);
    return {
      ...base,
      attempt: 1,
      transformInput: input.uri,
      transformOutput: output.uriOf(transformOutputPrefix(1)),
    };
  }
  if (state.kind !== 'finished') throw new BatchJobError(`${output.uri} holds no finished batch job to rerun`);
  if (state.summary.input !== input.uri) {
    throw new BatchJobError(`${output.uri} holds a job over ${state.summary.input}, not ${input.uri}`);
  }
  const attempt = state.summary.attempt + 1;
  const lines: Buffer[] = [];
  const items: ItemRef[] = [];
  const sources = new Map<string, Map<string, Buffer>>();
  for (const failure of state.failures) {
    if (failure.line === undefined) {
      throw new BatchJobError(
        `failure ${failure.id} is a whole object: a GPU rerun retries JSON Lines records only`,
        'Rerun it with arclight batch run --local, or on the Lambda compute',
      );
    }
    let bodies = sources.get(failure.source);
    if (!bodies) {
      const stored = await input.read(failure.source);
      bodies = new Map((stored ? itemsOf(failure.source, stored.bytes) : []).map((item) => [item.id, item.body]));
      sources.set(failure.source, bodies);
    }
    const body = bodies.get(failure.id);
    // Gone from the input since: it stays a failure, saying so, without a record to run.
    if (body === undefined) continue;
    lines.push(body, Buffer.from('\n'));
    items.push({ id: failure.id, source: failure.source, line: failure.line });
  }
  const retry = retryPrefix(attempt);
  await output.write(`${retry.input}${RETRY_RECORDS}`, Buffer.concat(lines), JSONL_CONTENT_TYPE);
  await output.write(retry.items, toJsonLines(items), JSONL_CONTENT_TYPE);
  return {
    ...base,
    attempt,
    transformInput: output.uriOf(retry.input),
    transformOutput: output.uriOf(transformOutputPrefix(attempt)),
    records: items.length,
  };
}

export interface SplitTransformOptions {
  readonly input: BatchStore;
  /** The run's output (`<output prefix><run>/`). */
  readonly output: BatchStore;
  readonly attempt: number;
  readonly startedAt: Date;
  /** Why the transform job ended badly, when it did (its outputs so far are still split). */
  readonly transformError?: string;
}

/** Splits an attempt's transform output into the layout and closes the attempt. */
export async function splitTransformOutput(options: SplitTransformOptions): Promise<BatchSummary> {
  const { input, output, attempt } = options;
  const state = await readJobState(output);
  // Run again by Step Functions after it closed: already split.
  if (state.kind === 'finished' && state.summary.attempt === attempt) return state.summary;
  const previous = attempt > 1 && state.kind === 'finished' ? state.summary : undefined;
  const produced = (key: string) => output.read(`${transformOutputPrefix(attempt)}${key}.out`);
  if (attempt === 1) {
    for await (const object of input.list()) {
      const stored = await input.read(object.key);
      if (!stored) continue;
      const items: ItemRef[] = itemsOf(object.key, stored.bytes, stored.contentType);
      await splitSource(output, attempt, object.key, items, await produced(object.key), options.transformError);
    }
  } else {
    const retry = retryPrefix(attempt);
    const listed = await output.read(retry.items);
    const items = listed ? parseJsonLines<ItemRef>(listed.bytes, output.uriOf(retry.items)) : [];
    // Failures whose input is gone were not rerun: they stay failures.
    const rerun = new Set(items.map((item) => item.id));
    const gone = (state.kind === 'finished' ? state.failures : []).filter((f) => !rerun.has(f.id));
    await writePart(
      output,
      attempt,
      'gone',
      gone.map((record) => ({ ok: false, record: goneRecord(record, input.uri) })),
    );
    await splitSource(output, attempt, RETRY_RECORDS, items, await produced(RETRY_RECORDS), options.transformError);
  }
  return finishAttempt(output, {
    input: input.uri,
    attempt,
    startedAt: options.startedAt,
    ...(previous ? { previous } : {}),
  });
}

async function splitSource(
  output: BatchStore,
  attempt: number,
  source: string,
  items: readonly ItemRef[],
  produced: { bytes: Buffer } | undefined,
  transformError: string | undefined,
): Promise<void> {
  const outcomes = produced
    ? outcomesOf(items, produced.bytes, source)
    : items.map((item) => failed(item, 'transform_failed', noOutput(source, transformError)));
  await writePart(output, attempt, createHash('sha256').update(source).digest('hex').slice(0, 16), outcomes);
}

function goneRecord(failure: FailureRecord, inputUri: string): FailureRecord {
  return {
    ...failure,
    status: 404,
    error: {
      error: `input item ${failure.id} is no longer in ${inputUri}`,
      code: 'not_found',
      requestId: randomUUID(),
    },
  };
}

/** Record k of a source is output line k; any other count is refused for the whole source. */
function outcomesOf(items: readonly ItemRef[], bytes: Buffer, source: string): ItemOutcome[] {
  const lines = bytes
    .toString('utf8')
    .split('\n')
    .filter((line) => line.trim() !== '');
  if (lines.length !== items.length) {
    const why = `the transform output of ${source} has ${lines.length} lines for ${items.length} records`;
    return items.map((item) => failed(item, 'transform_output_mismatch', why));
  }
  return items.map((item, k) => {
    const record = parseRecord(lines[k]!);
    if (!record) return failed(item, 'transform_output_mismatch', `output line ${k + 1} of ${source} is not a record`);
    const ref: ItemRef = { id: item.id, source: item.source, ...(item.line ? { line: item.line } : {}) };
    if (record.ok) {
      const { status, contentType, output, outputBase64 } = record;
      const body = outputBase64 !== undefined ? { outputBase64 } : { output };
      return { ok: true, record: { ...ref, status, contentType, ...body } };
    }
    return { ok: false, record: { ...ref, status: record.status, error: record.error } };
  });
}

function parseRecord(line: string): TransformRecord | undefined {
  try {
    const parsed = JSON.parse(line) as Partial<TransformRecord> | null;
    if (typeof parsed?.ok !== 'boolean' || typeof parsed.status !== 'number') return undefined;
    if (!parsed.ok && typeof (parsed as { error?: { code?: unknown } }).error?.code !== 'string') return undefined;
    return parsed as TransformRecord;
  } catch {
    return undefined;
  }
}

function failed(item: ItemRef, code: string, error: string): ItemOutcome {
  const record: FailureRecord = {
    id: item.id,
    source: item.source,
    ...(item.line ? { line: item.line } : {}),
    status: 500,
    error: { error, code, requestId: randomUUID() },
  };
  return { ok: false, record };
}

function noOutput(source: string, transformError: string | undefined): string {
  return `the transform job wrote no output for ${source}${transformError ? ` (${transformError.slice(0, 500)})` : ''}`;
}
