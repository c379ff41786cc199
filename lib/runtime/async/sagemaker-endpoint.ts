/**
 * The async front's SageMaker mode: a submission is handed to SageMaker asynchronous inference
 * (InvokeEndpointAsync with the stored body's S3 location) instead of the queue, and SageMaker writes the result to
 * the output path or the error to the failure path. The keys it answers with are stored on the job's record, so that
 * `GET /async/{id}` can tell succeeded (the output object exists) or failed (the failure object exists).
 */
import { InvokeEndpointAsyncCommand, type SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { ERROR_STATUS, type ErrorCode } from '../../contract.js';
import type { JobError, JobOutputs } from './job.js';

/** What runs a stored request asynchronously and tells where its outcome will be written. */
export interface AsyncEndpoint {
  invoke(job: { readonly id: string; readonly requestKey: string; readonly contentType?: string }): Promise<JobOutputs>;
}

export class SageMakerAsyncEndpoint implements AsyncEndpoint {
  constructor(
    private readonly client: SageMakerRuntimeClient,
    private readonly endpointName: string,
    private readonly bucket: string,
    /** SageMaker's InvocationTimeoutSeconds (up to 3600). */
    private readonly timeoutSeconds: number,
  ) {}

  async invoke(job: { id: string; requestKey: string; contentType?: string }): Promise<JobOutputs> {
    const response = await this.client.send(
      new InvokeEndpointAsyncCommand({
        EndpointName: this.endpointName,
        InputLocation: `s3://${this.bucket}/${job.requestKey}`,
        InferenceId: job.id,
        InvocationTimeoutSeconds: this.timeoutSeconds,
        ...(job.contentType ? { ContentType: job.contentType } : {}),
      }),
    );
    return {
      outputKey: this.keyIn(response.OutputLocation, 'OutputLocation'),
      failureKey: this.keyIn(response.FailureLocation, 'FailureLocation'),
    };
  }

  /** The object key of an `s3://<bucket>/<key>` location, which must be in the API's own bucket. */
  private keyIn(location: string | undefined, name: string): string {
    const prefix = `s3://${this.bucket}/`;
    if (!location?.startsWith(prefix) || location.length === prefix.length) {
      throw new Error(`InvokeEndpointAsync answered ${name} ${String(location)}, not an object in ${prefix}`);
    }
    return location.slice(prefix.length);
  }
}

/** SageMaker's failure object as the contract's error: the container's own error body when it is one, else its text. */
export function failureObjectError(bytes: Buffer, requestId: string): JobError {
  const text = bytes.toString('utf8');
  const brace = text.indexOf('{');
  const parsed = parseJson(text) ?? (brace > 0 ? parseJson(text.slice(brace)) : undefined);
  if (isErrorBody(parsed)) {
    return { error: parsed.error, code: parsed.code, requestId, status: ERROR_STATUS[parsed.code] };
  }
  const message = text.trim().slice(0, 2000) || 'SageMaker reported a failure without a message';
  return { error: `the inference failed: ${message}`, code: 'predictor_error', requestId, status: 500 };
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

function isErrorBody(value: unknown): value is { error: string; code: ErrorCode } {
  const body = value as { error?: unknown; code?: unknown } | null | undefined;
  return (
    typeof body?.error === 'string' &&
    typeof body.code === 'string' &&
    Object.prototype.hasOwnProperty.call(ERROR_STATUS, body.code)
  );
}
