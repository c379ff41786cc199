/**
 * The runtime: loads the model once (store → executor → predictor.init), then answers internal requests.
 * Every transport (Lambda events, node:http) goes through `handle`, so every backend behaves the same.
 */
import { DEFAULTS, REQUEST_ID_HEADER } from '../contract.js';
import {
  isHttpError,
  type Config,
  type HttpError,
  type Model,
  type ModelFormat,
  type PredictRequest,
  type DefinedPredictor,
} from '../predictor.js';
import { Batcher, BatchingExecutor, type BatchingOptions, type Settled } from './batcher.js';
import { decodePayload, encodeResult, type InternalRequest, type InternalResponse } from './codec.js';
import { defaultPredictor, infer } from './default-predictor.js';
import { httpError } from './http-errors.js';
import { clipText, stringifyJson } from './json.js';
import { asError, requestLogger, type Logger } from './logger.js';
import type { Executor, ExecutorFactory } from './executor.js';
import { createModel } from './model.js';
import { apiDocs } from './api-docs.js';
import { checkResponse, validatedRequest } from './predictor-schemas.js';
import { detectModelFormat } from '../model-format.js';
import { loadModelBytes } from './model-store.js';
import { OnnxExecutor, importOnnxRuntime } from './onnx-executor.js';
import { matchRoute, type Route } from './routes.js';
import { requestIdFrom } from './request-id.js';
import { StartupError } from './startup-error.js';
import { Telemetry, metricsModeFromEnv } from './telemetry.js';
import { torchExecutorFactory, type TorchModelOptions } from './torch-executor.js';
import { TorchProcess } from './torch-process.js';

export interface RuntimeOptions {
  /** The API's name: the OIP model name and the log service name. */
  readonly apiName: string;
  /** `s3://bucket/key` or a local path. */
  readonly modelUri: string;
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
  /** A request still running after this answers 504. @default 28 s */
  readonly requestTimeoutMs?: number;
  readonly logger: Logger;
  /** Environment for the S3 client. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
  /** Log a failed start (with its cause's stack); off where the caller reports the failure itself (the CLI). @default true */
  readonly logStartupFailure?: boolean;
  /** CloudWatch EMF metrics. @default from `env`: on on Lambda, ARCLIGHT_METRICS=on|off elsewhere */
  readonly telemetry?: Telemetry;
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
  /** Inference requests accepted at once (running and queued); past it 503 `overloaded`. @default unbounded */
  readonly maxPending?: number;
  /** The model's format. @default read from the model file (`detectModelFormat`) */
  readonly modelFormat?: ModelFormat;
  /** Torch models: the checkpoint's module and class, declared inputs/outputs, the interpreter. @default none */
  readonly torch?: TorchModelOptions;
  /** Called once when cuda was asked for and the model runs on cpu instead. @default a warning in the log */
  readonly onFallback?: (reason: string) => void;
  /** The playground page at `GET /docs`. @default false */
  readonly docs?: boolean;
  /** Check results against the predictor's declared response schema (dev and test mode). @default false */
  readonly checkResponses?: boolean;
}

export type RuntimeStatus = 'starting' | 'ready' | 'failed';

/** Per-call overrides from the transport. */
export interface HandleOptions {
  /** The transport's own request id (API Gateway's), else the client's `x-request-id` or a fresh one. */
  readonly requestId?: string;
  /** Time left for this request, when the transport has a deadline of its own. */
  readonly timeoutMs?: number;
}

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
  readonly sessionMs: number;
  /** The warm-up run on zero inputs; absent when warm-up is off or the model refused such inputs. */
  readonly firstRunMs?: number;
  readonly initMs: number;
  /** From the start of the load to ready. */
  readonly totalMs: number;
  /** From the process's start to ready. */
  readonly processMs: number;
}

interface Loaded {
  readonly format: ModelFormat;
  readonly model: Model;
  readonly state: unknown;
  readonly executor: Executor;
  /** A custom predictor's `predictBatch`, behind the batcher. */
  readonly batcher?: Batcher<BatchItem, unknown>;
}

