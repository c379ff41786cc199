/**
 * The runtime: the model's lifecycle (model-lifecycle.ts: fetch, load, init) and the request path
 * (request-handler.ts: route, admit, time out, dispatch) behind one object. Every transport (Lambda events,
 * node:http) goes through `handle`, so every backend behaves the same.
 */
import type { DefinedPredictor } from '../predictor.js';
import type { InternalRequest, InternalResponse } from './codec/codec.js';
import { defaultPredictor } from './default-predictor.js';
import {
  ModelLifecycle,
  type ModelLifecycleOptions,
  type RuntimeStatus,
  type StartupTimings,
} from './model-lifecycle.js';
import { RequestHandler, type HandleOptions, type RequestHandlingOptions } from './request-handler.js';
import type { StartupError } from './startup-error.js';
import type { Logger } from './telemetry/logger.js';
import { Telemetry, metricsModeFromEnv } from './telemetry/telemetry.js';
import { tracingFromEnv } from './telemetry/tracing.js';
import type { XRayTracer } from './telemetry/xray-tracer.js';

export type { HandleOptions } from './request-handler.js';
export type { RuntimeStatus, StartupTimings } from './model-lifecycle.js';

export interface RuntimeOptions extends ModelLifecycleOptions, RequestHandlingOptions {
  /** CloudWatch EMF metrics. @default from `env`: on on Lambda, ARCLIGHT_METRICS=on|off elsewhere */
  readonly telemetry?: Telemetry;
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
  }

  get status(): RuntimeStatus {
    return this.lifecycle.status;
  }

  get apiName(): string {
    return this.options.apiName;
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
    return timings;
  }

  /** Waits for the start under way, or retries a failed one after `retryAfterMs`. Never throws. */
  ensureStarted(retryAfterMs?: number): Promise<void> {
    return this.lifecycle.ensureStarted(retryAfterMs);
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
  close(): Promise<void> {
    return this.lifecycle.close();
  }

  /** `GET /`: API name, model format, inputs and outputs. */
  describe(): Record<string, unknown> {
    return this.requests.describe();
  }
}
