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

  constructor(private readonly options: RuntimeOptions) {
    this.log = options.logger;
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
  start(): Promise<StartupTimings> {
    return this.lifecycle.start();
  }

  /** Waits for the start under way, or retries a failed one after `retryAfterMs`. Never throws. */
  ensureStarted(retryAfterMs?: number): Promise<void> {
    return this.lifecycle.ensureStarted(retryAfterMs);
  }

  /** Answers one request; never throws. */
  handle(request: InternalRequest, options?: HandleOptions): Promise<InternalResponse> {
    return this.requests.handle(request, options);
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
