/**
 * The Lambda entry of a BatchJob's state machine: the same runtime and engine as `arclight batch run --local`, driven
 * by Step Functions. Three kinds of event:
 *
 * - `{"action":"plan","input","output","rerun"}`: the attempt this execution makes (1, or the last one + 1 when it
 *   reruns the failures of an earlier execution's output), and the key of the failures manifest a rerun reads.
 * - `{"Items":[…],"BatchInput":{"input","output","attempt"}}`: one batch of the Distributed Map (ItemBatcher). Items
 *   are S3 objects as the ListObjectsV2 reader gives them (`{"Key",…}`) or, in a rerun, lines of the failures manifest
 *   (`{"id","source","line"}`). The batch writes one results part and one failures part, named by its items, so a
 *   retried batch replaces its own parts.
 * - `{"action":"failedBatches","input","output","attempt","mapResults"}`: the items of Map batches that failed as a whole
 *   (recorded only in the Map's ResultWriter export under `mapResults`) become failures of the attempt (map-failures.ts).
 * - `{"action":"finish","input","output","attempt","startedAt"}`: the manifest, summary.json and `_SUCCESS`.
 */
import { createHash, randomUUID } from 'node:crypto';
import { ENV } from '../../contract.js';
import type { DefinedPredictor } from '../../predictor.js';
import { bootFromEnv } from '../boot.js';
import { createS3Client } from '../model-store/model-store.js';
import type { Runtime } from '../runtime.js';
import { finishAttempt, readJobState, runItems, writePart } from './batch-attempt.js';
import { itemsOf, type BatchItem } from './batch-items.js';
import { BatchJobError } from './batch-job-error.js';
import { LAYOUT, type BatchSummary, type FailureRecord } from './batch-layout.js';
import { BatchStore } from './batch-store.js';
import { recordFailedBatches } from './map-failures.js';

/** What a batch of the Map carries besides its items. */
export interface BatchInput {
  /** `s3://bucket/prefix/` of the inputs. */
  readonly input: string;
  /** `s3://bucket/prefix/` of this job's output. */
  readonly output: string;
  readonly attempt: number;
}

/** An S3 object as the Distributed Map's ListObjectsV2 reader hands it over. */
export interface ObjectItem {
  readonly Key: string;
  readonly Size?: number;
}

export type PlanEvent = {
  readonly action: 'plan';
  readonly input: string;
  readonly output: string;
  readonly rerun: boolean;
};
export type ItemsEvent = { readonly Items: readonly (ObjectItem | FailureRecord)[]; readonly BatchInput: BatchInput };
export type FinishEvent = BatchInput & { readonly action: 'finish'; readonly startedAt: string };
export type FailedBatchesEvent = BatchInput & {
  readonly action: 'failedBatches';
  /** `s3://bucket/prefix/` the Map's ResultWriter exports to. */
  readonly mapResults: string;
};
export type BatchEvent = PlanEvent | ItemsEvent | FailedBatchesEvent | FinishEvent;

/** Items of whole Map batches that failed, recorded as failures. */
export interface FailedBatchesResult {
  readonly batches: number;
  readonly items: number;
}

export interface Plan extends BatchInput {
  readonly rerun: boolean;
  readonly startedAt: string;
  /** The failures manifest's key in the output bucket (what a rerun's Map reads). */
  readonly failuresKey: string;
  /** Items a rerun will run (the manifest's lines); 0 on a first attempt (the state machine's Choice reads it). */
  readonly failures: number;
}

export interface ItemsResult {
  readonly succeeded: number;
  readonly failed: number;
}

export type BatchHandler = (event: BatchEvent) => Promise<Plan | ItemsResult | FailedBatchesResult | BatchSummary>;

/** Items of one batch in flight at once. */
const DEFAULT_CONCURRENCY = 4;

