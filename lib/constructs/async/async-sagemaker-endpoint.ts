/**
 * The async API on the SageMaker compute: SageMaker asynchronous inference runs the jobs. The endpoint runs the same
 * container image and model as a RealtimeApi on SageMaker (sagemaker-backend.ts builds both); its
 * `AsyncInferenceConfig` reads each request from the API's bucket and writes the result under `results/sagemaker/output/`
 * or the error under `results/sagemaker/failures/`, notifying an SNS topic of each (KMS-encrypted, TLS-only). It scales
 * on the backlog per instance down to zero instances when idle, and out of zero on `HasBacklogWithoutCapacity`
 * (AWS's documented pattern: target tracking cannot leave zero, as the per-instance backlog is undefined there).
 */
import { Duration, Stack, Validations } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwactions from 'aws-cdk-lib/aws-cloudwatch-actions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import * as sagemaker from 'aws-cdk-lib/aws-sagemaker';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { BackendContext } from '../backends/backend-common.js';
import {
  VARIANT_NAME,
  buildSageMakerModel,
  createSageMakerExecutionRole,
  sageMakerEndpointName,
} from '../backends/sagemaker-backend.js';
import type { SageMakerCompute } from '../compute.js';
import type { ModelSourceConfig } from '../model-source.js';
import { acknowledgePrefixGrants } from './async-front-function.js';
import { ASYNC_PREFIXES, type AsyncStorage } from './async-storage.js';

/** SageMaker asynchronous inference's longest invocation (InvocationTimeoutSeconds). */
export const SAGEMAKER_ASYNC_MAX_TIMEOUT = Duration.hours(1);
/** Where SageMaker writes results and errors, under the results prefix (its lifecycle rule, the front's read grant). */
export const SAGEMAKER_OUTPUT_PREFIXES = {
  output: `${ASYNC_PREFIXES.results}sagemaker/output/`,
  failures: `${ASYNC_PREFIXES.results}sagemaker/failures/`,
} as const;

export interface AsyncSageMakerEndpointProps {
  readonly context: BackendContext;
  readonly compute: SageMakerCompute;
  readonly storage: AsyncStorage;
  /** How long one job may run (InvocationTimeoutSeconds; the container's request timeout follows). */
  readonly timeout: Duration;
  readonly maxBodyBytes: number;
  /** The async settings (limits, URL lifetime, retention): the front's, and `arclight dev`'s when it runs the image. */
  readonly environment: Record<string, string>;
  /** Jobs SageMaker sends one instance at once (ClientConfig). */
  readonly maxConcurrentInvocationsPerInstance: number;
  /** The backlog per instance that target tracking holds. */
  readonly targetBacklogPerInstance: number;
  /** The fewest instances kept (0: scale to zero). @default 0 */
  readonly minInstances?: number;
  /** Checks the bound model and throws one error with every problem. */
  readonly validate: (model: ModelSourceConfig) => void;
}

export class AsyncSageMakerEndpoint extends Construct {
  readonly endpointName: string;
  readonly endpointArn: string;
  /** Notified of each job that succeeded. */
  readonly successTopic: sns.Topic;
  /** Notified of each job that failed. */
  readonly errorTopic: sns.Topic;
  readonly scaling: appscaling.ScalableTarget;

