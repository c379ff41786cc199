/**
 * The SageMaker backend of a RealtimeApi: the container image, a SageMaker model whose container pulls the model from
 * S3 at start, an endpoint config and endpoint, target-tracking autoscaling on invocations per instance, and an API
 * Gateway REST API serving every contract route through InvokeEndpoint with its own role (sagemaker-rest-api.ts).
 */
import { rmSync } from 'node:fs';
import { Annotations, Duration, Names, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { API_METADATA_KEY } from '../../contract.js';
import { METRICS } from '../../metric-catalog.js';
import { ApiMonitoring, runtimeMetric, type BackendMetrics } from '../operations/api-monitoring.js';
import { bindDataCapture, sageMakerDataCapture } from '../operations/data-capture.js';
import {
  CONTAINER_REQUEST_TIMEOUT_MS,
  acknowledgeOpenApi,
  containerEnvironment,
  restApiMetrics,
  validateBatching,
  validateProps,
  type ApiMetadata,
  type BackendContext,
  type ComputeBackend,
  type ComputeChecks,
} from './backend-common.js';
import { buildContainerImageContext } from '../images/container-image-context.js';
import { SAGEMAKER_LIMITS } from './limits.js';
import { isTorchFormat, type ModelSourceConfig } from '../model-source.js';
import { Rollout } from '../operations/rollout.js';
import { RestApiAccessLogs, createSageMakerRestApi } from './sagemaker-rest-api.js';
import { variantMetadata, variantProblems, type VariantProps } from '../operations/variant.js';

/** The SageMaker compute's settings, every prop resolved to its default (`SageMakerCompute`). */
export interface SageMakerSettings extends ComputeChecks {
  readonly instanceType: string;
  readonly initialInstanceCount: number;
  readonly minInstances: number;
  readonly maxInstances: number;
  readonly targetInvocationsPerInstance: number;
  readonly containerStartupHealthCheckTimeout: Duration;
  readonly volumeSize?: number;
  /** Whether the instance type has GPUs: the CUDA image, else the CPU one. */
  readonly gpu: boolean;
  readonly accessLogs: RestApiAccessLogs;
  readonly inferenceAmiVersion?: string;
}

/** The endpoint's one production variant. */
export const VARIANT_NAME = 'AllTraffic';

/** Builds the SageMaker endpoint and its REST API under `scope` (the RealtimeApi). */
export function buildSageMakerBackend(
  scope: Construct,
  context: BackendContext,
  compute: SageMakerSettings,
): ComputeBackend {
  const stack = Stack.of(scope);
  const endpointName = sageMakerEndpointName(scope);
  const endpointArn = stack.formatArn({ service: 'sagemaker', resource: 'endpoint', resourceName: endpointName });
  const { role, endpointLogs } = createSageMakerExecutionRole(
    scope,
    context.apiName,
    endpointName,
    context.logRetention,
  );
  const model = context.model.bind(scope, role);

  const rollout = context.rollout ?? Rollout.canary();
  // Each variant's model object, bound under its own scope (read by the same role), checked with the rest.
  const boundVariants = context.variants.map((props) => {
    const variantScope = new Construct(scope, `Variant${props.name}`);
    return { props, scope: variantScope, model: props.model.bind(variantScope, role) };
  });
  validateProps(scope, context, model, [
    ...compute.problems(model.sizeBytes),
    ...rollout.problems('sagemaker'),
    ...variantProblems(context.variants, VARIANT_NAME),
    ...boundVariants.flatMap((v) => v.model.problems.map((problem) => `variant '${v.props.name}': ${problem}`)),
    ...validateBatching(context.batching),
    ...(context.auth.kind === 'jwt'
      ? [
          'ApiAuth.jwt() needs an HTTP API; Compute.sageMaker sits behind a REST API: use ApiAuth.iam() or ApiAuth.none()',
        ]
      : []),
    ...(context.docs
      ? [
          "docs: the playground is not served through SageMaker's REST API (InvokeEndpoint drops the page's Content-Security-Policy header); /openapi.json is",
        ]
      : []),
  ]);
  Annotations.of(scope).addInfoV2(
    'arclight:sageMakerLimits',
    `RealtimeApi '${context.apiName}': requests are limited to ${SAGEMAKER_LIMITS.maxPayloadBytes / 2 ** 20} MB (SageMaker's InvokeEndpoint) and ${SAGEMAKER_LIMITS.apiGatewaySeconds} s (API Gateway; SageMaker itself allows ${SAGEMAKER_LIMITS.invocationSeconds} s).`,
  );

  const { cfnModel, imageUri } = buildSageMakerModel(scope, context, model, compute, role, {
    maxBodyBytes: SAGEMAKER_LIMITS.maxPayloadBytes,
    requestTimeoutMs: CONTAINER_REQUEST_TIMEOUT_MS,
  });

  const variant = (name: string, modelName: string, instances: number, weight: number) => ({
    variantName: name,
    modelName,
    instanceType: compute.instanceType,
    initialInstanceCount: instances,
    initialVariantWeight: weight,
    containerStartupHealthCheckTimeoutInSeconds: compute.containerStartupHealthCheckTimeout.toSeconds(),
    ...(compute.volumeSize !== undefined ? { volumeSizeInGb: compute.volumeSize } : {}),
    // The host's NVIDIA driver: SageMaker's default GPU host (driver 470, CUDA 11.4) cannot run CUDA 12.
    ...(compute.inferenceAmiVersion !== undefined ? { inferenceAmiVersion: compute.inferenceAmiVersion } : {}),
  });
  const others = boundVariants.map((v) => ({
    props: v.props,
    entry: variant(
      v.props.name,
      variantModel(v, context, compute, role, imageUri).attrModelName,
      v.props.instanceCount ?? 1,
      v.props.weight ?? 1,
    ),
  }));
  const shadows = others.filter((o) => o.props.shadow).map((o) => o.entry);
  const capture = context.dataCapture && bindDataCapture(scope, context.apiName, context.dataCapture, role);
  const config = new sagemaker.CfnEndpointConfig(scope, 'EndpointConfig', {
    ...(capture ? { dataCaptureConfig: sageMakerDataCapture(capture) } : {}),
    productionVariants: [
      variant(VARIANT_NAME, cfnModel.attrModelName, compute.initialInstanceCount, 1),
      ...others.filter((o) => !o.props.shadow).map((o) => o.entry),
    ],
    ...(shadows.length > 0 ? { shadowProductionVariants: shadows } : {}),
  });
  const endpoint = new sagemaker.CfnEndpoint(scope, 'Endpoint', {
    endpointName,
    endpointConfigName: config.attrEndpointConfigName,
    // An update (new image, model or config) keeps the instance count autoscaling reached, rather than starting the
    // new fleet at initialInstanceCount and dropping capacity in the middle of a busy hour.
    retainAllVariantProperties: true,
  });
  endpoint.node.addDependency(endpointLogs);

  const scaling = new appscaling.ScalableTarget(scope, 'Scaling', {
    serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
    resourceId: `endpoint/${endpoint.attrEndpointName}/variant/${VARIANT_NAME}`,
    scalableDimension: 'sagemaker:variant:DesiredInstanceCount',
    minCapacity: compute.minInstances,
    maxCapacity: compute.maxInstances,
    // Application Auto Scaling's service-linked role for SageMaker endpoints (created on first use), as ECS services use theirs.
    role: iam.Role.fromRoleArn(
      scope,
      'ScalingRole',
      stack.formatArn({
        service: 'iam',
        region: '',
        resource: 'role',
        resourceName:
          'aws-service-role/sagemaker.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_SageMakerEndpoint',
      }),
    ),
  });
  scaling.scaleToTrackMetric('InvocationsPerInstance', {
    predefinedMetric: appscaling.PredefinedMetric.SAGEMAKER_VARIANT_INVOCATIONS_PER_INSTANCE,
    targetValue: compute.targetInvocationsPerInstance,
  });

  const api = createSageMakerRestApi(scope, { context, endpointName, endpointArn, accessLogs: compute.accessLogs });
  acknowledge(context, role, api, compute.accessLogs);

  const monitoring = new ApiMonitoring(scope, 'Monitoring', {
    ...context.monitoring,
    apiName: context.apiName,
    apiGateway: restApiMetrics(api),
    backend: sageMakerMetrics(context.apiName, endpointName, compute.gpu, [
      VARIANT_NAME,
      ...context.variants.map((v) => v.name),
    ]),
  });
  // Blue/green (or rolling) with the rollout's shifts; SageMaker rolls back when one of the alarms fires meanwhile.
  const alarmNames = rollout.rollbackAlarms(monitoring.alarms).map((alarm) => alarm.alarmName);
  const deploymentConfig = rollout.sageMakerDeploymentConfig(alarmNames);
  if (deploymentConfig) endpoint.deploymentConfig = deploymentConfig;
  return { api, apiId: api.restApiId, url: api.url, stageName: api.deploymentStage.stageName, monitoring };
}

/**
 * A name we choose for the endpoint under `scope`, so that its log group and the ARNs roles are scoped to are known
 * at synth. SageMaker puts names in ARNs lowercased.
 */
export function sageMakerEndpointName(scope: Construct): string {
  return Names.uniqueResourceName(scope, { maxLength: 63, separator: '-' })
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
}

/** The model's execution role and the endpoint's log group, with what SageMaker documents the role needs. */
export function createSageMakerExecutionRole(
  scope: Construct,
  apiName: string,
  endpointName: string,
  logRetention: logs.RetentionDays,
): { role: iam.Role; endpointLogs: logs.LogGroup } {
  const role = new iam.Role(scope, 'ExecutionRole', {
    assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
    description: `Runs the ${apiName} Arclight API on SageMaker: pulls its image, writes its logs, reads its model object`,
  });
  const endpointLogs = new logs.LogGroup(scope, 'EndpointLogs', {
    logGroupName: `/aws/sagemaker/Endpoints/${endpointName}`,
    retention: logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  grantContainerPermissions(role, endpointLogs);
  return { role, endpointLogs };
}

/**
 * The container image (CPU or CUDA, the predictor and the Torch module baked in) and the SageMaker model running it
 * with the runtime's env contract, under `scope`; the role may pull the image. Shared by RealtimeApi and AsyncApi.
 */
export function buildSageMakerModel(
  scope: Construct,
  context: BackendContext,
  model: ModelSourceConfig,
  compute: Pick<SageMakerSettings, 'gpu'>,
  role: iam.Role,
  limits: {
    readonly maxBodyBytes: number;
    readonly requestTimeoutMs: number;
    /** More variables beside the runtime's (an async API's settings, which `arclight dev` reads). */
    readonly environment?: Readonly<Record<string, string>>;
  },
  metadata: Partial<ApiMetadata> = {},
): { cfnModel: sagemaker.CfnModel; imageUri: string } {
  const contextDir = buildContainerImageContext({
    predictorEntry: context.predictor.entry,
    gpu: compute.gpu,
    ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
  });
  const image = new DockerImageAsset(scope, 'Image', { directory: contextDir, platform: Platform.LINUX_AMD64 });
  if (!scope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
  image.repository.grantPull(role);

  const cfnModel = new sagemaker.CfnModel(scope, 'Model', {
    executionRoleArn: role.roleArn,
    primaryContainer: {
      image: image.imageUri,
      mode: 'SingleModel',
      environment: {
        ...containerEnvironment(context, model, { gpu: compute.gpu, ...limits }),
        ...limits.environment,
      },
    },
  });
  // SageMaker checks the role's permissions (ECR pull) as it creates the model: wait for its policy.
  cfnModel.node.addDependency(role);
  cfnModel.addMetadata(API_METADATA_KEY, {
    apiName: context.apiName,
    compute: 'sagemaker',
    architecture: 'x64',
    gpu: compute.gpu,
    ...metadata,
  } satisfies ApiMetadata);
  return { cfnModel, imageUri: image.imageUri };
}

/** What SageMaker reports about the endpoint's variant, per minute. */
function sageMakerMetrics(
  apiName: string,
  endpointName: string,
  gpu: boolean,
  variantNames: readonly string[],
): BackendMetrics {
  const period = Duration.minutes(1);
  const dimensionsMap = { EndpointName: endpointName, VariantName: VARIANT_NAME };
  const invocation = (metricName: string, statistic: string, label?: string): cloudwatch.Metric =>
    new cloudwatch.Metric({ namespace: 'AWS/SageMaker', metricName, dimensionsMap, statistic, period, label });
  const instance = (metricName: string, statistic: string, label?: string): cloudwatch.Metric =>
    new cloudwatch.Metric({
      namespace: '/aws/sagemaker/Endpoints',
      metricName,
      dimensionsMap,
      statistic,
      period,
      label,
    });
  // Each instance reports its CPU once a minute: the count of samples is the count of instances up.
  const instancesReporting = instance('CPUUtilization', 'SampleCount', 'Instances reporting');
  return {
    throttles: runtimeMetric(METRICS.overloaded, apiName, { label: 'Overloaded (503)' }),
    capacity: [instancesReporting],
    healthy: instancesReporting,
    service: [
      invocation('Invocation4XXErrors', 'Sum'),
      invocation('OverheadLatency', 'p99', 'OverheadLatency p99 (µs)'),
      // Per variant, so that variants (and a shadow) can be compared.
      ...variantNames.flatMap((variantName) => {
        const perVariant = (metricName: string, statistic: string, label: string): cloudwatch.Metric =>
          new cloudwatch.Metric({
            namespace: 'AWS/SageMaker',
            metricName,
            dimensionsMap: { EndpointName: endpointName, VariantName: variantName },
            statistic,
            period,
            label: `${variantName}: ${label}`,
          });
        return [
          perVariant('Invocations', 'Sum', 'Invocations'),
          perVariant('Invocation5XXErrors', 'Sum', '5xx'),
          perVariant('ModelLatency', 'p99', 'ModelLatency p99 (µs)'),
        ];
      }),
    ],
    utilization: [
      instance('CPUUtilization', 'Average'),
      instance('MemoryUtilization', 'Average'),
      ...(gpu ? [instance('GPUUtilization', 'Average'), instance('GPUMemoryUtilization', 'Average')] : []),
    ],
  };
}

/**
 * What SageMaker documents for a model's execution role (CreateModel), scoped to this endpoint: its log group
 * (create, describe streams, write), metrics under SageMaker's own namespaces (PutMetricData has no resource-level
 * permissions: the namespace condition scopes it). The image pull and the model object are granted where they are made.
 */
function grantContainerPermissions(role: iam.Role, endpointLogs: logs.LogGroup): void {
  endpointLogs.grantWrite(role);
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['logs:CreateLogGroup', 'logs:DescribeLogStreams'],
      resources: [endpointLogs.logGroupArn],
    }),
  );
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['cloudwatch:PutMetricData'],
      resources: ['*'],
      conditions: { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } },
    }),
  );
}

