/**
 * Completion notifications to the async API's SNS topic: the notification as the message (JSON), with `status`, `id`
 * and `apiName` as message attributes so subscriptions can filter (e.g. failures only) without parsing the body.
 * A failed publish is logged and counted, never fails the job.
 */
import { PublishCommand, type SNSClient } from '@aws-sdk/client-sns';
import type { JobNotification, JobNotifier } from './job-notification.js';

export interface SnsNotifierOptions {
  readonly log?: (message: string, fields: Record<string, unknown>) => void;
  /** Called once per publish that failed (counted as a metric). */
  readonly onFailure?: (notification: JobNotification, reason: string) => void;
}

export class SnsNotifier implements JobNotifier {
  constructor(
    private readonly client: Pick<SNSClient, 'send'>,
    private readonly topicArn: string,
    private readonly options: SnsNotifierOptions = {},
  ) {}

  async notify(notification: JobNotification): Promise<void> {
    try {
      await this.client.send(
        new PublishCommand({
          TopicArn: this.topicArn,
          Subject: `${notification.apiName}: job ${notification.status}`.slice(0, 100),
          Message: JSON.stringify(notification),
          MessageAttributes: {
            status: { DataType: 'String', StringValue: notification.status },
            id: { DataType: 'String', StringValue: notification.id },
            apiName: { DataType: 'String', StringValue: notification.apiName },
          },
        }),
      );
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      this.options.log?.('async notification could not be published', { id: notification.id, reason });
      this.options.onFailure?.(notification, reason);
    }
  }
}
