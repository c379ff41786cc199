/**
 * The container server's executor: N worker threads, each holding an onnxruntime session made from the same
 * verified model bytes (copied once into a SharedArrayBuffer every worker reads), intra-op threads divided among
 * them. Same face as `OnnxExecutor`, so `createModel` wraps it. Inference runs off the main thread, so health
 * routes answer while every worker is busy. A worker that dies fails its in-flight job with 503 and is replaced.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import type { Tensor, TensorInfo, TensorType } from '../../predictor.js';
import { timedWarmUp, withQueueWait, type Executor } from './executor.js';
import { isNumericData } from '../codec/tensor-types.js';
import { httpError } from '../codec/http-errors.js';
import type { Logger } from '../telemetry/logger.js';
import { ModelRunError } from './onnx-executor.js';
import { isOwned, reclaim } from './owned-buffers.js';
import type { BodySlab, BodySlabs, SlabRef } from './body-slabs.js';
import { StartupError } from '../startup-error.js';

/** What each worker starts from. */
export interface WorkerInit {
  /** The model bytes (shared, read-only by convention) or the path of a model file. */
  readonly model: SharedArrayBuffer | string;
  readonly source: string;
  readonly executionProviders: readonly string[];
  readonly intraOpThreads: number;
  readonly warmUp: boolean;
  /**
   * Niceness for loading (session, warm-up), back to the workers' usual one after: set when the pool loads beside a
   * serving one (a live reload), so loading the new version takes only CPU the serving workers leave. @default none
   */
  readonly loadNiceness?: number;
}

/** The lowest priority Linux has: a reload's loading yields to the serving workers (nice +10) and the server (0). */
export const RELOAD_LOAD_NICENESS = 19;

/** A feed whose bytes lie in a body slab (body-slabs.ts): the worker copies them out of the slab's memory. */
export interface SlabTensor {
  readonly type: TensorType;
  readonly dims: readonly number[];
  readonly inSlab: SlabRef;
}

/** One run, main → worker. */
export interface WorkerJob {
  readonly kind: 'run';
  readonly id: number;
  readonly feeds: Record<string, Tensor | SlabTensor>;
  readonly outputNames?: readonly string[];
}

/** A body slab's (new) memory, main → worker, before any job refers to it. */
export interface WorkerSlab {
  readonly kind: 'slab';
  readonly id: number;
  readonly memory: SharedArrayBuffer;
}

/** Main → worker: a run, a slab's memory, or an order to exit (a crash, as tests and drills need it). */
export type WorkerMessage = WorkerJob | WorkerSlab | { readonly kind: 'exit'; readonly code: number };

/** Worker → main. */
export type WorkerReply =
  | {
      readonly kind: 'ready';
      readonly inputs: readonly TensorInfo[];
      readonly outputs: readonly TensorInfo[];
      readonly providers: readonly string[];
      readonly fallback?: string;
      readonly firstRunMs?: number;
    }
  | { readonly kind: 'failed'; readonly message: string; readonly hint?: string }
  | {
      readonly kind: 'result';
      readonly id: number;
      readonly outputs: Record<string, Tensor>;
      /** The feeds' buffers, moved back for reuse. */
      readonly reclaimed?: readonly ArrayBuffer[];
    }
  | { readonly kind: 'error'; readonly id: number; readonly message: string; readonly modelRun: boolean };

export interface WorkerPoolOptions {
  /** Worker threads, each with its own session. @default one per core, 1 to 4 */
  readonly workers?: number;
  /** Intra-op threads per worker. @default the cores but one (the server's own thread) divided among the workers */
  readonly intraOpThreads?: number;
  /** @default ['cpu'] */
  readonly executionProviders?: readonly string[];
  /** One run on zero inputs in each worker before ready. @default true */
  readonly warmUp?: boolean;
  readonly logger?: Logger;
  /** Called once when an accelerated provider failed and the pool serves on CPU instead. */
  readonly onFallback?: (reason: string) => void;
  /** The worker entry. @default onnx-worker next to this module (.js when bundled, .ts from source) */
  readonly workerUrl?: URL;
  /** Request bodies' shared memory: feeds that lie in it go to the workers by reference. @default none */
  readonly bodySlabs?: BodySlabs;
}

