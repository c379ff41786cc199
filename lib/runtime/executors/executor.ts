/**
 * What owns a model and runs it: the in-process `OnnxExecutor` (Lambda, `arclight serve`) and the worker-thread
 * `WorkerPool` (the container server) both fit it, so `createModel` wraps either.
 */
import type { Tensor, TensorInfo } from '../../predictor.js';
import { TENSOR_TYPE_OF, allocate } from '../codec/tensor-types.js';

export interface Executor {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** Runs the model; returns every output, or those named. */
  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>>;
  /** One run on zero inputs; its duration, or undefined when the model refused such inputs. */
  warmUp?(): Promise<number | undefined>;
  release?(): Promise<void>;
}

const queueWaits = new WeakMap<object, number>();

/** Marks a run's outputs with how long the run waited for the executor (a worker pool's queue), for the statistics. */
export function withQueueWait<T extends object>(outputs: T, queueMs: number): T {
  queueWaits.set(outputs, queueMs);
  return outputs;
}

/** How long the run that made these outputs waited for the executor; 0 when it ran at once. */
export function queueWaitOf(outputs: object): number {
  return queueWaits.get(outputs) ?? 0;
}

/** How an executor is made from the verified model (bytes, or the path of a model too large for memory). */
export type ExecutorFactory = (
  model: Uint8Array | string,
  source: string,
  options: { readonly intraOpThreads?: number; readonly executionProviders?: readonly string[] },
) => Promise<Executor>;

/** Zero-filled tensors for every input (dynamic dimensions as 1): the warm-up run's feeds. */
function zeroFeeds(inputs: readonly TensorInfo[]): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const input of inputs) {
    const dims = input.shape.map((d) => (d < 0 ? 1 : d));
    const type = TENSOR_TYPE_OF[input.datatype];
    feeds[input.name] = {
      type,
      data: allocate(
        type,
        dims.reduce((a, b) => a * b, 1),
      ),
      dims,
    } as Tensor;
  }
  return feeds;
}

/**
 * One run on zero-filled inputs, so the first request does not pay for the engine's first-run allocations. Resolves
 * with its duration, or undefined when the model refuses such inputs.
 */
export async function timedWarmUp(
  inputs: readonly TensorInfo[],
  run: (feeds: Record<string, Tensor>) => Promise<unknown>,
): Promise<number | undefined> {
  const feeds = zeroFeeds(inputs);
  const started = performance.now();
  try {
    await run(feeds);
  } catch {
    return undefined;
  }
  return performance.now() - started;
}
