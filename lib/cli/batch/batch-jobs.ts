/**
 * `arclight batch status|cancel <job>` for deployed jobs: a Step Functions execution ARN (a BatchJob on Lambda) or a
 * SageMaker transform job's name or ARN (a BatchJob on SageMaker). Credentials and region come from the standard
 * AWS SDK chain; without credentials the command says so in one line.
 */
import { DescribeExecutionCommand, SFNClient, StopExecutionCommand } from '@aws-sdk/client-sfn';
import { DescribeTransformJobCommand, SageMakerClient, StopTransformJobCommand } from '@aws-sdk/client-sagemaker';
import { UsageError } from '../fail.js';

/** A deployed job, as the command line names it. */
export type JobRef =
  | { readonly kind: 'step-functions'; readonly arn: string; readonly region: string }
  | { readonly kind: 'transform'; readonly name: string; readonly region?: string };

const EXECUTION_ARN = /^arn:aws[a-z-]*:states:([a-z0-9-]+):\d{12}:execution:[^:]+:[^:]+$/;
const TRANSFORM_ARN = /^arn:aws[a-z-]*:sagemaker:([a-z0-9-]+):\d{12}:transform-job\/([A-Za-z0-9-]{1,63})$/;
const TRANSFORM_NAME = /^[A-Za-z0-9](-*[A-Za-z0-9]){0,62}$/;

export function parseJobRef(job: string): JobRef {
  const execution = EXECUTION_ARN.exec(job);
  if (execution) return { kind: 'step-functions', arn: job, region: execution[1]! };
  const transform = TRANSFORM_ARN.exec(job);
  if (transform) return { kind: 'transform', name: transform[2]!, region: transform[1]! };
  if (TRANSFORM_NAME.test(job)) return { kind: 'transform', name: job };
  throw new UsageError(
    `'${job}' names no batch job`,
    'Pass a Step Functions execution ARN (arn:aws:states:…:execution:…) or a SageMaker transform job name or ARN',
  );
}

/** What `status` prints. */
export interface JobStatus {
  readonly job: string;
  readonly engine: 'step-functions' | 'sagemaker-transform';
  /** RUNNING | SUCCEEDED | FAILED | TIMED_OUT | ABORTED (Step Functions); InProgress | Completed | Failed | Stopping | Stopped (SageMaker). */
  readonly status: string;
  readonly startedAt?: string;
  readonly stoppedAt?: string;
  readonly error?: string;
  readonly output?: string;
}

export async function jobStatus(job: string, env: NodeJS.ProcessEnv = process.env): Promise<JobStatus> {
  const ref = parseJobRef(job);
  return withCredentialsCheck(async () => {
    if (ref.kind === 'step-functions') {
      const client = new SFNClient({ region: ref.region });
      try {
        const out = await client.send(new DescribeExecutionCommand({ executionArn: ref.arn }));
        return {
          job,
          engine: 'step-functions',
          status: out.status ?? 'UNKNOWN',
          ...(out.startDate ? { startedAt: out.startDate.toISOString() } : {}),
          ...(out.stopDate ? { stoppedAt: out.stopDate.toISOString() } : {}),
          ...(out.error ? { error: [out.error, out.cause].filter(Boolean).join(': ') } : {}),
          ...(out.output ? { output: out.output } : {}),
        };
      } finally {
        client.destroy();
      }
    }
    const client = sageMakerClient(ref, env);
    try {
      const out = await client.send(new DescribeTransformJobCommand({ TransformJobName: ref.name }));
      return {
        job,
        engine: 'sagemaker-transform',
        status: out.TransformJobStatus ?? 'UNKNOWN',
        ...(out.TransformStartTime ? { startedAt: out.TransformStartTime.toISOString() } : {}),
        ...(out.TransformEndTime ? { stoppedAt: out.TransformEndTime.toISOString() } : {}),
        ...(out.FailureReason ? { error: out.FailureReason } : {}),
        ...(out.TransformOutput?.S3OutputPath ? { output: out.TransformOutput.S3OutputPath } : {}),
      };
    } finally {
      client.destroy();
    }
  });
}

export async function cancelJob(job: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const ref = parseJobRef(job);
  return withCredentialsCheck(async () => {
    if (ref.kind === 'step-functions') {
      const client = new SFNClient({ region: ref.region });
      try {
        await client.send(
          new StopExecutionCommand({ executionArn: ref.arn, error: 'Cancelled', cause: 'arclight batch cancel' }),
        );
        return `batch: stopped ${job}`;
      } finally {
        client.destroy();
      }
    }
    const client = sageMakerClient(ref, env);
    try {
      await client.send(new StopTransformJobCommand({ TransformJobName: ref.name }));
      return `batch: stopping ${ref.name} (SageMaker finishes the records in flight first)`;
    } finally {
      client.destroy();
    }
  });
}

function sageMakerClient(ref: Extract<JobRef, { kind: 'transform' }>, env: NodeJS.ProcessEnv): SageMakerClient {
  const region = ref.region ?? env['AWS_REGION'] ?? env['AWS_DEFAULT_REGION'];
  if (region === undefined) {
    throw new UsageError('no AWS region for the transform job', 'Set AWS_REGION, or pass the job ARN');
  }
  return new SageMakerClient({ region });
}

/** The SDK's credential chain failing becomes one line that says what to do. */
async function withCredentialsCheck<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    const name = (error as { name?: string }).name ?? '';
    if (name === 'CredentialsProviderError' || /credential/i.test((error as Error).message ?? '')) {
      throw new UsageError(
        'no AWS credentials found',
        'Configure them (aws configure, AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)',
        { cause: error },
      );
    }
    throw error;
  }
}

export function formatStatus(status: JobStatus): string {
  const lines = [`${status.job}: ${status.status} (${status.engine})`];
  if (status.startedAt) lines.push(`  started ${status.startedAt}`);
  if (status.stoppedAt) lines.push(`  stopped ${status.stoppedAt}`);
  if (status.error) lines.push(`  error: ${status.error}`);
  if (status.output) lines.push(`  output: ${status.output}`);
  return lines.join('\n');
}
