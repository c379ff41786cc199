/**
 * The async worker's Lambda entry: the same image and predictor as a RealtimeApi's function, its handler an SQS
 * consumer. Each job's request goes to the predictor through the same adapter as an API Gateway request (`POST /` as
 * a payload 2.0 event), so the predictor cannot tell the two apart; bodies may be as large as the async API allows
 * (they come from S3, not from an event) and results go to S3, not into a Lambda response.
 * `handler`, the image's HTTP entry, is what `arclight dev` runs locally.
 */
import type { APIGatewayProxyEventV2, Context, SQSBatchResponse, SQSEvent } from 'aws-lambda';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SNSClient } from '@aws-sdk/client-sns';
import { METRICS } from '../../metric-catalog.js';
import type { DefinedPredictor } from '../../predictor.js';
import { bootFromEnv } from '../boot.js';
import type { InternalResponse } from '../codec/codec.js';
import { createS3Client } from '../model-store/model-store.js';
import { createLambdaHandler, type LambdaHandler, type LambdaResult } from '../transports/lambda-adapter.js';
import { initBudgetMs } from '../transports/lambda.js';
import { asyncSettingsFromEnv, type AsyncSettings } from './async-settings.js';
import type { JobRequest } from './async-worker.js';
import { DynamoDbJobStore } from './dynamodb-job-store.js';
import { JobNotifiers, type JobNotifier } from './job-notification.js';
import { JobPayloads } from './job-payloads.js';
import { SnsNotifier } from './sns-notifier.js';
import { createSqsHandler } from './sqs-handler.js';
import { WebhookNotifier } from './webhook.js';
import { readWebhookSecret } from './webhook-secret.js';

export interface AsyncLambdaEntry {
  /** API Gateway events (the image's HTTP entry). */
  readonly handler: LambdaHandler;
  /** SQS events from the async queue. */
  readonly worker: (event: SQSEvent, context?: Partial<Context>) => Promise<SQSBatchResponse>;
}

/** Both entries over one runtime, once the model is loaded or Lambda's init budget is spent. */
export async function asyncLambdaEntryFromEnv(
  predictor?: DefinedPredictor<unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<AsyncLambdaEntry> {
  const { runtime, settings, started } = bootFromEnv(predictor, env);
  const handler = createLambdaHandler(runtime, { maxBodyBytes: settings.maxBodyBytes });
  const direct = createLambdaHandler(runtime, {
    maxBodyBytes: settings.maxBodyBytes,
    maxResultBytes: Number.POSITIVE_INFINITY,
  });
  let timer: NodeJS.Timeout | undefined;
  const budget = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, Math.max(0, initBudgetMs(env) - performance.now()));
  });
  await Promise.race([started, budget]);
  clearTimeout(timer);
  // Read on the first job, not at init: `arclight dev` runs this bundle's `handler` with no bucket or table of its own.
  let deps:
    { settings: AsyncSettings; store: DynamoDbJobStore; payloads: JobPayloads; notifier: JobNotifiers } | undefined;
  const log = (message: string, fields: Record<string, unknown>): void => runtime.log.info(message, fields);
  const countFailure = (): void => runtime.telemetry?.event(METRICS.asyncNotificationFailure.name);
  const worker: AsyncLambdaEntry['worker'] = (event, context) => {
    if (!deps) {
      const settings = asyncSettingsFromEnv(env, false);
      deps = {
        settings,
        store: new DynamoDbJobStore(new DynamoDBClient({}), settings.table),
        payloads: new JobPayloads(createS3Client(env), settings.bucket),
        notifier: notifiersFor(settings, { log, onFailure: countFailure }),
      };
    }
    return createSqsHandler({
      store: deps.store,
      payloads: deps.payloads,
      maxReceives: deps.settings.maxReceives,
      invoke: (job) => invokeThroughAdapter(direct, job, context),
      ...(deps.notifier.size > 0 ? { notifier: deps.notifier, apiName: deps.settings.apiName } : {}),
      log,
    })(event);
  };
  return { handler, worker };
}

/** The SNS topic and the webhooks the construct configured (none, one, or both). */
export function notifiersFor(
  settings: Pick<AsyncSettings, 'topicArn' | 'webhooks'>,
  options: {
    readonly log: (message: string, fields: Record<string, unknown>) => void;
    readonly onFailure: () => void;
  },
): JobNotifiers {
  const notifiers: JobNotifier[] = [];
  if (settings.topicArn) notifiers.push(new SnsNotifier(new SNSClient({}), settings.topicArn, options));
  const webhooks = settings.webhooks;
  if (webhooks) {
    notifiers.push(
      new WebhookNotifier({
        secret: () => readWebhookSecret(webhooks.secret),
        timeoutMs: webhooks.timeoutMs,
        attempts: webhooks.attempts,
        ...options,
      }),
    );
  }
  return new JobNotifiers(notifiers);
}

/** A job's request through the API Gateway adapter, as `POST /`. */
export async function invokeThroughAdapter(
  handler: LambdaHandler,
  job: JobRequest,
  context?: Partial<Context>,
): Promise<InternalResponse> {
  const result = await handler(jobEvent(job), context);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
  return {
    status: result.statusCode,
    headers,
    body: Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8'),
  } satisfies InternalResponse;
}

function jobEvent(job: JobRequest): APIGatewayProxyEventV2 {
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: 'POST /',
    rawPath: '/',
    rawQueryString: '',
    headers: { ...job.headers },
    requestContext: {
      accountId: 'async',
      apiId: 'async',
      domainName: 'async.local',
      domainPrefix: 'async',
      http: { method: 'POST', path: '/', protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'arclight-async' },
      requestId: job.id,
      routeKey: 'POST /',
      stage: '$default',
      time: new Date(now).toISOString(),
      timeEpoch: now,
    },
    body: job.body.toString('base64'),
    isBase64Encoded: true,
  };
}

export type { LambdaResult };
