/**
 * The torch executor: TorchScript files and Lightning checkpoints, run by a Python subprocess
 * (python/arclight_executor.py) behind the same `Executor` face as onnxruntime, so the front (codec, OIP,
 * validation, batching, admission, errors, telemetry) is unchanged. Node owns the process's life: start, readiness,
 * restart with backoff after a crash (the request it was running gets 503; the ones queued run after the restart),
 * and a clean shutdown. One run at a time goes to the process; torch's own threads work inside it.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Tensor, TensorDeclaration, TensorInfo } from '../../predictor.js';
import type { Executor, ExecutorFactory } from './executor.js';
import { httpError } from '../codec/http-errors.js';
import type { Logger } from '../telemetry/logger.js';
import { ModelRunError } from './onnx-executor.js';
import { StartupError } from '../startup-error.js';
import { FRAME, frameId, frameJson, jsonFrame, resultTensors, runFrame, type Frame } from './torch-protocol.js';
import { TorchProcess, type ExecutorFailure } from './torch-process.js';

export type TorchFormat = 'torchscript' | 'lightning-checkpoint';

export interface TorchModelOptions {
  /** Lightning checkpoints: the Python file that defines the model's class. @default none (required for checkpoints) */
  readonly module?: string;
  /** Lightning checkpoints: the class in `module`. @default none (required for checkpoints) */
  readonly className?: string;
  /** Inputs in `forward`'s order; names, datatypes and shapes requests are checked against. @default from `forward` */
  readonly inputs?: readonly TensorDeclaration[];
  /** Output names (and metadata), in the order `forward` returns them. @default `output`, `output0`…, or dict keys */
  readonly outputs?: readonly TensorDeclaration[];
  /** The interpreter with torch. @default python3, else /usr/bin/python3, whichever imports torch */
  readonly python?: string;
}

export interface TorchExecutorOptions extends TorchModelOptions {
  readonly format: TorchFormat;
  /** `cuda` and/or `cpu`, in order of preference; cuda falls back to cpu only when cpu is listed. @default ['cpu'] */
  readonly executionProviders?: readonly string[];
  /** torch.set_num_threads. @default torch's own choice */
  readonly intraOpThreads?: number;
  /** One run on zeros before ready (declared inputs only). @default true */
  readonly warmUp?: boolean;
  readonly logger?: Logger;
  /** Called once when cuda was asked for and the model runs on cpu instead. */
  readonly onFallback?: (reason: string) => void;
  /** The first restart's delay after a crash, doubled per failed restart up to 5 s. @default 100 */
  readonly restartDelayMs?: number;
  /** A process already started (torch imported while the model downloaded). @default one started here */
  readonly process?: Promise<TorchProcess>;
}

/** What the program reports once the model is loaded. */
interface Ready {
  readonly inputs: readonly (TensorDeclaration & { readonly asSent?: boolean })[];
  readonly outputs: readonly (TensorDeclaration & { readonly asSent?: boolean })[];
  readonly device: string;
  readonly fallback: string | null;
  readonly firstRunMs: number | null;
  readonly torch: string;
}

interface Job {
  readonly id: number;
  readonly frame: Buffer;
  readonly resolve: (outputs: Record<string, Tensor>) => void;
  readonly reject: (error: unknown) => void;
}

const MAX_RESTART_DELAY_MS = 5000;

export class TorchExecutor implements Executor {
  private readonly queue: Job[] = [];
  private running: Job | undefined;
  private state: 'ready' | 'restarting' | 'closed' = 'ready';
  private nextId = 1;
  private failedRestarts = 0;
  private restartTimer: NodeJS.Timeout | undefined;
  private readonly idleWaiters: (() => void)[] = [];
  /** Crashes since the start, for logs and tests. */
  restarts = 0;
  /** Runs sent to the process (a batch is one). */
  runs = 0;

  private constructor(
    private process: TorchProcess,
    private readonly modelPath: string,
    private readonly source: string,
    private readonly options: TorchExecutorOptions,
    readonly inputs: readonly TensorInfo[],
    readonly outputs: readonly TensorInfo[],
    /** Where the model runs: `cpu` or `cuda`. */
    readonly device: string,
    private readonly firstRunMs: number | undefined,
    private readonly cleanup: () => void,
  ) {
    this.attach(process);
  }

