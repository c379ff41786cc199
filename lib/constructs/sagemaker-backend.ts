/**
 * The SageMaker backend of a RealtimeApi: the container image, a SageMaker model whose container pulls the model from
 * S3 at start, an endpoint config and endpoint, target-tracking autoscaling on invocations per instance, and an API
 * Gateway REST API serving every contract route through InvokeEndpoint with its own role (sagemaker-rest-api.ts).
 */
import { rmSync } from 'node:fs';
import { Annotations, type Duration, Names, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import { DockerImageAsset, Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import type { Construct } from 'constructs';
import { API_METADATA_KEY } from '../contract.js';
import { bindDataCapture, sageMakerDataCapture } from './data-capture.js';
import {
  CONTAINER_REQUEST_TIMEOUT_MS,
  acknowledgeOpenApi,
  containerEnvironment,
  validateBatching,
  validateProps,
  type ApiMetadata,
  type BackendContext,
  type ComputeBackend,
  type ComputeChecks,
} from './backend-common.js';
import { buildContainerImageContext } from './container-image-context.js';
import { SAGEMAKER_LIMITS } from './limits.js';
import { isTorchFormat } from './model-source.js';
import { RestApiAccessLogs, createSageMakerRestApi } from './sagemaker-rest-api.js';

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
  // A name we choose, so that the endpoint's log group and the ARNs the roles are scoped to are known at synth.
  // SageMaker puts names in ARNs lowercased.
  const endpointName = Names.uniqueResourceName(scope, { maxLength: 63, separator: '-' })
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
  const endpointArn = stack.formatArn({ service: 'sagemaker', resource: 'endpoint', resourceName: endpointName });

  const role = new iam.Role(scope, 'ExecutionRole', {
    assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com'),
    description: `Runs the ${context.apiName} Arclight API on SageMaker: pulls its image, writes its logs, reads its model object`,
  });
  const endpointLogs = new logs.LogGroup(scope, 'EndpointLogs', {
    logGroupName: `/aws/sagemaker/Endpoints/${endpointName}`,
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  grantContainerPermissions(role, endpointLogs);
  const model = context.model.bind(scope, role);

  validateProps(scope, context, model, [
    ...compute.problems(model.sizeBytes),
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
      environment: containerEnvironment(context, model, {
        gpu: compute.gpu,
        maxBodyBytes: SAGEMAKER_LIMITS.maxPayloadBytes,
        requestTimeoutMs: CONTAINER_REQUEST_TIMEOUT_MS,
      }),
    },
  });
  // SageMaker checks the role's permissions (ECR pull) as it creates the model: wait for its policy.
  cfnModel.node.addDependency(role);
  cfnModel.addMetadata(API_METADATA_KEY, {
    apiName: context.apiName,
    compute: 'sagemaker',
    architecture: 'x64',
    gpu: compute.gpu,
  } satisfies ApiMetadata);

  const capture = context.dataCapture && bindDataCapture(scope, context.apiName, context.dataCapture, role);
  const config = new sagemaker.CfnEndpointConfig(scope, 'EndpointConfig', {
    ...(capture ? { dataCaptureConfig: sageMakerDataCapture(capture) } : {}),
    productionVariants: [
      {
        variantName: VARIANT_NAME,
        modelName: cfnModel.attrModelName,
        instanceType: compute.instanceType,
        initialInstanceCount: compute.initialInstanceCount,
        initialVariantWeight: 1,
        containerStartupHealthCheckTimeoutInSeconds: compute.containerStartupHealthCheckTimeout.toSeconds(),
        ...(compute.volumeSize !== undefined ? { volumeSizeInGb: compute.volumeSize } : {}),
        // The host's NVIDIA driver: SageMaker's default GPU host (driver 470, CUDA 11.4) cannot run CUDA 12.
        ...(compute.inferenceAmiVersion !== undefined ? { inferenceAmiVersion: compute.inferenceAmiVersion } : {}),
      },
    ],
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
  return { api, apiId: api.restApiId, url: api.url, stageName: api.deploymentStage.stageName };
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
