/**
 * The model's lifecycle: fetch (store), load (executor), `init` (predictor), and a retry after a failed start.
 * The request path (runtime.ts, request-handler.ts) only asks it whether the model is ready and for what was loaded.
 */
import { DEFAULTS } from '../contract.js';
import { detectModelFormat } from '../model-format.js';
import type { Config, DefinedPredictor, Model, ModelFormat, PredictRequest } from '../predictor.js';
import { httpError } from './codec/http-errors.js';
import { clipText } from './codec/json.js';
import { Batcher, BatchingExecutor, type BatchingOptions, type Settled } from './executors/batcher.js';
import type { Executor, ExecutorFactory } from './executors/executor.js';
import { createModel } from './executors/model.js';
import { OnnxExecutor, importOnnxRuntime } from './executors/onnx-executor.js';
import { torchExecutorFactory, type TorchModelOptions } from './executors/torch-executor.js';
import { TorchProcess } from './executors/torch-process.js';
import { loadModelBytes } from './model-store/model-store.js';
import { isVersionedModelUri, resolveModelVersion, type ModelVersion } from './model-store/model-versions.js';
import { StartupError } from './startup-error.js';
import { freshMiB, freshSinceStartMiB, memoryMark, rssMiB } from './telemetry/fresh-memory.js';
import { asError, requestLogger, type Logger } from './telemetry/logger.js';
import { ModelStatistics, StatisticsExecutor } from './telemetry/model-statistics.js';
import type { Telemetry } from './telemetry/telemetry.js';
import { METRICS } from '../metric-catalog.js';

/** What loading the model needs. */
export interface ModelLifecycleOptions {
  /** The API's name: the OIP model name and the log service name. */
  readonly apiName: string;
  /** `s3://bucket/key` or a local path; with a trailing slash, a versioned prefix (model-versions.ts). */
  readonly modelUri: string;
  /** A versioned prefix: serve this version only (no reload picks another). @default the highest version */
  readonly modelVersion?: string;
  /** Refuse a model whose sha256 differs. @default no check */
  readonly modelSha256?: string;
  /** User code; the Open Inference Protocol predictor when absent. @default defaultPredictor */
  readonly predictor?: DefinedPredictor<unknown>;
  /** Handed to `init` and `predict`. @default {} */
  readonly config?: Config;
  /** onnxruntime intra-op threads. @default onnxruntime's choice */
  readonly intraOpThreads?: number;
  /** @default ['cpu'] */
  readonly executionProviders?: readonly string[];
  readonly logger: Logger;
  /** Environment for the S3 client. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Log a failed start (with its cause's stack); off where the caller reports the failure itself (the CLI). @default true */
  readonly logStartupFailure?: boolean;
  /** Download progress of the model (S3 only), for a progress bar. @default none */
  readonly onProgress?: (received: number, total: number) => void;
  /** One run on zero inputs before ready, so the first request is not the slow one. @default true */
  readonly warmUp?: boolean;
  /** Makes the executor (the container server's worker pool). @default an in-process OnnxExecutor */
  readonly createExecutor?: ExecutorFactory;
  /**
   * Dynamic batching (container server): the default predictor's `model.run` calls, or a custom predictor's
   * `predictBatch`, gathered up to `maxBatchSize` or `maxBatchDelayMs`. @default off
   */
  readonly batching?: BatchingOptions;
  /** The model's format. @default read from the model file (`detectModelFormat`) */
  readonly modelFormat?: ModelFormat;
  /** Torch models: the checkpoint's module and class, declared inputs/outputs, the interpreter. @default none */
  readonly torch?: TorchModelOptions;
  /** Called once when cuda was asked for and the model runs on cpu instead. @default a warning in the log */
  readonly onFallback?: (reason: string) => void;
}

export type RuntimeStatus = 'starting' | 'ready' | 'failed';

