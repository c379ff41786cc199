/**
 * An async API's storage: one private, encrypted, TLS-only bucket for requests, uploads and results (each prefix with
 * its lifecycle rule) with its access logs in a second bucket; a DynamoDB table of job statuses (conditional writes,
 * TTL, point-in-time recovery); an encrypted, TLS-only SQS queue whose visibility timeout covers the worker's timeout
 * six times (AWS's guidance for Lambda event sources) and whose redrive policy ends in a dead-letter queue.
 */
import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sqs from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';

/** SQS's longest visibility timeout. */
export const SQS_MAX_VISIBILITY = Duration.hours(12);
/** The prefixes of the async bucket (the runtime's JOB_PREFIXES, which constructs may not import). */
export const ASYNC_PREFIXES = { requests: 'requests/', uploads: 'uploads/', results: 'results/' } as const;

export interface AsyncStorageProps {
  /** How long one job may run (the worker's timeout). */
  readonly jobTimeout: Duration;
  /** Deliveries before a message goes to the dead-letter queue. */
  readonly maxReceiveCount: number;
  /** How long requests, results and statuses are kept. */
  readonly retention: Duration;
  /** Whether jobs go through a queue (not on SageMaker, whose asynchronous inference queues them itself). */
  readonly queue: boolean;
  /** The queue's visibility timeout. @default asyncVisibilityTimeout(jobTimeout), six times the job's timeout */
  readonly visibilityTimeout?: Duration;
}

export class AsyncStorage extends Construct {
  readonly bucket: s3.Bucket;
  readonly table: dynamodb.Table;
  /** The job queue, except on SageMaker. */
  readonly queue?: sqs.Queue;
  readonly deadLetterQueue?: sqs.Queue;

  constructor(scope: Construct, id: string, props: AsyncStorageProps) {
    super(scope, id);
    const accessLogs = new s3.Bucket(this, 'AccessLogs', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_PREFERRED,
      lifecycleRules: [{ expiration: Duration.days(90) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason: 'This is the access log bucket of the async bucket; logging it into itself would loop.',
    });
    const days = Math.max(1, Math.ceil(props.retention.toDays({ integral: false })));
    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      serverAccessLogsBucket: accessLogs,
      lifecycleRules: [
        ...Object.entries(ASYNC_PREFIXES).map(([name, prefix]) => ({
          id: `expire-${name}`,
          prefix,
          expiration: Duration.days(days),
        })),
        { id: 'abort-incomplete-uploads', abortIncompleteMultipartUploadAfter: Duration.days(1) },
      ],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    this.table = new dynamodb.Table(this, 'Jobs', {
      partitionKey: { name: 'id', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      timeToLiveAttribute: 'expiresAt',
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true },
      removalPolicy: RemovalPolicy.RETAIN,
    });
    if (!props.queue) return;
    const visibilityTimeout = props.visibilityTimeout ?? asyncVisibilityTimeout(props.jobTimeout);
    this.deadLetterQueue = new sqs.Queue(this, 'DeadLetters', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      retentionPeriod: Duration.days(14),
    });
    Validations.of(this.deadLetterQueue).acknowledge({
      id: 'AwsSolutions-SQS3',
      reason: "This is the job queue's dead-letter queue.",
    });
    this.queue = new sqs.Queue(this, 'Queue', {
      encryption: sqs.QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
      visibilityTimeout,
      // Long enough for every delivery to wait out its visibility timeout, and then some.
      retentionPeriod: Duration.days(14),
      deadLetterQueue: { queue: this.deadLetterQueue, maxReceiveCount: props.maxReceiveCount },
    });
  }

  /** A job worker's grants: requests and uploads read, results written and removed, statuses read and updated. */
  grantJobWork(role: iam.Role): void {
    const objects = (prefix: string): string => this.bucket.arnForObjects(`${prefix}*`);
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [objects(ASYNC_PREFIXES.requests), objects(ASYNC_PREFIXES.uploads)],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['s3:PutObject', 's3:DeleteObject'],
        resources: [objects(ASYNC_PREFIXES.results)],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:UpdateItem'],
        resources: [this.table.tableArn],
      }),
    );
  }
}

/** Six times the job timeout (AWS's guidance for queues behind Lambda), within SQS's 12 hours. */
export function asyncVisibilityTimeout(jobTimeout: Duration): Duration {
  return Duration.seconds(Math.min(SQS_MAX_VISIBILITY.toSeconds(), jobTimeout.toSeconds() * 6));
}
