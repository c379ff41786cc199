/**
 * The pieces of an attempt that the local run and the Step Functions handler share: run items with bounded
 * concurrency, write one part (its results and its failures), read what the last attempt left, and close an attempt
 * (the failures manifest, the summary, `_SUCCESS`).
 */
import type { Runtime } from '../runtime.js';
import type { BatchItem } from './batch-items.js';
import { runItem, type ItemOutcome, type ItemRunnerOptions } from './batch-item-runner.js';
import { BatchJobError } from './batch-job-error.js';
import {
  JSONL_CONTENT_TYPE,
  LAYOUT,
  attemptPrefix,
  parseJsonLines,
  partName,
  toJsonLines,
  type BatchSummary,
  type FailureRecord,
} from './batch-layout.js';
import type { BatchStore } from './batch-store.js';

/** Runs every item, at most `concurrency` at once, calling `onOutcome` as each ends; outcomes in item order. */
export async function runItems(
  runtime: Runtime,
  items: readonly BatchItem[],
  concurrency: number,
  options: ItemRunnerOptions = {},
  onOutcome?: (outcome: ItemOutcome, item: BatchItem) => void,
): Promise<ItemOutcome[]> {
  const outcomes: ItemOutcome[] = new Array<ItemOutcome>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++;
      const item = items[index]!;
      const outcome = await runItem(runtime, item, options);
      outcomes[index] = outcome;
      onOutcome?.(outcome, item);
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, items.length)) }, worker));
  return outcomes;
}

/** Writes one part's results and failures; a part with none of either has no file of it (a retried part's old one goes). */
export async function writePart(
  output: BatchStore,
  attempt: number,
  tag: string,
  outcomes: readonly ItemOutcome[],
): Promise<{ succeeded: number; failed: number }> {
  const results = outcomes.filter((o) => o.ok).map((o) => o.record);
  const failures = outcomes.filter((o) => !o.ok).map((o) => o.record);
  const name = partName(attempt, tag);
  await writeOrRemove(output, `${LAYOUT.results}${name}`, results);
  await writeOrRemove(output, `${LAYOUT.failureParts}${name}`, failures);
  return { succeeded: results.length, failed: failures.length };
}

async function writeOrRemove(output: BatchStore, key: string, records: readonly unknown[]): Promise<void> {
  if (records.length > 0) await output.write(key, toJsonLines(records), JSONL_CONTENT_TYPE);
  else await output.remove(key);
}

/** What an output location holds before a run. */
export type JobState =
  | { readonly kind: 'empty' }
  | { readonly kind: 'finished'; readonly summary: BatchSummary; readonly failures: FailureRecord[] }
  | { readonly kind: 'unfinished' };

export async function readJobState(output: BatchStore): Promise<JobState> {
  const summary = await output.read(LAYOUT.summary);
  if (summary) {
    const parsed = JSON.parse(summary.bytes.toString('utf8')) as BatchSummary;
    const manifest = await output.read(LAYOUT.failures);
    const failures = manifest ? parseJsonLines<FailureRecord>(manifest.bytes, output.uriOf(LAYOUT.failures)) : [];
    return { kind: 'finished', summary: parsed, failures };
  }
  for await (const object of output.list()) {
    if (object.key.startsWith(LAYOUT.results) || object.key.startsWith(LAYOUT.failureParts))
      return { kind: 'unfinished' };
  }
  return { kind: 'empty' };
}

/** The attempt a run makes, and the items it is limited to (a rerun: the previous attempt's failures). */
export interface AttemptPlan {
  readonly attempt: number;
  readonly previous?: BatchSummary;
  /** Items to run again, by source; undefined: every input item. */
  readonly only?: ReadonlyMap<string, ReadonlySet<string>>;
  readonly failures?: readonly FailureRecord[];
}

/**
 * Plans the next attempt on `output` for `input`: a first attempt on an empty output, a rerun of the failures on a
 * finished one (of the same input). An unfinished job is refused unless `restart` cleared it.
 */
export async function planAttempt(output: BatchStore, input: string): Promise<AttemptPlan> {
  const state = await readJobState(output);
  if (state.kind === 'empty') return { attempt: 1 };
  if (state.kind === 'unfinished') {
    throw new BatchJobError(
      `${output.uri} holds an unfinished batch job (results without summary.json)`,
      'Pass --restart to discard it and start again, or choose another --output',
    );
  }
  if (state.summary.input !== input) {
    throw new BatchJobError(
      `${output.uri} holds the output of a job over ${state.summary.input}, not ${input}`,
      'Choose another --output, or pass --restart to discard it',
    );
  }
  return {
    attempt: state.summary.attempt + 1,
    previous: state.summary,
    only: groupBySource(state.failures),
    failures: state.failures,
  };
}

export function groupBySource(failures: readonly FailureRecord[]): Map<string, Set<string>> {
  const bySource = new Map<string, Set<string>>();
  for (const failure of failures) {
    const ids = bySource.get(failure.source) ?? new Set<string>();
    ids.add(failure.id);
    bySource.set(failure.source, ids);
  }
  return bySource;
}

/** Removes every file of the layout from `output` (`--restart`). */
export async function clearOutput(output: BatchStore): Promise<void> {
  const keys: string[] = [];
  for await (const object of output.list()) {
    if (
      object.key.startsWith(LAYOUT.results) ||
      object.key.startsWith(LAYOUT.failureParts) ||
      [LAYOUT.failures, LAYOUT.summary, LAYOUT.success].includes(object.key as never)
    ) {
      keys.push(object.key);
    }
  }
  for (const key of keys) await output.remove(key);
}

export interface FinishOptions {
  readonly input: string;
  readonly attempt: number;
  readonly previous?: BatchSummary;
  readonly startedAt: Date;
}

/**
 * Closes an attempt from what its parts hold (so a Step Functions run, whose parts were written by many functions,
 * closes the same way): the failures manifest is this attempt's failure parts, the summary adds its results to the
 * previous attempts', and `_SUCCESS` is there exactly when nothing failed.
 */
export async function finishAttempt(output: BatchStore, options: FinishOptions): Promise<BatchSummary> {
  const prefix = attemptPrefix(options.attempt);
  const failures: Buffer[] = [];
  let failed = 0;
  for await (const object of output.list(`${LAYOUT.failureParts}${prefix}`)) {
    const part = await output.read(object.key);
    if (!part) continue;
    failed += countLines(part.bytes);
    failures.push(part.bytes);
  }
  let succeeded = 0;
  for await (const object of output.list(`${LAYOUT.results}${prefix}`)) {
    const part = await output.read(object.key);
    if (part) succeeded += countLines(part.bytes);
  }
  await output.write(LAYOUT.failures, Buffer.concat(failures), JSONL_CONTENT_TYPE);
  const previous = options.previous;
  const summary: BatchSummary = {
    input: options.input,
    output: output.uri,
    attempt: options.attempt,
    items: previous?.items ?? succeeded + failed,
    succeeded: (previous?.succeeded ?? 0) + succeeded,
    failed,
    lastAttempt: { processed: succeeded + failed, succeeded, failed },
    startedAt: options.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
  };
  await output.write(LAYOUT.summary, Buffer.from(`${JSON.stringify(summary, null, 2)}\n`), 'application/json');
  if (failed === 0) await output.write(LAYOUT.success, Buffer.alloc(0), 'text/plain');
  else await output.remove(LAYOUT.success);
  return summary;
}

function countLines(bytes: Buffer): number {
  let lines = 0;
  for (let at = bytes.indexOf(0x0a); at !== -1; at = bytes.indexOf(0x0a, at + 1)) lines += 1;
  return lines;
}
