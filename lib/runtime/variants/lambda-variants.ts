/**
 * Variants on Lambda. The weighted variants run inside the API's one function: each sandbox loads every production
 * variant's model (a runtime per variant, each with its own env and metrics under its `variant` dimension) and splits
 * its requests by weight (a deterministic smooth round robin, so each sandbox honours the weights exactly over a
 * cycle), or by the `x-arclight-variant` header, which pins one. One function, one `live` alias: CodeDeploy's rollouts
 * shift it as before, with no second function billed while it waits on another.
 *
 * The shadow variant is a function of its own: a sampled share of invocation events is sent to its alias with an
 * asynchronous Invoke (InvocationType Event), started beside the prediction and awaited at most briefly before the
 * answer returns (the sandbox may freeze after it). Lambda queues the event and discards the shadow's answer; the
 * shadow's own logs and metrics record it. Events above the asynchronous payload limit are skipped and counted.
 */
import type { InvokeCommandOutput, LambdaClient } from '@aws-sdk/client-lambda';
import { ENV, VARIANT_HEADER } from '../../contract.js';
import type { DefinedPredictor } from '../../predictor.js';
import { PRIMARY_VARIANT, WeightedSplit, isInferenceRequest, type LambdaVariantSpec } from '../../variant-split.js';
import { bootFromEnv } from '../boot.js';
import { errorBodyJson } from '../codec/json.js';
import type { Logger } from '../telemetry/logger.js';
import type { Runtime } from '../runtime.js';
import { createLambdaHandler, type LambdaHandler, type LambdaResult } from '../transports/lambda-adapter.js';
import { requestIdFrom } from '../transports/request-id.js';
import { ShadowCopy, shadowPercentFromEnv, type ShadowTarget } from './shadow-copy.js';

/** Lambda's limit on an asynchronous invocation's payload: 1 MB (Invoke API reference). */
export const ASYNC_INVOKE_MAX_PAYLOAD_BYTES = 1_048_576;

/** The longest an answer waits, after the prediction, for the shadow's Invoke call to be accepted. */
export const SHADOW_HANDOFF_WAIT_MS = 100;

export type { LambdaVariantSpec };

/** What the Lambda entry needs: the handler, the first start of every runtime, and a logger. */
export interface LambdaBoot {
  readonly handler: LambdaHandler;
  readonly started: Promise<boolean>;
  readonly log: Logger;
  /** The runtimes, the API's own first (tests). */
  readonly runtimes: readonly Runtime[];
}

/** Reads `ARCLIGHT_VARIANTS`; a malformed value is the deployment's bug, so it throws. */
export function lambdaVariantsFromEnv(env: NodeJS.ProcessEnv): LambdaVariantSpec[] {
  const raw = env[ENV.variants];
  if (!raw) return [];
  const parsed = JSON.parse(raw) as unknown;
  const valid =
    Array.isArray(parsed) &&
    parsed.every(
      (v: Partial<LambdaVariantSpec>) =>
        typeof v?.name === 'string' &&
        typeof v.weight === 'number' &&
        typeof v.env === 'object' &&
        v.env !== null &&
        Object.values(v.env).every((value) => typeof value === 'string'),
    );
  if (!valid) throw new Error(`${ENV.variants} is not [{ name, weight, env }]: ${raw.slice(0, 200)}`);
  return parsed as LambdaVariantSpec[];
}

/**
 * The runtime(s) and handler of a Lambda function: one runtime when the API has no variants (as before); with
 * variants, one per production variant behind a split, and the shadow's copies when `ARCLIGHT_SHADOW_FUNCTION` is set.
 */
export function bootLambdaFromEnv(
  predictor: DefinedPredictor<unknown> | undefined,
  env: NodeJS.ProcessEnv = process.env,
  options: { lambdaClient?: LambdaClient } = {},
): LambdaBoot {
  const primary = bootFromEnv(predictor, env);
  const maxBodyBytes = primary.settings.maxBodyBytes;
  const log = primary.runtime.log;
  const variants = lambdaVariantsFromEnv(env).map((spec) => {
    const booted = bootFromEnv(predictor, { ...env, [ENV.variants]: '', ...spec.env, [ENV.variant]: spec.name });
    return { spec, ...booted };
  });
  const primaryName = env[ENV.variant] || undefined;
  const production = [
    {
      name: primaryName ?? PRIMARY_VARIANT,
      weight: 1,
      handler: createLambdaHandler(primary.runtime, { maxBodyBytes }),
    },
    ...variants.map((v) => ({
      name: v.spec.name,
      weight: v.spec.weight,
      handler: createLambdaHandler(v.runtime, { maxBodyBytes }),
    })),
  ];
  const started = Promise.all([primary.started, ...variants.map((v) => v.started)]).then((all) => all.every(Boolean));
  const runtimes = [primary.runtime, ...variants.map((v) => v.runtime)];
  if (primaryName === undefined) return { handler: production[0]!.handler, started, log, runtimes };

  const split = new WeightedSplit(production.map((p) => ({ item: p, weight: p.weight })));
  const byName = new Map(production.map((p) => [p.name, p]));
  const shadow = lambdaShadowFromEnv(env, log, primary.runtime, options.lambdaClient);
  const handler: LambdaHandler = async (event, context) => {
    const pinned = pinnedVariant(event);
    const chosen = pinned === undefined ? split.next() : byName.get(pinned);
    if (!chosen) return unknownVariant(pinned!, [...byName.keys()], event);
    const copied = isInferenceEvent(event)
      ? shadow?.offer({ copy: event, requestId: gatewayRequestId(event) })
      : undefined;
    const result = await chosen.handler(event, context);
    if (copied) await Promise.race([copied, new Promise((resolve) => setTimeout(resolve, SHADOW_HANDOFF_WAIT_MS))]);
    result.headers = { ...result.headers, [VARIANT_HEADER]: chosen.name };
    return result;
  };
  return { handler, started, log, runtimes };
}