  constructor(scope: Construct, id: string, props: AsyncSageMakerEndpointProps) {
    super(scope, id);
    const { context, compute, storage } = props;
    const stack = Stack.of(this);
    this.endpointName = sageMakerEndpointName(this);
    this.endpointArn = stack.formatArn({ service: 'sagemaker', resource: 'endpoint', resourceName: this.endpointName });
    const { role, endpointLogs } = createSageMakerExecutionRole(
      this,
      context.apiName,
      this.endpointName,
      context.logRetention,
    );
    const model = context.model.bind(this, role);
    props.validate(model);
    grantJobObjects(role, storage);

    const topicKey = new kms.Key(this, 'TopicKey', {
      enableKeyRotation: true,
      description: `Encrypts the ${context.apiName} async API's notification topics`,
    });
    const topic = (topicId: string, what: string): sns.Topic => {
      const created = new sns.Topic(this, topicId, {
        displayName: `${context.apiName}: ${what}`,
        masterKey: topicKey,
        enforceSSL: true,
      });
      return created;
    };
    this.successTopic = topic('SuccessTopic', 'async jobs that succeeded');
    this.errorTopic = topic('ErrorTopic', 'async jobs that failed');
    // Not grantPublish: its kms:GenerateDataKey* is a wildcard action; publishing needs these two.
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['sns:Publish'],
        resources: [this.successTopic.topicArn, this.errorTopic.topicArn],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [topicKey.keyArn] }),
    );

    const { cfnModel } = buildSageMakerModel(
      this,
      context,
      model,
      compute,
      role,
      {
        maxBodyBytes: props.maxBodyBytes,
        // Answer inside SageMaker's invocation timeout, so a slow job fails with the contract's error.
        requestTimeoutMs: Math.max(1000, props.timeout.toMilliseconds() - 1000),
        environment: props.environment,
      },
      { async: true },
    );
    const bucketUri = `s3://${storage.bucket.bucketName}/`;
    const config = new sagemaker.CfnEndpointConfig(this, 'EndpointConfig', {
      productionVariants: [
        {
          variantName: VARIANT_NAME,
          modelName: cfnModel.attrModelName,
          instanceType: compute.instanceType,
          initialInstanceCount: Math.max(compute.initialInstanceCount, props.minInstances ?? 0),
          initialVariantWeight: 1,
          containerStartupHealthCheckTimeoutInSeconds: compute.containerStartupHealthCheckTimeout.toSeconds(),
          ...(compute.volumeSize !== undefined ? { volumeSizeInGb: compute.volumeSize } : {}),
          ...(compute.inferenceAmiVersion !== undefined ? { inferenceAmiVersion: compute.inferenceAmiVersion } : {}),
        },
      ],
      asyncInferenceConfig: {
        outputConfig: {
          s3OutputPath: `${bucketUri}${SAGEMAKER_OUTPUT_PREFIXES.output}`,
          s3FailurePath: `${bucketUri}${SAGEMAKER_OUTPUT_PREFIXES.failures}`,
          notificationConfig: {
            successTopic: this.successTopic.topicArn,
            errorTopic: this.errorTopic.topicArn,
          },
        },
        clientConfig: { maxConcurrentInvocationsPerInstance: props.maxConcurrentInvocationsPerInstance },
      },
    });
    // SageMaker checks it may publish to the topics and write the paths as it creates the config.
    config.node.addDependency(role);
    const endpoint = new sagemaker.CfnEndpoint(this, 'Endpoint', {
      endpointName: this.endpointName,
      endpointConfigName: config.attrEndpointConfigName,
      retainAllVariantProperties: true,
    });
    endpoint.node.addDependency(endpointLogs);
    this.scaling = scaleOnBacklog(
      this,
      endpoint,
      props.minInstances ?? 0,
      compute.maxInstances,
      props.targetBacklogPerInstance,
    );

    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        "ecr:GetAuthorizationToken and cloudwatch:PutMetricData have no resource-level permissions (they take '*'; PutMetricData is held to SageMaker's /aws/sagemaker/* namespaces by condition); the image pull is scoped to its repository, logs to the endpoint's own log group, S3 to the model object and the job prefixes, SNS to the two topics.",
    });
    acknowledgePrefixGrants(role, storage, [
      ASYNC_PREFIXES.requests,
      ASYNC_PREFIXES.uploads,
      SAGEMAKER_OUTPUT_PREFIXES.output,
      SAGEMAKER_OUTPUT_PREFIXES.failures,
    ]);
  }
}

/** The endpoint reads the stored requests and uploads, and writes its outputs and failures: nothing else of the bucket. */
function grantJobObjects(role: iam.Role, storage: AsyncStorage): void {
  const objects = (prefix: string): string => storage.bucket.arnForObjects(`${prefix}*`);
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['s3:GetObject'],
      resources: [objects(ASYNC_PREFIXES.requests), objects(ASYNC_PREFIXES.uploads)],
    }),
  );
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['s3:PutObject', 's3:AbortMultipartUpload'],
      resources: [objects(SAGEMAKER_OUTPUT_PREFIXES.output), objects(SAGEMAKER_OUTPUT_PREFIXES.failures)],
    }),
  );
}

/**
 * Target tracking on `ApproximateBacklogSizePerInstance` between `minInstances` (0 by default) and `maxInstances`, and a step policy that adds an
 * instance when `HasBacklogWithoutCapacity` (jobs waiting, no instance) for two minutes.
 */
function scaleOnBacklog(
  scope: Construct,
  endpoint: sagemaker.CfnEndpoint,
  minInstances: number,
  maxInstances: number,
  targetBacklogPerInstance: number,
): appscaling.ScalableTarget {
  const stack = Stack.of(scope);
  const scaling = new appscaling.ScalableTarget(scope, 'Scaling', {
    serviceNamespace: appscaling.ServiceNamespace.SAGEMAKER,
    resourceId: `endpoint/${endpoint.attrEndpointName}/variant/${VARIANT_NAME}`,
    scalableDimension: 'sagemaker:variant:DesiredInstanceCount',
    minCapacity: minInstances,
    maxCapacity: maxInstances,
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
  const metric = (metricName: string): cloudwatch.Metric =>
    new cloudwatch.Metric({
      namespace: 'AWS/SageMaker',
      metricName,
      dimensionsMap: { EndpointName: endpoint.attrEndpointName },
      statistic: 'Average',
      period: Duration.minutes(1),
    });
  scaling.scaleToTrackMetric('BacklogPerInstance', {
    customMetric: metric('ApproximateBacklogSizePerInstance'),
    targetValue: targetBacklogPerInstance,
    scaleInCooldown: Duration.minutes(10),
    scaleOutCooldown: Duration.minutes(5),
  });
  const fromZero = new appscaling.StepScalingAction(scope, 'ScaleOutFromZero', {
    scalingTarget: scaling,
    adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
    metricAggregationType: appscaling.MetricAggregationType.AVERAGE,
    cooldown: Duration.minutes(5),
  });
  fromZero.addAdjustment({ lowerBound: 0, adjustment: 1 });
  new cloudwatch.Alarm(scope, 'HasBacklogWithoutCapacity', {
    alarmDescription: 'Jobs wait and the endpoint has no instance: scale out from zero',
    metric: metric('HasBacklogWithoutCapacity'),
    threshold: 1,
    evaluationPeriods: 2,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.MISSING,
  }).addAlarmAction(new cwactions.ApplicationScalingAction(fromZero));
  return scaling;
}
