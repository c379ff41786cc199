/**
 * The async worker on Lambda: the RealtimeApi's image (same predictor, same model source), its handler the SQS
 * consumer (`index.worker`), one job per invocation with the whole function timeout (up to 15 minutes) and partial
 * batch failures reported. Its role reads the requests, writes and removes results, and updates statuses: nothing else.
 */
import { rmSync } from 'node:fs';
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import { Platform } from 'aws-cdk-lib/aws-ecr-assets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { SqsEventSource } from 'aws-cdk-lib/aws-lambda-event-sources';
import * as logs from 'aws-cdk-lib/aws-logs';
import { DISABLE_ASSET_STAGING_CONTEXT } from 'aws-cdk-lib/cx-api';
import { Construct } from 'constructs';
import { API_METADATA_KEY, ASYNC_ENV, ENV } from '../../contract.js';
import type { Config } from '../../predictor.js';
import type { ApiMetadata } from '../backends/backend-common.js';
import type { LambdaCompute } from '../compute.js';
import { LAMBDA_MODULE_DIR, buildLambdaImageContext, type NodeArch } from '../images/lambda-image-context.js';
import { isTorchFormat, modelEnvironment, type ModelSource } from '../model-source.js';
import type { PredictorConfig } from '../predictor.js';
import { acknowledgePrefixGrants } from './async-front-function.js';
import type { AsyncNotifications } from './async-notifications.js';
import { ASYNC_PREFIXES, type AsyncStorage } from './async-storage.js';

export interface AsyncLambdaWorkerProps {
  readonly apiName: string;
  readonly model: ModelSource;
  readonly predictor: PredictorConfig;
  readonly config: Config;
  readonly compute: LambdaCompute;
  readonly storage: AsyncStorage;
  /** How long one job may run: the function's timeout. */
  readonly timeout: Duration;
  readonly maxBodyBytes: number;
  readonly environment: Record<string, string>;
  readonly logRetention: logs.RetentionDays;
  /** Completion notifications the worker sends. @default none */
  readonly notifications?: AsyncNotifications;
  /** Checks the bound model (its size and format) and throws one error with every problem. */
  readonly validate: (model: ReturnType<ModelSource['bind']>) => void;
}

export class AsyncLambdaWorker extends Construct {
  readonly function: lambda.DockerImageFunction;

  constructor(scope: Construct, id: string, props: AsyncLambdaWorkerProps) {
    super(scope, id);
    const { storage, compute } = props;
    if (!storage.queue) throw new Error('AsyncLambdaWorker needs the storage with its queue');
    const queue = storage.queue;
    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Worker of the ${props.apiName} async API: reads its model and requests, writes results and statuses`,
    });
    logGroup.grantWrite(role);
    const model = props.model.bind(this, role);
    props.validate(model);
    storage.grantJobWork(role);

    const notifying = props.notifications?.bindWorker(role).environment ?? {};

    const arch: NodeArch = compute.architecture === lambda.Architecture.ARM_64 ? 'arm64' : 'x64';
    const contextDir = buildLambdaImageContext({
      predictorEntry: props.predictor.entry,
      arch,
      entry: 'async',
      ...(isTorchFormat(model.format) ? { torch: { module: model.torch?.module } } : {}),
    });
    this.function = new lambda.DockerImageFunction(this, 'Function', {
      description: `Arclight async API ${props.apiName}: the worker`,
      code: lambda.DockerImageCode.fromImageAsset(contextDir, {
        platform: arch === 'arm64' ? Platform.LINUX_ARM64 : Platform.LINUX_AMD64,
        cmd: ['index.worker'],
      }),
      architecture: compute.architecture,
      memorySize: compute.memorySize,
      ephemeralStorageSize: compute.ephemeralStorageSize,
      timeout: props.timeout,
      reservedConcurrentExecutions: compute.reservedConcurrency,
      role,
      logGroup,
      environment: {
        [ENV.apiName]: props.apiName,
        [ENV.modelUri]: model.uri,
        ...(model.sha256 ? { [ENV.modelSha256]: model.sha256 } : {}),
        ...modelEnvironment(model, LAMBDA_MODULE_DIR),
        [ENV.config]: JSON.stringify(props.config),
        [ENV.executionProviders]: 'cpu',
        [ENV.maxBodyBytes]: String(props.maxBodyBytes),
        [ENV.requestTimeoutMs]: String(Math.max(1000, props.timeout.toMilliseconds() - 1000)),
        [ASYNC_ENV.bucket]: storage.bucket.bucketName,
        [ASYNC_ENV.table]: storage.table.tableName,
        ...props.environment,
        ...notifying,
      },
    });
    if (!this.node.tryGetContext(DISABLE_ASSET_STAGING_CONTEXT)) rmSync(contextDir, { recursive: true, force: true });
    (this.function.node.defaultChild as lambda.CfnFunction).addMetadata(API_METADATA_KEY, {
      apiName: props.apiName,
      compute: 'lambda',
      architecture: arch,
      async: true,
    } satisfies ApiMetadata);
    // One job per invocation: each gets the whole timeout, which the queue's visibility timeout is fitted to.
    this.function.addEventSource(new SqsEventSource(queue, { batchSize: 1, reportBatchItemFailures: true }));
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5',
      reason: "Log stream ARNs under the worker's own log group end in ':*'; nothing else is wildcarded.",
    });
    acknowledgePrefixGrants(role, storage, [ASYNC_PREFIXES.requests, ASYNC_PREFIXES.uploads, ASYNC_PREFIXES.results]);
  }
}

/** Lambda's longest timeout, which bounds an async job on the Lambda compute. */
export const LAMBDA_MAX_TIMEOUT = Duration.minutes(15);