/** The asynchronous Invoke of the shadow's alias, one event a copy. */
class LambdaShadowTarget implements ShadowTarget<unknown> {
  readonly name: string;
  private client: Promise<LambdaClient> | undefined;

  constructor(
    private readonly functionArn: string,
    client?: LambdaClient,
  ) {
    this.name = functionArn;
    if (client) this.client = Promise.resolve(client);
  }

  refuse(copy: unknown): string | undefined {
    const bytes = Buffer.byteLength(JSON.stringify(copy));
    return bytes > ASYNC_INVOKE_MAX_PAYLOAD_BYTES
      ? `the event is ${bytes} bytes, above Lambda's ${ASYNC_INVOKE_MAX_PAYLOAD_BYTES}-byte asynchronous payload limit`
      : undefined;
  }

  async send(copy: unknown): Promise<number> {
    // Imported on the first copy only: functions without a shadow never load the Lambda client.
    this.client ??= import('@aws-sdk/client-lambda').then(({ LambdaClient: Client }) => new Client({ maxAttempts: 2 }));
    const { InvokeCommand } = await import('@aws-sdk/client-lambda');
    const output: InvokeCommandOutput = await (
      await this.client
    ).send(
      new InvokeCommand({
        FunctionName: this.functionArn,
        InvocationType: 'Event',
        Payload: Buffer.from(JSON.stringify(copy)),
      }),
    );
    return output.StatusCode ?? 0;
  }
}

function lambdaShadowFromEnv(
  env: NodeJS.ProcessEnv,
  log: Logger,
  runtime: Runtime,
  client: LambdaClient | undefined,
): ShadowCopy<unknown> | undefined {
  const functionArn = env[ENV.shadowFunction];
  if (!functionArn) return undefined;
  return new ShadowCopy<unknown>({
    target: new LambdaShadowTarget(functionArn, client),
    percent: shadowPercentFromEnv(env),
    logger: log,
    telemetry: runtime.telemetry,
  });
}

/** The `x-arclight-variant` header of an API Gateway event (payload 2.0 lower-cases names; 1.0 keeps the client's). */
function pinnedVariant(event: unknown): string | undefined {
  const headers = (event as { headers?: Record<string, string | undefined> } | null)?.headers;
  if (!headers) return undefined;
  for (const [name, value] of Object.entries(headers)) {
    if (name.toLowerCase() === VARIANT_HEADER && value !== undefined) return value.trim();
  }
  return undefined;
}

/** Whether an API Gateway event (payload 2.0 or 1.0) is an inference request, the only kind copied to the shadow. */
function isInferenceEvent(event: unknown): boolean {
  const e = event as {
    requestContext?: { http?: { method?: string } };
    rawPath?: string;
    httpMethod?: string;
    path?: string;
  } | null;
  const method = e?.requestContext?.http?.method ?? e?.httpMethod;
  const path = e?.rawPath ?? e?.path;
  return typeof path === 'string' && isInferenceRequest(method, path);
}

function gatewayRequestId(event: unknown): string {
  const id = (event as { requestContext?: { requestId?: unknown } } | null)?.requestContext?.requestId;
  return typeof id === 'string' ? id : requestIdFrom(undefined);
}

function unknownVariant(pinned: string, names: readonly string[], event: unknown): LambdaResult {
  const requestId = gatewayRequestId(event);
  return {
    statusCode: 400,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: errorBodyJson(
      'invalid_input',
      `${VARIANT_HEADER} '${pinned.slice(0, 100)}' is not a variant of this API; it serves ${names.join(', ')}`,
      requestId,
    ),
    isBase64Encoded: false,
  };
}