/** cdk-nag findings that follow from the design, each acknowledged with its reason. */
function acknowledge(context: BackendContext, role: iam.Role, api: apigw.RestApi, accessLogs: RestApiAccessLogs): void {
  Validations.of(role).acknowledge({
    id: 'AwsSolutions-IAM5[Resource::*]',
    reason:
      "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions (they take '*'; PutMetricData is held to SageMaker's /aws/sagemaker/* namespaces by condition); the image pull is scoped to its repository, logs to the endpoint's own log group, S3 to the model object.",
  });
  Validations.of(api).acknowledge({
    id: 'AwsSolutions-APIG6',
    reason:
      'Execution logs (per-request mapping traces, billed per line) are a debugging aid, left off; the stage writes JSON access logs of every request unless the deployer turned them off.',
  });
  if (accessLogs === RestApiAccessLogs.OFF) {
    Validations.of(api).acknowledge({
      id: 'AwsSolutions-APIG1',
      reason:
        "The deployer chose accessLogs: RestApiAccessLogs.OFF (no account-wide API Gateway logging role); API Gateway's CloudWatch metrics and the endpoint's container logs remain.",
    });
  }
  Validations.of(api).acknowledge({
    id: 'AwsSolutions-APIG3',
    reason:
      'A WAF web ACL is a per-account security policy with its own monthly cost; the stage is throttled, and RealtimeApi.api can be associated with a web ACL by the deployer.',
  });
  acknowledgeOpenApi(api, context.auth);
  Validations.of(api).acknowledge({
    id: 'AwsSolutions-COG4',
    reason:
      context.auth.kind === 'iam'
        ? 'Callers sign requests with SigV4 (ApiAuth.iam()); a Cognito user pool would be a second identity system.'
        : 'The deployer chose ApiAuth.none(): a public, throttled inference API (synth warns); no user pool applies.',
  });
}

