/**
 * AsyncApi: a model (and optionally a predictor) served as an asynchronous HTTPS API. `POST /async` stores the request
 * and answers 202 with the job's id; `GET /async/{id}` tells queued, running, succeeded (with the result inline, or a
 * short-lived presigned URL) or failed (with the contract's error); `POST /async/uploads` gives a presigned S3 PUT URL
 * for a body above the 6 MB a request can carry. The same predictor, model sources and computes as RealtimeApi.
 *
 * On the Lambda compute: a small front function behind an HTTP API, the job's bytes in S3, its status in DynamoDB,
 * its id in SQS (with a dead-letter queue), and the RealtimeApi's image as the queue's consumer, with up to 15 minutes
 * per job instead of API Gateway's 29 s.
 *
 * On the SageMaker compute: the same front, bucket and table, and SageMaker asynchronous inference instead of the queue
 * and the worker (async-sagemaker-endpoint.ts): the RealtimeApi's container image, up to an hour and 1 GiB per job,
 * SNS notifications, and scaling on the backlog down to zero instances.
 *
 * On the ECS compute: the same front, bucket, table and queue, and an ECS service of the RealtimeApi's container image
 * consuming the queue (async-ecs-worker.ts): up to 11 hours per job, scaled on the queue's depth, down to zero tasks
 * with minTasks: 0.
 */
import { Annotations, CfnOutput, Duration, Size, SizeRoundingBehavior, Stack } from 'aws-cdk-lib';
import type * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { ASYNC_DEFAULTS, ASYNC_ENV } from '../../contract.js';
import type { Config } from '../../predictor.js';
import type { BackendContext } from '../backends/backend-common.js';
import { ApiAuth } from '../api-auth.js';
import { validateProps, type ThrottleProps } from '../backends/backend-common.js';
import { Compute, EcsCompute, LambdaCompute, SageMakerCompute } from '../compute.js';
import { requiredMemoryMb } from '../backends/limits.js';
import type { ModelSource, ModelSourceConfig } from '../model-source.js';
import { Predictor, type PredictorConfig } from '../predictor.js';
import { AsyncEcsWorker, ECS_ASYNC_MAX_TIMEOUT, ECS_ASYNC_VISIBILITY } from './async-ecs-worker.js';
import { AsyncFrontFunction } from './async-front-function.js';
import { AsyncLambdaWorker, LAMBDA_MAX_TIMEOUT } from './async-lambda-worker.js';
import { AsyncNotifications, notificationProblems, type AsyncNotificationsProps } from './async-notifications.js';
import { AsyncSageMakerEndpoint, SAGEMAKER_ASYNC_MAX_TIMEOUT } from './async-sagemaker-endpoint.js';
import { AsyncStorage, SQS_MAX_VISIBILITY } from './async-storage.js';

/** The largest request body an async API on Lambda takes by default (AsyncApiProps.maxBodySize). */
export const ASYNC_LAMBDA_MAX_BODY_SIZE = Size.mebibytes(100);