  /** Starts the program (or takes one started early), loads the model from a file and waits until it can run. */
  static async start(modelPath: string, source: string, options: TorchExecutorOptions, cleanup = () => {}) {
    const process = await (options.process ?? TorchProcess.start(options));
    let ready: Ready;
    try {
      ready = await loadInto(process, modelPath, source, options);
    } catch (error) {
      await process.stop(0);
      throw error;
    }
    if (ready.fallback) options.onFallback?.(ready.fallback);
    options.logger?.info('torch executor ready', {
      python: process.python,
      torch: ready.torch,
      device: ready.device,
      format: options.format,
    });
    return new TorchExecutor(
      process,
      modelPath,
      source,
      options,
      ready.inputs.map(toInfo),
      ready.outputs.map(toInfo),
      ready.device,
      ready.firstRunMs ?? undefined,
      cleanup,
    );
  }

  /** Whether `release` was called (a restart may have been under way then). */
  private get closed(): boolean {
    return this.state === 'closed';
  }

  /** The Python process's id (a drill may kill it). */
  get pid(): number | undefined {
    return this.process.pid;
  }

  /** Whether a run sent now would start at once. */
  get hasIdleWorker(): boolean {
    return this.state === 'ready' && this.running === undefined && this.queue.length === 0;
  }

  /** Resolves when a run would start at once. */
  whenIdle(): Promise<void> {
    if (this.hasIdleWorker) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.state === 'closed') return Promise.reject(notReady('the server is shutting down'));
    for (const [name, tensor] of Object.entries(feeds)) {
      if (Buffer.byteLength(name) > 0xffff || tensor.dims.length > 255)
        return Promise.reject(new ModelRunError(`input '${name.slice(0, 64)}' has a name or rank too large`));
      if (tensor.type === 'string')
        return Promise.reject(
          new ModelRunError(`input '${name.slice(0, 64)}': torch models take no BYTES (string) tensors`),
        );
    }
    return new Promise((resolve, reject) => {
      const id = this.nextId;
      this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
      this.queue.push({ id, frame: runFrame(id, feeds, outputNames), resolve, reject });
      this.pump();
    });
  }

  /** The warm-up run's duration, measured in Python at load (undefined when the inputs were not declared). */
  warmUp(): Promise<number | undefined> {
    return Promise.resolve(this.firstRunMs);
  }

  /** Stops the process (after its current run); queued runs fail with 503. Drain in-flight requests first. */
  async release(): Promise<void> {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.restartTimer);
    for (const job of this.queue.splice(0)) job.reject(notReady('the server is shutting down'));
    await this.process.stop();
    this.cleanup();
  }

  private pump(): void {
    if (this.state === 'ready' && !this.running) {
      const job = this.queue.shift();
      if (job) {
        this.running = job;
        this.runs++;
        this.process.send(job.frame);
      }
    }
    if (this.hasIdleWorker) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private attach(process: TorchProcess): void {
    process.onFrame = (frame) => this.onFrame(frame);
    void process.exited.then((exit) => {
      if (this.process === process) this.onExit(exit.code, exit.signal);
    });
  }

  private onFrame(frame: Frame): void {
    const job = this.running;
    if (!job || (frame.kind !== FRAME.result && frame.kind !== FRAME.error) || frameId(frame) !== job.id) return;
    this.running = undefined;
    if (frame.kind === FRAME.result) {
      try {
        job.resolve(resultTensors(frame));
      } catch (error) {
        job.reject(error);
      }
    } else {
      const failure = frameJson<ExecutorFailure>(frame);
      job.reject(failure.kind === 'input' ? new ModelRunError(failure.message) : new Error(failure.message));
    }
    this.pump();
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null): void {
    if (this.state === 'closed') return;
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    this.restarts++;
    this.options.logger?.error('torch executor stopped; restarting it', {
      how,
      restarts: this.restarts,
      stderr: this.process.stderr.slice(-1000),
    });
    const job = this.running;
    this.running = undefined;
    job?.reject(notReady(`the torch executor stopped (${how}) while running this request; it is restarting: retry`));
    this.state = 'restarting';
    this.scheduleRestart();
  }

  private scheduleRestart(): void {
    const first = this.options.restartDelayMs ?? 100;
    const delay = Math.min(MAX_RESTART_DELAY_MS, first * 2 ** Math.min(8, this.failedRestarts));
    this.restartTimer = setTimeout(() => void this.restart(), delay);
  }

  private async restart(): Promise<void> {
    if (this.state === 'closed') return;
    let process: TorchProcess | undefined;
    try {
      process = await TorchProcess.start({
        ...(this.options.python ? { python: this.options.python } : {}),
        ...(this.options.logger ? { logger: this.options.logger } : {}),
      });
      await loadInto(process, this.modelPath, this.source, { ...this.options, warmUp: false });
    } catch (error) {
      await process?.stop(0);
      this.failedRestarts++;
      this.options.logger?.error('torch executor restart failed', { error: error as Error });
      // Queued requests would otherwise wait out their timeouts for a process that may not come back soon.
      for (const job of this.queue.splice(0)) job.reject(notReady('the torch executor is restarting: retry'));
      if (!this.closed) this.scheduleRestart();
      return;
    }
    if (this.closed) {
      await process.stop(0);
      return;
    }
    this.failedRestarts = 0;
    this.process = process;
    this.attach(process);
    this.state = 'ready';
    this.options.logger?.info('torch executor restarted', { restarts: this.restarts, pid: process.pid });
    this.pump();
  }
}