/**
 * A variant's SageMaker model, under its own scope: its model object (read by the same role), the API's image unless
 * it has a predictor of its own (then an image of its own), the same env contract.
 */
function variantModel(
  bound: { readonly props: VariantProps; readonly scope: Construct; readonly model: ModelSourceConfig },
  context: BackendContext,
  compute: SageMakerSettings,
  role: iam.Role,
  apiImageUri: string,
): sagemaker.CfnModel {
  const { props, scope: variantScope, model } = bound;
  const predictor = props.predictor?.bind();
  let imageUri = apiImageUri;
  if (predictor && predictor.entry !== context.predictor.entry) {
    const contextDir = buildContainerImageContext({
      predictorEntry: predictor.entry,
      gpu: compute.gpu,
      ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
    });
    const image = new DockerImageAsset(variantScope, 'Image', {
      directory: contextDir,
      platform: Platform.LINUX_AMD64,
    });
    if (!variantScope.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT))
      rmSync(contextDir, { recursive: true, force: true });
    image.repository.grantPull(role);
    imageUri = image.imageUri;
  }
  const cfnModel = new sagemaker.CfnModel(variantScope, 'Model', {
    executionRoleArn: role.roleArn,
    primaryContainer: {
      image: imageUri,
      mode: 'SingleModel',
      environment: containerEnvironment(context, model, {
        gpu: compute.gpu,
        maxBodyBytes: SAGEMAKER_LIMITS.maxPayloadBytes,
        requestTimeoutMs: CONTAINER_REQUEST_TIMEOUT_MS,
      }),
    },
  });
  cfnModel.node.addDependency(role);
  // `arclight dev` serves the variant beside the API's own model.
  cfnModel.addMetadata(API_METADATA_KEY, {
    apiName: context.apiName,
    compute: 'sagemaker',
    architecture: 'x64',
    gpu: compute.gpu,
    variant: variantMetadata(props),
  } satisfies ApiMetadata);
  return cfnModel;
}