/** Cold-start phases in milliseconds. */
export interface StartupTimings {
  /** Importing onnxruntime-node; it runs while the model downloads. */
  readonly importMs: number;
  /** What the import still took after the bytes had arrived (0 when the fetch hid it entirely). */
  readonly importWaitMs: number;
  /** Fetch and verification (the sha256 is computed as the bytes arrive). */
  readonly fetchMs: number;
  readonly modelBytes: number;
  /** Fetch throughput in MB/s (10^6 bytes). */
  readonly mbPerS: number;
  /** Byte-range parts and retries of the fetch, when the model store reports them. */
  readonly parts?: number;
  readonly retries?: number;
  /** Computing and checking the model's sha256 (for S3, while the bytes arrive: part of `fetchMs`, not added to it). */
  readonly verifyMs: number;
  readonly sessionMs: number;
  /** The warm-up run on zero inputs; absent when warm-up is off or the model refused such inputs. */
  readonly firstRunMs?: number;
  readonly initMs: number;
  /** From the start of the load to ready. */
  readonly totalMs: number;
  /** From the process's start to ready. */
  readonly processMs: number;
  /** Fresh memory touched (minor page faults × 4 KiB), MiB, per phase: fetch, session, first run, init. */
  readonly fetchFreshMiB: number;
  readonly sessionFreshMiB: number;
  readonly firstRunFreshMiB: number;
  readonly initFreshMiB: number;
  /** From the process's start to ready. */
  readonly processFreshMiB: number;
  /** Resident memory when ready, and its growth over the load. */
  readonly rssMiB: number;
  readonly rssGrowthMiB: number;
}

/** What a successful start leaves behind for the request path. */
export interface Loaded {
  /** The model version: the version folder's number under a versioned prefix, else `1`. */
  readonly version: string;
  readonly format: ModelFormat;
  readonly model: Model;
  readonly state: unknown;
  readonly executor: Executor;
  /** A custom predictor's `predictBatch`, behind the batcher. */
  readonly batcher?: Batcher<BatchItem, unknown>;
}

/** One request handed to a custom predictor's `predictBatch`. */
export interface BatchItem {
  readonly request: PredictRequest;
  readonly requestId: string;
}

/** The version an unversioned model (one object, not a prefix) is served as. */
export const UNVERSIONED = '1';

/** What one reload did. */
export type ReloadOutcome =
  | { readonly kind: 'unchanged'; readonly version: string }
  | { readonly kind: 'swapped'; readonly from: string; readonly to: string; readonly timings: StartupTimings }
  | { readonly kind: 'refused'; readonly version: string; readonly error: StartupError };

/** A loaded version and the requests using it; a retired one is released once the last of them is done. */
interface VersionSlot {
  readonly loaded: Loaded;
  leases: number;
  retired: boolean;
  released?: Promise<void>;
}

export class ModelLifecycle {
  private current: Loaded | undefined;
  private readonly slots = new Map<string, VersionSlot>();
  /** Versions refused (failed to fetch, verify or load), by fingerprint: not retried until their objects change. */
  private readonly refused = new Map<string, string>();
  private failure: StartupError | undefined;
  private failedAt = 0;
  private starting: Promise<StartupTimings> | undefined;
  private readonly log: Logger;
  /** The statistics extension's counts: every run of the model, and what the request path reports. */
  readonly statistics: ModelStatistics;

  constructor(
    private readonly options: ModelLifecycleOptions,
    /** The predictor that runs: the user's, or the OIP default. */
    readonly predictor: DefinedPredictor<unknown>,
    readonly config: Config,
    private readonly telemetry: Telemetry,
  ) {
    this.log = options.logger;
    this.statistics = new ModelStatistics(options.apiName);
  }

  get status(): RuntimeStatus {
    return this.current ? 'ready' : this.failure ? 'failed' : 'starting';
  }

  /** What was loaded, once ready. */
  get loaded(): Loaded | undefined {
    return this.current;
  }

  /** Why the last start failed, if it did. */
  get startupError(): StartupError | undefined {
    return this.failure;
  }

  /** Loads model and predictor; concurrent calls share one start, and a failed start may be retried. */
  start(): Promise<StartupTimings> {
    this.starting ??= this.load().catch((error: unknown) => {
      this.failure =
        error instanceof StartupError
          ? error
          : new StartupError(`startup failed: ${(error as Error).message}`, undefined, { cause: error });
      this.starting = undefined;
      this.failedAt = performance.now();
      this.telemetry.event(METRICS.modelLoadFailure.name);
      if (this.options.logStartupFailure !== false) {
        this.log.error('startup failed', { error: this.failure, cause: this.failure.cause });
      }
      throw this.failure;
    });
    return this.starting;
  }