/** Props of an AsyncApi. */
export interface AsyncApiProps {
  /** The model to serve. */
  readonly model: ModelSource;
  /** URL-safe name of the API. @default the construct id */
  readonly apiName?: string;
  /** The code each job runs, as `POST /` would. @default Predictor.default(), the Open Inference Protocol */
  readonly predictor?: Predictor;
  /** Where jobs run. @default Compute.lambda() */
  readonly compute?: Compute;
  /** JSON handed to the predictor's init() and predict() as `config`. @default {} */
  readonly config?: Config;
  /** Who may submit and read jobs. @default ApiAuth.none(), with a synth warning */
  readonly auth?: ApiAuth;
  /** Stage throttling of the front. @default 100 requests/s, burst 200 */
  readonly throttle?: ThrottleProps;
  /** How long the functions' and the API's logs are kept. @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
  /** How long one job may run: up to 15 minutes on Lambda, an hour on SageMaker, 11 hours on ECS. @default Duration.minutes(15) */
  readonly timeout?: Duration;
  /** The largest request body, uploads included. @default Size.mebibytes(100) on Lambda, Size.gibibytes(1) on SageMaker */
  readonly maxBodySize?: Size;
  /** Results up to this size are returned inline by `GET /async/{id}`. @default Size.kibibytes(256) */
  readonly inlineResultSize?: Size;
  /** How long presigned upload and result URLs are valid. @default Duration.minutes(15) */
  readonly urlExpiry?: Duration;
  /** How long requests, results and statuses are kept (the bucket's lifecycle rules, the table's TTL). @default Duration.days(7) */
  readonly retention?: Duration;
  /** Deliveries of a job before it is failed and its message goes to the dead-letter queue (Lambda, ECS). @default 3 */
  readonly maxReceiveCount?: number;
  /** SageMaker compute: jobs SageMaker sends one instance at once (1–1000). @default 4 */
  readonly maxConcurrentInvocationsPerInstance?: number;
  /**
   * Lambda compute: tell when each job ends, on an SNS topic and/or by signed webhooks to each submission's
   * `Arclight-Callback-Url` (SageMaker publishes to `endpoint.successTopic`/`errorTopic` itself). @default none
   */
  readonly notifications?: AsyncNotificationsProps;
  /**
   * SageMaker compute: the fewest instances autoscaling keeps; 0 scales to zero when no job waits (the compute's own
   * minInstances, a realtime setting, is not used: synth warns `arclight:asyncMinInstances` when it is set). @default 0
   */
  readonly minInstances?: number;
  /** SageMaker compute: the backlog of jobs per instance that autoscaling holds (ApproximateBacklogSizePerInstance). @default 5 */
  readonly targetBacklogPerInstance?: number;
}

export class AsyncApi extends Construct {
  /** The API's base URL (ends with `/`): `POST <url>async`. */
  readonly url: string;
  readonly api: apigwv2.HttpApi;
  readonly apiName: string;
  readonly storage: AsyncStorage;
  /** The worker function (Lambda compute). */
  readonly worker?: lambda.IFunction;
  /** The queue-consuming ECS service, its task definition and scaling (ECS compute). */
  readonly ecsWorker?: AsyncEcsWorker;
  /** The asynchronous inference endpoint, its SNS topics and scaling (SageMaker compute). */
  readonly endpoint?: AsyncSageMakerEndpoint;
  /** Completion notifications (Lambda compute, when `notifications` is set): the topic, the webhook secret. */
  readonly notifications?: AsyncNotifications;
  /** The front function: submit, upload, status. */
  readonly front: lambda.IFunction;
  private readonly frontStage: apigwv2.HttpStage;

