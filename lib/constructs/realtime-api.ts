import { rmSync } from 'node:fs';
import { Annotations, CfnOutput, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { API_METADATA_KEY, DEFAULTS, ENV } from '../contract.js';
import type { Config } from '../predictor.js';
import { ApiAuth } from './api-auth.js';
import {
  addHttpRoutes,
  createHttpStage,
  validateBatching,
  type BackendContext,
  type BatchingProps,
  type ThrottleProps,
  acknowledgeOpenApi,
} from './backend-common.js';
import {
  Compute,
  LAMBDA_LIMITS,
  estimatedColdStartSeconds,
  type EcsCompute,
  type LambdaCompute,
  type SageMakerCompute,
} from './compute.js';
import { buildEcsBackend } from './ecs-backend.js';
import { LAMBDA_MODULE_DIR, buildLambdaImageContext, type NodeArch } from './lambda-image-context.js';
import { isTorchFormat, modelEnvironment, type ModelSource, type ModelSourceConfig } from './model-source.js';
import { Predictor, type PredictorConfig } from './predictor.js';
import { buildSageMakerBackend } from './sagemaker-backend.js';

export type { BatchingProps, ThrottleProps };

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
}

/** The construct metadata `arclight dev` finds APIs by (defined in the contract, which the CLI reads too). */
export { API_METADATA_KEY };

/** What the metadata record holds. */
export interface ApiMetadata {
  readonly apiName: string;
  readonly compute: 'lambda' | 'sagemaker' | 'ecs';
  readonly architecture: NodeArch;
  /** Container computes: whether the image is the CUDA one. */
  readonly gpu?: boolean;
}

/**
 * A model (and optionally a predictor) served as an HTTPS API: by default an API Gateway HTTP API in front of a
 * Lambda container function that pulls the model from S3 at cold start; with `Compute.sageMaker` a REST API in
 * front of a SageMaker endpoint, with `Compute.ecs` an HTTP API and VPC link in front of an ECS service's ALB.
 */
export class RealtimeApi extends Construct {
  /** The API's base URL (ends with `/`). */
  readonly url: string;
  /** The HTTP API (Lambda and ECS computes) or the REST API (SageMaker). */
  readonly api: apigwv2.HttpApi | apigw.RestApi;
  readonly apiName: string;
  /** Which compute serves it. */
  readonly computeKind: Compute['kind'];
  private readonly stageName: string;
  private readonly lambdaFunction?: lambda.IFunction;

