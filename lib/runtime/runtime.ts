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
  type ReloadOutcome,
  type RuntimeStatus,
  type StartupTimings,
} from './model-lifecycle.js';
import { ModelReloader } from './model-reloader.js';
import { RequestHandler, type HandleOptions, type RequestHandlingOptions } from './request-handler.js';
import type { StartupError } from './startup-error.js';
import type { Logger } from './telemetry/logger.js';
import { Telemetry, metricsModeFromEnv } from './telemetry/telemetry.js';

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
  private readonly reloader: ModelReloader | undefined;

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

  /** Why the last start failed, if it did. */
  get startupError(): StartupError | undefined {
    return this.lifecycle.startupError;
  }

  /** Loads model and predictor; concurrent calls share one start, and a failed start may be retried. */
  start(): Promise<StartupTimings> {
    return this.lifecycle.start().then((timings) => {
      this.reloader?.start();
      return timings;
    });
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
  async close(): Promise<void> {
    await this.reloader?.stop();
    await this.lifecycle.close();
  }

  /** `GET /`: API name, model format, inputs and outputs. */
  describe(): Record<string, unknown> {
    return this.requests.describe();
  }
}
