/** The async front's queue on AWS: one SQS message per job, its body the job's id. */
import type { SQSClient } from '@aws-sdk/client-sqs';
import { SendMessageCommand } from '@aws-sdk/client-sqs';
import type { JobQueue } from './async-front.js';
import { jobMessage } from './sqs-handler.js';

export class SqsJobQueue implements JobQueue {
  constructor(
    private readonly client: SQSClient,
    private readonly queueUrl: string,
  ) {}

  async send(id: string): Promise<void> {
    await this.client.send(new SendMessageCommand({ QueueUrl: this.queueUrl, MessageBody: jobMessage(id) }));
  }
}