  /**
   * Waits for the start under way, or retries a failed one once `retryAfterMs` have passed since it failed,
   * so a transient failure (S3 throttling) heals without every request paying for a doomed retry. Never throws.
   */
  async ensureStarted(retryAfterMs = 5000): Promise<void> {
    if (this.current) return;
    if (this.failure && !this.starting && performance.now() - this.failedAt < retryAfterMs) return;
    await this.start().catch(() => undefined);
  }

  /** What was loaded, or a 503 `not_ready` (with Retry-After) saying whether the model is loading or failed. */
  requireReady(): Loaded {
    if (this.current) return this.current;
    const retryAfter = { 'retry-after': String(DEFAULTS.retryAfterSeconds) };
    if (this.failure)
      throw httpError('not_ready', 'the model failed to load; the operator can see why in the logs', retryAfter);
    throw httpError('not_ready', 'the model is still loading', retryAfter);
  }

  /** The versions loaded now, lowest first: the current one, and one being retired while requests finish on it. */
  get versions(): string[] {
    return [...this.slots.keys()].sort((a, b) => Number(a) - Number(b));
  }

  /**
   * Runs `work` on a loaded version (`version`, else the current one) and holds that version until `work` settles,
   * so a request finishes on the version it started on however many swaps happen meanwhile.
   * A 503 before the model is ready; a 404 `model_not_found` for a version that is not loaded.
   */
  async use<T>(version: string | undefined, work: (loaded: Loaded) => Promise<T> | T): Promise<T> {
    const current = this.requireReady();
    const slot = this.slots.get(version ?? current.version);
    if (!slot || (version !== undefined && slot.retired && slot.leases === 0)) {
      throw httpError(
        'model_not_found',
        `model '${current.model.name}' version '${clipText(version ?? '')}' is not loaded; loaded: ${this.versions.join(', ')}`,
      );
    }
    slot.leases++;
    try {
      return await work(slot.loaded);
    } finally {
      slot.leases--;
      if (slot.retired && slot.leases === 0) void this.release(slot);
    }
  }

  /**
   * Looks for a new version under a versioned prefix and, when there is one, fetches, verifies, loads and warms it
   * up beside the current one, then swaps: new requests go to it, requests in flight finish on the old one, which is
   * released after them. A version that fails is logged and kept out (until its objects change); the current one
   * keeps serving. Call only once ready, and one reload at a time.
   */
  async reload(): Promise<ReloadOutcome> {
    const previous = this.requireReady();
    const pinned = this.options.modelVersion;
    let found: ModelVersion;
    try {
      found = await resolveModelVersion(this.options.modelUri, { env: this.options.env, pinned });
    } catch (error) {
      return this.refuse('unknown', undefined, error);
    }
    if (found.version === previous.version || this.refused.get(found.version) === found.fingerprint) {
      return { kind: 'unchanged', version: previous.version };
    }
    let timings: StartupTimings;
    try {
      timings = await this.loadVersion(found);
    } catch (error) {
      return this.refuse(found.version, found.fingerprint, error);
    }
    const old = this.slots.get(previous.version);
    if (old) {
      old.retired = true;
      if (old.leases === 0) void this.release(old);
    }
    this.log.info('model version swapped', { from: previous.version, to: found.version, model: found.uri });
    this.telemetry.event('ModelReloaded');
    return { kind: 'swapped', from: previous.version, to: found.version, timings };
  }

  /** Releases every loaded version's executor (the worker threads); call after requests have drained. */
  async close(): Promise<void> {
    await Promise.all([...this.slots.values()].map((slot) => this.release(slot)));
  }

  private release(slot: VersionSlot): Promise<void> {
    slot.released ??= (async () => {
      this.slots.delete(slot.loaded.version);
      await slot.loaded.executor.release?.().catch((error: unknown) => {
        this.log.warn('releasing a model version failed', { version: slot.loaded.version, error: asError(error) });
      });
      if (slot.retired) this.log.info('model version released', { version: slot.loaded.version });
    })();
    return slot.released;
  }

  private refuse(version: string, fingerprint: string | undefined, error: unknown): ReloadOutcome {
    const failure =
      error instanceof StartupError
        ? error
        : new StartupError(`reload failed: ${(error as Error).message}`, undefined, { cause: error });
    if (fingerprint !== undefined) this.refused.set(version, fingerprint);
    this.log.error('model version refused; the current version keeps serving', {
      version,
      serving: this.current?.version,
      error: failure,
      cause: failure.cause,
    });
    this.telemetry.event('ModelReloadFailed');
    return { kind: 'refused', version, error: failure };
  }