  constructor(scope: Construct, id: string, props: AsyncApiProps) {
    super(scope, id);
    this.apiName = props.apiName ?? id;
    const compute = props.compute ?? Compute.lambda();
    const timeout = props.timeout ?? LAMBDA_MAX_TIMEOUT;
    const onSageMaker = compute instanceof SageMakerCompute;
    const onEcs = compute instanceof EcsCompute;
    const defaultBodySize = onSageMaker ? Size.bytes(ASYNC_DEFAULTS.maxBodyBytes) : ASYNC_LAMBDA_MAX_BODY_SIZE;
    const maxBodyBytes = (props.maxBodySize ?? defaultBodySize).toBytes({
      rounding: SizeRoundingBehavior.FLOOR,
    });
    const inlineResultBytes = (props.inlineResultSize ?? Size.kibibytes(256)).toBytes({
      rounding: SizeRoundingBehavior.FLOOR,
    });
    const urlExpiry = props.urlExpiry ?? Duration.minutes(15);
    const retention = props.retention ?? Duration.days(ASYNC_DEFAULTS.retentionDays);
    const maxReceiveCount = props.maxReceiveCount ?? ASYNC_DEFAULTS.maxReceives;
    const maxConcurrentInvocationsPerInstance = props.maxConcurrentInvocationsPerInstance ?? 4;
    const targetBacklogPerInstance = props.targetBacklogPerInstance ?? 5;
    const auth = props.auth ?? ApiAuth.none();
    const logRetention = props.logRetention ?? logs.RetentionDays.ONE_MONTH;
    const asyncProblems = [
      ...computeProblems(compute),
      ...timeoutProblems(timeout, compute),
      ...(onSageMaker ? sageMakerProblems(maxConcurrentInvocationsPerInstance, targetBacklogPerInstance) : []),
      ...notificationProblems(props.notifications),
      ...(compute instanceof SageMakerCompute
        ? minInstancesProblems(props.minInstances ?? 0, compute.maxInstances)
        : sageMakerOnlyProblems(props)),
      ...(onEcs && props.notifications
        ? ['notifications: not built for ECS queue workers yet (poll statusUrl); they run on the Lambda compute']
        : []),
      ...(onSageMaker && (props.notifications?.topic || props.notifications?.webhooks)
        ? [
            'notifications: on SageMaker, asynchronous inference notifies endpoint.successTopic and endpoint.errorTopic itself (webhooks are not built there)',
          ]
        : []),
      ...(maxBodyBytes < 1 || maxBodyBytes > ASYNC_DEFAULTS.maxBodyBytes
        ? [`maxBodySize ${maxBodyBytes} bytes is outside 1 byte–1 GiB`]
        : []),
      ...(inlineResultBytes > 1024 * 1024 ? [`inlineResultSize ${inlineResultBytes} bytes is above 1 MiB`] : []),
      ...(urlExpiry.toSeconds() < 60 || urlExpiry.toSeconds() > 43_200
        ? [
            `urlExpiry ${urlExpiry.toSeconds()} s is outside 60 s–12 h (a presigned URL lives no longer than the role session that signs it)`,
          ]
        : []),
      ...(retention.toDays({ integral: false }) < 1 ? [`retention must be at least one day`] : []),
      ...(!Number.isInteger(maxReceiveCount) || maxReceiveCount < 1 || maxReceiveCount > 1000
        ? [`maxReceiveCount must be an integer from 1 to 1000 (SQS's redrive limit), got ${maxReceiveCount}`]
        : []),
    ];
    const environment: Record<string, string> = {
      [ASYNC_ENV.maxBodyBytes]: String(maxBodyBytes),
      [ASYNC_ENV.inlineResultBytes]: String(inlineResultBytes),
      [ASYNC_ENV.urlTtlSeconds]: String(urlExpiry.toSeconds()),
      [ASYNC_ENV.retentionDays]: String(Math.ceil(retention.toDays({ integral: false }))),
      [ASYNC_ENV.maxReceives]: String(maxReceiveCount),
    };
    const predictor = (props.predictor ?? Predictor.default()).bind();
    const context: BackendContext = {
      apiName: this.apiName,
      model: props.model,
      predictor,
      auth,
      config: props.config ?? {},
      throttle: props.throttle,
      docs: false,
      logRetention,
      // The async API's own dashboard and alarms are not built yet; validation needs the realtime defaults.
      monitoring: {},
      tracing: false,
      variants: [],
    };
    const validate = (model: ModelSourceConfig): void => {
      const problems = [
        ...asyncProblems,
        ...(compute instanceof LambdaCompute
          ? [
              ...withoutRealtimeTimeout(compute.problems(model.sizeBytes, model.format)),
              ...lambdaMemoryProblems(compute, model, maxBodyBytes),
            ]
          : []),
        ...(compute instanceof SageMakerCompute ? compute.problems(model.sizeBytes) : []),
        ...(compute instanceof EcsCompute ? ecsProblems(compute) : []),
      ];
      try {
        validateProps(this, context, model, problems);
      } catch (error) {
        throw new Error((error as Error).message.replace(/^RealtimeApi /, 'AsyncApi '), { cause: error });
      }
    };

    this.storage = new AsyncStorage(this, 'Storage', {
      jobTimeout: timeout,
      maxReceiveCount: Number.isInteger(maxReceiveCount) && maxReceiveCount >= 1 ? maxReceiveCount : 1,
      retention,
      queue: !onSageMaker,
      // The ECS worker renews a running job's visibility: a short one brings a dead task's job back soon.
      ...(onEcs ? { visibilityTimeout: ECS_ASYNC_VISIBILITY } : {}),
    });
    if (compute instanceof SageMakerCompute) {
      if (props.minInstances === undefined && compute.minInstances !== 1) {
        Annotations.of(this).addWarningV2(
          'arclight:asyncMinInstances',
          `Compute.sageMaker({ minInstances: ${compute.minInstances} }) is not used by an AsyncApi, which keeps AsyncApiProps.minInstances (default 0: scale to zero); set minInstances on the AsyncApi`,
        );
      }
      this.endpoint = new AsyncSageMakerEndpoint(this, 'Endpoint', {
        context,
        compute,
        storage: this.storage,
        timeout,
        maxBodyBytes,
        environment,
        maxConcurrentInvocationsPerInstance,
        targetBacklogPerInstance,
        minInstances: props.minInstances ?? 0,
        validate,
      });
    } else if (compute instanceof EcsCompute) {
      this.ecsWorker = new AsyncEcsWorker(this, 'Worker', {
        context,
        compute,
        storage: this.storage,
        timeout,
        maxBodyBytes,
        environment,
        validate,
      });
    } else {
      if (props.notifications) {
        this.notifications = new AsyncNotifications(this, 'Notifications', this.apiName, props.notifications);
      }
      this.worker = this.lambdaWorker(props, compute, predictor, timeout, maxBodyBytes, environment, validate);
    }
    const front = new AsyncFrontFunction(this, 'Front', {
      apiName: this.apiName,
      storage: this.storage,
      environment: { ...environment, ...this.notifications?.frontEnvironment },
      auth,
      throttle: props.throttle,
      logRetention,
      ...(this.endpoint
        ? {
            endpoint: {
              name: this.endpoint.endpointName,
              arn: this.endpoint.endpointArn,
              timeoutSeconds: timeout.toSeconds(),
            },
          }
        : {}),
    });
    this.front = front.function;
    this.api = front.api;
    this.frontStage = front.stage;
    this.url = front.stage.url;
    new CfnOutput(this, 'Url', { value: this.url, description: `URL of the ${this.apiName} async API` });
  }

