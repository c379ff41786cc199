/**
 * Declared schemas of custom predictors (`definePredictor({ request, response, example, ... })` with zod), served by
 * the runtime over real sockets on the digits model: requests validated before `predict` (400 naming the first bad
 * field, 415 for a body that is not JSON), `payload` as the schema's output, responses checked in dev and test mode.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { z } from 'zod';
import { definePredictor, HttpError, type JsonValue, type PredictorResponse } from '../../../lib/predictor.js';
import { checkResponsesByDefault, describeIssue, formatPath } from '../../../lib/runtime/codec/predictor-schemas.js';
import { settingsFromEnv } from '../../../lib/runtime/settings.js';
import { StartupError } from '../../../lib/runtime/startup-error.js';
import { DIGITS_ONNX, startRuntime, startServer, type TestServer } from '../../helpers.js';

const seen: unknown[] = [];

const echo = definePredictor({
  request: z.object({
    items: z.array(z.object({ x: z.number().int(), tag: z.string().default('none') })).min(1),
    // A transform: predict sees the number, clients send the string.
    scale: z.string().regex(/^\d+$/).transform(Number),
  }),
  response: z.object({ total: z.number(), tags: z.array(z.string()) }),
  example: { items: [{ x: 1 }], scale: '2' },
  predict({ payload, query }) {
    seen.push(payload);
    const total = payload.items.reduce((sum, item) => sum + item.x, 0) * payload.scale;
    // Three ways to answer: the declared shape, a shape that breaks it, a full-control error.
    if (query['break'] === '1') return { total: 'many', tags: [] } as unknown as { total: number; tags: string[] };
    if (query['teapot'] === '1') return fullControl(418, { whatever: true });
    if (query['wrapped'] === '1') return fullControl(200, { total: 'wrapped' });
    return { total, tags: payload.items.map((item) => item.tag) };
  },
});

function fullControl(status: number, body: JsonValue): PredictorResponse {
  return { status, body };
}

let checked: TestServer;
let unchecked: TestServer;

before(async () => {
  checked = await startServer(await startRuntime({ modelUri: DIGITS_ONNX, predictor: echo, checkResponses: true }));
  unchecked = await startServer(await startRuntime({ modelUri: DIGITS_ONNX, predictor: echo }));
});

after(async () => {
  await checked?.close();
  await unchecked?.close();
});

async function post(server: TestServer, body: string, contentType = 'application/json', query = '') {
  const response = await fetch(`${server.url}/${query}`, {
    method: 'POST',
    headers: { 'content-type': contentType },
    body,
  });
  const text = await response.text();
  return { status: response.status, json: JSON.parse(text) as Record<string, unknown> };
}

/** The message and code of an error body, in the contract's old or new shape. */
function errorOf(body: Record<string, unknown>): { code: unknown; message: string } {
  const error = body['error'];
  if (typeof error === 'string') return { code: body['code'], message: error };
  const nested = error as { code: unknown; message: string };
  return { code: nested.code, message: nested.message };
}

describe('the request schema', () => {
  test('a valid request reaches predict as the schema’s output (defaults filled, transforms applied)', async () => {
    seen.length = 0;
    const reply = await post(checked, JSON.stringify({ items: [{ x: 2 }, { x: 3, tag: 'b' }], scale: '10' }));
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.json, { total: 50, tags: ['none', 'b'] });
    assert.deepEqual(seen, [
      {
        items: [
          { x: 2, tag: 'none' },
          { x: 3, tag: 'b' },
        ],
        scale: 10,
      },
    ]);
  });

  const refusals: [string, string, RegExp][] = [
    [
      'a wrong type deep inside',
      '{"items":[{"x":1},{"x":"2"}],"scale":"1"}',
      /at \$\.items\[1\]\.x: .*expected number/,
    ],
    ['a non-integer', '{"items":[{"x":1.5}],"scale":"1"}', /at \$\.items\[0\]\.x: .*expected int/],
    ['an empty list', '{"items":[],"scale":"1"}', /at \$\.items: .*>=1 items/],
    ['a missing field', '{"items":[{"x":1}]}', /at \$\.scale: .*expected string, received undefined/],
    ['a failed refinement', '{"items":[{"x":1}],"scale":"ten"}', /at \$\.scale: .*pattern/],
    ['the wrong type at the top', '[1,2]', /at \$: .*expected object, received array/],
  ];
  for (const [name, body, message] of refusals) {
    test(`${name} is a 400 naming the field and what was expected; predict never runs; the next request works`, async () => {
      seen.length = 0;
      const reply = await post(checked, body);
      assert.equal(reply.status, 400);
      const error = errorOf(reply.json);
      assert.equal(error.code, 'invalid_input');
      assert.match(error.message, /^invalid request body: /);
      assert.match(error.message, message);
      assert.deepEqual(seen, []);
      assert.equal((await post(checked, '{"items":[{"x":1}],"scale":"1"}')).status, 200);
    });
  }

  test('several problems: the first is named, the rest counted', async () => {
    const error = errorOf((await post(checked, '{"items":[{"x":"a"},{"x":"b"}]}')).json);
    assert.match(error.message, /at \$\.items\[0\]\.x: .* \(and 2 more problems\)$/);
  });

  test('a body that is not JSON is a 415 asking for application/json', async () => {
    for (const contentType of ['text/plain', 'application/octet-stream']) {
      const reply = await post(checked, '{"items":[{"x":1}],"scale":"1"}', contentType);
      assert.equal(reply.status, 415, contentType);
      assert.match(
        errorOf(reply.json).message,
        /^send Content-Type: application\/json: this predictor declares a JSON request \(got/,
      );
    }
  });

  test('malformed JSON stays the codec’s 400 malformed_json', async () => {
    const reply = await post(checked, '{"items":');
    assert.equal(reply.status, 400);
    assert.equal(errorOf(reply.json).code, 'malformed_json');
  });
});

