/**
 * What the RealtimeApi backends share: the context they are built from and what they hand back, the validation and
 * warnings common to every compute, the HTTP API's routes, stage and access log format, the environment of the
 * container server (the same contract as the Lambda function's), and the acknowledgments that follow from the auth.
 */
import { Annotations, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AccessLogFormat, type RestApi } from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { DEFAULTS, ENV } from '../../contract.js';
import type { Config, ModelFormat } from '../../predictor.js';
import type { ApiAuth } from '../api-auth.js';
import {
  monitoringProblems,
  type ApiGatewayMetrics,
  type ApiMonitoring,
  type MonitoringProps,
} from '../operations/api-monitoring.js';
import { dataCaptureProblems, type DataCaptureProps } from '../operations/data-capture.js';
import { APP_DIR, MODEL_MODULE_DIR } from '../images/container-image-context.js';
import type { NodeArch } from '../images/lambda-image-context.js';
import { modelEnvironment, type ModelSource, type ModelSourceConfig } from '../model-source.js';
import type { PredictorConfig } from '../predictor.js';
import type { Rollout } from '../operations/rollout.js';
import type { VariantProps } from '../operations/variant.js';
import type { VariantMetadata } from '../../variant-split.js';

/** Stage throttling. */
export interface ThrottleProps {
  /** Steady-state requests per second. @default 100 */
  readonly rateLimit?: number;
  /** Burst of requests above the rate. @default 200 */
  readonly burstLimit?: number;
}

/** Dynamic batching in the container server (SageMaker and ECS computes; Lambda serves one request at a time). */
export interface BatchingProps {
  /** The most requests run as one batch. @default the container server's default */
  readonly maxBatchSize?: number;
  /** How long the first request of a batch waits for others. @default the container server's default */
  readonly maxBatchDelay?: Duration;
}

/** What every backend gets from the RealtimeApi: its props, defaults applied. */
export interface BackendContext {
  readonly apiName: string;
  readonly model: ModelSource;
  readonly predictor: PredictorConfig;
  readonly auth: ApiAuth;
  readonly config: Config;
  readonly throttle?: ThrottleProps;
  readonly batching?: BatchingProps;
  /** The playground page at `GET /docs`. */
  readonly docs: boolean;
  readonly logRetention: logs.RetentionDays;
  /** How a new version takes traffic. @default the backend's: a canary on Lambda and SageMaker, rolling on ECS */
  readonly rollout?: Rollout;
  /** Dashboard and default alarms. */
  readonly monitoring: MonitoringProps;
  /** X-Ray tracing of the API stage and the runtime's phases. */
  readonly tracing: boolean;
  /** More models behind the API: weighted production variants, a shadow. */
  readonly variants: readonly VariantProps[];
  /** Sampled requests and responses to S3. @default off */
  readonly dataCapture?: DataCaptureProps;
}

/** What a compute's props can be checked against: the model's size and format, known once the source is bound. */
export interface ComputeChecks {
  /** Every problem with the props, given the model's size (and format) when known. */
  problems(modelBytes: number | undefined, format?: ModelFormat): string[];
}

/** What a backend built: the API in front and, on Lambda, the function behind it. */
export interface ComputeBackend {
  /** The HTTP API (Lambda and ECS computes) or the REST API (SageMaker). */
  readonly api: apigwv2.HttpApi | RestApi;
  /** The API's id, as `execute-api` ARNs name it. */
  readonly apiId: string;
  readonly url: string;
  readonly stageName: string;
  /** The Lambda function's alias that API Gateway invokes; only the Lambda backend has one. */
  readonly function?: lambda.IFunction;
  /** The dashboard and default alarms. */
  readonly monitoring: ApiMonitoring;
}

/** What the `arclight:api` metadata record holds (`arclight dev` reads it from the synthesized template). */
export interface ApiMetadata {
  readonly apiName: string;
  readonly compute: 'lambda' | 'sagemaker' | 'ecs';
  readonly architecture: NodeArch;
  /** Container computes: whether the image is the CUDA one. */
  readonly gpu?: boolean;
  /** An AsyncApi: `arclight dev` serves its async routes (and only those). */
  readonly async?: boolean;
  /** One of the API's variants (ECS services, SageMaker models, the Lambda shadow): `arclight dev` serves them together. */
  readonly variant?: VariantMetadata;
}

/**
 * Throws one error listing every problem of a RealtimeApi (`scope`): the common ones (name, predictor, model, auth,
 * throttle, config) and the backend's own (`backendProblems`: the compute's props and what the backend refuses).
 * Then warns about what is allowed but unwise on every backend.
 */
export function validateProps(
  scope: Construct,
  context: BackendContext,
  model: ModelSourceConfig,
  backendProblems: string[],
): void {
  const problems = [
    ...validateApiName(context.apiName),
    ...context.predictor.problems,
    ...model.problems,
    ...backendProblems,
    ...context.auth.problems(),
    ...validateThrottle(context.throttle),
    ...validateConfig(context.config),
    ...monitoringProblems(context.monitoring),
    ...context.variants.flatMap((v) => (v.predictor ? v.predictor.bind().problems : [])),
    ...dataCaptureProblems(context.dataCapture),
  ];
  if (problems.length > 0) {
    throw new Error(`RealtimeApi '${scope.node.path}' has invalid props:\n  - ${problems.join('\n  - ')}`);
  }
  warnCommon(scope, context, model);
}

