/**
 * The Lambda backend of a RealtimeApi: a container-image function built from the predictor's bundle (its own log
 * group and role, the model pulled from S3 in the init phase), a published version per deploy behind the `live` alias
 * (with provisioned concurrency when asked), which CodeDeploy shifts as the rollout says and rolls back on the alarms,
 * and an API Gateway HTTP API invoking the alias with every contract route on a throttled, access-logged stage.
 */
import { rmSync } from 'node:fs';
import { Annotations, Duration, RemovalPolicy, type Size, Stack, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as codedeploy from 'aws-cdk-lib/aws-codedeploy';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { API_METADATA_KEY, ENV, LAMBDA_PAYLOAD } from '../../contract.js';
import type { Config } from '../../predictor.js';
import { ApiMonitoring, type BackendMetrics } from '../operations/api-monitoring.js';
import {
  acknowledgeOpenApi,
  addHttpRoutes,
  createHttpStage,
  httpApiMetrics,
  validateProps,
  type ApiMetadata,
  type BackendContext,
  type ComputeBackend,
  type ComputeChecks,
} from './backend-common.js';
import { LAMBDA_MODULE_DIR, buildLambdaImageContext, type NodeArch } from '../images/lambda-image-context.js';
import { LAMBDA_LIMITS, estimatedColdStartSeconds } from './limits.js';
import { isTorchFormat, modelEnvironment, type ModelSourceConfig } from '../model-source.js';
import { Rollout } from '../operations/rollout.js';
import {
  PRIMARY_VARIANT,
  shadowPercent,
  splitProblems,
  variantMetadata,
  variantProblems,
  type VariantProps,
} from '../operations/variant.js';
import type { LambdaVariantSpec } from '../../variant-split.js';

/** The Lambda compute's settings, every prop resolved to its default (`LambdaCompute`). */
export interface LambdaSettings extends ComputeChecks {
  readonly memorySize: number;
  readonly architecture: lambda.Architecture;
  readonly ephemeralStorageSize: Size;
  readonly timeout: Duration;
  readonly reservedConcurrency?: number;
  readonly provisionedConcurrency?: number;
}

/** Builds the function and its HTTP API under `scope` (the RealtimeApi). */
export function buildLambdaBackend(scope: Construct, context: BackendContext, compute: LambdaSettings): ComputeBackend {
  const functionLogs = new logs.LogGroup(scope, 'FunctionLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const role = new iam.Role(scope, 'FunctionRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the ${context.apiName} Arclight API: writes its own logs, reads its own model object`,
  });
  functionLogs.grantWrite(role);
  const model = context.model.bind(scope, role);
  // The weighted variants' models are read by the same function; the shadow's by a function (and role) of its own.
  const shadowProps = context.variants.find((v) => v.shadow);
  const weighted = context.variants
    .filter((v) => !v.shadow)
    .map((props) => ({ props, model: props.model.bind(new Construct(scope, `Variant${props.name}`), role) }));

  const rollout = context.rollout ?? Rollout.canary();
  validateProps(scope, context, model, [
    ...compute.problems(model.sizeBytes, model.format),
    ...rollout.problems('lambda'),
    ...(model.versions && model.versions.version === undefined
      ? ['a versioned model on Lambda needs a pinned version (each sandbox loads what the deployment pinned)']
      : []),
    ...variantProblems(context.variants, PRIMARY_VARIANT),
    ...splitProblems(context.variants),
    ...lambdaVariantProblems(context, model, weighted),
    ...(context.dataCapture
      ? ['dataCapture runs on the container computes (SageMaker, ECS): a frozen Lambda sandbox cannot upload captures']
      : []),
    ...(context.batching
      ? ['batching applies to the container computes (SageMaker, ECS); Lambda serves one request at a time']
      : []),
  ]);
  warnAboutColdStart(scope, context.apiName, model);
  if (weighted.length > 0) warnAboutInProcessVariants(scope, context.apiName, rollout, weighted.length);

  const arch: NodeArch = compute.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64';
  const contextDir = buildLambdaImageContext({
    predictorEntry: context.predictor.entry,
    arch,
    ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
  });
  const platform = arch === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64;
  const code = lambda.DockerImageCode.fromImageAsset(contextDir, { platform });
  const fn = new lambda.DockerImageFunction(scope, 'Function', {
    description: `Arclight API ${context.apiName}`,
    code,
    architecture: compute.architecture,
    memorySize: compute.memorySize,
    ephemeralStorageSize: compute.ephemeralStorageSize,
    timeout: compute.timeout,
    reservedConcurrentExecutions: compute.reservedConcurrency,
    role,
    logGroup: functionLogs,
    ...(context.tracing ? { tracing: lambda.Tracing.ACTIVE } : {}),
    environment: {
      ...functionEnvironment(context.apiName, model, context.config, compute),
      ...(context.docs ? { [ENV.docs]: 'on' } : {}),
      ...(context.tracing ? { [ENV.tracing]: 'on' } : {}),
      ...(context.variants.length > 0 ? { [ENV.variant]: PRIMARY_VARIANT } : {}),
      ...(weighted.length > 0
        ? {
            [ENV.variants]: Stack.of(scope).toJsonString(
              weighted.map((v): LambdaVariantSpec => ({
                name: v.props.name,
                weight: v.props.weight ?? 1,
                env: variantModelEnvironment(v.model),
              })),
            ),
          }
        : {}),
    },
  });
  // The shadow: a function of its own (its predictor's image, or this one), invoked asynchronously with copies.
  const shadow =
    shadowProps &&
    buildShadowFunction(scope, context, compute, shadowProps, {
      code:
        (shadowProps.predictor?.bind().entry ?? context.predictor.entry) === context.predictor.entry ? code : undefined,
      arch,
      platform,
    });
  if (shadow) {
    shadow.alias.grantInvoke(role);
    fn.addEnvironment(ENV.shadowFunction, shadow.alias.functionArn);
    fn.addEnvironment(ENV.shadowPercent, String(shadowPercent(shadowProps!)));
  }
  // The function's image asset was staged (copied into the cloud assembly) as it was created: drop the generated
  // context from the temp dir (tens of MB each synth). With staging off, the assembly points at it, so it stays.
  if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
  (fn.node.defaultChild as lambda.CfnFunction).addMetadata(API_METADATA_KEY, {
    apiName: context.apiName,
    compute: 'lambda',
    architecture: arch,
  } satisfies ApiMetadata);
  // Each deploy publishes a version: its hash covers the image and the environment, so a new model object (another
  // key or sha256) is a new version too, rolled out the same way with no image rebuild.
  const alias = fn.addAlias('live', {
    ...(compute.provisionedConcurrency ? { provisionedConcurrentExecutions: compute.provisionedConcurrency } : {}),
  });
  const target: lambda.IFunction = alias;

  const api = new apigwv2.HttpApi(scope, 'Api', {
    apiName: context.apiName,
    description: `Arclight API ${context.apiName}`,
    createDefaultStage: false,
  });
  addHttpRoutes(api, new HttpLambdaIntegration('Integration', target), context.auth.bind());
  const stage = createHttpStage(scope, api, context.throttle, context.logRetention);

  const monitoring = new ApiMonitoring(scope, 'Monitoring', {
    ...context.monitoring,
    apiName: context.apiName,
    apiGateway: httpApiMetrics(api),
    backend: lambdaMetrics(fn),
    ...(context.variants.length > 0
      ? { variants: [PRIMARY_VARIANT, ...context.variants.map((v) => v.name)], shadow: shadow !== undefined }
      : {}),
  });
  deployWithCodeDeploy(scope, fn, alias, rollout, rollout.rollbackAlarms(monitoring.alarms));

  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5',
    reason: "CloudWatch Logs stream ARNs under the function's own log group end in ':*'; no other wildcard is granted.",
  });
  if (context.tracing) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "tracing: true: X-Ray's PutTraceSegments and PutTelemetryRecords (Lambda active tracing) have no resource-level permissions and take '*'.",
    });
  }
  acknowledgeOpenApi(api, context.auth);
  return { api, apiId: api.apiId, url: stage.url, stageName: stage.stageName, function: target, monitoring };
}

/** What Lambda reports about the function, per minute. */
function lambdaMetrics(fn: lambda.Function): BackendMetrics {
  return {
    throttles: fn.metricThrottles({ period: Duration.minutes(1), label: 'Throttles (Lambda)' }),
    capacity: [
      fn.metric('ConcurrentExecutions', { period: Duration.minutes(1), statistic: 'Maximum', label: 'Concurrency' }),
    ],
    service: [
      fn.metricInvocations({ period: Duration.minutes(1) }),
      fn.metricErrors({ period: Duration.minutes(1), label: 'Errors (Lambda: crashes, timeouts)' }),
      fn.metricDuration({ period: Duration.minutes(1), statistic: 'p99', label: 'Duration p99 (Lambda)' }),
    ],
    utilization: [],
  };
}

/**
 * A CodeDeploy deployment of the `live` alias: each new version takes traffic as the rollout says, and goes back to
 * the last one if an alarm fires. Built from the L1 resources so that CodeDeploy's role holds exactly what it uses on
 * this function's alias and these alarms (the L2 group attaches the broad AWS managed policy).
 */
function deployWithCodeDeploy(
  scope: Construct,
  fn: lambda.Function,
  alias: lambda.Alias,
  rollout: Rollout,
  alarms: cloudwatch.IAlarm[],
): void {
  const routing = rollout.codeDeployTrafficRouting();
  if (!routing) return;
  const application = new codedeploy.CfnApplication(scope, 'DeployApplication', { computePlatform: 'Lambda' });
  const config = new codedeploy.CfnDeploymentConfig(scope, 'DeployConfig', {
    computePlatform: 'Lambda',
    trafficRoutingConfig: routing,
  });
  const role = new iam.Role(scope, 'DeployRole', {
    assumedBy: new iam.ServicePrincipal('codedeploy.amazonaws.com'),
    description: `Shifts the ${fn.node.path} live alias between versions (CodeDeploy) and reads its rollback alarms`,
  });
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['lambda:GetAlias', 'lambda:UpdateAlias', 'lambda:GetProvisionedConcurrencyConfig'],
      // The alias is updated on the function; its provisioned concurrency is read on the alias.
      resources: [fn.functionArn, alias.functionArn],
    }),
  );
  if (alarms.length > 0) {
    role.addToPolicy(
      new iam.PolicyStatement({ actions: ['cloudwatch:DescribeAlarms'], resources: alarms.map((a) => a.alarmArn) }),
    );
  }
  const group = new codedeploy.CfnDeploymentGroup(scope, 'DeploymentGroup', {
    applicationName: application.ref,
    serviceRoleArn: role.roleArn,
    deploymentConfigName: config.ref,
    deploymentStyle: { deploymentType: 'BLUE_GREEN', deploymentOption: 'WITH_TRAFFIC_CONTROL' },
    alarmConfiguration: { enabled: alarms.length > 0, alarms: alarms.map((a) => ({ name: a.alarmName })) },
    autoRollbackConfiguration: {
      enabled: true,
      events: ['DEPLOYMENT_FAILURE', ...(alarms.length > 0 ? ['DEPLOYMENT_STOP_ON_ALARM'] : [])],
    },
  });
  // CodeDeploy checks the role as the group is created and uses it at the first alias update.
  group.node.addDependency(role);
  (alias.node.defaultChild as lambda.CfnAlias).cfnOptions.updatePolicy = {
    codeDeployLambdaAliasUpdate: { applicationName: application.ref, deploymentGroupName: group.ref },
  };
}

/** The function's environment: the deployed contract (`ENV`), CPU only, its deadline a second inside the timeout. */
function functionEnvironment(
  apiName: string,
  model: ModelSourceConfig,
  config: Config,
  compute: LambdaSettings,
): Record<string, string> {
  const timeoutMs = Math.max(1000, compute.timeout.toMilliseconds() - 1000);
  return {
    [ENV.apiName]: apiName,
    [ENV.modelUri]: model.uri,
    ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
    ...modelEnvironment(model, LAMBDA_MODULE_DIR),
    [ENV.config]: JSON.stringify(config),
    [ENV.executionProviders]: 'cpu',
    [ENV.maxBodyBytes]: String(LAMBDA_PAYLOAD.maxTextBodyBytes),
    [ENV.requestTimeoutMs]: String(timeoutMs),
  };
}

/** Warns when the model's fetch and load likely outlast Lambda's init window, and when torch makes it slower. */
function warnAboutColdStart(scope: Construct, apiName: string, model: ModelSourceConfig): void {
  const torch = isTorchFormat(model.format);
  if (model.sizeBytes !== undefined) {
    const seconds = Math.max(
      estimatedColdStartSeconds(model.sizeBytes),
      torch ? LAMBDA_LIMITS.torchImportSeconds + model.sizeBytes / 2 ** 20 / 300 : 0,
    );
    if (seconds > LAMBDA_LIMITS.initWindowSeconds) {
      Annotations.of(scope).addWarningV2(
        'arclight:slowColdStart',
        `RealtimeApi '${apiName}': fetching and loading a ${(model.sizeBytes / 2 ** 20).toFixed(0)} MB model likely takes ~${seconds.toFixed(0)} s, past Lambda's ${LAMBDA_LIMITS.initWindowSeconds} s init window. Consider provisionedConcurrency, a smaller (quantized) model, or a container compute.`,
      );
    }
  }
  if (torch) {
    Annotations.of(scope).addWarningV2(
      'arclight:torchOnLambda',
      `RealtimeApi '${apiName}' serves a ${model.format} model on Lambda: the image carries Python and CPU torch (about 1 GB more to pull), and each cold start spends ~${LAMBDA_LIMITS.torchImportSeconds} s importing torch. An ONNX export starts faster; see \`arclight bench formats\`.`,
    );
  }
}