  /** The first load: the one model object, or the chosen version under a versioned prefix. */
  private async load(): Promise<StartupTimings> {
    const uri = this.options.modelUri;
    if (!isVersionedModelUri(uri)) {
      return this.loadVersion({ version: UNVERSIONED, uri, fingerprint: '' }, this.options.modelSha256);
    }
    const found = await resolveModelVersion(uri, { env: this.options.env, pinned: this.options.modelVersion });
    return this.loadVersion(found, this.options.modelSha256);
  }

  /**
   * Fetches, verifies, loads, warms up and inits one version, then makes it the current one. A pinned sha256
   * (`deployed`, from the deployment) and the version's sidecar must agree when both are given.
   */
  private async loadVersion(source: ModelVersion, deployed?: string): Promise<StartupTimings> {
    if (deployed !== undefined && source.sha256 !== undefined && deployed.toLowerCase() !== source.sha256) {
      throw new StartupError(
        `model ${source.uri}: its sha256 sidecar (${source.sha256}) differs from the deployed sha256 (${deployed})`,
        'Upload the model that was deployed, or deploy the new sha256',
      );
    }
    const t0 = performance.now();
    const m0 = memoryMark();
    // The fetch goes out first, then onnxruntime-node loads while the bytes arrive.
    const fetching = loadModelBytes(source.uri, {
      expectedSha256: deployed ?? source.sha256,
      env: this.options.env,
      ...(this.options.onProgress ? { onProgress: this.options.onProgress } : {}),
    });
    const declared = this.options.modelFormat;
    // The runtime of a format known up front loads while the bytes arrive: the worker pool imports onnxruntime in its
    // threads, the main thread only for in-process sessions; a torch model's Python process imports torch.
    const importing = this.importEngine(declared);
    // Whichever fails, the other's rejection must not go unhandled.
    importing.catch(() => undefined);
    const fetched = await fetching.catch(async (error: unknown) => {
      await importing.then(({ process }) => process?.stop(0)).catch(() => undefined);
      throw error;
    });
    const t1 = performance.now();
    const m1 = memoryMark();
    const format = declared ?? detectModelFormat(fetched.path ?? fetched.bytes);
    const { importMs, process } = await (format === declared ? importing : this.importEngine(format));
    const t2 = performance.now();
    const m2 = memoryMark();
    const executor = await this.executorFactory(format, process)(fetched.path ?? fetched.bytes, source.uri, {
      intraOpThreads: this.options.intraOpThreads,
      executionProviders: this.options.executionProviders,
    });
    const t3 = performance.now();
    const m3 = memoryMark();
    const firstRunMs = this.options.warmUp === false ? undefined : await executor.warmUp?.();
    const t4 = performance.now();
    const m4 = memoryMark();
    const batching = this.options.batching;
    const batchingOn = batching !== undefined && batching.maxBatchSize > 1;
    // The default predictor's runs batch along the first axis (and move their fresh tensors to the worker when alone);
    // a custom predictor's only through predictBatch.
    const timed = new StatisticsExecutor(executor, this.statistics);
    const model = createModel(
      this.options.apiName,
      format,
      batching !== undefined && !this.options.predictor ? new BatchingExecutor(timed, batching) : timed,
      source.version,
    );
    let state: unknown;
    try {
      state = await this.initPredictor(model);
    } catch (error) {
      await executor.release?.().catch(() => undefined);
      throw error;
    }
    const t5 = performance.now();
    const m5 = memoryMark();
    const predictBatch = this.predictor.predictBatch;
    const loaded: Loaded = {
      version: source.version,
      format,
      model,
      state,
      executor,
      ...(batchingOn && predictBatch
        ? { batcher: this.requestBatcher(batching, model, state, predictBatch.bind(this.predictor)) }
        : {}),
    };
    // The swap: one assignment, so every request after it sees the new version and none sees a half-made one.
    const first = this.current === undefined;
    this.slots.set(loaded.version, { loaded, leases: 0, retired: false });
    this.current = loaded;
    this.failure = undefined;
    const stats = fetched.stats;
    const fetchMs = t1 - t0;
    const modelBytes = fetched.size;
    const timings: StartupTimings = {
      importMs,
      importWaitMs: t2 - t1,
      fetchMs,
      modelBytes,
      mbPerS: fetchMs > 0 ? modelBytes / 1e6 / (fetchMs / 1000) : 0,
      ...(stats ? { parts: stats.parts, retries: stats.retries } : {}),
      verifyMs: fetched.verifyMs,
      sessionMs: t3 - t2,
      ...(firstRunMs === undefined ? {} : { firstRunMs }),
      initMs: t5 - t4,
      totalMs: t5 - t0,
      processMs: t5,
      // The import's share (m1 → m2) is left out of the phases: it is the runtime's, not the model's.
      fetchFreshMiB: freshMiB(m0, m1),
      sessionFreshMiB: freshMiB(m2, m3),
      firstRunFreshMiB: freshMiB(m3, m4),
      initFreshMiB: freshMiB(m4, m5),
      processFreshMiB: freshSinceStartMiB(m5),
      rssMiB: rssMiB(m5),
      rssGrowthMiB: rssMiB(m5) - rssMiB(m0),
    };
    this.log.info('model ready', {
      model: source.uri,
      version: source.version,
      sha256: fetched.sha256,
      ...round(timings),
    });
    if (first) this.telemetry.coldStart(timings);
    return timings;
  }

