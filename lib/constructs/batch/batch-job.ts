/**
 * A batch job: every request under an S3 input prefix (JSON Lines, one request per line; or one request per object)
 * through the same predictor and model a RealtimeApi serves, results under an output prefix. Each run is one execution
 * of the job's state machine; on the Lambda compute a run writes `<outputPrefix><run>/` in the layout of
 * `arclight batch run --local` (README "Batch jobs"), and `{"rerun":"<run>"}` retries only that run's failures.
 */
import { CfnOutput, Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import { Construct } from 'constructs';
import type { Config } from '../../predictor.js';
import type { ModelSource } from '../model-source.js';
import { Predictor } from '../predictor.js';
import { BatchCompute } from './batch-compute.js';
import type { BatchEngine } from './batch-context.js';

export interface BatchJobProps {
  /** The model to run. */
  readonly model: ModelSource;
  /** The code behind each request. @default Predictor.default(), the Open Inference Protocol */
  readonly predictor?: Predictor;
  /** JSON handed to the predictor's init() and predict() as `config`. @default {} */
  readonly config?: Config;
  /** Letters, digits and hyphens; names the function, logs and model. @default the construct id */
  readonly jobName?: string;
  /** The bucket holding the inputs. */
  readonly inputBucket: s3.IBucket;
  /** The inputs' prefix (ending in `/`), the only part of the bucket the job may read. @default '' (the whole bucket) */
  readonly inputPrefix?: string;
  /** Where results go. @default a new private, encrypted, TLS-only bucket */
  readonly outputBucket?: s3.IBucket;
  /** The prefix (ending in `/`) each run writes `<run>/` under; the only part of the bucket the job may write. @default `<jobName>/` */
  readonly outputPrefix?: string;
  /** Where it runs. @default BatchCompute.lambda() */
  readonly compute?: BatchCompute;
  /** How long the job's logs are kept. @default logs.RetentionDays.ONE_MONTH */
  readonly logRetention?: logs.RetentionDays;
}

export class BatchJob extends Construct {
  readonly jobName: string;
  /** Start a run with `StartExecution` (input `{}`; `{"rerun":"<run>"}` retries a run's failures). */
  readonly stateMachine: sfn.StateMachine;
  readonly outputBucket: s3.IBucket;
  /** `s3://bucket/prefix/`: each run writes under `<outputUri><run>/`. */
  readonly outputUri: string;
  /** Which compute runs it. */
  readonly computeKind: BatchCompute['kind'];
  private readonly engine: BatchEngine;

  constructor(scope: Construct, id: string, props: BatchJobProps) {
    super(scope, id);
    this.jobName = props.jobName ?? id;
    const inputPrefix = props.inputPrefix ?? '';
    const outputPrefix = props.outputPrefix ?? `${this.jobName}/`;
    const outputBucket = props.outputBucket ?? this.createOutputBucket();
    this.outputBucket = outputBucket;
    const compute = props.compute ?? BatchCompute.lambda();
    this.computeKind = compute.kind;
    this.engine = compute.bind(this, {
      jobName: this.jobName,
      model: props.model,
      predictor: (props.predictor ?? Predictor.default()).bind(),
      config: props.config ?? {},
      inputBucket: props.inputBucket,
      inputPrefix,
      outputBucket,
      outputPrefix,
      logRetention: props.logRetention ?? logs.RetentionDays.ONE_MONTH,
      problems: this.problems(inputPrefix, outputPrefix, props),
    });
    this.stateMachine = this.engine.stateMachine;
    this.outputUri = `s3://${outputBucket.bucketName}/${outputPrefix}`;
    new CfnOutput(this, 'StateMachineArn', {
      value: this.stateMachine.stateMachineArn,
      description: `Starts a run of the ${this.jobName} batch job (aws stepfunctions start-execution)`,
    });
    new CfnOutput(this, 'OutputUri', { value: this.outputUri, description: `Runs of ${this.jobName} write here` });
  }

  /** The Lambda function running the items; only the Lambda compute has one. */
  get function(): lambda.IFunction {
    if (!this.engine.function) throw new Error(`BatchJob '${this.jobName}' runs on ${this.computeKind}, not on Lambda`);
    return this.engine.function;
  }

  private problems(inputPrefix: string, outputPrefix: string, props: BatchJobProps): string[] {
    const problems: string[] = [];
    if (!/^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$/.test(this.jobName)) {
      problems.push(`jobName '${this.jobName}' is not 1-63 letters, digits and hyphens`);
    }
    for (const [name, prefix] of [
      ['inputPrefix', inputPrefix],
      ['outputPrefix', outputPrefix],
    ] as const) {
      if (prefix !== '' && (!prefix.endsWith('/') || prefix.startsWith('/') || prefix.includes('*'))) {
        problems.push(`${name} '${prefix}' must end in '/', not start with one, and hold no '*'`);
      }
    }
    if (outputPrefix === '') problems.push("outputPrefix must not be empty: the job's write access is scoped to it");
    const sameBucket = props.outputBucket !== undefined && props.outputBucket === props.inputBucket;
    if (sameBucket && (outputPrefix.startsWith(inputPrefix) || inputPrefix.startsWith(outputPrefix))) {
      problems.push(
        `outputPrefix '${outputPrefix}' and inputPrefix '${inputPrefix}' overlap in one bucket: a run would read its own results`,
      );
    }
    return problems;
  }

  private createOutputBucket(): s3.Bucket {
    const bucket = new s3.Bucket(this, 'Output', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      removalPolicy: RemovalPolicy.RETAIN,
      // Multipart uploads the Map's ResultWriter abandoned are no result anyone reads.
      lifecycleRules: [{ abortIncompleteMultipartUploadAfter: Duration.days(7) }],
    });
    Validations.of(bucket).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'Results of batch jobs, written only by the job role; S3 server access logs would need a second bucket per job. Use CloudTrail data events where reads must be audited.',
    });
    return bucket;
  }
}