  private lambdaWorker(
    props: AsyncApiProps,
    compute: Compute,
    predictor: PredictorConfig,
    timeout: Duration,
    maxBodyBytes: number,
    environment: Record<string, string>,
    validate: (model: ModelSourceConfig) => void,
  ): lambda.IFunction {
    return new AsyncLambdaWorker(this, 'Worker', {
      apiName: this.apiName,
      model: props.model,
      predictor,
      config: props.config ?? {},
      compute: compute as LambdaCompute,
      storage: this.storage,
      timeout,
      maxBodyBytes,
      environment,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      ...(this.notifications ? { notifications: this.notifications } : {}),
      validate,
    }).function;
  }

  /** Allows `grantee` to call the API (meaningful with `ApiAuth.iam()`). */
  grantInvoke(grantee: iam.IGrantable): iam.Grant {
    return iam.Grant.addToPrincipal({
      grantee,
      actions: ['execute-api:Invoke'],
      resourceArns: [
        Stack.of(this).formatArn({
          service: 'execute-api',
          resource: this.api.apiId,
          resourceName: `${this.frontStage.stageName}/*/async*`,
        }),
      ],
    });
  }
}

function computeProblems(compute: Compute): string[] {
  return compute instanceof LambdaCompute || compute instanceof SageMakerCompute || compute instanceof EcsCompute
    ? []
    : [`compute ${compute.kind}: AsyncApi runs on Compute.lambda(), Compute.sageMaker() and Compute.ecs()`];
}

