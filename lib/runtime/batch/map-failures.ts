/**
 * Whole Map batches that failed: a batch whose invocation failed after its retries (a timeout, out of memory) wrote no
 * part, and Step Functions records it only in the Map's ResultWriter export. This reads that export (AWS's documented
 * layout: `<prefix>/<map run id>/manifest.json` naming `FAILED_<n>.json` files, each a JSON array of child executions
 * with `Input` (the batch, as a JSON string), `Error` and `Cause`) and writes each item of this run's failed batches
 * as a failure part of the attempt, with the contract's error `batch_failed`, so the failures manifest lists them and
 * a rerun retries them. Exports of other runs (the prefix is shared) are told apart by the batch's own
 * `BatchInput` (output location and attempt).
 */
import { createHash, randomUUID } from 'node:crypto';
import { writePart } from './batch-attempt.js';
import type { ItemOutcome } from './batch-item-runner.js';
import { itemsOf } from './batch-items.js';
import type { FailureRecord, ItemRef } from './batch-layout.js';
import type { BatchStore } from './batch-store.js';

/** The contract's error code of an item whose whole Map batch failed. */
export const BATCH_FAILED = 'batch_failed';

/** `manifest.json` of a ResultWriter export. */
export interface MapResultManifest {
  readonly DestinationBucket?: string;
  readonly MapRunArn?: string;
  readonly ResultFiles?: Partial<Record<'FAILED' | 'PENDING' | 'SUCCEEDED', readonly { Key: string; Size?: number }[]>>;
}

/** One child execution in a `FAILED_<n>.json` file. */
export interface MapChildExecution {
  readonly ExecutionArn?: string;
  readonly Name?: string;
  /** The batch as the child got it: `{"BatchInput":{…},"Items":[…]}`, as a JSON string. */
  readonly Input?: string;
  readonly InputDetails?: { readonly Included?: boolean };
  readonly Status?: string;
  readonly Error?: string;
  readonly Cause?: string;
}

interface FailedBatch {
  readonly BatchInput?: { readonly input?: string; readonly output?: string; readonly attempt?: number };
  readonly Items?: readonly ({ readonly Key: string } | FailureRecord)[];
}

export interface RecordFailedBatchesOptions {
  /** The bucket root of the export: its keys are the manifest's. */
  readonly exports: BatchStore;
  /** The key prefix the ResultWriter writes under. */
  readonly prefix: string;
  readonly input: BatchStore;
  readonly output: BatchStore;
  readonly attempt: number;
}

/** Writes the items of this run's failed Map batches as failures; answers how many items and batches. */
export async function recordFailedBatches(
  options: RecordFailedBatchesOptions,
): Promise<{ readonly batches: number; readonly items: number }> {
  let batches = 0;
  let items = 0;
  for (const execution of await failedExecutions(options.exports, options.prefix)) {
    const batch = parseBatch(execution.Input);
    const job = batch?.BatchInput;
    if (!batch || job?.output !== options.output.uri || job.attempt !== options.attempt) continue;
    const error = batchError(execution);
    const records = await itemsOfBatch(batch, options.input, error);
    const tag = `mapfailed-${createHash('sha256')
      .update(execution.ExecutionArn ?? execution.Name ?? JSON.stringify(batch.Items))
      .digest('hex')
      .slice(0, 16)}`;
    const outcomes: ItemOutcome[] = records.map((record) => ({ ok: false, record }));
    await writePart(options.output, options.attempt, tag, outcomes);
    batches += 1;
    items += records.length;
  }
  return { batches, items };
}

/** Every FAILED child execution of every export under `prefix`. */
async function failedExecutions(exports: BatchStore, prefix: string): Promise<MapChildExecution[]> {
  const executions: MapChildExecution[] = [];
  for await (const object of exports.list(prefix)) {
    if (!object.key.endsWith('/manifest.json')) continue;
    const manifest = await readJson<MapResultManifest>(exports, object.key);
    for (const file of manifest?.ResultFiles?.FAILED ?? []) {
      const failed = await readJson<MapChildExecution[]>(exports, file.Key);
      if (Array.isArray(failed))
        executions.push(...failed.filter((e) => e.Status === undefined || e.Status === 'FAILED'));
    }
  }
  return executions;
}

/** Each item of a failed batch as a failure: every line of a JSON Lines object, a whole object, or a rerun's line. */
async function itemsOfBatch(
  batch: FailedBatch,
  input: BatchStore,
  error: FailureRecord['error'],
): Promise<FailureRecord[]> {
  const records: FailureRecord[] = [];
  const inputKeyPrefix = input.uri.replace(/^s3:\/\/[^/]+\//, '');
  for (const item of batch.Items ?? []) {
    if (!('Key' in item)) {
      records.push({ id: item.id, source: item.source, ...(item.line ? { line: item.line } : {}), status: 500, error });
      continue;
    }
    const source = item.Key.startsWith(inputKeyPrefix) ? item.Key.slice(inputKeyPrefix.length) : item.Key;
    const object = await input.read(source);
    // Gone since the Map listed it: the object stands for itself (a rerun will say it is missing).
    const found: readonly ItemRef[] = object
      ? itemsOf(source, object.bytes, object.contentType)
      : [{ id: source, source }];
    for (const { id, line } of found) {
      records.push({
        id,
        source,
        ...(line ? { line } : {}),
        status: 500,
        error: { ...error, requestId: randomUUID() },
      });
    }
  }
  return records;
}

function batchError(execution: MapChildExecution): FailureRecord['error'] {
  const cause = (execution.Cause ?? '').slice(0, 1000);
  return {
    error: `the Map batch failed after its retries: ${execution.Error ?? 'an unknown error'}${cause ? `: ${cause}` : ''}`,
    code: BATCH_FAILED,
    requestId: randomUUID(),
  };
}

function parseBatch(input: string | undefined): FailedBatch | undefined {
  if (input === undefined) return undefined;
  try {
    const parsed = JSON.parse(input) as FailedBatch | null;
    return parsed && typeof parsed === 'object' ? parsed : undefined;
  } catch {
    return undefined;
  }
}

async function readJson<T>(store: BatchStore, key: string): Promise<T | undefined> {
  const object = await store.read(key);
  if (!object) return undefined;
  try {
    return JSON.parse(object.bytes.toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
