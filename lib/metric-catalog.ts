/**
 * The metrics the runtime writes (CloudWatch EMF, namespace `Arclight`) and the constructs chart and alarm on: one
 * definition for both sides, so a dashboard can never name a metric the runtime does not emit. Imports nothing, so
 * the runtime (bundled into images) and the constructs (synth) both take it.
 */

/** The CloudWatch namespace of every Arclight runtime metric. */
export const METRICS_NAMESPACE = 'Arclight';

/** The dimension every metric carries: the API's name (`ARCLIGHT_API_NAME`). */
export const API_NAME_DIMENSION = 'apiName';

/**
 * The second dimension of an API with variants (Lambda and ECS): every metric is written twice, under `apiName`
 * alone (the API's totals, which the alarms read) and under `apiName` and `variant` (`ARCLIGHT_VARIANT`).
 */
export const VARIANT_DIMENSION = 'variant';

/** CloudWatch units the runtime uses (the strings of CloudWatch's `StandardUnit`, as Powertools and CDK spell them). */
export type MetricUnitName = 'Count' | 'Milliseconds' | 'Bytes' | 'Megabytes/Second';

/** When the runtime writes a metric. */
export type MetricEmission =
  /** Once per cold start (model ready), in one EMF line. */
  | 'coldStart'
  /** Per answered request, buffered and flushed. */
  | 'request'
  /** Once per event worth an alarm, written at once. */
  | 'event'
  /** Per copy of a request to the API's shadow variant, counted and written with the request metrics. */
  | 'shadow';

/** One metric of the catalog. */
export interface MetricDefinition {
  /** The CloudWatch metric name. */
  readonly name: string;
  readonly unit: MetricUnitName;
  readonly emission: MetricEmission;
  /** Written only when the figure is known (e.g. S3 fetch parts for an S3 model). */
  readonly optional?: boolean;
  /** What it measures, for dashboards and docs. */
  readonly description: string;
}

function metric(
  name: string,
  unit: MetricUnitName,
  emission: MetricEmission,
  description: string,
  optional = false,
): MetricDefinition {
  return { name, unit, emission, description, ...(optional ? { optional } : {}) };
}

/** Every metric the Arclight runtime emits, by the key code refers to it with. */
export const METRICS = {
  coldStart: metric('ColdStart', 'Count', 'coldStart', 'Cold starts (model loads that reached ready)'),
  runtimeImportTime: metric('RuntimeImportTime', 'Milliseconds', 'coldStart', 'Importing the inference engine'),
  modelFetchTime: metric('ModelFetchTime', 'Milliseconds', 'coldStart', 'Fetching the model bytes (S3 or disk)'),
  modelBytes: metric('ModelBytes', 'Bytes', 'coldStart', 'Size of the model fetched'),
  modelFetchThroughput: metric('ModelFetchThroughput', 'Megabytes/Second', 'coldStart', 'Model fetch throughput'),
  modelFetchParts: metric('ModelFetchParts', 'Count', 'coldStart', 'Byte-range parts of the S3 fetch', true),
  modelFetchRetries: metric('ModelFetchRetries', 'Count', 'coldStart', 'Retried parts of the S3 fetch', true),
  modelVerifyTime: metric('ModelVerifyTime', 'Milliseconds', 'coldStart', 'sha256 verification of the model', true),
  sessionCreateTime: metric('SessionCreateTime', 'Milliseconds', 'coldStart', 'Creating the inference session'),
  firstRunTime: metric('FirstRunTime', 'Milliseconds', 'coldStart', 'The warm-up run', true),
  predictorInitTime: metric('PredictorInitTime', 'Milliseconds', 'coldStart', "The predictor's init()"),
  coldStartTime: metric('ColdStartTime', 'Milliseconds', 'coldStart', 'From the start of the load to ready'),
  latency: metric('Latency', 'Milliseconds', 'request', 'Request latency in the runtime; its SampleCount is requests'),
  batchSize: metric('BatchSize', 'Count', 'request', 'Requests run together in one batch'),
  requests2xx: metric('Requests2xx', 'Count', 'request', 'Requests answered 2xx'),
  requests3xx: metric('Requests3xx', 'Count', 'request', 'Requests answered 3xx'),
  requests4xx: metric('Requests4xx', 'Count', 'request', 'Requests answered 4xx'),
  requests5xx: metric('Requests5xx', 'Count', 'request', 'Requests answered 5xx'),
  overloaded: metric('Overloaded', 'Count', 'event', 'Requests refused 503 overloaded (admission control)'),
  executionProviderFallback: metric(
    'ExecutionProviderFallback',
    'Count',
    'event',
    'A GPU execution provider failed and the session fell back to CPU',
  ),
  modelLoadFailure: metric('ModelLoadFailure', 'Count', 'event', 'A model load (fetch, verify, session, init) failed'),
  shadowCopies: metric('ShadowCopies', 'Count', 'shadow', 'Requests copied to the shadow variant'),
  shadowCopiesDropped: metric(
    'ShadowCopiesDropped',
    'Count',
    'shadow',
    'Copies for the shadow dropped (its queue full, or too large to send), never delaying the answer',
  ),
  shadowCopyFailures: metric('ShadowCopyFailures', 'Count', 'shadow', 'Copies the shadow failed or did not answer'),
  asyncNotificationFailure: metric(
    'AsyncNotificationFailure',
    'Count',
    'event',
    "An async job's completion notification (SNS publish, or webhook after its retries) was given up",
  ),
} as const satisfies Record<string, MetricDefinition>;

/** The key of a catalog metric. */
export type MetricKey = keyof typeof METRICS;

/** The catalog's metrics written per request by status class, 2xx..5xx. */
export const STATUS_CLASS_METRICS = [
  METRICS.requests2xx,
  METRICS.requests3xx,
  METRICS.requests4xx,
  METRICS.requests5xx,
] as const;

/** The events the runtime counts (`Telemetry.event`). */
export type MetricEventName =
  | typeof METRICS.overloaded.name
  | typeof METRICS.executionProviderFallback.name
  | typeof METRICS.modelLoadFailure.name
  | typeof METRICS.asyncNotificationFailure.name;

/** What became of one copy for the shadow. */
export type ShadowOutcome = 'sent' | 'dropped' | 'failed';

/** The catalog's metric counting each shadow outcome. */
export const SHADOW_METRICS: Readonly<Record<ShadowOutcome, MetricDefinition>> = {
  sent: METRICS.shadowCopies,
  dropped: METRICS.shadowCopiesDropped,
  failed: METRICS.shadowCopyFailures,
};

/** Every metric of the catalog, as a list. */
export function allMetrics(): readonly MetricDefinition[] {
  return Object.values(METRICS);
}
