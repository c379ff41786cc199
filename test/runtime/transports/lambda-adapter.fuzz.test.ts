/**
 * Fuzzing the Lambda adapter (fast-check): hostile requests inside well-formed API Gateway events, and events that are
 * themselves broken (fields missing or of the wrong type, invalid base64, unknown payload versions, not events at
 * all), against the handler as `lambdaHandlerFromEnv` builds it over the digits model. Every answer is a correct 200
 * or a JSON 4xx in the contract's shape, never a rejection, a hang or a 5xx, and a valid event right after succeeds.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { before, describe, test, type TestContext } from 'node:test';
import type { APIGatewayProxyResult } from 'aws-lambda';
import fc from 'fast-check';
import { bootFromEnv } from '../../../lib/runtime/boot.js';
import { createLambdaHandler, type LambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import {
  API,
  VALID_INFER,
  VALID_PREDICT,
  assertContractAnswer,
  call,
  describeCall,
  fuzzParameters,
  fuzzRuns,
} from '../../fuzz-arbitraries.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  httpApiV2Event,
  loadTestPredictor,
  type Call,
  type Reply,
} from '../../helpers.js';

/** Longer than any answer takes on a loaded machine; past it the handler hangs. */
const HANG_MS = 15_000;

let oip: LambdaHandler;
let predictor: LambdaHandler;

function handlerFor(env: NodeJS.ProcessEnv, withPredictor?: Parameters<typeof bootFromEnv>[0]): LambdaHandler {
  const { runtime, settings } = bootFromEnv(withPredictor, env);
  return createLambdaHandler(runtime, { maxBodyBytes: settings.maxBodyBytes });
}

before(async () => {
  const env = { ARCLIGHT_API_NAME: API, ARCLIGHT_MODEL_URI: DIGITS_ONNX, ARCLIGHT_LOG_LEVEL: 'SILENT' };
  oip = handlerFor(env);
  predictor = handlerFor(env, await loadTestPredictor(DIGITS_PREDICTOR));
  assert.equal((await invoke(oip, httpApiV2Event(VALID_INFER))).statusCode, 200);
  assert.equal((await invoke(predictor, httpApiV2Event(VALID_PREDICT))).statusCode, 200);
});