function timeoutProblems(timeout: Duration, compute: Compute): string[] {
  const seconds = timeout.toSeconds();
  const problems: string[] = [];
  const [max, limit] =
    compute instanceof SageMakerCompute
      ? [SAGEMAKER_ASYNC_MAX_TIMEOUT, "SageMaker asynchronous inference's"]
      : compute instanceof EcsCompute
        ? [
            ECS_ASYNC_MAX_TIMEOUT,
            "the ECS worker's (SQS extends a message's visibility to 12 h after its receipt at most)",
          ]
        : [LAMBDA_MAX_TIMEOUT, "Lambda's"];
  if (seconds < 1 || seconds > max.toSeconds()) {
    problems.push(`timeout ${seconds} s is outside ${limit} 1–${max.toSeconds()} s`);
  }
  if (compute instanceof LambdaCompute && seconds * 6 > SQS_MAX_VISIBILITY.toSeconds()) {
    // Not reachable on Lambda (15 min × 6 < 12 h); kept for the computes with longer jobs.
    problems.push(`timeout ${seconds} s × 6 is above SQS's 12 h visibility timeout`);
  }
  return problems;
}

function sageMakerProblems(maxConcurrentInvocationsPerInstance: number, targetBacklogPerInstance: number): string[] {
  return [
    ...(!Number.isInteger(maxConcurrentInvocationsPerInstance) ||
    maxConcurrentInvocationsPerInstance < 1 ||
    maxConcurrentInvocationsPerInstance > 1000
      ? [
          `maxConcurrentInvocationsPerInstance must be an integer from 1 to 1000 (SageMaker's ClientConfig), got ${maxConcurrentInvocationsPerInstance}`,
        ]
      : []),
    ...(!(targetBacklogPerInstance > 0) || !Number.isFinite(targetBacklogPerInstance)
      ? [`targetBacklogPerInstance must be a positive number, got ${targetBacklogPerInstance}`]
      : []),
  ];
}

/** The ECS compute's checks, but minTasks may be 0 on a queue: the service scales out from zero when jobs wait. */
function ecsProblems(compute: EcsCompute): string[] {
  return [
    ...compute.problems().filter((problem) => !/^minTasks must be an integer of at least 1/.test(problem)),
    ...(!Number.isInteger(compute.minTasks) || compute.minTasks < 0
      ? [`minTasks must be an integer of at least 0, got ${compute.minTasks}`]
      : []),
  ];
}

function sageMakerOnlyProblems(props: AsyncApiProps): string[] {
  const set = (['minInstances', 'maxConcurrentInvocationsPerInstance', 'targetBacklogPerInstance'] as const).filter(
    (name) => props[name] !== undefined,
  );
  return set.length > 0
    ? [`${set.join(', ')}: SageMaker compute only (Lambda and ECS workers scale with the queue by their own rules)`]
    : [];
}

function minInstancesProblems(minInstances: number, maxInstances: number): string[] {
  if (!Number.isInteger(minInstances) || minInstances < 0) {
    return [`minInstances must be a whole number of instances (0 scales to zero), got ${minInstances}`];
  }
  return minInstances > maxInstances
    ? [`minInstances ${minInstances} is above the compute's maxInstances ${maxInstances}`]
    : [];
}

/** The Lambda compute's own timeout check is API Gateway's 29 s, which the async worker is not behind. */
function withoutRealtimeTimeout(problems: string[]): string[] {
  return problems.filter((problem) => !/^timeout .* API Gateway/.test(problem));
}

/**
 * A job's body is in memory about four times at its peak (the S3 read, the base64 event, the decoded body, the
 * payload) beside the model.
 */
export function lambdaMemoryProblems(
  compute: LambdaCompute,
  model: Pick<ModelSourceConfig, 'sizeBytes' | 'format'>,
  maxBodyBytes: number,
): string[] {
  const neededMb =
    Math.ceil((4 * maxBodyBytes) / 2 ** 20) + requiredMemoryMb(model.sizeBytes ?? 0, model.format !== 'onnx');
  return neededMb > compute.memorySize
    ? [
        `maxBodySize ${(maxBodyBytes / 2 ** 20).toFixed(0)} MiB needs about ${neededMb} MB of memory with the model (a body is held about four times while a job runs); memorySize is ${compute.memorySize} MB`,
      ]
    : [];
}