  /** Starts loading what runs a format (onnxruntime-node, or a Python process importing torch); its duration. */
  private async importEngine(
    format: ModelFormat | undefined,
  ): Promise<{ readonly importMs: number; readonly process?: TorchProcess }> {
    const started = performance.now();
    if (format === 'torchscript' || format === 'lightning-checkpoint') {
      const process = await TorchProcess.start({
        ...(this.options.torch?.python ? { python: this.options.torch.python } : {}),
        logger: this.log,
      });
      return { importMs: performance.now() - started, process };
    }
    if (this.options.createExecutor) return { importMs: 0 };
    return importOnnxRuntime().catch((error: unknown) => {
      throw new StartupError(
        `onnxruntime-node cannot be loaded: ${(error as Error)?.message ?? String(error)}`,
        'Reinstall onnxruntime-node for this platform',
        { cause: error },
      );
    });
  }

  private executorFactory(format: ModelFormat, process: TorchProcess | undefined): ExecutorFactory {
    if (format === 'onnx') return this.options.createExecutor ?? OnnxExecutor.load.bind(OnnxExecutor);
    return torchExecutorFactory({
      ...this.options.torch,
      format,
      logger: this.log,
      onFallback:
        this.options.onFallback ??
        ((reason) =>
          this.log.warn('EXECUTION PROVIDER FALLBACK: serving on CPU, not on the GPU; inference will be much slower', {
            reason,
          })),
      ...(this.options.warmUp === false ? { warmUp: false } : {}),
      ...(process ? { process: Promise.resolve(process) } : {}),
    });
  }

  private async initPredictor(model: Model): Promise<unknown> {
    if (!this.predictor.init) return undefined;
    try {
      return await this.predictor.init({
        model,
        config: this.config,
        log: requestLogger(this.log, 'init'),
        apiName: this.options.apiName,
      });
    } catch (error) {
      throw new StartupError(
        `the predictor's init() failed: ${asError(error).message}`,
        'Fix init() in the predictor',
        {
          cause: error,
        },
      );
    }
  }

  /** A custom predictor's `predictBatch` behind a batcher: each request's payload is decoded (and refused) alone first. */
  private requestBatcher(
    options: BatchingOptions,
    model: Model,
    state: unknown,
    predictBatch: NonNullable<DefinedPredictor<unknown>['predictBatch']>,
  ): Batcher<BatchItem, unknown> {
    return new Batcher<BatchItem, unknown>(options, {
      run: async (items) => {
        const results = await predictBatch(
          items.map((i) => i.request),
          {
            model,
            state,
            config: this.config,
            requestIds: items.map((i) => i.requestId),
            log: requestLogger(this.log, items.map((i) => i.requestId).join(',')),
          },
        );
        if (!Array.isArray(results) || results.length !== items.length) {
          throw new Error(
            `predictBatch returned ${Array.isArray(results) ? `${results.length} results` : 'no array'} for ${items.length} requests`,
          );
        }
        return results.map((r): Settled<unknown> =>
          r instanceof Error ? { ok: false, error: r } : { ok: true, value: r },
        );
      },
    });
  }
}

function round(timings: object): Record<string, number> {
  return Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}
