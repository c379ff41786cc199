/**
 * Dynamic batching (container server): requests are gathered up to `maxBatchSize`, or until the first of them has
 * waited `maxBatchDelayMs`, or until a worker is free, and run together; each gets its own result back.
 * - `Batcher`: the generic gatherer; items only share a batch when their keys match.
 * - `BatchingExecutor`: the default (OIP) predictor's batching: feeds concatenated along a dynamic first axis, outputs
 *   split back. A batch that fails runs again one request at a time, so one bad request fails alone.
 */
import type { Tensor, TensorInfo } from '../../predictor.js';
import type { Executor } from './executor.js';
import { allocate, isNumericData } from '../codec/tensor-types.js';

export interface BatchingOptions {
  /** Largest batch (1: batching off). */
  readonly maxBatchSize: number;
  /** Longest the first request of a batch waits for batch-mates, ms. */
  readonly maxBatchDelayMs: number;
}

/** Each item's outcome: its value, or the error it alone fails with. */
export type Settled<O> = { readonly ok: true; readonly value: O } | { readonly ok: false; readonly error: unknown };

interface Pending<I, O> {
  readonly item: I;
  readonly resolve: (value: O) => void;
  readonly reject: (error: unknown) => void;
}

interface Group<I, O> {
  readonly items: Pending<I, O>[];
  timer: NodeJS.Timeout | undefined;
}

export interface BatcherHooks<I, O> {
  /** Runs one batch; a throw fails every item of it. */
  readonly run: (items: readonly I[]) => Promise<readonly Settled<O>[]>;
  /** Items share a batch only when their keys are equal. @default one key for all */
  readonly keyOf?: (item: I) => string;
  /** Whether a batch started now would run at once (a free worker): then a lone item does not wait. */
  readonly idle?: () => boolean;
  /** Resolves when a worker frees up: waiting items are sent then. */
  readonly whenIdle?: () => Promise<void>;
}

export class Batcher<I, O> {
  private readonly groups = new Map<string, Group<I, O>>();
  private watching = false;

  constructor(
    private readonly options: BatchingOptions,
    private readonly hooks: BatcherHooks<I, O>,
  ) {}

  /** Items waiting for batch-mates. */
  get waiting(): number {
    let n = 0;
    for (const group of this.groups.values()) n += group.items.length;
    return n;
  }

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      const key = this.hooks.keyOf?.(item) ?? '';
      let group = this.groups.get(key);
      if (!group) {
        group = { items: [], timer: undefined };
        this.groups.set(key, group);
      }
      group.items.push({ item, resolve, reject });
      if (group.items.length >= this.options.maxBatchSize || this.options.maxBatchDelayMs <= 0) {
        this.flush(key);
        return;
      }
      group.timer ??= setTimeout(() => this.flush(key), this.options.maxBatchDelayMs);
      this.watchIdle();
    });
  }

  /** When a worker frees up, the largest waiting group goes at once rather than waiting out its delay. */
  private watchIdle(): void {
    if (this.watching || !this.hooks.whenIdle) return;
    this.watching = true;
    void this.hooks.whenIdle().then(() => {
      this.watching = false;
      let best: string | undefined;
      let size = 0;
      for (const [key, group] of this.groups) {
        if (group.items.length > size) {
          best = key;
          size = group.items.length;
        }
      }
      if (best !== undefined) this.flush(best);
      if (this.groups.size > 0) this.watchIdle();
    });
  }

  private flush(key: string): void {
    const group = this.groups.get(key);
    if (!group) return;
    clearTimeout(group.timer);
    const batch = group.items.splice(0, this.options.maxBatchSize);
    if (group.items.length === 0) this.groups.delete(key);
    else group.timer = setTimeout(() => this.flush(key), 0);
    void this.execute(batch);
  }

  private async execute(batch: readonly Pending<I, O>[]): Promise<void> {
    let results: readonly Settled<O>[];
    try {
      results = await this.hooks.run(batch.map((p) => p.item));
      if (results.length !== batch.length) {
        throw new Error(`a batch of ${batch.length} gave ${results.length} results`);
      }
    } catch (error) {
      for (const p of batch) p.reject(error);
      return;
    }
    results.forEach((result, i) => {
      const p = batch[i]!;
      if (result.ok) p.resolve(result.value);
      else p.reject(result.error);
    });
  }
}

/** One `run` call of the model. */
interface RunCall {
  readonly feeds: Readonly<Record<string, Tensor>>;
  readonly outputNames?: readonly string[];
}

/** The pool's face the batching executor needs. */
export interface BatchTarget extends Executor {
  /** Runs on feeds the caller gives away (no copy). @default run */
  runTransferring?(
    feeds: Readonly<Record<string, Tensor>>,
    outputNames?: readonly string[],
  ): Promise<Record<string, Tensor>>;
  readonly hasIdleWorker?: boolean;
  whenIdle?(): Promise<void>;
}

/**
 * An executor that batches `run` calls along the first axis, when every input's first dimension is dynamic;
 * a model without such an axis runs every call alone. Outputs must have the batch as their first axis too, or
 * the batch runs again one call at a time.
 */
