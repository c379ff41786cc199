/**
 * Completion notifications of an async API on the Lambda compute: an SNS topic (KMS-encrypted with its own rotating
 * key, TLS-only) the worker publishes each job's end to, and webhooks to each submission's `Arclight-Callback-Url`,
 * signed with HMAC-SHA256 under a key in Secrets Manager or SSM. The worker's role may publish to that topic, use
 * that key and read that secret: nothing else.
 */
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { ASYNC_ENV } from '../../contract.js';
import { WebhookSecret } from './webhook-secret.js';

/** How an async API tells that a job ended. */
export interface AsyncNotificationsProps {
  /** Publish each job's end to an SNS topic (`AsyncApi.notificationTopic`). @default false */
  readonly topic?: boolean;
  /** Accept `Arclight-Callback-Url` on submissions and POST each job's end there, signed. @default false */
  readonly webhooks?: boolean;
  /** The webhook signing key. @default WebhookSecret.generated() */
  readonly webhookSecret?: WebhookSecret;
  /** How long one webhook delivery may take (1–30 s). @default Duration.seconds(5) */
  readonly webhookTimeout?: Duration;
  /** Deliveries of one webhook before it is given up (1–5; a network error, timeout, 408, 429 or 5xx is retried). @default 3 */
  readonly webhookAttempts?: number;
}

/** Every problem of the props, for the API's one synth error. */
export function notificationProblems(props: AsyncNotificationsProps | undefined): string[] {
  if (!props) return [];
  const problems: string[] = [];
  const timeout = props.webhookTimeout?.toSeconds();
  if (timeout !== undefined && (timeout < 1 || timeout > 30)) {
    problems.push(`notifications.webhookTimeout ${timeout} s is outside 1–30 s`);
  }
  const attempts = props.webhookAttempts;
  if (attempts !== undefined && (!Number.isInteger(attempts) || attempts < 1 || attempts > 5)) {
    problems.push(`notifications.webhookAttempts must be an integer from 1 to 5, got ${attempts}`);
  }
  if (!props.webhooks && (props.webhookSecret || props.webhookTimeout || attempts !== undefined)) {
    problems.push('notifications.webhookSecret/webhookTimeout/webhookAttempts are set but webhooks is not true');
  }
  return problems;
}

export class AsyncNotifications extends Construct {
  /** The topic each job's end is published to, when `topic` is on. */
  readonly topic?: sns.Topic;
  /** The key the topic is encrypted with (subscribers that decrypt need it). */
  readonly topicKey?: kms.Key;
  private readonly props: AsyncNotificationsProps;

  constructor(scope: Construct, id: string, apiName: string, props: AsyncNotificationsProps) {
    super(scope, id);
    this.props = props;
    if (!props.topic) return;
    this.topicKey = new kms.Key(this, 'TopicKey', {
      enableKeyRotation: true,
      description: `Encrypts the ${apiName} async API's notification topic`,
    });
    this.topic = new sns.Topic(this, 'Topic', {
      displayName: `${apiName}: async jobs that ended`,
      masterKey: this.topicKey,
      enforceSSL: true,
    });
  }

  /** Webhooks on: what the front needs to accept callback URLs. */
  get frontEnvironment(): Record<string, string> {
    return this.props.webhooks ? { [ASYNC_ENV.webhooks]: 'on' } : {};
  }

  /**
   * Grants the worker's role what it needs to notify and answers its environment. Call once. The webhook secret is
   * created (when generated) in this construct's scope.
   */
  bindWorker(role: iam.IRole): { environment: Record<string, string>; secret?: secretsmanager.ISecret } {
    const environment: Record<string, string> = {};
    if (this.topic && this.topicKey) {
      // Not grantPublish: its kms:GenerateDataKey* is a wildcard action; publishing needs these two.
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['sns:Publish'], resources: [this.topic.topicArn] }),
      );
      role.addToPrincipalPolicy(
        new iam.PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [this.topicKey.keyArn] }),
      );
      environment[ASYNC_ENV.topicArn] = this.topic.topicArn;
    }
    if (!this.props.webhooks) return { environment };
    const bound = (this.props.webhookSecret ?? WebhookSecret.generated()).bind(this, role);
    Object.assign(environment, this.frontEnvironment, {
      [ASYNC_ENV.webhookSecret]: bound.reference,
      [ASYNC_ENV.webhookTimeoutMs]: String((this.props.webhookTimeout ?? Duration.seconds(5)).toMilliseconds()),
      [ASYNC_ENV.webhookAttempts]: String(this.props.webhookAttempts ?? 3),
    });
    return { environment, ...(bound.secret ? { secret: bound.secret } : {}) };
  }
}
