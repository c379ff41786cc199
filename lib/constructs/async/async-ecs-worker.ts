/**
 * The async worker on ECS: the RealtimeApi's container image (same predictor, same model source) as an ECS service
 * with no load balancer, each task consuming the job queue (container-worker.ts: long poll, heartbeat, drain or hand
 * back on SIGTERM) on the cluster and GPU/CPU capacity that ecs-backend.ts builds. The service scales on the queue with
 * Application Auto Scaling step policies: out while jobs wait (ApproximateNumberOfMessagesVisible ≥ 1, from zero
 * tasks too), back to minTasks once no job has been waiting or running (visible + not visible = 0) for five minutes,
 * so scale-in never stops a task in the middle of a job. The task role reads the requests, writes and removes
 * results, updates statuses and receives, extends and deletes its queue's messages: nothing else.
 */
import { rmSync } from 'node:fs';
import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as appscaling from 'aws-cdk-lib/aws-applicationautoscaling';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as cwactions from 'aws-cdk-lib/aws-cloudwatch-actions';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as ecs from 'aws-cdk-lib/aws-ecs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sqs from 'aws-cdk-lib/aws-sqs';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { API_METADATA_KEY, ASYNC_ENV, DEFAULTS, ROUTES } from '../../contract.js';
import { containerEnvironment, type ApiMetadata, type BackendContext } from '../backends/backend-common.js';
import {
  CONTAINER_NAME,
  DEPLOYMENT,
  acknowledgeEcsTask,
  addEcsCapacity,
  createVpc,
  type EcsSettings,
} from '../backends/ecs-backend.js';
import { buildContainerImageContext } from '../images/container-image-context.js';
import { isTorchFormat, type ModelSourceConfig } from '../model-source.js';
import { acknowledgePrefixGrants } from './async-front-function.js';
import { ASYNC_PREFIXES, type AsyncStorage } from './async-storage.js';

/**
 * The longest job on ECS: SQS lets a message's visibility be extended to at most 12 hours after it was received, and
 * the heartbeat extends it by ECS_ASYNC_VISIBILITY at a time.
 */
export const ECS_ASYNC_MAX_TIMEOUT = Duration.hours(11);
/** The visibility timeout of the queue on ECS: how soon a job of a task that died comes back. Renewed every third. */
export const ECS_ASYNC_VISIBILITY = Duration.minutes(5);
/**
 * How long ECS waits after SIGTERM before SIGKILL (the container's stopTimeout, 30 s unless set): 120 s, Fargate's most
 * and EC2 Spot's two-minute interruption notice.
 */
export const ECS_ASYNC_STOP_TIMEOUT = Duration.seconds(120);
/** How much of the stop timeout running jobs get to finish; the rest hands back the others and closes the server. */
export const ECS_ASYNC_DRAIN = Duration.seconds(100);
/** The worker's env vars (container-worker.ts's ASYNC_WORKER_ENV, which constructs may not import). */
const WORKER_ENV = {
  visibilitySeconds: 'ARCLIGHT_ASYNC_VISIBILITY_SECONDS',
  drainSeconds: 'ARCLIGHT_ASYNC_DRAIN_SECONDS',
} as const;
/** Scale-out steps: tasks added by how many jobs wait (≥ 1, ≥ 10, ≥ 50). */
export const ECS_ASYNC_SCALE_OUT_STEPS = [
  { waiting: 1, add: 1 },
  { waiting: 10, add: 3 },
  { waiting: 50, add: 10 },
] as const;
/** How long the queue must hold no job (waiting or running) before the service goes back to minTasks. */
export const ECS_ASYNC_IDLE_MINUTES = 5;

export interface AsyncEcsWorkerProps {
  /** The API's context (name, model, predictor, config, batching, log retention). */
  readonly context: BackendContext;
  readonly compute: EcsSettings;
  readonly storage: AsyncStorage;
  /** How long one job may run. */
  readonly timeout: Duration;
  readonly maxBodyBytes: number;
  readonly environment: Record<string, string>;
  /** Checks the bound model (its size and format) and throws one error with every problem. */
  readonly validate: (model: ModelSourceConfig) => void;
}

export class AsyncEcsWorker extends Construct {
  readonly service: ecs.Ec2Service;
  readonly taskDefinition: ecs.Ec2TaskDefinition;
  readonly taskRole: iam.Role;
  /** The service's desired count under Application Auto Scaling. */
  readonly scaling: appscaling.ScalableTarget;

