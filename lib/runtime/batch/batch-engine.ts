/**
 * A batch job on this machine: every request in the input (a JSON Lines file, a directory or an S3 prefix) through
 * the runtime, at most `concurrency` at once, into the output layout of batch-layout.ts. Run again on the same
 * output, it processes only the items in the failures manifest.
 */
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { basename, dirname, relative, resolve } from 'node:path';
import type { Runtime } from '../runtime.js';
import { isS3Uri } from '../model-store/model-store.js';
import { clearOutput, finishAttempt, planAttempt, writePart, type AttemptPlan } from './batch-attempt.js';
import { runItem, type ItemOutcome, type ItemRunnerOptions } from './batch-item-runner.js';
import { itemsOf, type BatchItem } from './batch-items.js';
import { BatchJobError } from './batch-job-error.js';
import type { BatchSummary, FailureRecord } from './batch-layout.js';
import { BatchStore, type StoredObject } from './batch-store.js';

export interface BatchProgress {
  /** Items answered so far in this attempt. */
  readonly processed: number;
  readonly failed: number;
  /** Items this attempt will run, when known up front (a rerun); else undefined. */
  readonly itemsTotal?: number;
  /** Input bytes behind the answered items, and all of them: the progress of a first attempt. */
  readonly bytesDone: number;
  readonly bytesTotal: number;
}

export interface BatchJobOptions extends ItemRunnerOptions {
  /** A started runtime: the predictor and model the job runs. */
  readonly runtime: Runtime;
  /** A `.jsonl` file, any other single file, a directory, or `s3://bucket/prefix/` (or one object's URI). */
  readonly input: string;
  /** A directory or `s3://bucket/prefix/`. */
  readonly output: string;
  /** Items in flight at once. @default 4 */
  readonly concurrency?: number;
  /** Items per results part. @default 10 000 */
  readonly itemsPerPart?: number;
  /** Discard what `output` holds and start again. @default false */
  readonly restart?: boolean;
  /** Environment for S3 (endpoint overrides, credentials). @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  readonly onProgress?: (progress: BatchProgress) => void;
  /** Called once the attempt is planned: the attempt number and whether it reruns failures. */
  readonly onPlan?: (plan: { attempt: number; rerun: boolean; items?: number }) => void;
}

export interface BatchJobResult {
  readonly summary: BatchSummary;
  /** False when the output already held a finished job with no failures: nothing ran. */
  readonly ran: boolean;
}

const DEFAULT_ITEMS_PER_PART = 10_000;

export async function runBatchJob(options: BatchJobOptions): Promise<BatchJobResult> {
  const env = options.env ?? process.env;
  const input = await resolveInput(options.input, env);
  const output = BatchStore.fromUri(options.output, env);
  try {
    checkApart(input.uri, output.uri);
    if (options.restart) await clearOutput(output);
    const plan = await planAttempt(output, input.uri);
    options.onPlan?.({
      attempt: plan.attempt,
      rerun: plan.only !== undefined,
      ...(plan.failures ? { items: plan.failures.length } : {}),
    });
    if (plan.previous && plan.failures?.length === 0) return { summary: plan.previous, ran: false };
    const startedAt = new Date();
    await new AttemptRun(options, input, output, plan).run();
    const summary = await finishAttempt(output, {
      input: input.uri,
      attempt: plan.attempt,
      ...(plan.previous ? { previous: plan.previous } : {}),
      startedAt,
    });
    return { summary, ran: true };
  } finally {
    input.store.close();
    output.close();
  }
}

/** The input: a store, and the objects of it the job reads. */
interface ResolvedInput {
  /** Canonical: an absolute path, or the S3 URI. */
  readonly uri: string;
  readonly store: BatchStore;
  objects(): AsyncIterable<StoredObject>;
}

async function resolveInput(uri: string, env: NodeJS.ProcessEnv): Promise<ResolvedInput> {
  if (isS3Uri(uri)) return resolveS3Input(uri, env);
  const path = resolve(uri);
  const info = await stat(path).catch(() => undefined);
  if (!info)
    throw new BatchJobError(`input ${uri} does not exist`, 'Pass a .jsonl file, a directory or s3://bucket/prefix/');
  if (info.isDirectory()) {
    const store = BatchStore.fromUri(path, env);
    return { uri: path, store, objects: () => store.list() };
  }
  const store = BatchStore.fromUri(dirname(path), env);
  const single: StoredObject = { key: basename(path), size: info.size };
  return { uri: path, store, objects: () => one(single) };
}

/** `s3://b/p/` is a prefix; `s3://b/p/x.jsonl` is that object when it exists, else the prefix `p/x.jsonl/`. */
async function resolveS3Input(uri: string, env: NodeJS.ProcessEnv): Promise<ResolvedInput> {
  if (!uri.endsWith('/')) {
    const name = uri.slice(uri.lastIndexOf('/') + 1);
    const parent = BatchStore.fromUri(uri.slice(0, uri.length - name.length), env);
    for await (const object of parent.list(name)) {
      if (object.key === name) return { uri, store: parent, objects: () => one(object) };
      break;
    }
    parent.close();
  }
  const store = BatchStore.fromUri(uri.endsWith('/') ? uri : `${uri}/`, env);
  return { uri: store.uri, store, objects: () => store.list() };
}