interface Job {
  readonly id: number;
  /** When it joined the queue (performance.now()). */
  readonly queuedAt: number;
  /** When a worker took it. */
  startedAt?: number;
  readonly feeds: Record<string, Tensor | SlabTensor>;
  readonly outputNames?: readonly string[];
  readonly transfer: ArrayBuffer[];
  readonly resolve: (outputs: Record<string, Tensor>) => void;
  readonly reject: (error: unknown) => void;
}

interface Slot {
  worker: Worker;
  job: Job | undefined;
  ready: boolean;
}

/**
 * Default worker count: one per core up to 4 (each with one intra-op thread), then 4. Measured on 2 cores (bench
 * `peers`, MobileNet): 2 workers × 1 thread serve about twice what 1 × 2 does, as onnxruntime's spare intra-op thread
 * spin-waits between runs; more than 4 cores were not measured.
 */
export function defaultWorkerCount(cores = availableParallelism()): number {
  return Math.max(1, Math.min(4, cores));
}

/** Intra-op threads per worker: one core is left to the server's thread (health checks, HTTP), the rest shared. */
export function defaultIntraOpThreads(workers: number, cores = availableParallelism()): number {
  return Math.max(1, Math.floor((cores - 1) / workers));
}

function defaultWorkerUrl(): URL {
  for (const ext of ['.js', '.mjs']) {
    const url = new URL(`./onnx-worker${ext}`, import.meta.url);
    if (existsSync(fileURLToPath(url))) return url;
  }
  return new URL('./onnx-worker.ts', import.meta.url);
}

export class WorkerPool implements Executor {
  private readonly slots: Slot[] = [];
  private readonly queue: Job[] = [];
  private nextId = 1;
  private closed = false;
  private restarts = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly restartTimers = new Set<NodeJS.Timeout>();
  private readonly stopAnnouncingSlabs: (() => void) | undefined;
  /** Pools in this process that have started and not been released: one more starting beside them is a reload. */
  private static serving = 0;

  private constructor(
    private readonly init: WorkerInit,
    private readonly workerUrl: URL,
    private readonly log: Logger | undefined,
    readonly inputs: readonly TensorInfo[],
    readonly outputs: readonly TensorInfo[],
    /** The providers the sessions run on (after any fallback). */
    readonly providers: readonly string[],
    workers: Worker[],
    /** The slowest worker's warm-up run, ms. */
    readonly firstRunMs: number | undefined,
    private readonly bodySlabs: BodySlabs | undefined,
  ) {
    this.stopAnnouncingSlabs = bodySlabs?.onMemory((slab) => {
      for (const slot of this.slots) announce(slot.worker, slab);
    });
    for (const worker of workers) this.attach({ worker, job: undefined, ready: true });
    WorkerPool.serving++;
  }

  /** Starts the workers and waits until every one holds a session; a failed start ends them all. */
  static async start(model: Uint8Array | string, source: string, options: WorkerPoolOptions = {}): Promise<WorkerPool> {
    const count = options.workers ?? defaultWorkerCount();
    const intraOpThreads = options.intraOpThreads ?? defaultIntraOpThreads(count);
    let shared: SharedArrayBuffer | string;
    if (typeof model === 'string') shared = model;
    else {
      shared = new SharedArrayBuffer(model.byteLength);
      new Uint8Array(shared).set(model);
    }
    const init: WorkerInit = {
      model: shared,
      source,
      executionProviders: [...(options.executionProviders ?? ['cpu'])],
      intraOpThreads,
      warmUp: options.warmUp ?? true,
      ...(WorkerPool.serving > 0 ? { loadNiceness: RELOAD_LOAD_NICENESS } : {}),
    };
    const url = options.workerUrl ?? defaultWorkerUrl();
    const started = await Promise.allSettled(Array.from({ length: count }, () => spawn(url, init)));
    const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
    const workers = started.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
    if (failed) {
      await Promise.all(workers.map(({ worker }) => worker.terminate()));
      throw failed.reason;
    }
    const first = workers[0]!.ready;
    const fallback = workers.find((w) => w.ready.fallback !== undefined)?.ready.fallback;
    if (fallback !== undefined) options.onFallback?.(fallback);
    const firstRuns = workers.flatMap((w) => (w.ready.firstRunMs === undefined ? [] : [w.ready.firstRunMs]));
    options.logger?.info('worker pool ready', { workers: count, intraOpThreads, providers: first.providers });
    return new WorkerPool(
      init,
      url,
      options.logger,
      first.inputs,
      first.outputs,
      first.providers,
      workers.map((w) => w.worker),
      firstRuns.length > 0 ? Math.max(...firstRuns) : undefined,
      options.bodySlabs,
    );
  }