  constructor(scope: Construct, id: string, props: AsyncEcsWorkerProps) {
    super(scope, id);
    const { storage, compute, context } = props;
    if (!storage.queue) throw new Error('AsyncEcsWorker needs the storage with its queue');
    const queue = storage.queue;
    this.taskRole = new iam.Role(this, 'TaskRole', {
      assumedBy: new iam.ServicePrincipal('ecs-tasks.amazonaws.com'),
      description: `Queue worker of the ${context.apiName} async API on ECS: its model, requests, results, statuses and queue`,
    });
    const model = context.model.bind(this, this.taskRole);
    props.validate(model);
    grantJobs(this.taskRole, storage, queue);

    const vpc = compute.vpc ?? createVpc(this, context);
    const containerLogs = new logs.LogGroup(this, 'ContainerLogs', {
      retention: context.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const capacity = addEcsCapacity(this, context, compute, vpc, containerLogs);

    const contextDir = buildContainerImageContext({
      predictorEntry: context.predictor.entry,
      gpu: compute.gpu,
      ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
    });
    this.taskDefinition = new ecs.Ec2TaskDefinition(this, 'TaskDefinition', {
      networkMode: ecs.NetworkMode.AWS_VPC,
      taskRole: this.taskRole,
    });
    this.taskDefinition.addContainer(CONTAINER_NAME, {
      image: ecs.ContainerImage.fromAsset(contextDir, { platform: Platform.LINUX_AMD64 }),
      // The model beside a job's body, held about four times at its peak (S3 read, request, decoded payload, result).
      memoryReservationMiB: 2048 + Math.ceil((4 * props.maxBodyBytes) / 2 ** 20),
      ...(compute.gpu ? { gpuCount: compute.gpuCount } : {}),
      environment: {
        ...containerEnvironment(context, model, {
          gpu: compute.gpu,
          maxBodyBytes: props.maxBodyBytes,
          requestTimeoutMs: props.timeout.toMilliseconds(),
        }),
        // The SDK clients of the worker (SQS, DynamoDB) sign for the stack's region, whatever the instance reports.
        AWS_REGION: Stack.of(this).region,
        [ASYNC_ENV.queueUrl]: queue.queueUrl,
        [ASYNC_ENV.bucket]: storage.bucket.bucketName,
        [ASYNC_ENV.table]: storage.table.tableName,
        [WORKER_ENV.visibilitySeconds]: String(ECS_ASYNC_VISIBILITY.toSeconds()),
        [WORKER_ENV.drainSeconds]: String(ECS_ASYNC_DRAIN.toSeconds()),
        ...props.environment,
      },
      logging: ecs.LogDrivers.awsLogs({ streamPrefix: context.apiName, logGroup: containerLogs }),
      // No load balancer checks the task: the container checks its own server (200 once the model is loaded).
      healthCheck: {
        command: [
          'CMD',
          'node',
          '-e',
          `fetch('http://127.0.0.1:${DEFAULTS.containerPort}${ROUTES.ping}').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))`,
        ],
        interval: Duration.seconds(30),
        timeout: Duration.seconds(5),
        retries: 3,
        startPeriod: Duration.seconds(300),
      },
      // SIGTERM: running jobs get ECS_ASYNC_DRAIN to finish, then the rest are handed back to the queue.
      stopTimeout: ECS_ASYNC_STOP_TIMEOUT,
    });
    if (!this.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
    (this.taskDefinition.node.defaultChild as ecs.CfnTaskDefinition).addMetadata(API_METADATA_KEY, {
      apiName: context.apiName,
      compute: 'ecs',
      architecture: 'x64',
      gpu: compute.gpu,
      async: true,
    } satisfies ApiMetadata);

    this.service = new ecs.Ec2Service(this, 'Service', {
      cluster: capacity.cluster,
      taskDefinition: this.taskDefinition,
      desiredCount: compute.minTasks,
      circuitBreaker: { enable: true, rollback: true },
      capacityProviderStrategies: [{ capacityProvider: capacity.capacityProvider.capacityProviderName, weight: 1 }],
      ...DEPLOYMENT,
      vpcSubnets: { subnets: vpc.privateSubnets },
    });
    // As in ecs-backend.ts: the capacity provider association and the execution role's policy come first.
    this.service.node.addDependency(capacity.cluster);
    if (this.taskDefinition.executionRole) this.service.node.addDependency(this.taskDefinition.executionRole);

    this.scaling = scaleOnQueue(this, capacity.cluster, this.service, queue, compute);

    acknowledgeEcsTask(this.taskDefinition, capacity.instanceRole, capacity.group);
    acknowledgePrefixGrants(this.taskRole, storage, [
      ASYNC_PREFIXES.requests,
      ASYNC_PREFIXES.uploads,
      ASYNC_PREFIXES.results,
    ]);
  }
}

/** The job worker's grants (AsyncStorage.grantJobWork), and the queue consumed. */
function grantJobs(role: iam.Role, storage: AsyncStorage, queue: sqs.IQueue): void {
  storage.grantJobWork(role);
  role.addToPolicy(
    new iam.PolicyStatement({
      actions: ['sqs:ReceiveMessage', 'sqs:ChangeMessageVisibility', 'sqs:DeleteMessage'],
      resources: [queue.queueArn],
    }),
  );
}

/**
 * Step scaling on the queue (as aws-ecs-patterns' QueueProcessingEc2Service does, with steps fitted to jobs of
 * seconds to hours): out by ECS_ASYNC_SCALE_OUT_STEPS while jobs wait, which also starts the first task from zero; in
 * to minTasks only when nothing has waited or run for ECS_ASYNC_IDLE_MINUTES.
 */
function scaleOnQueue(
  scope: Construct,
  cluster: ecs.ICluster,
  service: ecs.Ec2Service,
  queue: sqs.IQueue,
  compute: Pick<EcsSettings, 'minTasks' | 'maxTasks'>,
): appscaling.ScalableTarget {
  const stack = Stack.of(scope);
  // A target of our own rather than service.autoScaleTaskCount(), whose target its step actions cannot reach.
  const scaling = new appscaling.ScalableTarget(scope, 'Scaling', {
    serviceNamespace: appscaling.ServiceNamespace.ECS,
    resourceId: `service/${cluster.clusterName}/${service.serviceName}`,
    scalableDimension: 'ecs:service:DesiredCount',
    minCapacity: compute.minTasks,
    maxCapacity: compute.maxTasks,
    role: iam.Role.fromRoleArn(
      scope,
      'ScalingRole',
      stack.formatArn({
        service: 'iam',
        region: '',
        resource: 'role',
        resourceName:
          'aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService',
      }),
    ),
  });
  const period = Duration.minutes(1);
  const waiting = queue.metricApproximateNumberOfMessagesVisible({ period, statistic: 'Maximum' });
  const running = queue.metricApproximateNumberOfMessagesNotVisible({ period, statistic: 'Maximum' });

  const scaleOut = new appscaling.StepScalingAction(scope, 'ScaleOutOnWaitingJobs', {
    scalingTarget: scaling,
    adjustmentType: appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
    metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
    cooldown: Duration.minutes(2),
  });
  const threshold = ECS_ASYNC_SCALE_OUT_STEPS[0].waiting;
  ECS_ASYNC_SCALE_OUT_STEPS.forEach((step, index) => {
    const next = ECS_ASYNC_SCALE_OUT_STEPS[index + 1];
    scaleOut.addAdjustment({
      lowerBound: step.waiting - threshold,
      ...(next ? { upperBound: next.waiting - threshold } : {}),
      adjustment: step.add,
    });
  });
  new cloudwatch.Alarm(scope, 'JobsWaiting', {
    alarmDescription: 'Jobs wait in the queue: add tasks (from zero too)',
    metric: waiting,
    threshold,
    evaluationPeriods: 1,
    comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
  }).addAlarmAction(new cwactions.ApplicationScalingAction(scaleOut));

  const scaleIn = new appscaling.StepScalingAction(scope, 'ScaleInWhenIdle', {
    scalingTarget: scaling,
    adjustmentType: appscaling.AdjustmentType.EXACT_CAPACITY,
    metricAggregationType: appscaling.MetricAggregationType.MAXIMUM,
    cooldown: Duration.minutes(5),
  });
  scaleIn.addAdjustment({ upperBound: 0, adjustment: compute.minTasks });
  new cloudwatch.Alarm(scope, 'QueueIdle', {
    alarmDescription: `No job waiting or running for ${ECS_ASYNC_IDLE_MINUTES} minutes: back to the fewest tasks`,
    metric: new cloudwatch.MathExpression({
      expression: 'waiting + running',
      usingMetrics: { waiting, running },
      period,
      label: 'Jobs waiting or running',
    }),
    threshold: 0,
    evaluationPeriods: ECS_ASYNC_IDLE_MINUTES,
    comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_OR_EQUAL_TO_THRESHOLD,
    // SQS stops sending the metrics of a queue idle for six hours: no data is an idle queue.
    treatMissingData: cloudwatch.TreatMissingData.BREACHING,
  }).addAlarmAction(new cwactions.ApplicationScalingAction(scaleIn));
  return scaling;
}
