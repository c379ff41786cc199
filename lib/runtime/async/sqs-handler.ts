/**
 * The async worker as an SQS event source's Lambda handler: each record is one job id; records that must come back
 * are reported in `batchItemFailures` (the event source mapping has ReportBatchItemFailures on), so a batch's other
 * jobs are not run again. The queue's redrive policy moves a message that keeps failing to the dead-letter queue; on
 * its last delivery the worker fails the job instead, so every job ends readable.
 */
import type { SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { JOB_ID } from './job.js';
import { RetryJobError, processJob, type AsyncWorkerDeps } from './async-worker.js';

/** The message body the front sends: the job's id. */
export interface JobMessage {
  readonly id: string;
}

export function jobMessage(id: string): string {
  return JSON.stringify({ id } satisfies JobMessage);
}

/** The job id in a message body; undefined when the body is not one of ours. */
export function parseJobMessage(body: string): string | undefined {
  try {
    const id = (JSON.parse(body) as Partial<JobMessage> | null)?.id;
    return typeof id === 'string' && JOB_ID.test(id) ? id : undefined;
  } catch {
    return undefined;
  }
}

export type SqsHandler = (event: SQSEvent) => Promise<SQSBatchResponse>;

export function createSqsHandler(deps: AsyncWorkerDeps & { readonly maxReceives: number }): SqsHandler {
  return async (event) => {
    const batchItemFailures: SQSBatchResponse['batchItemFailures'] = [];
    for (const record of event.Records) {
      const id = parseJobMessage(record.body);
      if (id === undefined) {
        // Not a job message: retrying cannot help; it is dropped (and logged), not sent to the DLQ over and over.
        deps.log?.('async worker dropped a message that names no job', { messageId: record.messageId });
        continue;
      }
      try {
        const receiveCount = Number(record.attributes.ApproximateReceiveCount) || 1;
        const outcome = await processJob(id, { receiveCount, maxReceives: deps.maxReceives }, deps);
        deps.log?.('async job processed', { id, outcome, receiveCount });
      } catch (error) {
        if (!(error instanceof RetryJobError)) {
          deps.log?.('async job failed to process', { id, error: String(error) });
        }
        batchItemFailures.push({ itemIdentifier: record.messageId });
      }
    }
    return { batchItemFailures };
  };
}
