/**
 * Where a BatchJob runs: `BatchCompute.lambda()` (CPU: a Step Functions Distributed Map over the Lambda image) or
 * `BatchCompute.sageMaker()` (GPU: a SageMaker batch transform of the container image, started by a state machine).
 * Each builds its own engine in `bind`, as Compute does for RealtimeApi.
 */
import { Duration, Size, SizeRoundingBehavior } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type { Construct } from 'constructs';
import type { BatchEngine, BatchJobContext, LambdaBatchSettings, SageMakerBatchSettings } from './batch-context.js';
import { buildStepFunctionsBatch } from './step-functions-batch.js';
import { buildTransformBatch } from './transform-batch.js';

export interface LambdaBatchComputeProps {
  /** @default 2048 MB */
  readonly memorySize?: number;
  /** @default ARM_64 */
  readonly architecture?: lambda.Architecture;
  /** One batch of items must finish in it (Lambda's limit: 15 minutes). @default 15 minutes */
  readonly timeout?: Duration;
  /** @default 2 GiB */
  readonly ephemeralStorageSize?: Size;
  /** Input objects per Lambda invocation (ItemBatcher); each JSON Lines object runs whole in one. @default 10 */
  readonly objectsPerBatch?: number;
  /** Lines of the failures manifest per invocation when a run retries its failures. @default 100 */
  readonly retriesPerBatch?: number;
  /** Invocations at once (the Distributed Map's MaxConcurrency; AWS allows up to 10,000). @default 100 */
  readonly maxConcurrency?: number;
  /** Items in flight at once inside one invocation. @default 4 */
  readonly itemConcurrency?: number;
  /** Batches that may fail as a whole (after retries) before the run fails; item errors never count. @default 0 */
  readonly toleratedFailurePercentage?: number;
}

export interface SageMakerBatchComputeProps {
  /** @default 'ml.g5.xlarge' */
  readonly instanceType?: string;
  /** @default 1 */
  readonly instanceCount?: number;
  /** How the input splits into requests: `jsonl` (one per line) or `objects` (one per object). @default 'jsonl' */
  readonly inputFormat?: 'jsonl' | 'objects';
  /** Requests in flight per instance. @default 4 */
  readonly maxConcurrentTransforms?: number;
  /** Largest request (SageMaker allows up to 100 MB). @default 6 MB */
  readonly maxPayload?: Size;
}

/** AWS limits the props are checked against. */
export const BATCH_LIMITS = {
  lambdaTimeoutMinutes: 15,
  lambdaMemoryMb: { min: 128, max: 10_240 },
  /** A Distributed Map runs up to 10,000 child executions at once. */
  maxConcurrency: 10_000,
  /** SageMaker batch transform's largest MaxPayloadInMB. */
  transformMaxPayloadMb: 100,
} as const;

export abstract class BatchCompute {
  /** CPU: a Step Functions Distributed Map over the S3 input, each batch of objects run by the Lambda image. */
  static lambda(props: LambdaBatchComputeProps = {}): BatchCompute {
    return new LambdaBatchCompute(props);
  }

  /** GPU: a SageMaker batch transform job of the container image, started and awaited by a state machine. */
  static sageMaker(props: SageMakerBatchComputeProps = {}): BatchCompute {
    return new SageMakerBatchCompute(props);
  }

  abstract readonly kind: 'lambda' | 'sagemaker';
  abstract bind(scope: Construct, context: BatchJobContext): BatchEngine;
}

class LambdaBatchCompute extends BatchCompute {
  readonly kind = 'lambda';
  constructor(private readonly props: LambdaBatchComputeProps) {
    super();
  }