describe('the response schema', () => {
  test('in dev and test mode a response that breaks it is a 500 saying where', async () => {
    const reply = await post(checked, '{"items":[{"x":1}],"scale":"1"}', 'application/json', '?break=1');
    assert.equal(reply.status, 500);
    const error = errorOf(reply.json);
    assert.equal(error.code, 'predictor_error');
    assert.match(error.message, /does not match its declared response schema .*at \$\.total: .*expected number/);
    const wrapped = await post(checked, '{"items":[{"x":1}],"scale":"1"}', 'application/json', '?wrapped=1');
    assert.equal(wrapped.status, 500, 'a full-control 2xx body is checked too');
  });

  test('a full-control error response is not the declared response, and is not checked', async () => {
    const reply = await post(checked, '{"items":[{"x":1}],"scale":"1"}', 'application/json', '?teapot=1');
    assert.equal(reply.status, 418);
    assert.deepEqual(reply.json, { whatever: true });
  });

  test('unchecked (deployed) the same response goes out as the predictor made it', async () => {
    const reply = await post(unchecked, '{"items":[{"x":1}],"scale":"1"}', 'application/json', '?break=1');
    assert.equal(reply.status, 200);
    assert.deepEqual(reply.json, { total: 'many', tags: [] });
  });

  test('checking is on with NODE_ENV development or test, or ARCLIGHT_CHECK_RESPONSES=on; off otherwise', () => {
    assert.equal(checkResponsesByDefault(undefined, 'test'), true);
    assert.equal(checkResponsesByDefault(undefined, 'development'), true);
    assert.equal(checkResponsesByDefault(undefined, 'production'), false);
    assert.equal(checkResponsesByDefault(undefined, undefined), false);
    assert.equal(checkResponsesByDefault('on', 'production'), true);
    assert.equal(checkResponsesByDefault('off', 'test'), false);
    const env = { ARCLIGHT_MODEL_URI: 'models/digits.onnx' };
    assert.equal(settingsFromEnv({ ...env, NODE_ENV: 'test' }).checkResponses, true);
    assert.equal(settingsFromEnv({ ...env, ARCLIGHT_CHECK_RESPONSES: 'off', NODE_ENV: 'test' }).checkResponses, false);
    assert.equal(settingsFromEnv(env).docs, false);
    assert.equal(settingsFromEnv({ ...env, ARCLIGHT_DOCS: 'on' }).docs, true);
    assert.throws(
      () => settingsFromEnv({ ...env, ARCLIGHT_DOCS: 'yes', ARCLIGHT_CHECK_RESPONSES: '1' }),
      (error: unknown) =>
        error instanceof StartupError &&
        /ARCLIGHT_DOCS must be on or off/.test(error.message) &&
        /ARCLIGHT_CHECK_RESPONSES must be on or off/.test(error.message),
    );
  });
});

describe('with predictBatch behind the batcher', () => {
  const batches: unknown[][] = [];
  const batching = definePredictor({
    request: z.object({ n: z.string().transform(Number) }),
    predict: ({ payload }) => ({ n: payload.n }),
    predictBatch: (requests) => {
      batches.push(requests.map((r) => r.payload));
      return requests.map((r) => ({ n: r.payload.n, batched: true }));
    },
  });
  let server: TestServer;
  before(async () => {
    server = await startServer(
      await startRuntime({
        modelUri: DIGITS_ONNX,
        predictor: batching,
        batching: { maxBatchSize: 4, maxBatchDelayMs: 50 },
      }),
    );
  });
  after(() => server?.close());

  test('a bad request fails alone before joining a batch; its batch-mates get their parsed payloads', async () => {
    const replies = await Promise.all([post(server, '{"n":"1"}'), post(server, '{"n":2}'), post(server, '{"n":"3"}')]);
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 400, 200],
    );
    assert.match(errorOf(replies[1]!.json).message, /at \$\.n: .*expected string, received number/);
    assert.deepEqual(replies[0]!.json, { n: 1, batched: true });
    assert.deepEqual(batches.flat(), [{ n: 1 }, { n: 3 }]);
  });
});

describe('definePredictor with schemas', () => {
  test('refuses a request or response that is not a schema', () => {
    assert.throws(
      () => definePredictor({ request: { type: 'object' }, predict: () => null } as never),
      /`request` must be a schema/,
    );
    assert.throws(
      () => definePredictor({ response: 'json', predict: () => null } as never),
      /`response` must be a schema/,
    );
  });

  test('types payload from the request schema and the result from the response schema', () => {
    const predictor = definePredictor({
      request: z.object({ n: z.number() }),
      response: z.object({ doubled: z.number() }),
      predict({ payload }) {
        const n: number = payload.n;
        // @ts-expect-error: the schema has no `m`
        void payload.m;
        if (n < 0) throw new HttpError(400, 'invalid_input', 'negative');
        return { doubled: n * 2 };
      },
    });
    definePredictor({
      response: z.object({ doubled: z.number() }),
      // @ts-expect-error: the result must match the declared response
      predict: () => ({ tripled: 1 }),
    });
    assert.equal(typeof predictor.predict, 'function');
  });

  test('paths are written as JSON paths', () => {
    assert.equal(formatPath([]), '$');
    assert.equal(formatPath(['a', 0, 'b-c', { key: 2 }]), '$.a[0]["b-c"][2]');
    assert.equal(describeIssue([{ message: 'm', path: ['x'] }, { message: 'n' }]), 'at $.x: m (and 1 more problem)');
  });
});
