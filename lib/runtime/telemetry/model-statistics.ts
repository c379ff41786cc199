/**
 * The statistics extension (`GET /v2/models/{name}/stats`, Triton's form), fed by the runtime's own timings:
 * requests as answered (success, fail), the codec's phases (compute_input, compute_output) and each execution of the
 * model (queue, compute_infer, batch sizes). Counts are this process's since it started (one Lambda sandbox, one
 * container), as Triton's are per server.
 */
import type { Tensor, TensorInfo } from '../../predictor.js';
import type { BatchTarget } from '../executors/batcher.js';
import { queueWaitOf } from '../executors/executor.js';
import { activeTrace } from './tracing.js';

/** A count and the nanoseconds spent, as Triton reports each statistic. */
export interface StatDuration {
  readonly count: number;
  readonly ns: number;
}

/** Triton's `InferStatistics`. */
export interface InferStatistics {
  readonly success: StatDuration;
  readonly fail: StatDuration;
  readonly queue: StatDuration;
  readonly compute_input: StatDuration;
  readonly compute_infer: StatDuration;
  readonly compute_output: StatDuration;
  readonly cache_hit: StatDuration;
  readonly cache_miss: StatDuration;
}

/** Triton's `InferBatchStatistics`: executions of one batch size. */
export interface BatchStatistics {
  readonly batch_size: number;
  readonly compute_input: StatDuration;
  readonly compute_infer: StatDuration;
  readonly compute_output: StatDuration;
}

/** Triton's `ModelStatistics`, one entry of `model_stats`. */
export interface ModelStatisticsJson {
  readonly name: string;
  readonly version: string;
  /** Milliseconds since the epoch of the last inference; 0 before the first. */
  readonly last_inference: number;
  readonly inference_count: number;
  readonly execution_count: number;
  readonly inference_stats: InferStatistics;
  readonly batch_stats: readonly BatchStatistics[];
}

/** A phase of a request that the codec times. */
export type RequestPhase = 'compute_input' | 'compute_output';

class Tally {
  count = 0;
  ns = 0;
  add(ms: number): void {
    this.count++;
    this.ns += Math.max(0, Math.round(ms * 1e6));
  }
  toJSON(): StatDuration {
    return { count: this.count, ns: this.ns };
  }
}

export class ModelStatistics {
  private lastInference = 0;
  private inferences = 0;
  private executions = 0;
  private readonly success = new Tally();
  private readonly fail = new Tally();
  private readonly queue = new Tally();
  private readonly phases: Record<RequestPhase | 'compute_infer', Tally> = {
    compute_input: new Tally(),
    compute_infer: new Tally(),
    compute_output: new Tally(),
  };
  private readonly batches = new Map<number, Tally>();

  constructor(
    private readonly name: string,
    private readonly version = '1',
  ) {}

  /** One inference request as answered: a 2xx is a success, anything else a failure. */
  request(ok: boolean, ms: number): void {
    (ok ? this.success : this.fail).add(ms);
    this.lastInference = Date.now();
  }

  /** A phase of one request (decoding its inputs, encoding its outputs). */
  phase(phase: RequestPhase, ms: number): void {
    this.phases[phase].add(ms);
  }

  /** One run of the model over `batchSize` inferences: how long it waited for the executor, and ran. */
  execution(batchSize: number, queueMs: number, computeMs: number): void {
    this.executions++;
    this.inferences += batchSize;
    this.queue.add(queueMs);
    this.phases.compute_infer.add(computeMs);
    let batch = this.batches.get(batchSize);
    if (!batch) this.batches.set(batchSize, (batch = new Tally()));
    batch.add(computeMs);
  }

  toJSON(): ModelStatisticsJson {
    const none = { count: 0, ns: 0 };
    return {
      name: this.name,
      version: this.version,
      last_inference: this.lastInference,
      inference_count: this.inferences,
      execution_count: this.executions,
      inference_stats: {
        success: this.success.toJSON(),
        fail: this.fail.toJSON(),
        queue: this.queue.toJSON(),
        compute_input: this.phases.compute_input.toJSON(),
        compute_infer: this.phases.compute_infer.toJSON(),
        compute_output: this.phases.compute_output.toJSON(),
        cache_hit: none,
        cache_miss: none,
      },
      batch_stats: [...this.batches.entries()]
        .sort(([a], [b]) => a - b)
        .map(([batch_size, tally]) => ({
          batch_size,
          compute_input: none,
          compute_infer: tally.toJSON(),
          compute_output: none,
        })),
    };
  }
}

/**
 * The executor as the statistics see it: each run is an execution, its batch size the first dimension of its first
 * input when the model's first axis is dynamic (a batch axis), else 1. Warm-up runs are not counted.
 */
export class StatisticsExecutor implements BatchTarget {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  private readonly batchAxis: boolean;
  /** Present when the inner executor has it: the batcher only waits on a target that can say so. */
  readonly whenIdle?: () => Promise<void>;

  constructor(
    private readonly inner: BatchTarget,
    private readonly stats: ModelStatistics,
  ) {
    this.inputs = inner.inputs;
    this.outputs = inner.outputs;
    this.batchAxis = inner.inputs[0]?.shape[0] === -1;
    if (inner.whenIdle) this.whenIdle = () => inner.whenIdle!();
  }

  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    return this.timed(feeds, () => this.inner.run(feeds, outputNames));
  }

  runTransferring(
    feeds: Readonly<Record<string, Tensor>>,
    outputNames?: readonly string[],
  ): Promise<Record<string, Tensor>> {
    const run = this.inner.runTransferring ?? this.inner.run;
    return this.timed(feeds, () => run.call(this.inner, feeds, outputNames));
  }

  get hasIdleWorker(): boolean | undefined {
    return this.inner.hasIdleWorker;
  }

  warmUp(): Promise<number | undefined> {
    return this.inner.warmUp?.() ?? Promise.resolve(undefined);
  }

  release(): Promise<void> {
    return this.inner.release?.() ?? Promise.resolve();
  }

  private async timed(
    feeds: Readonly<Record<string, Tensor>>,
    work: () => Promise<Record<string, Tensor>>,
  ): Promise<Record<string, Tensor>> {
    const batchSize = this.batchSizeOf(feeds);
    const started = performance.now();
    const outputs = await work();
    const ended = performance.now();
    const ms = ended - started;
    activeTrace()?.phase('run', started, ended);
    const queueMs = Math.min(ms, queueWaitOf(outputs));
    this.stats.execution(batchSize, queueMs, ms - queueMs);
    return outputs;
  }

  private batchSizeOf(feeds: Readonly<Record<string, Tensor>>): number {
    if (!this.batchAxis) return 1;
    const first = feeds[this.inputs[0]!.name];
    return first?.dims[0] ?? 1;
  }
}
