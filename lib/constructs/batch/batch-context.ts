/** What a BatchJob hands its compute, what the compute builds, and each compute's resolved settings. */
import type { Duration, Size } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import type { Config } from '../../predictor.js';
import type { ModelSource } from '../model-source.js';
import type { PredictorConfig } from '../predictor.js';

/** What a BatchJob hands its compute. */
export interface BatchJobContext {
  readonly jobName: string;
  readonly model: ModelSource;
  readonly predictor: PredictorConfig;
  readonly config: Config;
  readonly inputBucket: s3.IBucket;
  /** Empty, or ending in `/`. */
  readonly inputPrefix: string;
  readonly outputBucket: s3.IBucket;
  /** Ends in `/`; each run writes under `<outputPrefix><run>/`. */
  readonly outputPrefix: string;
  readonly logRetention: logs.RetentionDays;
  /** Problems found by the BatchJob itself, reported with the compute's in one error. */
  readonly problems: readonly string[];
}

/** What a compute built. */
export interface BatchEngine {
  /** Every run starts as an execution of it (`StartExecution`). */
  readonly stateMachine: sfn.StateMachine;
  /** The Lambda function running the items (Lambda compute). */
  readonly function?: lambda.IFunction;
  /** The SageMaker model the transform jobs run (SageMaker compute). */
  readonly modelName?: string;
}

/** The resolved Lambda settings. */
export interface LambdaBatchSettings {
  readonly memorySize: number;
  readonly architecture: lambda.Architecture;
  readonly timeout: Duration;
  readonly ephemeralStorageSize: Size;
  readonly objectsPerBatch: number;
  readonly retriesPerBatch: number;
  readonly maxConcurrency: number;
  readonly itemConcurrency: number;
  readonly toleratedFailurePercentage: number;
}

/** The resolved SageMaker settings. */
export interface SageMakerBatchSettings {
  readonly instanceType: string;
  readonly instanceCount: number;
  readonly inputFormat: 'jsonl' | 'objects';
  readonly maxConcurrentTransforms: number;
  readonly maxPayload: Size;
}