/** Sends LOAD and waits for READY; a typed ERROR or an exit becomes a StartupError. */
async function loadInto(
  process: TorchProcess,
  modelPath: string,
  source: string,
  options: TorchExecutorOptions,
): Promise<Ready> {
  process.send(
    jsonFrame(FRAME.load, {
      path: modelPath,
      format: options.format,
      module: options.module ?? null,
      className: options.className ?? null,
      inputs: options.inputs ?? null,
      outputs: options.outputs ?? null,
      executionProviders: options.executionProviders ?? ['cpu'],
      intraOpThreads: options.intraOpThreads ?? null,
      warmUp: options.warmUp ?? true,
    }),
  );
  const frame = await process.next();
  if (frame?.kind === FRAME.ready) return frameJson<Ready>(frame);
  if (frame?.kind === FRAME.error) {
    const failure = frameJson<ExecutorFailure>(frame);
    throw new StartupError(failure.message.replaceAll(modelPath, source), failure.hint ?? undefined);
  }
  throw new StartupError(`the torch executor exited while loading ${source}: ${process.stderr.slice(-500)}`);
}

function toInfo(declared: TensorDeclaration & { readonly asSent?: boolean }): TensorInfo {
  return {
    name: declared.name,
    datatype: declared.datatype,
    shape: [...declared.shape],
    dimNames: declared.shape.map(() => null),
    ...(declared.asSent ? { asSent: true } : {}),
  };
}

function notReady(message: string) {
  return httpError('not_ready', message, { 'retry-after': '1' });
}

/**
 * An ExecutorFactory for torch models: a model in memory is written to a private temp file first (torch loads
 * from files, and a restart loads it again), removed when the executor is released.
 */
export function torchExecutorFactory(options: Omit<TorchExecutorOptions, 'intraOpThreads' | 'executionProviders'>) {
  const factory: ExecutorFactory = async (model, source, runOptions) => {
    let path: string;
    let cleanup = (): void => {};
    if (typeof model === 'string') path = model;
    else {
      const dir = mkdtempSync(join(tmpdir(), 'arclight-torch-'));
      path = join(dir, options.format === 'torchscript' ? 'model.pt' : 'model.ckpt');
      writeFileSync(path, model, { mode: 0o600 });
      cleanup = () => rmSync(dir, { recursive: true, force: true });
    }
    try {
      return await TorchExecutor.start(path, source, { ...options, ...definedOnly(runOptions) }, cleanup);
    } catch (error) {
      cleanup();
      throw error;
    }
  };
  return factory;
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