interface BatchItem {
  readonly request: PredictRequest;
  readonly requestId: string;
}

/** The OIP metadata's `platform` of each format (Triton's names where it has one). */
const PLATFORM: Readonly<Record<ModelFormat, string>> = {
  onnx: 'onnxruntime_onnx',
  torchscript: 'pytorch_libtorch',
  'lightning-checkpoint': 'pytorch_lightning_checkpoint',
};

export class Runtime {
  private loaded: Loaded | undefined;
  private failure: StartupError | undefined;
  private failedAt = 0;
  private starting: Promise<StartupTimings> | undefined;
  private pending = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly predictor: DefinedPredictor<unknown>;
  private readonly config: Config;
  private readonly requestTimeoutMs: number;
  readonly log: Logger;
  readonly telemetry: Telemetry;

  constructor(private readonly options: RuntimeOptions) {
    this.predictor = options.predictor ?? (defaultPredictor as DefinedPredictor<unknown>);
    this.config = options.config ?? {};
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
    this.log = options.logger;
    this.telemetry =
      options.telemetry ??
      new Telemetry({
        apiName: options.apiName,
        mode: metricsModeFromEnv(options.env ?? process.env),
        logger: options.logger,
      });
  }

  get status(): RuntimeStatus {
    return this.loaded ? 'ready' : this.failure ? 'failed' : 'starting';
  }

  get apiName(): string {
    return this.options.apiName;
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
    if (this.loaded) return;
    if (this.failure && !this.starting && performance.now() - this.failedAt < retryAfterMs) return;
    await this.start().catch(() => undefined);
  }