/** What weighted variants on Lambda cannot be: they run in the API's function, on its image. */
function lambdaVariantProblems(
  context: BackendContext,
  model: ModelSourceConfig,
  weighted: readonly { readonly props: VariantProps; readonly model: ModelSourceConfig }[],
): string[] {
  const problems: string[] = [];
  for (const { props, model: variantModel } of weighted) {
    const entry = props.predictor?.bind().entry;
    if (entry !== undefined && entry !== context.predictor.entry)
      problems.push(
        `variant '${props.name}': weighted variants on Lambda run in the API's function, with its predictor; a predictor of its own needs Compute.ecs() or Compute.sageMaker() (a shadow may have one)`,
      );
    if (isTorchFormat(variantModel.format) !== isTorchFormat(model.format))
      problems.push(
        `variant '${props.name}': its ${variantModel.format} model cannot run on the API's ${model.format} image (weighted variants on Lambda share the function)`,
      );
    problems.push(...variantModel.problems.map((problem) => `variant '${props.name}': ${problem}`));
    if (variantModel.versions && variantModel.versions.version === undefined)
      problems.push(`variant '${props.name}': a versioned model on Lambda needs a pinned version`);
  }
  for (const props of context.variants)
    if (props.instanceCount !== undefined)
      problems.push(`variant '${props.name}': instanceCount is for SageMaker and ECS; Lambda scales by itself`);
  return problems;
}