  constructor(scope: Construct, id: string, props: RealtimeApiProps) {
    super(scope, id);
    this.apiName = props.apiName ?? id;
    const anyCompute = props.compute ?? Compute.lambda();
    this.computeKind = anyCompute.kind;
    const auth = props.auth ?? ApiAuth.none();
    const predictor = (props.predictor ?? Predictor.default()).bind();
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    if (anyCompute.kind !== 'lambda') {
      const context: BackendContext = {
        apiName: this.apiName,
        model: props.model,
        predictor,
        auth,
        config: props.config ?? {},
        throttle: props.throttle,
        batching: props.batching,
        docs: props.docs ?? false,
        logRetention,
        validate: (model, problems) => {
          this.validate(props, predictor, model, auth, [
            ...anyCompute.problems(model.sizeBytes),
            ...validateBatching(props.batching),
            ...problems,
          ]);
          this.warnAbout(model, auth, false);
        },
      };
      const backend =
        anyCompute.kind === 'sagemaker'
          ? buildSageMakerBackend(this, context, anyCompute as SageMakerCompute)
          : buildEcsBackend(this, context, anyCompute as EcsCompute);
      this.api = backend.api;
      this.url = backend.url;
      this.stageName = backend.stageName;
      new CfnOutput(this, 'Url', { value: this.url, description: `URL of the ${this.apiName} API` });
      return;
    }
    const compute = anyCompute as LambdaCompute;

    const functionLogs = new logs.LogGroup(this, 'FunctionLogs', {
      retention: logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, 'FunctionRole', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Runs the ${this.apiName} Arclight API: writes its own logs, reads its own model object`,
    });
    functionLogs.grantWrite(role);
    const model = props.model.bind(this, role);

    this.validate(props, predictor, model, auth, [
      ...compute.problems(model.sizeBytes, model.format),
      ...(props.batching
        ? ['batching applies to the container computes (SageMaker, ECS); Lambda serves one request at a time']
        : []),
    ]);
    this.warnAbout(model, auth, true);

    const arch: NodeArch = compute.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64';
    const contextDir = buildLambdaImageContext({
      predictorEntry: predictor.entry,
      arch,
      ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
    });
    const fn = new lambda.DockerImageFunction(this, 'Function', {
      description: `Arclight API ${this.apiName}`,
      code: lambda.DockerImageCode.fromImageAsset(contextDir, {
        platform: arch === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
      }),
      architecture: compute.architecture,
      memorySize: compute.memorySize,
      ephemeralStorageSize: compute.ephemeralStorageSize,
      timeout: compute.timeout,
      reservedConcurrentExecutions: compute.reservedConcurrency,
      role,
      logGroup: functionLogs,
      environment: {
        ...this.environment(model, props.config ?? {}, compute),
        ...(props.docs ? { [ENV.docs]: 'on' } : {}),
      },
    });
    // The function's image asset was staged (copied into the cloud assembly) as it was created: drop the generated
    // context from the temp dir (tens of MB each synth). With staging off, the assembly points at it, so it stays.
    if (!this.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
    (fn.node.defaultChild as lambda.CfnFunction).addMetadata(API_METADATA_KEY, {
      apiName: this.apiName,
      compute: 'lambda',
      architecture: arch,
    } satisfies ApiMetadata);
    const target: lambda.IFunction = compute.provisionedConcurrency
      ? fn.addAlias('live', { provisionedConcurrentExecutions: compute.provisionedConcurrency })
      : fn;
    this.lambdaFunction = target;

    const httpApi = new apigwv2.HttpApi(this, 'Api', {
      apiName: this.apiName,
      description: `Arclight API ${this.apiName}`,
      createDefaultStage: false,
    });
    this.api = httpApi;
    addHttpRoutes(httpApi, new HttpLambdaIntegration('Integration', target), auth.bind());
    const stage = createHttpStage(this, httpApi, props.throttle, logRetention);
    this.stageName = stage.stageName;
    this.url = stage.url;
    new CfnOutput(this, 'Url', { value: this.url, description: `URL of the ${this.apiName} API` });
    this.acknowledgeExplainedFindings(role, auth, httpApi);
  }

  /** The Lambda function (or its provisioned-concurrency alias); only Lambda-backed APIs have one. */
  get function(): lambda.IFunction {
    if (!this.lambdaFunction) {
      throw new Error(`RealtimeApi '${this.apiName}' runs on ${this.computeKind}, not on a Lambda function`);
    }
    return this.lambdaFunction;
  }

  /** Throws one error listing every problem: the common ones and the compute's `extra`. */
  private validate(
    props: RealtimeApiProps,
    predictor: PredictorConfig,
    model: ModelSourceConfig,
    auth: ApiAuth,
    extra: string[],
  ): void {
    const problems = [
      ...validateApiName(this.apiName),
      ...predictor.problems,
      ...model.problems,
      ...extra,
      ...auth.problems(),
      ...validateThrottle(props.throttle),
      ...validateConfig(props.config),
    ];
    if (problems.length > 0) {
      throw new Error(`RealtimeApi '${this.node.path}' has invalid props:\n  - ${problems.join('\n  - ')}`);
    }
  }

  /** Allows `grantee` to call the API (meaningful with `ApiAuth.iam()`). */
  grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [
        Stack.of(this).formatArn({
          service: 'execute-api',
          resource: 'restApiId' in this.api ? this.api.restApiId : this.api.apiId,
          resourceName: `${this.stageName}/*/*`,
        }),
      ],
    });
  }

  private environment(model: ModelSourceConfig, config: Config, compute: LambdaCompute): Record<string, string> {
    const timeoutMs = Math.max(1000, compute.timeout.toMilliseconds() - 1000);
    return {
      [ENV.apiName]: this.apiName,
      [ENV.modelUri]: model.uri,
      ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
      ...modelEnvironment(model, LAMBDA_MODULE_DIR),
      [ENV.config]: JSON.stringify(config),
      [ENV.executionProviders]: 'cpu',
      [ENV.maxBodyBytes]: String(DEFAULTS.maxBodyBytes),
      [ENV.requestTimeoutMs]: String(timeoutMs),
    };
  }

  private warnAbout(model: ModelSourceConfig, auth: ApiAuth, lambdaColdStart: boolean): void {
    if (auth.kind === 'none') {
      Annotations.of(this).addWarningV2(
        'arclight:openApi',
        `RealtimeApi '${this.apiName}' accepts unauthenticated calls from anyone (throttled). Pass auth: ApiAuth.iam() or ApiAuth.jwt({...}) to restrict it.`,
      );
    }
    if (lambdaColdStart && model.sizeBytes !== undefined) {
      const torch = isTorchFormat(model.format);
      const seconds = Math.max(
        estimatedColdStartSeconds(model.sizeBytes),
        torch ? LAMBDA_LIMITS.torchImportSeconds + model.sizeBytes / 2 ** 20 / 300 : 0,
      );
      if (seconds > LAMBDA_LIMITS.initWindowSeconds) {
        Annotations.of(this).addWarningV2(
          'arclight:slowColdStart',
          `RealtimeApi '${this.apiName}': fetching and loading a ${(model.sizeBytes / 2 ** 20).toFixed(0)} MB model likely takes ~${seconds.toFixed(0)} s, past Lambda's ${LAMBDA_LIMITS.initWindowSeconds} s init window. Consider provisionedConcurrency, a smaller (quantized) model, or a container compute.`,
        );
      }
    }
    if (lambdaColdStart && isTorchFormat(model.format)) {
      Annotations.of(this).addWarningV2(
        'arclight:torchOnLambda',
        `RealtimeApi '${this.apiName}' serves a ${model.format} model on Lambda: the image carries Python and CPU torch (about 1 GB more to pull), and each cold start spends ~${LAMBDA_LIMITS.torchImportSeconds} s importing torch. An ONNX export starts faster; see \`arclight bench formats\`.`,
      );
    }
    if (model.sha256 === undefined) {
      Annotations.of(this).addWarningV2(
        'arclight:noModelHash',
        `RealtimeApi '${this.apiName}': the model has no sha256, so a corrupted or replaced object would be served. Pass { sha256 } to the model source.`,
      );
    }
  }

  /** cdk-nag findings that follow from the design, each acknowledged with its reason; everything else must pass. */
  private acknowledgeExplainedFindings(role: iam.Role, auth: ApiAuth, httpApi: apigwv2.HttpApi): void {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5',
      reason:
        "CloudWatch Logs stream ARNs under the function's own log group end in ':*'; no other wildcard is granted.",
    });
    acknowledgeOpenApi(httpApi, auth);
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