/** The handler the image exports, once the model is loaded (Lambda's init phase waits for it). */
export async function batchHandlerFromEnv(
  predictor?: DefinedPredictor<unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<BatchHandler> {
  const { runtime, started } = bootFromEnv(predictor, env);
  await started;
  return createBatchHandler(runtime, env);
}

export function createBatchHandler(runtime: Runtime, env: NodeJS.ProcessEnv = process.env): BatchHandler {
  const client = createS3Client(env);
  const concurrency = Number(env[ENV.batchConcurrency] ?? DEFAULT_CONCURRENCY) || DEFAULT_CONCURRENCY;
  return async (event) => {
    if ('Items' in event)
      return runBatch(runtime, BatchStore.fromS3(event.BatchInput.input, client), event, concurrency, client);
    if (event.action === 'plan') return plan(BatchStore.fromS3(event.output, client), event);
    if (event.action === 'failedBatches') {
      const [, bucket, prefix] = /^s3:\/\/([^/]+)\/(.*)$/.exec(event.mapResults) ?? [];
      if (!bucket) throw new BatchJobError(`mapResults '${event.mapResults}' is not an s3:// location`);
      return recordFailedBatches({
        exports: BatchStore.fromS3(`s3://${bucket}/`, client),
        prefix: prefix ?? '',
        input: BatchStore.fromS3(event.input, client),
        output: BatchStore.fromS3(event.output, client),
        attempt: event.attempt,
      });
    }
    if (event.action === 'finish') return finish(BatchStore.fromS3(event.output, client), event);
    throw new BatchJobError(`unknown batch event: ${JSON.stringify(event).slice(0, 200)}`);
  };
}

async function plan(output: BatchStore, event: PlanEvent): Promise<Plan> {
  const state = await readJobState(output);
  const failuresKey = keyOf(output.uriOf(LAYOUT.failures));
  const base = { input: event.input, output: output.uri, startedAt: new Date().toISOString(), failuresKey };
  if (!event.rerun) {
    if (state.kind !== 'empty') throw new BatchJobError(`${output.uri} already holds a batch job's output`);
    return { ...base, attempt: 1, rerun: false, failures: 0 };
  }
  if (state.kind !== 'finished') {
    throw new BatchJobError(
      `${output.uri} holds no finished batch job to rerun`,
      'Name the run whose failures to retry',
    );
  }
  if (state.summary.input !== event.input) {
    throw new BatchJobError(`${output.uri} holds a job over ${state.summary.input}, not ${event.input}`);
  }
  return { ...base, attempt: state.summary.attempt + 1, rerun: true, failures: state.failures.length };
}

async function finish(output: BatchStore, event: FinishEvent): Promise<BatchSummary> {
  const state = await readJobState(output);
  const previous = event.attempt > 1 && state.kind === 'finished' ? state.summary : undefined;
  return finishAttempt(output, {
    input: event.input,
    attempt: event.attempt,
    startedAt: new Date(event.startedAt),
    ...(previous ? { previous } : {}),
  });
}

async function runBatch(
  runtime: Runtime,
  input: BatchStore,
  event: ItemsEvent,
  concurrency: number,
  client: Parameters<typeof BatchStore.fromS3>[1],
): Promise<ItemsResult> {
  const { BatchInput: job } = event;
  const inputKeyPrefix = keyOf(input.uri);
  // Per source: every item of it (a first attempt), or only the ids the manifest names (a rerun).
  const wanted = new Map<string, Set<string> | undefined>();
  for (const item of event.Items) {
    if ('Key' in item) {
      if (!item.Key.startsWith(inputKeyPrefix)) throw new BatchJobError(`object ${item.Key} is outside ${input.uri}`);
      wanted.set(item.Key.slice(inputKeyPrefix.length), undefined);
    } else {
      const ids = wanted.get(item.source) ?? new Set<string>();
      ids.add(item.id);
      wanted.set(item.source, ids);
    }
  }
  const items: BatchItem[] = [];
  const missing: FailureRecord[] = [];
  for (const [source, ids] of wanted) {
    const object = await input.read(source);
    const all = object ? itemsOf(source, object.bytes, object.contentType) : [];
    const chosen = ids ? all.filter((item) => ids.has(item.id)) : all;
    items.push(...chosen);
    // An input gone since it was listed (or since the failed attempt) stays in the manifest, saying so.
    const found = new Set(chosen.map((item) => item.id));
    for (const id of ids ?? (object ? [] : [source])) {
      if (!found.has(id)) missing.push(missingRecord(id, source, input.uri));
    }
  }
  const outcomes = [
    ...(await runItems(runtime, items, concurrency)),
    ...missing.map((record) => ({ ok: false as const, record })),
  ];
  const tag = createHash('sha256')
    .update([...wanted.keys()].sort().join('\n'))
    .update(event.Items.map((item) => ('Key' in item ? item.Key : item.id)).join('\n'))
    .digest('hex')
    .slice(0, 16);
  return writePart(BatchStore.fromS3(job.output, client), job.attempt, tag, outcomes);
}

function missingRecord(id: string, source: string, inputUri: string): FailureRecord {
  const line = /#(\d+)$/.exec(id)?.[1];
  return {
    id,
    source,
    ...(line === undefined ? {} : { line: Number(line) }),
    status: 404,
    error: { error: `input item ${id} is no longer in ${inputUri}`, code: 'not_found', requestId: randomUUID() },
  };
}

/** The key part of `s3://bucket/key`. */
function keyOf(uri: string): string {
  return uri.replace(/^s3:\/\/[^/]+\//, '');
}