/** A weighted variant's own contract variables (over the function's, in its runtime). */
function variantModelEnvironment(model: ModelSourceConfig): Record<string, string> {
  return {
    [ENV.modelUri]: model.uri,
    ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
    ...modelEnvironment(model, LAMBDA_MODULE_DIR),
  };
}

/** Weighted variants on Lambda: what they cost and how they meet the rollout. */
function warnAboutInProcessVariants(scope: Construct, apiName: string, rollout: Rollout, count: number): void {
  Annotations.of(scope).addWarningV2(
    'arclight:lambdaVariantsInProcess',
    `RealtimeApi '${apiName}': its ${count} weighted variant(s) run inside the API's one function (Lambda's alias routing splits only between versions of one function, and API Gateway HTTP APIs have no weighted integrations): every sandbox loads ${count + 1} models (size memorySize for all, cold starts load all), and splits its requests by weight. A change to a variant's model or weight publishes a new version that ${rollout.kind === 'allAtOnce' ? 'takes all traffic at once' : `rolls out as the ${rollout.kind} says: meanwhile the old weights serve the rest, and an alarm rolls every variant back together`}.`,
  );
}

/**
 * The shadow variant's function: its own role (its model, its logs), log group, published version and \`live\`
 * alias (all at once: it answers no caller), invoked only asynchronously, never retried, events kept a minute at most.
 */
