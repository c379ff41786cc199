/**
 * Security pass over the runtime: what reaches the logs and what reaches a client. Request bodies never reach the
 * logs (at any level, DEBUG included: nothing logs them); error bodies carry no stack, file path or internal message;
 * a request id chosen by the client (x-request-id) or carried by the event cannot break or forge a log line.
 * Through the node:http server and the Lambda handler, with the logs captured as written.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { definePredictor } from '../../lib/predictor.js';
import { createLambdaHandler, type LambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import { createLogger, type LogLevel } from '../../lib/runtime/telemetry/logger.js';
import { Runtime } from '../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  captureLogs,
  digitsInferBody,
  httpApiV2Event,
  httpTransport,
  lambdaTransport,
  loadDigitsExpected,
  startRuntime,
  startServer,
  type TestServer,
  type Transport,
  contractError,
} from '../helpers.js';

const INTERNAL = '/opt/arclight/secret-config.json: db password=hunter2';
const MARKER = `body-marker-${randomUUID()}`;

/** Echoes nothing; on `?fail` throws an Error naming a path and a secret, as a careless predictor would. */
const careless = definePredictor({
  predict({ query, payload }) {
    if (query['fail'] !== undefined) throw new Error(`failed to load ${INTERNAL}`);
    return { received: typeof payload };
  },
});

const servers: TestServer[] = [];
after(async () => {
  for (const server of servers) await server.close();
});

async function transportsAt(level: LogLevel): Promise<[string, Transport, LambdaHandler][]> {
  const { result } = await captureLogs(async () => {
    const runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: careless, logLevel: level });
    const server = await startServer(runtime);
    servers.push(server);
    const handler = createLambdaHandler(runtime);
    return [
      ['node:http', httpTransport(server.url), handler],
      ['Lambda', lambdaTransport(handler), handler],
    ] as [string, Transport, LambdaHandler][];
  });
  return result;
}

describe('request bodies never reach the logs', () => {
  for (const level of ['INFO', 'DEBUG'] as const) {
    test(`at ${level}: valid, invalid and failing requests log their lines without the body`, async () => {
      for (const [name, send] of await transportsAt(level)) {
        const { lines } = await captureLogs(async () => {
          await send({ path: '/', body: JSON.stringify({ text: MARKER }) });
          await send({ path: '/?fail', body: JSON.stringify({ text: MARKER }) });
          await send({ path: '/', body: `{"broken": "${MARKER}` });
          await send({ path: '/v2/models/digits/infer', body: `{"inputs":[{"name":"${MARKER}"}]}` });
          await send({ path: '/', headers: { 'content-type': 'text/plain' }, body: MARKER });
        });
        assert.ok(lines.filter((l) => l['message'] === 'request').length >= 5, `${name}: request lines were logged`);
        assert.ok(
          !JSON.stringify(lines).includes(MARKER),
          `${name} at ${level} logged a body: ${JSON.stringify(lines)}`,
        );
      }
    });
  }
});

describe('error bodies carry no stack, file path or internal message', () => {
  test('a predictor Error naming a path and a secret: the 500 says only where to look (the request id)', async () => {
    for (const [name, send] of await transportsAt('SILENT')) {
      const reply = await send({ path: '/?fail', body: '{}' });
      assert.equal(reply.status, 500, name);
      const error = contractError(reply.json());
      assert.equal(
        error.message,
        `the predictor failed; the logs carry the details under request id ${error.requestId}`,
      );
      for (const leak of ['/opt', 'hunter2', 'password', 'secret', 'Error', '    at ', '.ts:', '.js:']) {
        assert.ok(!reply.text.includes(leak), `${name} leaks ${leak}: ${reply.text}`);
      }
    }
  });

  test('a model that failed to load: the 503 names no path, URI or cause', async () => {
    const failed = new Runtime({
      apiName: 'digits',
      modelUri: '/opt/models/missing/secret-model.onnx',
      logger: createLogger('digits', 'SILENT'),
    });
    await failed.start().catch(() => undefined);
    const reply = await lambdaTransport(createLambdaHandler(failed))({ path: '/', body: '{}' });
    assert.equal(reply.status, 503);
    assert.ok(!reply.text.includes('/opt') && !reply.text.includes('secret-model'), reply.text);
  });
});

describe('client-supplied request ids cannot inject into log lines', () => {
  const HOSTILE = [
    'abc"}\n{"level":"ERROR","message":"forged"',
    'line1\r\nline2',
    'x'.repeat(10_000),
    '\u2028{"level":"ERROR"}',
    '${jndi:ldap://example.com/a}',
    'id with spaces; rm -rf /',
    '<script>alert(1)</script>',
  ];

  /** Every captured line is one JSON object; none forged; the logged id is safe and is the one the client got. */
  function assertCleanLines(lines: Record<string, unknown>[], answeredId: string, hostile: string): void {
    assert.ok(lines.length >= 1);
    for (const line of lines) {
      assert.notEqual(line['message'], 'forged');
      if (line['requestId'] !== undefined) {
        assert.equal(line['requestId'], answeredId);
        assert.match(String(line['requestId']), /^[A-Za-z0-9._:=+/-]{1,128}$/);
      }
    }
    assert.ok(!JSON.stringify(lines).includes(hostile.slice(0, 40)), `the hostile id reached the log: ${hostile}`);
  }

  test('through x-request-id over HTTP (what a header can carry) and in a Lambda event (anything)', async () => {
    const [[, http, handler]] = (await transportsAt('INFO')) as [[string, Transport, LambdaHandler]];
    for (const hostile of HOSTILE) {
      if (!/[\r\n\u2028]/.test(hostile)) {
        const { result: reply, lines } = await captureLogs(() =>
          http({ path: '/?fail', body: '{}', headers: { 'x-request-id': hostile } }),
        );
        const answeredId = reply.headers['x-request-id']!;
        assert.notEqual(answeredId, hostile);
        assertCleanLines(lines, answeredId, hostile);
      }
      // In an event both the header and API Gateway's own request id may carry it (a hand-made or forged event).
      const event = httpApiV2Event({ path: '/?fail', body: '{}', headers: { 'x-request-id': hostile } }, hostile);
      const { result, lines } = await captureLogs(() => handler(event, { awsRequestId: randomUUID() }));
      const answeredId = String(result.headers?.['x-request-id']);
      assert.notEqual(answeredId, hostile);
      assertCleanLines(lines, answeredId, hostile);
    }
  });

  test('a valid request with a safe client id keeps it, end to end', async () => {
    const [[, http]] = (await transportsAt('INFO')) as [[string, Transport, LambdaHandler]];
    const body = digitsInferBody([loadDigitsExpected().images[0]!]);
    const { result: reply, lines } = await captureLogs(() =>
      http({ path: '/v2/models/digits/infer', body, headers: { 'x-request-id': 'client-123.abc:def' } }),
    );
    assert.equal(reply.status, 200);
    assert.equal(reply.headers['x-request-id'], 'client-123.abc:def');
    assert.equal(lines.find((l) => l['message'] === 'request')?.['requestId'], 'client-123.abc:def');
  });
});
