/**
 * The async front as a Lambda function behind API Gateway (HTTP API, payload 2.0): a small zip bundle that never
 * loads the model, so submissions and status reads start in milliseconds while the worker does the inference.
 */
import type { APIGatewayProxyEventV2, APIGatewayProxyStructuredResultV2 } from 'aws-lambda';
import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { SageMakerRuntimeClient } from '@aws-sdk/client-sagemaker-runtime';
import { SQSClient } from '@aws-sdk/client-sqs';
import { createS3Client } from '../model-store/model-store.js';
import { AsyncFront } from './async-front.js';
import { asyncSettingsFromEnv } from './async-settings.js';
import { DynamoDbJobStore } from './dynamodb-job-store.js';
import { JobPayloads } from './job-payloads.js';
import { SageMakerAsyncEndpoint } from './sagemaker-endpoint.js';
import { SqsJobQueue } from './sqs-queue.js';

/** The front configured from the function's environment. */
export function asyncFrontFromEnv(env: NodeJS.ProcessEnv = process.env): AsyncFront {
  const settings = asyncSettingsFromEnv(env, true);
  return new AsyncFront({
    apiName: settings.apiName,
    store: new DynamoDbJobStore(new DynamoDBClient({}), settings.table),
    payloads: new JobPayloads(createS3Client(env), settings.bucket),
    ...(settings.endpoint
      ? {
          endpoint: new SageMakerAsyncEndpoint(
            new SageMakerRuntimeClient({}),
            settings.endpoint.name,
            settings.bucket,
            settings.endpoint.timeoutSeconds,
          ),
        }
      : { queue: new SqsJobQueue(new SQSClient({}), settings.queueUrl!) }),
    maxBodyBytes: settings.maxBodyBytes,
    inlineResultBytes: settings.inlineResultBytes,
    urlTtlSeconds: settings.urlTtlSeconds,
    retentionDays: settings.retentionDays,
    ...(settings.webhooks ? { webhooks: { allowLocal: false } } : {}),
    onError: (message, error) => console.error(JSON.stringify({ level: 'ERROR', message, error: String(error) })),
  });
}

/** An HTTP API handler over the front. */
export function createAsyncFrontHandler(
  front: AsyncFront,
): (event: APIGatewayProxyEventV2) => Promise<APIGatewayProxyStructuredResultV2> {
  return async (event) => {
    const headers = Object.fromEntries(
      Object.entries(event.headers ?? {}).flatMap(([name, value]) =>
        value === undefined ? [] : [[name.toLowerCase(), value]],
      ),
    );
    const body = event.body ? Buffer.from(event.body, event.isBase64Encoded ? 'base64' : 'utf8') : Buffer.alloc(0);
    const stage = event.requestContext.stage;
    // A named stage prefixes rawPath; the front's routes are the API's own.
    const path =
      stage && stage !== '$default' && event.rawPath.startsWith(`/${stage}/`)
        ? event.rawPath.slice(stage.length + 1)
        : event.rawPath;
    const response = await front.handle({ method: event.requestContext.http.method, path, headers, body });
    return {
      statusCode: response.status,
      headers: response.headers,
      body: response.body.toString('utf8'),
      isBase64Encoded: false,
    };
  };
}

let front: AsyncFront | undefined;

/** The bundle's entry (`index.handler`). */
export const handler = (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyStructuredResultV2> => {
  front ??= asyncFrontFromEnv();
  return createAsyncFrontHandler(front)(event);
};
