/**
 * `arclight batch run --local`: a batch job on this machine through the same runtime a deployed job runs, with a
 * progress line on stderr and the output layout a deployed job writes (README "Batch jobs").
 */
import { availableParallelism } from 'node:os';
import type { Config } from '../../predictor.js';
import { runBatchJob, type BatchJobResult } from '../../runtime/batch/batch-engine.js';
import { isS3Uri } from '../../runtime/model-store/model-store.js';
import { loadPredictor } from '../../runtime/predictor-loader.js';
import { Runtime } from '../../runtime/runtime.js';
import { createLogger, type LogLevel } from '../../runtime/telemetry/logger.js';
import { createBatchProgress } from './batch-progress.js';
import { createDownloadProgress, type ProgressStream } from '../progress.js';
import { registerTypeScriptFor } from '../typescript-loader.js';

export interface BatchRunOptions {
  readonly model: string;
  readonly predictor?: string;
  readonly input: string;
  readonly output: string;
  /** Items in flight at once. @default the number of cores */
  readonly concurrency?: number;
  /** Per-item timeout in ms. */
  readonly timeoutMs: number;
  readonly config?: Config;
  readonly sha256?: string;
  readonly threads?: number;
  /** Discard what the output holds and start again. */
  readonly restart?: boolean;
  readonly logLevel?: LogLevel;
  /** Progress goes here. @default process.stderr */
  readonly stream?: ProgressStream;
}

export async function batchRun(options: BatchRunOptions): Promise<BatchJobResult> {
  if (options.predictor !== undefined) await registerTypeScriptFor(options.predictor);
  const predictor = options.predictor === undefined ? undefined : await loadPredictor(options.predictor);
  const stream = options.stream ?? process.stderr;
  const download = isS3Uri(options.model) ? createDownloadProgress({ label: options.model, stream }) : undefined;
  const runtime = new Runtime({
    apiName: 'batch',
    modelUri: options.model,
    modelSha256: options.sha256,
    predictor,
    config: options.config ?? {},
    intraOpThreads: options.threads,
    requestTimeoutMs: options.timeoutMs,
    // Per-request log lines would drown the progress line; failures are in the manifest with their request ids.
    logger: createLogger('batch', options.logLevel ?? 'WARN'),
    logStartupFailure: false,
    ...(download ? { onProgress: download.update } : {}),
  });
  try {
    await runtime.start().finally(() => download?.done());
    const progress = createBatchProgress({ stream });
    const result = await runBatchJob({
      runtime,
      input: options.input,
      output: options.output,
      concurrency: options.concurrency ?? availableParallelism(),
      timeoutMs: options.timeoutMs,
      restart: options.restart === true,
      onPlan: ({ attempt, rerun, items }) => {
        if (rerun)
          stream.write(`batch: attempt ${attempt}: rerunning the ${items ?? 0} failed items of ${options.output}\n`);
      },
      onProgress: (p) => progress.update(p),
    }).finally(() => progress.done());
    return result;
  } finally {
    await runtime.close().catch(() => undefined);
    runtime.telemetry.close();
  }
}

/** The closing lines: counts and where things are. */
export function reportLines(result: BatchJobResult, output: string): string[] {
  const s = result.summary;
  if (!result.ran)
    return [`batch: nothing to do: ${output} holds a finished job with no failures (${s.succeeded} results)`];
  const head = `batch: attempt ${s.attempt}: ${s.lastAttempt.succeeded} succeeded, ${s.lastAttempt.failed} failed of ${s.lastAttempt.processed}; ${s.succeeded}/${s.items} items have results`;
  if (s.failed === 0) return [head, `batch: results under ${output}`];
  return [
    head,
    `batch: failures in ${joinUri(output, 'failures.jsonl')}; run the same command again to retry only them`,
  ];
}

function joinUri(base: string, name: string): string {
  return base.endsWith('/') ? `${base}${name}` : `${base}/${name}`;
}
