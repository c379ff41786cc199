/**
 * Telemetry: CloudWatch metrics as EMF (Embedded Metric Format) lines on stdout, written by Powertools for AWS Lambda
 * (`@aws-lambda-powertools/metrics`), namespace `Arclight`, dimension `apiName`. Every name, unit and dimension comes
 * from lib/metric-catalog.ts, which the constructs' dashboards and alarms read too.
 *
 * - Per cold start: one EMF line with the breakdown (runtime import, fetch, bytes, MB/s, parts, retries, session
 *   create, first run, predictor init, total), written as soon as the model is ready.
 * - Per request: latency (its SampleCount is the request count), a count per status class and the batch size. The hot path only appends to arrays; the
 *   values become EMF at a flush: after each invocation on Lambda (Powertools' pattern: the sandbox may freeze
 *   right after), every `flushIntervalMs` or 99 requests in a long-running server.
 *
 * On by default on Lambda (AWS_LAMBDA_FUNCTION_NAME is set), off elsewhere unless ARCLIGHT_METRICS=on, so
 * `arclight serve` does not interleave EMF with its logs. ARCLIGHT_METRICS=off turns it off on Lambda too.
 */
import { Metrics } from '@aws-lambda-powertools/metrics';
import { ENV } from '../../contract.js';
import {
  API_NAME_DIMENSION,
  METRICS,
  METRICS_NAMESPACE,
  SHADOW_METRICS,
  STATUS_CLASS_METRICS,
  VARIANT_DIMENSION,
  type MetricDefinition,
  type MetricEventName,
  type ShadowOutcome,
} from '../../metric-catalog.js';
import type { Logger } from './logger.js';

export { METRICS_NAMESPACE };

/** `invocation`: flush after every Lambda invocation; `interval`: flush periodically; `off`: nothing. */
export type MetricsMode = 'off' | 'invocation' | 'interval';

/** Values per metric in one EMF line: Powertools writes a line by itself when a metric reaches 100. */
const LINE_VALUES = 99;

/** The cold start's phases; optional figures are left out of the metrics when unknown. */
export interface ColdStartBreakdown {
  /** Importing onnxruntime-node (overlapped with the fetch). */
  readonly importMs: number;
  readonly fetchMs: number;
  readonly modelBytes: number;
  readonly mbPerS: number;
  readonly parts?: number;
  readonly retries?: number;
  readonly verifyMs?: number;
  readonly sessionMs: number;
  readonly firstRunMs?: number;
  readonly initMs: number;
  /** From the start of the load to ready. */
  readonly totalMs: number;
}

export interface TelemetryOptions {
  readonly apiName: string;
  /** @default from the environment: see `metricsModeFromEnv` */
  readonly mode?: MetricsMode;
  /** Interval mode: how often buffered request metrics are written. @default 60 s */
  readonly flushIntervalMs?: number;
  /** Interval mode: write as soon as this many requests are buffered. @default 99 (one EMF line) */
  readonly maxBufferedRequests?: number;
  /** Where Powertools' own warnings go. @default stderr */
  readonly logger?: Logger;
  /**
   * The variant this process serves: every metric is written under `apiName` and again under `apiName` and
   * `variant`. @default `ARCLIGHT_VARIANT`, else none
   */
  readonly variant?: string;
}

/** ARCLIGHT_METRICS=on|off; unset: on (per invocation) on Lambda, off elsewhere. */
export function metricsModeFromEnv(env: NodeJS.ProcessEnv = process.env): MetricsMode {
  const setting = env[ENV.metrics]?.trim().toLowerCase();
  const onLambda = Boolean(env['AWS_LAMBDA_FUNCTION_NAME']);
  if (setting === 'off') return 'off';
  if (setting === 'on' || onLambda) return onLambda ? 'invocation' : 'interval';
  return 'off';
}

export class Telemetry {
  readonly mode: MetricsMode;
  readonly enabled: boolean;
  private readonly metrics: Metrics | undefined;
  private readonly maxBuffered: number;
  private latencies: number[] = [];
  private batchSizes: number[] = [];
  /** Requests by status class: index 1..5 for 1xx..5xx. */
  private classes = [0, 0, 0, 0, 0, 0];
  private shadowCounts: Record<ShadowOutcome, number> = { sent: 0, dropped: 0, failed: 0 };
  private timer: NodeJS.Timeout | undefined;
  /** The variant dimension's value, if this process serves one of several variants. */
  readonly variant: string | undefined;

  constructor(options: TelemetryOptions) {
    this.mode = options.mode ?? metricsModeFromEnv();
    this.enabled = this.mode !== 'off';
    this.maxBuffered = options.maxBufferedRequests ?? LINE_VALUES;
    this.variant = options.variant ?? (process.env[ENV.variant] || undefined);
    if (!this.enabled) return;
    const log = options.logger;
    this.metrics = new Metrics({
      namespace: METRICS_NAMESPACE,
      serviceName: options.apiName,
      ...(log
        ? {
            logger: {
              debug: (...args: unknown[]) => log.debug(args.map(String).join(' ')),
              info: (...args: unknown[]) => log.info(args.map(String).join(' ')),
              warn: (...args: unknown[]) => log.warn(args.map(String).join(' ')),
              error: (...args: unknown[]) => log.error(args.map(String).join(' ')),
            },
          }
        : {}),
    });
    // Powertools adds a `service` dimension by default; the API name is the one dimension wanted.
    this.metrics.clearDefaultDimensions();
    this.metrics.setDefaultDimensions({ [API_NAME_DIMENSION]: options.apiName });
    if (this.mode === 'interval') {
      this.timer = setInterval(() => this.flush(), options.flushIntervalMs ?? 60_000);
      this.timer.unref();
    }
  }

