/**
 * What owns a model and runs it: the in-process `OnnxExecutor` (Lambda, `arclight serve`) and the worker-thread
 * `WorkerPool` (the container server) both fit it, so `createModel` wraps either.
 */
import type { Tensor, TensorInfo } from '../predictor.js';

export interface Executor {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** Runs the model; returns every output, or those named. */
  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>>;
  /** One run on zero inputs; its duration, or undefined when the model refused such inputs. */
  warmUp?(): Promise<number | undefined>;
  release?(): Promise<void>;
}

/** How an executor is made from the verified model (bytes, or the path of a model too large for memory). */
export type ExecutorFactory = (
  model: Uint8Array | string,
  source: string,
  options: { readonly intraOpThreads?: number; readonly executionProviders?: readonly string[] },
) => Promise<Executor>;