  bind(scope: Construct, context: BatchJobContext): BatchEngine {
    const p = this.props;
    const settings: LambdaBatchSettings = {
      memorySize: p.memorySize ?? 2048,
      architecture: p.architecture ?? lambda.Architecture.ARM_64,
      timeout: p.timeout ?? Duration.minutes(BATCH_LIMITS.lambdaTimeoutMinutes),
      ephemeralStorageSize: p.ephemeralStorageSize ?? Size.gibibytes(2),
      objectsPerBatch: p.objectsPerBatch ?? 10,
      retriesPerBatch: p.retriesPerBatch ?? 100,
      maxConcurrency: p.maxConcurrency ?? 100,
      itemConcurrency: p.itemConcurrency ?? 4,
      toleratedFailurePercentage: p.toleratedFailurePercentage ?? 0,
    };
    return buildStepFunctionsBatch(scope, context, settings, lambdaProblems(settings));
  }
}

function lambdaProblems(s: LambdaBatchSettings): string[] {
  const problems: string[] = [];
  const minutes = s.timeout.toSeconds() / 60;
  if (minutes > BATCH_LIMITS.lambdaTimeoutMinutes || s.timeout.toSeconds() < 10) {
    problems.push(`timeout ${s.timeout.toHumanString()} is not between 10 seconds and Lambda's 15 minutes`);
  }
  const { min, max } = BATCH_LIMITS.lambdaMemoryMb;
  if (!Number.isInteger(s.memorySize) || s.memorySize < min || s.memorySize > max) {
    problems.push(`memorySize ${s.memorySize} is not a whole number of MB from ${min} to ${max}`);
  }
  for (const [name, value, limit] of [
    ['objectsPerBatch', s.objectsPerBatch, 100_000_000],
    ['retriesPerBatch', s.retriesPerBatch, 100_000_000],
    ['maxConcurrency', s.maxConcurrency, BATCH_LIMITS.maxConcurrency],
    ['itemConcurrency', s.itemConcurrency, 1024],
  ] as const) {
    if (!Number.isInteger(value) || value < 1 || value > limit)
      problems.push(`${name} ${value} is not from 1 to ${limit}`);
  }
  if (!(s.toleratedFailurePercentage >= 0 && s.toleratedFailurePercentage <= 100)) {
    problems.push(`toleratedFailurePercentage ${s.toleratedFailurePercentage} is not from 0 to 100`);
  }
  return problems;
}

class SageMakerBatchCompute extends BatchCompute {
  readonly kind = 'sagemaker';
  constructor(private readonly props: SageMakerBatchComputeProps) {
    super();
  }

  bind(scope: Construct, context: BatchJobContext): BatchEngine {
    const p = this.props;
    const settings: SageMakerBatchSettings = {
      instanceType: p.instanceType ?? 'ml.g5.xlarge',
      instanceCount: p.instanceCount ?? 1,
      inputFormat: p.inputFormat ?? 'jsonl',
      maxConcurrentTransforms: p.maxConcurrentTransforms ?? 4,
      maxPayload: p.maxPayload ?? Size.mebibytes(6),
    };
    const problems: string[] = [];
    if (!/^ml\.[a-z0-9]+\.[a-z0-9]+$/.test(settings.instanceType)) {
      problems.push(`instanceType '${settings.instanceType}' is not a SageMaker instance type (ml.<family>.<size>)`);
    }
    if (!Number.isInteger(settings.instanceCount) || settings.instanceCount < 1) {
      problems.push(`instanceCount ${settings.instanceCount} is not a positive integer`);
    }
    if (!Number.isInteger(settings.maxConcurrentTransforms) || settings.maxConcurrentTransforms < 1) {
      problems.push(`maxConcurrentTransforms ${settings.maxConcurrentTransforms} is not a positive integer`);
    }
    const payloadMb = settings.maxPayload.toMebibytes({ rounding: SizeRoundingBehavior.NONE });
    if (payloadMb < 1 || payloadMb > BATCH_LIMITS.transformMaxPayloadMb) {
      problems.push(`maxPayload ${payloadMb} MB is not from 1 to ${BATCH_LIMITS.transformMaxPayloadMb} MB`);
    }
    return buildTransformBatch(scope, context, settings, problems);
  }
}