  /** Worker threads holding a session. */
  get size(): number {
    return this.slots.filter((s) => s.ready).length;
  }

  /** Jobs waiting for a worker. */
  get queued(): number {
    return this.queue.length;
  }

  /** Workers running a job. */
  get busy(): number {
    return this.slots.filter((s) => s.job !== undefined).length;
  }

  /** Whether a worker could take a job now. */
  get hasIdleWorker(): boolean {
    return this.queue.length === 0 && this.slots.some((s) => s.ready && s.job === undefined);
  }

  /** Runs the model in a worker; the feeds are copied there (they stay usable here). */
  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    return this.submit(plain(feeds), outputNames, []);
  }

  /**
   * Runs the model on feeds this caller owns: their buffers move to the worker (no copy) and are unusable here after.
   * A buffer moves when the tensor fills it, or when it is a request body of its own (views into it included).
   */
  runTransferring(
    feeds: Readonly<Record<string, Tensor>>,
    outputNames?: readonly string[],
  ): Promise<Record<string, Tensor>> {
    const transfer: ArrayBuffer[] = [];
    for (const tensor of Object.values(feeds)) {
      // A BYTES tensor's strings are copied (structured clone); only typed arrays can move.
      if (!isNumericData(tensor.data)) continue;
      const { buffer, byteOffset, byteLength } = tensor.data;
      const fills = byteOffset === 0 && byteLength === buffer.byteLength;
      if (buffer instanceof ArrayBuffer && (fills || isOwned(buffer)) && !transfer.includes(buffer)) {
        transfer.push(buffer);
      }
    }
    return this.submit(plain(feeds), outputNames, transfer);
  }

  /** Resolves when a worker is free to take a job (at once if one is). */
  whenIdle(): Promise<void> {
    if (this.hasIdleWorker) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private submit(
    feeds: Record<string, Tensor>,
    outputNames: readonly string[] | undefined,
    transfer: ArrayBuffer[],
  ): Promise<Record<string, Tensor>> {
    if (this.closed) return Promise.reject(httpError('not_ready', 'the server is shutting down', retryAfter()));
    const { message, slabs } = this.bySlabRef(feeds);
    return new Promise((resolve, reject) => {
      const job: Job = {
        id: this.nextId++,
        queuedAt: performance.now(),
        feeds: message,
        transfer,
        resolve: (outputs) => {
          for (const slab of slabs) slab.release();
          resolve(outputs);
        },
        reject: (error) => {
          for (const slab of slabs) slab.release();
          reject(error);
        },
        ...(outputNames ? { outputNames: [...outputNames] } : {}),
      };
      this.queue.push(job);
      this.pump();
    });
  }

  /**
   * Feeds that lie in a body slab go as references (the worker copies them out); each slab is retained until the job
   * settles, so no later body is read into memory a queued job has still to copy.
   */
  private bySlabRef(feeds: Record<string, Tensor>): {
    message: Record<string, Tensor | SlabTensor>;
    slabs: BodySlab[];
  } {
    const slabs: BodySlab[] = [];
    if (!this.bodySlabs) return { message: feeds, slabs };
    const message: Record<string, Tensor | SlabTensor> = {};
    for (const [name, tensor] of Object.entries(feeds)) {
      const slab = isNumericData(tensor.data) ? this.bodySlabs.slabOf(tensor.data.buffer) : undefined;
      if (!slab) {
        message[name] = tensor;
        continue;
      }
      const { byteOffset, byteLength } = tensor.data as ArrayBufferView;
      slab.retain();
      slabs.push(slab);
      message[name] = { type: tensor.type, dims: tensor.dims, inSlab: { slab: slab.id, byteOffset, byteLength } };
    }
    return { message, slabs };
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (this.queue.length === 0) break;
      if (!slot.ready || slot.job) continue;
      const job = this.queue.shift()!;
      job.startedAt = performance.now();
      slot.job = job;
      const message: WorkerJob = {
        kind: 'run',
        id: job.id,
        feeds: job.feeds,
        ...(job.outputNames ? { outputNames: job.outputNames } : {}),
      };
      try {
        slot.worker.postMessage(message, job.transfer);
      } catch (error) {
        slot.job = undefined;
        job.reject(error);
      }
    }
    if (this.hasIdleWorker) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private attach(slot: Slot): void {
    this.slots.push(slot);
    for (const slab of this.bodySlabs?.all ?? []) if (slab.memory.byteLength > 0) announce(slot.worker, slab);
    slot.worker.on('message', (reply: WorkerReply) => {
      if (reply.kind !== 'result' && reply.kind !== 'error') return;
      const job = slot.job;
      if (!job || job.id !== reply.id) return;
      slot.job = undefined;
      if (reply.kind === 'result') for (const buffer of reply.reclaimed ?? []) reclaim(buffer);
      if (reply.kind === 'result')
        job.resolve(withQueueWait(reply.outputs, (job.startedAt ?? job.queuedAt) - job.queuedAt));
      else job.reject(reply.modelRun ? new ModelRunError(reply.message) : new Error(reply.message));
      this.pump();
    });
    slot.worker.on('error', (error) => {
      this.log?.error('inference worker failed', { error });
    });
    slot.worker.once('exit', (code) => this.onExit(slot, code));
  }

  private onExit(slot: Slot, code: number): void {
    this.slots.splice(this.slots.indexOf(slot), 1);
    const job = slot.job;
    slot.job = undefined;
    if (job) {
      job.reject(httpError('overloaded', 'the inference worker running this request stopped; retry', retryAfter()));
    }
    if (this.closed) return;
    this.log?.error('inference worker exited; starting another', { code, restarts: ++this.restarts });
    const delay = Math.min(5000, 100 * 2 ** Math.min(6, this.restarts - 1));
    const timer = setTimeout(() => {
      this.restartTimers.delete(timer);
      if (this.closed) return;
      spawn(this.workerUrl, this.init).then(
        ({ worker }) => {
          if (this.closed) {
            void worker.terminate();
            return;
          }
          this.restarts = 0;
          this.attach({ worker, job: undefined, ready: true });
          this.pump();
        },
        (error: unknown) => {
          this.log?.error('inference worker restart failed', { error: error as Error });
          // Try again through the same path, with a longer delay.
          this.onExit({ worker: slot.worker, job: undefined, ready: false }, -1);
        },
      );
    }, delay);
    this.restartTimers.add(timer);
  }

  /** One run on zero inputs (dynamic dimensions as 1), like `OnnxExecutor.warmUp`. */
  warmUp(): Promise<number | undefined> {
    if (this.firstRunMs !== undefined) return Promise.resolve(this.firstRunMs);
    return timedWarmUp(this.inputs, (feeds) => this.runTransferring(feeds));
  }

  /** Stops every worker (each after its current run); queued jobs fail with 503. Drain in-flight requests first. */
  async release(): Promise<void> {
    if (!this.closed) WorkerPool.serving--;
    this.closed = true;
    this.stopAnnouncingSlabs?.();
    for (const timer of this.restartTimers) clearTimeout(timer);
    this.restartTimers.clear();
    for (const job of this.queue.splice(0))
      job.reject(httpError('not_ready', 'the server is shutting down', retryAfter()));
    await Promise.all(this.slots.map((slot) => stopWorker(slot.worker)));
  }

  /**
   * Makes the first worker exit with `code` before it takes its next job, as a crash would (tests, drills).
   * (`Worker.terminate` in the middle of a native onnxruntime run aborts the whole process, so it is never used then.)
   */
  crashOne(code = 1): void {
    const message: WorkerMessage = { kind: 'exit', code };
    this.slots[0]?.worker.postMessage(message);
  }
}

