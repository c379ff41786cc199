/**
 * The runtime: the model's lifecycle (model-lifecycle.ts: fetch, load, init) and the request path
 * (request-handler.ts: route, admit, time out, dispatch) behind one object. Every transport (Lambda events,
 * node:http) goes through `handle`, so every backend behaves the same.
 */
import { ENV } from '../contract.js';
import type { DefinedPredictor } from '../predictor.js';
import type { InternalRequest, InternalResponse } from './codec/codec.js';
import { defaultPredictor } from './default-predictor.js';
import {
  ModelLifecycle,
  type ModelLifecycleOptions,
  type ReloadOutcome,
  type RuntimeStatus,
  type StartupTimings,
} from './model-lifecycle.js';
import { ModelReloader } from './model-reloader.js';
import { RequestHandler, type HandleOptions, type RequestHandlingOptions } from './request-handler.js';
import type { StartupError } from './startup-error.js';
import type { Logger } from './telemetry/logger.js';
import { Telemetry, metricsModeFromEnv } from './telemetry/telemetry.js';
import { tracingFromEnv } from './telemetry/tracing.js';
import type { XRayTracer } from './telemetry/xray-tracer.js';

export type { HandleOptions } from './request-handler.js';
export type { ReloadOutcome, RuntimeStatus, StartupTimings } from './model-lifecycle.js';

export interface RuntimeOptions extends ModelLifecycleOptions, RequestHandlingOptions {
  /** CloudWatch EMF metrics. @default from `env`: on on Lambda, ARCLIGHT_METRICS=on|off elsewhere */
  readonly telemetry?: Telemetry;
  /**
   * Live reload (containers and `arclight serve`): once ready, look under the versioned prefix this often for a new
   * version and swap to it. Only with a versioned `modelUri` and no pinned `modelVersion`. @default off
   */
  readonly pollIntervalMs?: number;
  /** Each live-reload look's outcome. @default none */
  readonly onReload?: (outcome: ReloadOutcome) => void;
}

export class Runtime {
  readonly log: Logger;
  readonly telemetry: Telemetry;
  private readonly lifecycle: ModelLifecycle;
  private readonly requests: RequestHandler;
  /** X-Ray, when ARCLIGHT_TRACING=on: its module is imported only then. */
  private tracer: XRayTracer | undefined;
  private readonly tracerLoading: Promise<void> | undefined;
  private coldStartTraced = false;
  private readonly reloader: ModelReloader | undefined;

  constructor(private readonly options: RuntimeOptions) {
    this.log = options.logger;
    if (tracingFromEnv(options.env ?? process.env)) {
      this.tracerLoading = import('./telemetry/xray-tracer.js').then(
        ({ XRayTracer }) => {
          this.tracer = new XRayTracer({ apiName: options.apiName, ...(options.env ? { env: options.env } : {}) });
        },
        (error: unknown) => this.log.warn('tracing is off: the X-Ray writer did not load', { error }),
      );
    }
    this.telemetry =
      options.telemetry ??
      new Telemetry({
        apiName: options.apiName,
        mode: metricsModeFromEnv(options.env ?? process.env),
        logger: options.logger,
        variant: (options.env ?? process.env)[ENV.variant] || undefined,
      });
    const predictor = options.predictor ?? (defaultPredictor as DefinedPredictor<unknown>);
    this.lifecycle = new ModelLifecycle(options, predictor, options.config ?? {}, this.telemetry);
    this.requests = new RequestHandler(
      this.lifecycle,
      {
        apiName: options.apiName,
        customPredictor: options.predictor !== undefined,
        ...(options.modelFormat ? { declaredFormat: options.modelFormat } : {}),
      },
      options,
      this.log,
      this.telemetry,
    );
    const interval = options.pollIntervalMs;
    if (interval !== undefined && interval > 0 && options.modelUri.endsWith('/') && !options.modelVersion) {
      this.reloader = new ModelReloader(this.lifecycle, interval, this.log, options.onReload);
    }
  }

  get status(): RuntimeStatus {
    return this.lifecycle.status;
  }

  get apiName(): string {
    return this.options.apiName;
  }

  /**
   * Whether no code but the runtime's own sees a request's body: the default predictor on an ONNX model. A transport
   * may then reuse a body's memory once its request is answered.
   */
  get bodiesStayInside(): boolean {
    return this.options.predictor === undefined && this.lifecycle.loaded?.format === 'onnx';
  }

  /** Why the last start failed, if it did. */
  get startupError(): StartupError | undefined {
    return this.lifecycle.startupError;
  }

  /** Loads model and predictor; concurrent calls share one start, and a failed start may be retried. */
  async start(): Promise<StartupTimings> {
    await this.tracerLoading;
    const timings = await this.lifecycle.start();
    if (this.tracer && !this.coldStartTraced) {
      this.coldStartTraced = true;
      this.tracer.coldStart(timings);
    }
    this.reloader?.start();
    return timings;
  }

  /** Looks for a new model version now and swaps to it (live reload does this on its own every poll interval). */
  reload(): Promise<ReloadOutcome> {
    return this.lifecycle.reload();
  }

  /** The model versions loaded now, lowest first (two only while a swap's old version finishes its requests). */
  get versions(): string[] {
    return this.lifecycle.versions;
  }

  /** The version new requests go to, once ready. */
  get version(): string | undefined {
    return this.lifecycle.loaded?.version;
  }

  /** Waits for the start under way, or retries a failed one after `retryAfterMs`. Never throws. */
  async ensureStarted(retryAfterMs?: number): Promise<void> {
    await this.lifecycle.ensureStarted(retryAfterMs);
    if (this.lifecycle.status === 'ready') this.reloader?.start();
  }

  /** Answers one request; never throws. */
  handle(request: InternalRequest, options?: HandleOptions): Promise<InternalResponse> {
    const tracer = this.tracer;
    // Inference is traced; health checks (every few seconds from the ALB or SageMaker) and metadata are not.
    if (!tracer || request.method !== 'POST') return this.requests.handle(request, options);
    return tracer.traceRequest(request.headers['x-amzn-trace-id'], () => this.requests.handle(request, options));
  }

  /** Inference requests accepted and not yet answered. */
  get inFlight(): number {
    return this.requests.inFlight;
  }

  /** Resolves once no inference request is in flight (a draining server waits on it). */
  drained(): Promise<void> {
    return this.requests.drained();
  }

  /** Releases the executor (the worker threads); call after `drained()`. */
  async close(): Promise<void> {
    await this.reloader?.stop();
    await this.lifecycle.close();
  }

  /** `GET /`: API name, model format, inputs and outputs. */
  describe(): Record<string, unknown> {
    return this.requests.describe();
  }
}