function warnCommon(scope: Construct, context: BackendContext, model: ModelSourceConfig): void {
  if (context.auth.kind === 'none') {
    Annotations.of(scope).addWarningV2(
      'arclight:openApi',
      `RealtimeApi '${context.apiName}' accepts unauthenticated calls from anyone (throttled). Pass auth: ApiAuth.iam() or ApiAuth.jwt({...}) to restrict it.`,
    );
  }
  if (model.sha256 === undefined) {
    Annotations.of(scope).addWarningV2(
      'arclight:noModelHash',
      `RealtimeApi '${context.apiName}': the model has no sha256, so a corrupted or replaced object would be served. Pass { sha256 } to the model source${model.versions ? ', or put a .sha256 sidecar in each version folder' : ''}.`,
    );
  }
}

function validateApiName(name: string): string[] {
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)
    ? []
    : [`apiName '${name}' is not URL-safe (letters, digits, _ . -, at most 128, starting with a letter or digit)`];
}

function validateThrottle(throttle: ThrottleProps | undefined): string[] {
  const problems: string[] = [];
  for (const [name, value] of Object.entries(throttle ?? {})) {
    if (value !== undefined && (typeof value !== 'number' || !(value > 0)))
      problems.push(`throttle.${name} must be a positive number, got ${String(value)}`);
  }
  return problems;
}

function validateConfig(config: Config | undefined): string[] {
  if (config === undefined) return [];
  try {
    const size = JSON.stringify(config).length;
    return size > 3500
      ? [`config is ${size} bytes of JSON; Lambda's environment holds 4 KB in all, so keep it under 3500`]
      : [];
  } catch (error) {
    return [`config cannot be encoded as JSON: ${(error as Error).message}`];
  }
}

/**
 * Access log lines as JSON, from HTTP API variables only: REST's `AccessLogFormat.jsonWithStandardFields()` names
 * `$context.resourcePath`, which HTTP APIs do not have (API Gateway refuses the stage at deploy).
 */
export const HTTP_API_ACCESS_LOG_FORMAT = AccessLogFormat.custom(
  JSON.stringify({
    requestId: '$context.requestId',
    ip: '$context.identity.sourceIp',
    requestTime: '$context.requestTime',
    httpMethod: '$context.httpMethod',
    routeKey: '$context.routeKey',
    path: '$context.path',
    status: '$context.status',
    protocol: '$context.protocol',
    responseLength: '$context.responseLength',
  }),
);

/** The routes of the HTTP contract, as API Gateway route keys. */
export const ROUTE_KEYS: readonly [apigwv2.HttpMethod, string][] = [
  [apigwv2.HttpMethod.POST, '/'],
  [apigwv2.HttpMethod.GET, '/'],
  [apigwv2.HttpMethod.GET, '/v2'],
  [apigwv2.HttpMethod.GET, '/v2/health/live'],
  [apigwv2.HttpMethod.GET, '/v2/health/ready'],
  [apigwv2.HttpMethod.GET, '/v2/models/{name}'],
  [apigwv2.HttpMethod.GET, '/v2/models/{name}/ready'],
  [apigwv2.HttpMethod.POST, '/v2/models/{name}/infer'],
];

/**
 * The contract's routes on an HTTP API, plus `$default` so unknown paths and wrong methods get the contract's JSON
 * 404/405 (with Allow) rather than API Gateway's bare {"message":"Not Found"}. Under the API, as addRoutes puts the
 * others, so that what is acknowledged for the API's routes covers it too.
 */
export function addHttpRoutes(
  api: apigwv2.HttpApi,
  integration: apigwv2.HttpRouteIntegration,
  authorizer: apigwv2.IHttpRouteAuthorizer | undefined,
): void {
  for (const [method, path] of ROUTE_KEYS) {
    api.addRoutes({ path, methods: [method], integration, ...(authorizer ? { authorizer } : {}) });
  }
  new apigwv2.HttpRoute(api, 'DefaultRoute', {
    httpApi: api,
    routeKey: apigwv2.HttpRouteKey.DEFAULT,
    integration,
    ...(authorizer ? { authorizer } : {}),
  });
}

/** API Gateway's metrics of an HTTP API (Lambda and ECS computes), per minute. */
export function httpApiMetrics(api: apigwv2.HttpApi): ApiGatewayMetrics {
  const period = Duration.minutes(1);
  return {
    requests: api.metricCount({ period, label: 'Requests (API Gateway)' }),
    serverErrorRate: api.metricServerError({ period, statistic: 'Average', label: '5xx share' }),
    clientErrors: api.metricClientError({ period, label: '4xx (API Gateway)' }),
    latency: api.metricLatency({ period, statistic: 'p99', label: 'Latency p99 (API Gateway)' }),
  };
}