/** How long a worker has to finish its run and exit before it is terminated. */
const EXIT_GRACE_MS = 5000;

/**
 * Asks a worker to exit once its current run ends (it reads the order after the run), terminating it only past
 * EXIT_GRACE_MS: `Worker.terminate` in the middle of a native onnxruntime run can abort the whole process.
 */
function stopWorker(worker: Worker): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => void worker.terminate(), EXIT_GRACE_MS);
    worker.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    const message: WorkerMessage = { kind: 'exit', code: 0 };
    try {
      worker.postMessage(message);
    } catch {
      void worker.terminate();
    }
  });
}

/** Tells a worker a body slab's memory (shared: nothing is copied). */
function announce(worker: Worker, slab: BodySlab): void {
  const message: WorkerMessage = { kind: 'slab', id: slab.id, memory: slab.memory };
  worker.postMessage(message);
}

function retryAfter(): Record<string, string> {
  return { 'retry-after': '1' };
}

/** `{ type, data, dims }` objects: onnxruntime's Tensor class does not survive structured cloning as such. */
function plain(feeds: Readonly<Record<string, Tensor>>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, t] of Object.entries(feeds))
    out[name] = { type: t.type, data: t.data, dims: [...t.dims] } as Tensor;
  return out;
}

/**
 * The worker's entry: the file itself, or, for TypeScript (run from source, under tsx), a bootstrap that registers
 * tsx in the worker first (loader hooks are not inherited by worker threads).
 */