export class BatchingExecutor implements Executor {
  private readonly batcher: Batcher<RunCall, Record<string, Tensor>> | undefined;
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];

  constructor(
    private readonly target: BatchTarget,
    options: BatchingOptions,
  ) {
    this.inputs = target.inputs;
    this.outputs = target.outputs;
    if (options.maxBatchSize > 1 && isBatchable(target.inputs)) {
      this.batcher = new Batcher(options, {
        run: (calls) => this.runBatch(calls),
        keyOf: batchKey,
        ...(target.whenIdle ? { whenIdle: () => target.whenIdle!() } : {}),
      });
    }
  }

  /** Calls waiting for batch-mates. */
  get waiting(): number {
    return this.batcher?.waiting ?? 0;
  }

  /**
   * Runs (or batches) one call. The feeds move to the worker when they run alone: the default predictor decodes fresh
   * tensors per request and never touches them again.
   */
  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    if (!this.batcher || !fitsBatch(feeds, this.inputs)) {
      return (this.target.runTransferring ?? this.target.run).call(this.target, feeds, outputNames);
    }
    return this.batcher.submit({ feeds, ...(outputNames ? { outputNames } : {}) });
  }

  warmUp(): Promise<number | undefined> {
    return this.target.warmUp?.() ?? Promise.resolve(undefined);
  }

  release(): Promise<void> {
    return this.target.release?.() ?? Promise.resolve();
  }

  private async runBatch(calls: readonly RunCall[]): Promise<Settled<Record<string, Tensor>>[]> {
    const run = this.target.runTransferring ?? this.target.run;
    if (calls.length === 1) return [await settle(run.call(this.target, calls[0]!.feeds, calls[0]!.outputNames))];
    const rows = calls.map((call) => firstDim(call.feeds));
    const total = rows.reduce((a, b) => a + b, 0);
    const feeds: Record<string, Tensor> = {};
    for (const name of Object.keys(calls[0]!.feeds)) feeds[name] = concat(calls.map((c) => c.feeds[name]!));
    let outputs: Record<string, Tensor> | undefined;
    try {
      outputs = await run.call(this.target, feeds, calls[0]!.outputNames);
    } catch {
      outputs = undefined;
    }
    if (outputs && Object.values(outputs).every((t) => t.dims[0] === total)) return split(outputs, rows).map(ok);
    // The batch failed (or gave outputs without a batch axis): each call alone, so a bad one fails by itself.
    return Promise.all(calls.map((call) => settle(this.target.run(call.feeds, call.outputNames))));
  }
}

function ok<O>(value: O): Settled<O> {
  return { ok: true, value };
}

function settle<O>(promise: Promise<O>): Promise<Settled<O>> {
  return promise.then(ok, (error: unknown) => ({ ok: false, error }));
}

/** Every input has rank ≥ 1 and a dynamic first dimension. */
export function isBatchable(inputs: readonly TensorInfo[]): boolean {
  return inputs.length > 0 && inputs.every((info) => info.shape.length >= 1 && info.shape[0]! < 0);
}

/** Feeds that can join a batch: every input present, rank ≥ 1, one first dimension shared by all. */
function fitsBatch(feeds: Readonly<Record<string, Tensor>>, inputs: readonly TensorInfo[]): boolean {
  const names = Object.keys(feeds);
  if (names.length !== inputs.length) return false;
  let rows: number | undefined;
  for (const info of inputs) {
    const tensor = feeds[info.name];
    if (!tensor || tensor.dims.length < 1) return false;
    rows ??= tensor.dims[0]!;
    if (tensor.dims[0] !== rows) return false;
  }
  return true;
}

/** Calls share a batch when they ask for the same outputs and their inputs match past the first axis. */
function batchKey(call: RunCall): string {
  const inputs = Object.keys(call.feeds)
    .sort()
    .map((name) => {
      const t = call.feeds[name]!;
      return `${name}:${t.type}:${t.dims.slice(1).join('x')}`;
    });
  return `${inputs.join('|')}>${call.outputNames?.join(',') ?? '*'}`;
}

function firstDim(feeds: Readonly<Record<string, Tensor>>): number {
  return Object.values(feeds)[0]!.dims[0]!;
}

/** Concatenates tensors of one type and matching trailing dims along axis 0, into a fresh buffer. */
export function concat(tensors: readonly Tensor[]): Tensor {
  const first = tensors[0]!;
  const rows = tensors.reduce((n, t) => n + t.dims[0]!, 0);
  const length = tensors.reduce((n, t) => n + t.data.length, 0);
  if (first.type === 'string') {
    const strings = tensors.flatMap((t) => t.data as string[]);
    return { type: first.type, data: strings, dims: [rows, ...first.dims.slice(1)] };
  }
  const data = allocate(first.type, length);
  let offset = 0;
  for (const t of tensors) {
    (data as Float32Array).set(t.data as Float32Array, offset);
    offset += t.data.length;
  }
  return { type: first.type, data, dims: [rows, ...first.dims.slice(1)] } as Tensor;
}

/** Splits batch outputs back into each call's rows (views, no copy). */
export function split(outputs: Readonly<Record<string, Tensor>>, rows: readonly number[]): Record<string, Tensor>[] {
  const parts: Record<string, Tensor>[] = rows.map(() => ({}));
  for (const [name, tensor] of Object.entries(outputs)) {
    const total = tensor.dims[0]!;
    const perRow = total === 0 ? 0 : tensor.data.length / total;
    let start = 0;
    rows.forEach((n, i) => {
      const data = isNumericData(tensor.data)
        ? tensor.data.subarray(start * perRow, (start + n) * perRow)
        : tensor.data.slice(start * perRow, (start + n) * perRow);
      parts[i]![name] = { type: tensor.type, data, dims: [n, ...tensor.dims.slice(1)] } as Tensor;
      start += n;
    });
  }
  return parts;
}