  /** Writes the cold start's metrics at once, in one EMF line. */
  coldStart(breakdown: ColdStartBreakdown): void {
    const m = this.metrics;
    if (!m) return;
    const add = (definition: MetricDefinition, value: number | undefined): void => {
      if (value !== undefined) m.addMetric(definition.name, definition.unit, value);
    };
    add(METRICS.coldStart, 1);
    add(METRICS.runtimeImportTime, breakdown.importMs);
    add(METRICS.modelFetchTime, breakdown.fetchMs);
    add(METRICS.modelBytes, breakdown.modelBytes);
    add(METRICS.modelFetchThroughput, breakdown.mbPerS);
    add(METRICS.modelFetchParts, breakdown.parts);
    add(METRICS.modelFetchRetries, breakdown.retries);
    add(METRICS.modelVerifyTime, breakdown.verifyMs);
    add(METRICS.sessionCreateTime, breakdown.sessionMs);
    add(METRICS.firstRunTime, breakdown.firstRunMs);
    add(METRICS.predictorInitTime, breakdown.initMs);
    add(METRICS.coldStartTime, breakdown.totalMs);
    this.publish(m);
  }

  /** An event worth an alarm (e.g. `ExecutionProviderFallback`), counted and written at once. */
  event(name: MetricEventName): void {
    const m = this.metrics;
    if (!m) return;
    m.addMetric(name, 'Count', 1);
    this.publish(m);
  }

  /** One answered request (the hot path: appends only). */
  request(latencyMs: number, status: number, batchSize = 1): void {
    if (!this.enabled) return;
    this.latencies.push(latencyMs);
    this.batchSizes.push(batchSize);
    this.classes[Math.min(5, Math.max(1, (status / 100) | 0))]!++;
    // Also in invocation mode: a runtime that is told it runs on Lambda but serves HTTP must not buffer forever.
    if (this.latencies.length >= this.maxBuffered) this.flush();
  }

  /** What became of one copy for the shadow variant (counted; written with the request metrics). */
  shadow(outcome: ShadowOutcome): void {
    if (!this.enabled) return;
    this.shadowCounts[outcome]++;
  }

  /** After a Lambda invocation: writes what it recorded (on Lambda only). */
  afterInvocation(): void {
    if (this.mode === 'invocation' && (this.latencies.length > 0 || this.shadowBuffered())) this.flush();
  }

  /** Writes buffered request metrics now: one EMF line per 99 requests (Powertools' limit is 100 values a metric). */
  flush(): void {
    const m = this.metrics;
    if (!m || (this.latencies.length === 0 && !this.shadowBuffered())) return;
    this.flushShadow(m);
    if (this.latencies.length === 0) return;
    const { latencies, batchSizes, classes } = this;
    this.latencies = [];
    this.batchSizes = [];
    this.classes = [0, 0, 0, 0, 0, 0];
    for (let start = 0; start < latencies.length; start += LINE_VALUES) {
      // The request count is Latency's SampleCount in CloudWatch; only the split by status class is written.
      if (start === 0)
        for (const [i, definition] of STATUS_CLASS_METRICS.entries()) {
          const requests = classes[i + 2]!;
          if (requests > 0) m.addMetric(definition.name, definition.unit, requests);
        }
      const end = Math.min(latencies.length, start + LINE_VALUES);
      const { latency, batchSize } = METRICS;
      for (let i = start; i < end; i++) {
        m.addMetric(latency.name, latency.unit, latencies[i]!);
        m.addMetric(batchSize.name, batchSize.unit, batchSizes[i]!);
      }
      this.publish(m);
    }
  }

  private shadowBuffered(): boolean {
    const { sent, dropped, failed } = this.shadowCounts;
    return sent + dropped + failed > 0;
  }

  /** The shadow's counts, in a line of their own. */
  private flushShadow(m: Metrics): void {
    if (!this.shadowBuffered()) return;
    for (const [outcome, definition] of Object.entries(SHADOW_METRICS) as [ShadowOutcome, MetricDefinition][]) {
      const count = this.shadowCounts[outcome];
      if (count > 0) m.addMetric(definition.name, definition.unit, count);
    }
    this.shadowCounts = { sent: 0, dropped: 0, failed: 0 };
    this.publish(m);
  }

  /** Writes what is stored: under `apiName`, and under `apiName` and `variant` too when this process is a variant. */
  private publish(m: Metrics): void {
    if (this.variant) {
      m.addDimensions({});
      m.addDimensions({ [VARIANT_DIMENSION]: this.variant });
    }
    m.publishStoredMetrics();
  }

  /** Stops the interval timer and writes what is buffered. */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.flush();
  }
}

/** A Telemetry that records nothing. */
export const NO_TELEMETRY = new Telemetry({ apiName: 'none', mode: 'off' });