/** Invokes the handler as Lambda does; a rejection or a hang fails the property. */
async function invoke(handler: LambdaHandler, event: unknown): Promise<APIGatewayProxyResult> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${HANG_MS} ms`)), HANG_MS);
  });
  try {
    return await Promise.race([
      handler(event, { awsRequestId: randomUUID(), getRemainingTimeInMillis: () => 29_000 }),
      hang,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function asReply(result: APIGatewayProxyResult): Reply {
  assert.equal(typeof result.statusCode, 'number');
  assert.equal(typeof result.body, 'string');
  const body = Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8');
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
  const text = body.toString('utf8');
  return { status: result.statusCode, headers, body, text, json: <T>() => JSON.parse(text) as T };
}

async function assertStillServes(): Promise<void> {
  assert.equal((await invoke(oip, httpApiV2Event(VALID_INFER))).statusCode, 200, 'a valid OIP event after');
  assert.equal(
    (await invoke(predictor, httpApiV2Event(VALID_PREDICT))).statusCode,
    200,
    'a valid predictor event after',
  );
}

/** An HTTP API 2.0 event for a call, its body sent as text or base64 as API Gateway might. */
function v2Event(c: Call, base64: boolean, requestId: string): Record<string, unknown> {
  const event = httpApiV2Event(c, requestId) as unknown as Record<string, unknown>;
  if (base64 && c.body !== undefined) {
    event['body'] = Buffer.from(c.body).toString('base64');
    event['isBase64Encoded'] = true;
  }
  return event;
}

/** The same call as a REST API 1.0 event. */
function v1Event(c: Call, base64: boolean, requestId: string): Record<string, unknown> {
  const v2 = httpApiV2Event(c, requestId);
  const [path = '/', query = ''] = c.path.split('?', 2);
  const params = Object.fromEntries(new URLSearchParams(query));
  return {
    resource: '/{proxy+}',
    path,
    httpMethod: v2.requestContext.http.method,
    headers: v2.headers,
    multiValueHeaders: Object.fromEntries(Object.entries(v2.headers).map(([k, v]) => [k, [v]])),
    queryStringParameters: query === '' ? null : params,
    multiValueQueryStringParameters: null,
    pathParameters: null,
    stageVariables: null,
    requestContext: { requestId, stage: 'prod', httpMethod: v2.requestContext.http.method, path },
    body: c.body === undefined ? null : base64 ? Buffer.from(c.body).toString('base64') : v2.body,
    isBase64Encoded: base64 && c.body !== undefined ? true : v2.isBase64Encoded,
  };
}

/** API Gateway's own request ids look like this (v2: `abcDEF12345=`); the adapter uses them as they are. */
const gatewayRequestId = fc.stringMatching(/^[A-Za-z0-9]{14}=$/);

const wellFormedEvent = fc
  .record({ c: call, version: fc.constantFrom('2.0', '1.0'), base64: fc.boolean(), id: gatewayRequestId })
  .map(({ c, version, base64, id }) => ({
    c,
    event: version === '2.0' ? v2Event(c, base64, id) : v1Event(c, base64, id),
  }));

/** One change that breaks an event: a field removed, or given a value of any type. */
const mutation = fc.record({
  field: fc.constantFrom(
    'version',
    'rawPath',
    'rawQueryString',
    'headers',
    'cookies',
    'body',
    'isBase64Encoded',
    'requestContext',
    'httpMethod',
    'path',
    'multiValueHeaders',
    'queryStringParameters',
    'multiValueQueryStringParameters',
    'requestContext.http',
    'requestContext.http.method',
    'requestContext.requestId',
    'requestContext.stage',
  ),
  value: fc.oneof(
    fc.constant(undefined),
    fc.constantFrom('2.0', '1.0', '3.0', 2, 'POST', 'GET', '/', '', '!!!not base64!!!', 'aGVsbG8', true),
    fc.anything({ maxDepth: 2 }),
  ),
});

function mutate(event: Record<string, unknown>, field: string, value: unknown): Record<string, unknown> {
  const copy = structuredClone(event);
  const keys = field.split('.');
  let target: Record<string, unknown> = copy;
  for (const key of keys.slice(0, -1)) {
    const next = target[key];
    if (typeof next !== 'object' || next === null) return copy;
    target = next as Record<string, unknown>;
  }
  const last = keys[keys.length - 1]!;
  if (value === undefined) Reflect.deleteProperty(target, last);
  else target[last] = value;
  return copy;
}

const brokenEvent = fc
  .record({ base: wellFormedEvent, mutations: fc.array(mutation, { minLength: 1, maxLength: 3 }) })
  .map(({ base, mutations }) => {
    const event = mutations.reduce((e, m) => mutate(e, m.field, m.value), base.event);
    // A mutation may rename the method (GET / is the metadata route, a correct 200 that is not an inference).
    const method = [
      event['httpMethod'],
      (event['requestContext'] as { http?: { method?: unknown } } | undefined)?.http?.method,
    ]
      .filter((m): m is string => typeof m === 'string')
      .find((m) => m.toUpperCase() !== (base.c.method ?? 'POST').toUpperCase());
    return { c: method === undefined ? base.c : { ...base.c, method }, event };
  });

/** What the handler got, for a failure message. */
function describeEvent(event: unknown): string {
  return fc.stringify(event).slice(0, 2000);
}

async function fuzz(
  t: TestContext,
  name: string,
  arbitrary: fc.Arbitrary<{ c: Call; event: unknown }>,
  runs: number,
): Promise<void> {
  let tried = 0;
  const rssBefore = process.memoryUsage().rss;
  await fc.assert(
    fc.asyncProperty(arbitrary, async ({ c, event }) => {
      tried++;
      const handler = (c.path.startsWith('/v2') ? oip : tried % 2 === 0 ? oip : predictor) as LambdaHandler;
      let reply: Reply;
      try {
        reply = asReply(await invoke(handler, event));
      } catch (error) {
        assert.fail(`${(error as Error).message}: ${describeEvent(event)}`);
      }
      assertContractAnswer(reply, { ...c, path: `${c.path} [event ${describeEvent(event).slice(0, 600)}]` });
      await assertStillServes();
    }),
    { ...fuzzParameters(runs), endOnFailure: true },
  );
  const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.diagnostic(`${name}: ${tried} inputs tried, all answered in contract; RSS grew ${rssGrowthMb.toFixed(0)} MB`);
  // Memory stays bounded: hostile inputs hold nothing once answered (a generous bound: the GC runs when it likes).
  assert.ok(rssGrowthMb < 1024, `RSS grew ${rssGrowthMb.toFixed(0)} MB over ${tried} inputs`);
}

describe('fuzzing the Lambda handler', () => {
  test('hostile requests in well-formed HTTP API 2.0 and REST API 1.0 events', async (t) => {
    await fuzz(t, 'well-formed events', wellFormedEvent, fuzzRuns(300));
  });

  test('broken events: fields missing or of any type, invalid base64, unknown versions', async (t) => {
    await fuzz(t, 'broken events', brokenEvent, fuzzRuns(300));
  });

  test('values that are not API Gateway events at all', async (t) => {
    const junk = fc.anything({ maxDepth: 3, withNullPrototype: true, withBigInt: true, withMap: true });
    await fuzz(
      t,
      'not events',
      junk.map((event) => ({ c: { path: '(junk)' }, event })),
      fuzzRuns(200),
    );
  });

  test('a body marked base64 that is not, at any length', async (t) => {
    const notBase64 = fc
      .string({ minLength: 1, maxLength: 64, unit: 'binary' })
      // Node's decoder also takes the URL-safe alphabet; only what neither alphabet can spell is invalid.
      .filter((s) => !/^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}==|[A-Za-z0-9+/_-]{3}=)?$/.test(s));
    const arbitrary = fc.tuple(notBase64, gatewayRequestId).map(([text, id]) => {
      const c: Call = { path: '/v2/models/digits/infer', body: '{}' };
      return { c, event: { ...v2Event(c, false, id), body: text, isBase64Encoded: true } };
    });
    let tried = 0;
    await fc.assert(
      fc.asyncProperty(arbitrary, async ({ c, event }) => {
        tried++;
        const reply = asReply(await invoke(oip, event));
        assertContractAnswer(reply, c);
        assert.equal(reply.status, 400, describeCall(c));
        assert.match(reply.text, /not valid base64/);
      }),
      fuzzParameters(fuzzRuns(200)),
    );
    t.diagnostic(`invalid base64: ${tried} inputs tried, each a 400`);
    await assertStillServes();
  });
});