/** API Gateway's metrics of a REST API (SageMaker compute), per minute. */
export function restApiMetrics(api: RestApi): ApiGatewayMetrics {
  const period = Duration.minutes(1);
  return {
    requests: api.metricCount({ period, statistic: 'SampleCount', label: 'Requests (API Gateway)' }),
    serverErrorRate: api.metricServerError({ period, statistic: 'Average', label: '5xx share' }),
    clientErrors: api.metricClientError({ period, label: '4xx (API Gateway)' }),
    latency: api.metricLatency({ period, statistic: 'p99', label: 'Latency p99 (API Gateway)' }),
  };
}

/** The HTTP API's stage: throttled, with JSON access logs. */
export function createHttpStage(
  scope: Construct,
  httpApi: apigwv2.HttpApi,
  throttle: ThrottleProps | undefined,
  retention: logs.RetentionDays,
): apigwv2.HttpStage {
  const accessLogs = new logs.LogGroup(scope, 'AccessLogs', { retention, removalPolicy: RemovalPolicy.DESTROY });
  return new apigwv2.HttpStage(scope, 'Stage', {
    httpApi,
    autoDeploy: true,
    throttle: { rateLimit: throttle?.rateLimit ?? 100, burstLimit: throttle?.burstLimit ?? 200 },
    accessLogSettings: {
      destination: new apigwv2.LogGroupLogDestination(accessLogs),
      format: HTTP_API_ACCESS_LOG_FORMAT,
    },
  });
}

/** The container server's environment: the Lambda function's contract, plus execution providers and batching. */
export function containerEnvironment(
  context: BackendContext,
  model: ModelSourceConfig,
  options: { gpu: boolean; maxBodyBytes: number; requestTimeoutMs: number },
): Record<string, string> {
  const batching = context.batching ?? {};
  return {
    [ENV.apiName]: context.apiName,
    [ENV.modelUri]: model.uri,
    ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
    ...modelEnvironment(model, `${APP_DIR}/${MODEL_MODULE_DIR}`),
    [ENV.config]: JSON.stringify(context.config),
    [ENV.executionProviders]: options.gpu ? 'cuda,cpu' : 'cpu',
    [ENV.maxBodyBytes]: String(options.maxBodyBytes),
    [ENV.requestTimeoutMs]: String(options.requestTimeoutMs),
    ...(batching.maxBatchSize !== undefined ? { [ENV.maxBatchSize]: String(batching.maxBatchSize) } : {}),
    ...(batching.maxBatchDelay !== undefined
      ? { [ENV.maxBatchDelayMs]: String(batching.maxBatchDelay.toMilliseconds()) }
      : {}),
    ...(context.docs ? { [ENV.docs]: 'on' } : {}),
  };
}

/** Problems with the batching props. */
export function validateBatching(batching: BatchingProps | undefined): string[] {
  const problems: string[] = [];
  if (batching?.maxBatchSize !== undefined) {
    const size = batching.maxBatchSize;
    if (!Number.isInteger(size) || size < 1 || size > 1024)
      problems.push(`batching.maxBatchSize must be an integer from 1 to 1024, got ${size}`);
  }
  if (batching?.maxBatchDelay !== undefined) {
    const ms = batching.maxBatchDelay.toMilliseconds();
    if (ms > 1000)
      problems.push(`batching.maxBatchDelay ${ms} ms is above 1000 ms: every request would wait that long`);
  }
  return problems;
}

/** The request deadline the server keeps: a second inside API Gateway's 29 s, whatever the compute allows. */
export const CONTAINER_REQUEST_TIMEOUT_MS = DEFAULTS.requestTimeoutMs;

/** How long a task or instance may take to become healthy: the model fetch and session creation. */
export const STARTUP_GRACE = Duration.minutes(5);

/**
 * Acknowledges a cdk-nag finding on one construct. A finding id that names a managed policy
 * (`AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:…]`) holds several `::`, which aws-cdk-lib accepts only from the
 * release that reads the id's brackets (2.276 is tested); older ones, down to the 2.252 Arclight supports, refuse it.
 * There the finding stays for the app to acknowledge, and synth warns `arclight:nagFindingLeft` saying which.
 */
export function acknowledgeFinding(scope: Construct, id: string, reason: string): void {
  try {
    Validations.of(scope).acknowledge({ id, reason });
  } catch (error) {
    if (!/InvalidValidationId|delimiter is reserved/.test(String(error))) throw error;
    Annotations.of(scope).addWarningV2(
      'arclight:nagFindingLeft',
      `this aws-cdk-lib cannot acknowledge the cdk-nag finding '${id}' (an id with several '::'; aws-cdk-lib 2.276 can): if the app runs cdk-nag, acknowledge it there. Why Arclight would: ${reason}`,
    );
  }
}

/** With `ApiAuth.none()`, cdk-nag's missing-authorizer finding is the deployer's choice: acknowledged with that reason. */
export function acknowledgeOpenApi(api: Construct, auth: ApiAuth): void {
  if (auth.kind !== 'none') return;
  Validations.of(api).acknowledge({
    id: 'AwsSolutions-APIG4',
    reason: 'The deployer chose ApiAuth.none(): a public, throttled inference API (synth warns).',
  });
}