function entryOf(url: URL): URL {
  if (!url.pathname.endsWith('.ts')) return url;
  const tsx = import.meta.resolve('tsx/esm/api');
  // A reload's worker lowers its priority before tsx compiles the worker's modules (see onnx-worker.ts).
  const lower =
    "const { workerData } = await import('node:worker_threads'); if (workerData?.loadNiceness !== undefined) try { " +
    "(await import('node:os')).setPriority(Number((await import('node:fs')).readlinkSync('/proc/thread-self').split('/').pop()), workerData.loadNiceness); } catch {}";
  const source = `${lower} const { register } = await import(${JSON.stringify(tsx)}); register(); await import(${JSON.stringify(url.href)});`;
  return new URL(`data:text/javascript,${encodeURIComponent(source)}`);
}

type Ready = Extract<WorkerReply, { kind: 'ready' }>;

/** Starts one worker and waits for its session. */
function spawn(url: URL, init: WorkerInit): Promise<{ worker: Worker; ready: Ready }> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(entryOf(url), { workerData: init });
    const onMessage = (reply: WorkerReply): void => {
      if (reply.kind === 'ready') {
        cleanup();
        resolve({ worker, ready: reply });
      } else if (reply.kind === 'failed') {
        cleanup();
        void worker.terminate();
        reject(new StartupError(reply.message, reply.hint));
      }
    };
    const onError = (error: Error): void => {
      cleanup();
      void worker.terminate();
      reject(new StartupError(`the inference worker failed to start: ${error.message}`, undefined, { cause: error }));
    };
    const onExit = (code: number): void => {
      cleanup();
      reject(new StartupError(`the inference worker exited with code ${code} while starting`));
    };
    const cleanup = (): void => {
      worker.off('message', onMessage);
      worker.off('error', onError);
      worker.off('exit', onExit);
    };
    worker.on('message', onMessage);
    worker.on('error', onError);
    worker.on('exit', onExit);
  });
}
