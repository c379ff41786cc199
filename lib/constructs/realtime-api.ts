import { CfnOutput, Stack } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { API_METADATA_KEY } from '../contract.js';
import type { Config } from '../predictor.js';
import { ApiAuth } from './api-auth.js';
import type { MonitoringProps } from './operations/api-monitoring.js';
import type { ApiMetadata, BatchingProps, ComputeBackend, ThrottleProps } from './backends/backend-common.js';
import { Compute } from './compute.js';
import type { DataCaptureProps } from './operations/data-capture.js';
import type { ModelSource } from './model-source.js';
import { Predictor } from './predictor.js';
import type { Rollout } from './operations/rollout.js';
import type { VariantProps } from './operations/variant.js';

export type { ApiMetadata, BatchingProps, ThrottleProps };

/** Props of a RealtimeApi. */
export interface RealtimeApiProps {
  /** The model to serve. */
  readonly model: ModelSource;
  /** URL-safe name of the API: the OIP model name and the log service name. @default the construct id */
  readonly apiName?: string;
  /** The code behind `POST /`. @default Predictor.default(), the Open Inference Protocol */
  readonly predictor?: Predictor;
  /** Where it runs. @default Compute.lambda() */
  readonly compute?: Compute;
  /** JSON handed to the predictor's init() and predict() as `config`. @default {} */
  readonly config?: Config;
  /** Who may call it. @default ApiAuth.none(), with a synth warning */
  readonly auth?: ApiAuth;
  /** Stage throttling; always on. @default 100 requests/s, burst 200 */
  readonly throttle?: ThrottleProps;
  /** How long the function's and the API's logs are kept. @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** Dynamic batching in the container server (SageMaker and ECS computes only). @default the server's defaults */
  readonly batching?: BatchingProps;
  /**
   * Serve the playground page at `GET /docs` (`/openapi.json` is always served). Off by default: a deployed API is a
   * machine endpoint, and an HTML page on it is surface that few callers need. @default false
   */
  readonly docs?: boolean;
  /**
   * How a deploy of a new image, predictor, config or model object takes traffic, and which alarms roll it back.
   * @default Rollout.canary() (10% for 5 minutes, Arclight's alarms) on Lambda and SageMaker; Rollout.rolling() on ECS
   */
  readonly rollout?: Rollout;
  /** The CloudWatch dashboard and default alarms (thresholds, SNS topic). @default a dashboard and the default alarms */
  readonly monitoring?: MonitoringProps;
  /**
   * X-Ray tracing: active tracing on the Lambda function, with the runtime's phases (fetch, session, init, decode,
   * run, encode) as subsegments; tracing on SageMaker's REST API stage. Costs nothing per request when off. @default false
   */
  readonly tracing?: boolean;
  /**
   * More models (or predictors) behind the API, beside its own: weighted production variants sharing live traffic, or
   * one shadow variant getting a copy of it. SageMaker: production and shadow variants; ECS: a service each behind the
   * ALB's weighted forward; Lambda: weighted variants inside the function, a shadow function invoked asynchronously.
   * @default none
   */
  readonly variants?: readonly VariantProps[];
  /**
   * Write a sampled share of requests and responses to S3 as JSON lines (SageMaker: the endpoint's DataCaptureConfig;
   * ECS: the container server). Not on Lambda. @default off
   */
  readonly dataCapture?: DataCaptureProps;
}

/** The construct metadata `arclight dev` finds APIs by (defined in the contract, which the CLI reads too). */
export { API_METADATA_KEY };

/**
 * A model (and optionally a predictor) served as an HTTPS API: by default an API Gateway HTTP API in front of a
 * Lambda container function that pulls the model from S3 at cold start; with `Compute.sageMaker` a REST API in
 * front of a SageMaker endpoint, with `Compute.ecs` an HTTP API and VPC link in front of an ALB that splits requests
 * among one ECS service per variant.
 * The compute builds its own backend (`Compute.bind`); this construct applies the defaults and publishes the URL.
 */
export class RealtimeApi extends Construct {
  /** The API's base URL (ends with `/`). */
  readonly url: string;
  /** The HTTP API (Lambda and ECS computes) or the REST API (SageMaker). */
  readonly api: apigwv2.HttpApi | apigw.RestApi;
  readonly apiName: string;
  /** Which compute serves it. */
  readonly computeKind: Compute['kind'];
  /** The default alarms (5xx rate, p99 latency, throttles, model-load failures, no healthy capacity on containers). */
  readonly alarms: readonly cloudwatch.IAlarm[];
  /** The API's CloudWatch dashboard, unless `monitoring.dashboard` is false. */
  readonly dashboard?: cloudwatch.Dashboard;
  private readonly backend: ComputeBackend;

  constructor(scope: Construct, id: string, props: RealtimeApiProps) {
    super(scope, id);
    this.apiName = props.apiName ?? id;
    const compute = props.compute ?? Compute.lambda();
    this.computeKind = compute.kind;
    this.backend = compute.bind(this, {
      apiName: this.apiName,
      model: props.model,
      predictor: (props.predictor ?? Predictor.default()).bind(),
      auth: props.auth ?? ApiAuth.none(),
      config: props.config ?? {},
      throttle: props.throttle,
      batching: props.batching,
      docs: props.docs ?? false,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      rollout: props.rollout,
      monitoring: props.monitoring ?? {},
      tracing: props.tracing ?? false,
      variants: props.variants ?? [],
      ...(props.dataCapture ? { dataCapture: props.dataCapture } : {}),
    });
    this.api = this.backend.api;
    this.url = this.backend.url;
    this.alarms = this.backend.monitoring.alarms;
    this.dashboard = this.backend.monitoring.dashboard;
    new CfnOutput(this, 'Url', { value: this.url, description: `URL of the ${this.apiName} API` });
  }

  /** The Lambda function's `live` alias, which API Gateway invokes and rollouts shift; only Lambda-backed APIs have one. */
  get function(): lambda.IFunction {
    if (!this.backend.function) {
      throw new Error(`RealtimeApi '${this.apiName}' runs on ${this.computeKind}, not on a Lambda function`);
    }
    return this.backend.function;
  }

  /** Allows `grantee` to call the API (meaningful with `ApiAuth.iam()`). */
  grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [
        Stack.of(this).formatArn({
          service: 'execute-api',
          resource: this.backend.apiId,
          resourceName: `${this.backend.stageName}/*/*`,
        }),
      ],
    });
  }
}