async function* one(object: StoredObject): AsyncIterable<StoredObject> {
  yield object;
}

/** The output inside the input would feed the job its own results on the next run. */
function checkApart(input: string, output: string): void {
  const inside = isS3Uri(input)
    ? output.startsWith(input.endsWith('/') ? input : `${input}/`) || input.startsWith(output)
    : !isS3Uri(output) && (isWithin(resolve(output), input) || isWithin(input, resolve(output)));
  if (inside) {
    throw new BatchJobError(
      `--output ${output} and --input ${input} overlap`,
      'Write the results outside the input (the next run would read them as inputs)',
    );
  }
}

function isWithin(child: string, parent: string): boolean {
  const path = relative(parent, child);
  return path === '' || (!path.startsWith('..') && !path.startsWith('/'));
}

/** One attempt: read sources in order, run their items with bounded concurrency, write parts as they fill. */
class AttemptRun {
  private readonly concurrency: number;
  private readonly itemsPerPart: number;
  private part: ItemOutcome[] = [];
  private partNumber = 0;
  private writes: Promise<unknown> = Promise.resolve();
  private writeError: unknown;
  private processed = 0;
  private failed = 0;
  private bytesDone = 0;
  private bytesTotal = 0;
  private readonly seen = new Set<string>();

  constructor(
    private readonly options: BatchJobOptions,
    private readonly input: ResolvedInput,
    private readonly output: BatchStore,
    private readonly plan: AttemptPlan,
  ) {
    this.concurrency = Math.max(1, options.concurrency ?? 4);
    this.itemsPerPart = Math.max(1, options.itemsPerPart ?? DEFAULT_ITEMS_PER_PART);
  }

  async run(): Promise<void> {
    const sources = await this.sources();
    this.bytesTotal = sources.reduce((sum, source) => sum + source.size, 0);
    const inFlight = new Set<Promise<void>>();
    for (const source of sources) {
      for (const item of await this.itemsOf(source)) {
        if (inFlight.size >= this.concurrency) await Promise.race(inFlight);
        const running = this.runOne(item).finally(() => inFlight.delete(running));
        inFlight.add(running);
      }
    }
    await Promise.all(inFlight);
    this.addMissing();
    this.flush();
    await this.writes;
    if (this.writeError !== undefined) throw this.writeError;
  }

  /** The objects to read: all of them, or on a rerun only those the manifest names. */
  private async sources(): Promise<StoredObject[]> {
    const sources: StoredObject[] = [];
    for await (const object of this.input.objects()) {
      if (this.plan.only === undefined || this.plan.only.has(object.key)) sources.push(object);
    }
    return sources;
  }

  private async itemsOf(source: StoredObject): Promise<BatchItem[]> {
    const object = await this.input.store.read(source.key);
    if (!object) return [];
    const items = itemsOf(source.key, object.bytes, object.contentType);
    const wanted = this.plan.only?.get(source.key);
    const chosen = wanted ? items.filter((item) => wanted.has(item.id)) : items;
    // Progress by bytes: the items' share of their object, so the bar moves evenly however the input is split.
    if (wanted) this.bytesTotal -= source.size - chosen.reduce((sum, item) => sum + item.body.length + 1, 0);
    return chosen;
  }

  private async runOne(item: BatchItem): Promise<void> {
    this.seen.add(item.id);
    this.record(await runItem(this.options.runtime, item, this.options), item.body.length + 1);
  }

  private record(outcome: ItemOutcome, bytes: number): void {
    this.part.push(outcome);
    this.processed += 1;
    if (!outcome.ok) this.failed += 1;
    this.bytesDone += bytes;
    this.options.onProgress?.({
      processed: this.processed,
      failed: this.failed,
      bytesDone: this.bytesDone,
      bytesTotal: this.bytesTotal,
      ...(this.plan.failures ? { itemsTotal: this.plan.failures.length } : {}),
    });
    if (this.part.length >= this.itemsPerPart) this.flush();
  }

  /** A rerun's item whose input is gone stays in the manifest, saying so: nothing drops out silently. */
  private addMissing(): void {
    for (const failure of this.plan.failures ?? []) {
      if (this.seen.has(failure.id)) continue;
      const record: FailureRecord = {
        id: failure.id,
        source: failure.source,
        ...(failure.line === undefined ? {} : { line: failure.line }),
        status: 404,
        error: {
          error: `input item ${failure.id} is no longer in ${this.input.uri}`,
          code: 'not_found',
          requestId: randomUUID(),
        },
      };
      this.record({ ok: false, record }, 0);
    }
  }

  private flush(): void {
    if (this.part.length === 0) return;
    const outcomes = this.part;
    this.part = [];
    const tag = String(++this.partNumber).padStart(5, '0');
    // Kept, not thrown here: the run ends with the first write error rather than an unhandled rejection.
    this.writes = this.writes
      .then(() =>
        this.writeError === undefined ? writePart(this.output, this.plan.attempt, tag, outcomes) : undefined,
      )
      .catch((error: unknown) => (this.writeError ??= error));
  }
}