  private async load(): Promise<StartupTimings> {
    const t0 = performance.now();
    // The fetch goes out first, then onnxruntime-node loads while the bytes arrive.
    const fetching = loadModelBytes(this.options.modelUri, {
      expectedSha256: this.options.modelSha256,
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
    const format = declared ?? detectModelFormat(fetched.path ?? fetched.bytes);
    const { importMs, process } = await (format === declared ? importing : this.importEngine(format));
    const t2 = performance.now();
    const executor = await this.executorFactory(format, process)(fetched.path ?? fetched.bytes, this.options.modelUri, {
      intraOpThreads: this.options.intraOpThreads,
      executionProviders: this.options.executionProviders,
    });
    const t3 = performance.now();
    const firstRunMs = this.options.warmUp === false ? undefined : await executor.warmUp?.();
    const t4 = performance.now();
    const batching = this.options.batching;
    const batchingOn = batching !== undefined && batching.maxBatchSize > 1;
    // The default predictor's runs batch along the first axis (and move their fresh tensors to the worker when alone);
    // a custom predictor's only through predictBatch.
    const model = createModel(
      this.options.apiName,
      format,
      batching !== undefined && !this.options.predictor ? new BatchingExecutor(executor, batching) : executor,
    );
    let state: unknown;
    try {
      state = await this.initPredictor(model);
    } catch (error) {
      await executor.release?.().catch(() => undefined);
      throw error;
    }
    const t5 = performance.now();
    const predictBatch = this.predictor.predictBatch;
    this.loaded = {
      format,
      model,
      state,
      executor,
      ...(batchingOn && predictBatch
        ? { batcher: this.requestBatcher(batching, model, state, predictBatch.bind(this.predictor)) }
        : {}),
    };
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
      sessionMs: t3 - t2,
      ...(firstRunMs === undefined ? {} : { firstRunMs }),
      initMs: t5 - t4,
      totalMs: t5 - t0,
      processMs: t5,
    };
    this.log.info('model ready', { model: this.options.modelUri, sha256: fetched.sha256, ...round(timings) });
    this.telemetry.coldStart(timings);
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
        apiName: this.apiName,
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

  /** Answers one request; never throws. */
  async handle(request: InternalRequest, options: HandleOptions = {}): Promise<InternalResponse> {
    const started = performance.now();
    const requestId = options.requestId ?? requestIdFrom(request.headers[REQUEST_ID_HEADER]);
    let route: Route | undefined;
    let response: InternalResponse;
    try {
      route = matchRoute(request.method, request.path);
      response = await this.dispatch(route, request, requestId, options.timeoutMs ?? this.requestTimeoutMs);
    } catch (error) {
      response = this.errorResponse(error, requestId, route);
    }
    response.headers[REQUEST_ID_HEADER] = requestId;
    const latencyMs = performance.now() - started;
    this.log.info('request', {
      requestId,
      method: request.method,
      route: route?.kind ?? 'none',
      path: request.path,
      status: response.status,
      latencyMs: Math.round(latencyMs * 1000) / 1000,
    });
    this.telemetry.request(latencyMs, response.status);
    return response;
  }

  private async dispatch(
    route: Route,
    request: InternalRequest,
    requestId: string,
    timeoutMs: number,
  ): Promise<InternalResponse> {
    switch (route.kind) {
      case 'live':
        return json(200, { live: true });
      case 'ready':
      case 'ping':
        this.requireReady();
        return json(200, { ready: true });
      case 'server':
        return json(200, { name: 'arclight', extensions: ['binary_tensor_data'] });
      case 'metadata':
        return json(200, this.describe());
      case 'model':
        return json(200, this.modelMetadata(this.requireModel(route.model)));
      case 'model-ready':
        this.requireModel(route.model);
        return json(200, { name: route.model, ready: true });
      case 'infer': {
        const model = this.requireModel(route.model);
        return this.admit(() => this.withTimeout(timeoutMs, () => infer(model, request).then(encodeResult)));
      }
      case 'openapi':
      case 'docs': {
        const { model } = this.requireReady();
        return apiDocs(route.kind, {
          model,
          predictor: this.options.predictor,
          playground: this.options.docs === true,
        });
      }
      case 'predict': {
        // Without user code, POST / is OIP inference: straight to it, with the transport's text body intact.
        if (!this.options.predictor) {
          const { model } = this.requireReady();
          return this.admit(() => this.withTimeout(timeoutMs, () => infer(model, request).then(encodeResult)));
        }
        this.requireReady();
        return this.admit(() => this.predict(request, requestId, timeoutMs));
      }
    }
  }

  /** Inference requests accepted and not yet answered. */
  get inFlight(): number {
    return this.pending;
  }

  /** Resolves once no inference request is in flight (a draining server waits on it). */
  drained(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Releases the executor (the worker threads); call after `drained()`. */
  async close(): Promise<void> {
    await this.loaded?.executor.release?.();
  }

  /** Admission control: past `maxPending` requests in flight, 503 `overloaded` with Retry-After, never a queue without end. */
  private async admit(work: () => Promise<InternalResponse>): Promise<InternalResponse> {
    const limit = this.options.maxPending;
    if (limit !== undefined && this.pending >= limit) {
      this.telemetry.event('Overloaded');
      throw httpError('overloaded', `the server is at capacity (${limit} requests in flight); retry shortly`, {
        'retry-after': String(DEFAULTS.retryAfterSeconds),
      });
    }
    this.pending++;
    try {
      return await work();
    } finally {
      if (--this.pending === 0) for (const wake of this.idleWaiters.splice(0)) wake();
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

  private predict(request: InternalRequest, requestId: string, timeoutMs: number): Promise<InternalResponse> {
    const { model, state, batcher } = this.requireReady();
    if (batcher) {
      const decoded = predictRequest(request);
      return this.withTimeout(timeoutMs, async () => {
        // A payload that cannot be decoded (or breaks the declared schema) fails here, alone, before it could join a batch.
        void decoded.payload;
        const result = await batcher.submit({ request: await validatedRequest(this.predictor, decoded), requestId });
        if (this.options.checkResponses) await checkResponse(this.predictor, result);
        return encodeResult(result);
      });
    }
    const log = this.log;
    const config = this.config;
    return this.withTimeout(timeoutMs, async (deadline) => {
      const result = await this.predictor.predict(await validatedRequest(this.predictor, predictRequest(request)), {
        model,
        state,
        config,
        requestId,
        // Both made on first use: most predictors never log per request or watch the deadline.
        get log() {
          return requestLogger(log, requestId);
        },
        get signal() {
          return deadline.signal;
        },
      });
      if (this.options.checkResponses) await checkResponse(this.predictor, result);
      return encodeResult(result);
    });
  }

  /** Runs work against a deadline; past it the answer is 504 and the work is told to stop through its signal. */
  private withTimeout<T>(timeoutMs: number, work: (deadline: Deadline) => Promise<T>): Promise<T> {
    const deadline = new Deadline();
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          const error = httpError('predictor_timeout', `the request did not finish within ${timeoutMs} ms`);
          deadline.expire(error);
          reject(error);
        },
        Math.max(0, timeoutMs),
      );
      const settle = (finish: () => void): void => {
        clearTimeout(timer);
        finish();
      };
      Promise.resolve()
        .then(() => work(deadline))
        .then(
          (value) => settle(() => resolve(value)),
          (error: unknown) => settle(() => reject(error)),
        );
    });
  }

  private requireReady(): Loaded {
    if (this.loaded) return this.loaded;
    const retryAfter = { 'retry-after': String(DEFAULTS.retryAfterSeconds) };
    if (this.failure)
      throw httpError('not_ready', 'the model failed to load; the operator can see why in the logs', retryAfter);
    throw httpError('not_ready', 'the model is still loading', retryAfter);
  }

  private requireModel(name: string): Model {
    const { model } = this.requireReady();
    if (name !== model.name)
      throw httpError('model_not_found', `no model named '${clipText(name)}'; this API serves '${model.name}'`);
    return model;
  }

  /** `GET /`: API name, model format, inputs and outputs. */
  describe(): Record<string, unknown> {
    const model = this.loaded?.model;
    return {
      name: this.apiName,
      format: this.loaded?.format ?? this.options.modelFormat ?? null,
      ready: model !== undefined,
      predictor: this.options.predictor ? 'custom' : 'default',
      inputs: model?.inputs ?? [],
      outputs: model?.outputs ?? [],
    };
  }

  private modelMetadata(model: Model): Record<string, unknown> {
    const strip = ({ name, datatype, shape }: Model['inputs'][number]) => ({ name, datatype, shape });
    return {
      name: model.name,
      platform: PLATFORM[model.format],
      inputs: model.inputs.map(strip),
      outputs: model.outputs.map(strip),
    };
  }

  private errorResponse(error: unknown, requestId: string, route: Route | undefined): InternalResponse {
    if (isHttpErrorSafely(error)) {
      // 503 (loading, overloaded) is an expected state that the request line already records: no error record for it.
      if (error.status >= 500 && error.status !== 503)
        this.log.error('request failed', { requestId, route: route?.kind, code: error.code, error });
      return json(
        error.status,
        { error: { code: error.code, message: error.message, requestId } },
        { ...error.headers },
      );
    }
    this.log.error('predictor failed', { requestId, route: route?.kind, error: asError(error) });
    return json(500, {
      error: {
        code: 'predictor_error',
        message: `the predictor failed; the logs carry the details under request id ${requestId}`,
        requestId,
      },
    });
  }
}

/** A request's deadline; its AbortSignal is made only when someone asks for it. */
class Deadline {
  private controller: AbortController | undefined;
  private reason: unknown;
  private expired = false;

  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.expired) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  expire(reason: unknown): void {
    this.expired = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

function predictRequest(request: InternalRequest): PredictRequest {
  let payload: { value: unknown } | undefined;
  return {
    get payload() {
      payload ??= { value: decodePayload(request) };
      return payload.value;
    },
    query: request.query,
    headers: request.headers,
    method: request.method,
    path: request.path,
    get body() {
      return request.body;
    },
  };
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): InternalResponse {
  return {
    status,
    headers: { ...headers, 'content-type': 'application/json' },
    body: Buffer.from(stringifyJson(value)),
  };
}

/** Whether a thrown value is an HttpError; a value that throws when looked at (a hostile Proxy) is not. */
function isHttpErrorSafely(error: unknown): error is HttpError {
  try {
    return isHttpError(error);
  } catch {
    return false;
  }
}

function round(timings: object): Record<string, number> {
  return Object.fromEntries(Object.entries(timings).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}
