/** The async API's settings from the deployed contract's env vars (`ASYNC_ENV`), every problem reported at once. */
import { ASYNC_DEFAULTS, ASYNC_ENV, ENV } from '../../contract.js';
import { StartupError } from '../startup-error.js';

export interface AsyncSettings {
  readonly apiName: string;
  readonly bucket: string;
  readonly table: string;
  /** Absent on the worker, which only receives from the queue. */
  readonly queueUrl?: string;
  readonly maxBodyBytes: number;
  readonly inlineResultBytes: number;
  readonly urlTtlSeconds: number;
  readonly retentionDays: number;
  readonly maxReceives: number;
  /** The SNS topic each job's end is published to (the worker). */
  readonly topicArn?: string;
  /** Completion webhooks: where the signing key is, and how they are delivered. */
  readonly webhooks?: { readonly secret: string; readonly timeoutMs: number; readonly attempts: number };
  /** SageMaker compute: the async endpoint and its invocation timeout (seconds). */
  readonly endpoint?: { readonly name: string; readonly timeoutSeconds: number };
}

/** `needsQueue`: the front, which sends to the queue unless it hands jobs to a SageMaker endpoint. */
export function asyncSettingsFromEnv(env: NodeJS.ProcessEnv, needsQueue: boolean): AsyncSettings {
  const problems: string[] = [];
  const required = (name: string): string => {
    const value = env[name];
    if (!value) problems.push(`${name} is not set`);
    return value ?? '';
  };
  const positive = (name: string, fallback: number): number => {
    const text = env[name];
    if (text === undefined || text === '') return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value <= 0) problems.push(`${name} must be a positive integer, got '${text}'`);
    return value;
  };
  const endpointName = env[ASYNC_ENV.endpointName];
  const settings: AsyncSettings = {
    apiName: required(ENV.apiName),
    bucket: required(ASYNC_ENV.bucket),
    table: required(ASYNC_ENV.table),
    ...(needsQueue && !endpointName ? { queueUrl: required(ASYNC_ENV.queueUrl) } : {}),
    maxBodyBytes: positive(ASYNC_ENV.maxBodyBytes, ASYNC_DEFAULTS.maxBodyBytes),
    inlineResultBytes: positive(ASYNC_ENV.inlineResultBytes, ASYNC_DEFAULTS.inlineResultBytes),
    urlTtlSeconds: positive(ASYNC_ENV.urlTtlSeconds, ASYNC_DEFAULTS.urlTtlSeconds),
    retentionDays: positive(ASYNC_ENV.retentionDays, ASYNC_DEFAULTS.retentionDays),
    maxReceives: positive(ASYNC_ENV.maxReceives, ASYNC_DEFAULTS.maxReceives),
    ...(env[ASYNC_ENV.topicArn] ? { topicArn: env[ASYNC_ENV.topicArn] } : {}),
    ...(env[ASYNC_ENV.webhooks] === 'on'
      ? {
          webhooks: {
            // The front only accepts callback URLs; the worker signs, and needs the key.
            secret: needsQueue ? (env[ASYNC_ENV.webhookSecret] ?? '') : required(ASYNC_ENV.webhookSecret),
            timeoutMs: positive(ASYNC_ENV.webhookTimeoutMs, 5000),
            attempts: positive(ASYNC_ENV.webhookAttempts, 3),
          },
        }
      : {}),
    ...(endpointName
      ? { endpoint: { name: endpointName, timeoutSeconds: positive(ASYNC_ENV.invocationTimeoutSeconds, 3600) } }
      : {}),
  };
  if (problems.length > 0) {
    throw new StartupError(`invalid async environment: ${problems.join('; ')}`, 'Deploy the API with AsyncApi');
  }
  return settings;
}