function buildShadowFunction(
  scope: Construct,
  context: BackendContext,
  compute: LambdaSettings,
  props: VariantProps,
  image: { code: lambda.DockerImageCode | undefined; arch: NodeArch; platform: Platform },
): { fn: lambda.DockerImageFunction; alias: lambda.Alias } {
  const shadowScope = new Construct(scope, `Variant${props.name}`);
  const logGroup = new logs.LogGroup(shadowScope, 'FunctionLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const role = new iam.Role(shadowScope, 'FunctionRole', {
    assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
    description: `Runs the shadow variant ${props.name} of the ${context.apiName} Arclight API: its logs, its model object`,
  });
  logGroup.grantWrite(role);
  const model = props.model.bind(shadowScope, role);
  let code = image.code;
  if (!code) {
    const contextDir = buildLambdaImageContext({
      predictorEntry: props.predictor?.bind().entry,
      arch: image.arch,
      ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
    });
    code = lambda.DockerImageCode.fromImageAsset(contextDir, { platform: image.platform });
    const fn = shadowFunction(shadowScope, context, compute, props, model, role, logGroup, code);
    if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
    return fn;
  }
  return shadowFunction(shadowScope, context, compute, props, model, role, logGroup, code);
}

function shadowFunction(
  scope: Construct,
  context: BackendContext,
  compute: LambdaSettings,
  props: VariantProps,
  model: ModelSourceConfig,
  role: iam.Role,
  logGroup: logs.LogGroup,
  code: lambda.DockerImageCode,
): { fn: lambda.DockerImageFunction; alias: lambda.Alias } {
  const fn = new lambda.DockerImageFunction(scope, 'Function', {
    description: `Arclight API ${context.apiName}, shadow variant ${props.name}`,
    code,
    // As many at once as the API's own function at most: copies never take the account's concurrency from it.
    reservedConcurrentExecutions: compute.reservedConcurrency,
    architecture: compute.architecture,
    memorySize: compute.memorySize,
    ephemeralStorageSize: compute.ephemeralStorageSize,
    timeout: compute.timeout,
    role,
    logGroup,
    ...(context.tracing ? { tracing: lambda.Tracing.ACTIVE } : {}),
    environment: {
      ...functionEnvironment(context.apiName, model, context.config, compute),
      ...(context.tracing ? { [ENV.tracing]: 'on' } : {}),
      [ENV.variant]: props.name,
    },
  });
  (fn.node.defaultChild as lambda.CfnFunction).addMetadata(API_METADATA_KEY, {
    apiName: context.apiName,
    compute: 'lambda',
    architecture: compute.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64',
    variant: variantMetadata(props),
  } satisfies ApiMetadata);
  const alias = fn.addAlias('live');
  // A copy is worth little late and nothing twice: no retries, dropped after a minute in Lambda's queue.
  alias.configureAsyncInvoke({ retryAttempts: 0, maxEventAge: Duration.minutes(1) });
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5',
    reason:
      "CloudWatch Logs stream ARNs under the shadow function's own log group end in ':*'; no other wildcard is granted.",
  });
  if (context.tracing) {
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "tracing: true: X-Ray's PutTraceSegments and PutTelemetryRecords have no resource-level permissions and take '*'.",
    });
  }
  return { fn, alias };
}
