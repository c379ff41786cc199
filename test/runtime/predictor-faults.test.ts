/**
 * Predictor faults (test/fixtures/faulty-predictor.ts, loaded by file as a deployment loads it): throws, rejections,
 * values that cannot be sent, a predict that never settles, failures in a later tick after the answer, an init that
 * throws. Each through the Lambda handler `lambdaHandlerFromEnv` builds, and through the node:http servers running as
 * their own processes (the container server's main, `arclight serve`), where a stray exception would end the process.
 * Every fault is mapped to its status, logged under the request id the response carries, and the next request is served.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { lambdaHandlerFromEnv } from '../../lib/runtime/transports/lambda.js';
import type { LambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import { INTERNAL_DETAIL } from '../fixtures/faulty-predictor.js';
import {
  DIGITS_ONNX,
  REPO_ROOT,
  captureLogs,
  closedPort,
  httpTransport,
  lambdaTransport,
  loadTestPredictor,
  spawnCli,
  waitForStderr,
  type Reply,
  type Transport,
  contractError,
} from '../helpers.js';

const FAULTY = 'test/fixtures/faulty-predictor.ts';
const TIMEOUT_MS = 300;
const SERVING = /arclight: serving '([^']+)' on (http:\/\/127\.0\.0\.1:\d+)\/ \(ready\)\n/;

type LogRecord = Record<string, unknown>;

/** How each fault must be answered: status, code, and what the message says. */
const EXPECTED: readonly { fault: string; status: number; code?: string; message?: RegExp; logged: RegExp }[] = [
  { fault: 'throw', status: 500, code: 'predictor_error', logged: /^predictor failed$/ },
  { fault: 'reject', status: 500, code: 'predictor_error', logged: /^predictor failed$/ },
  { fault: 'throw-null-prototype', status: 500, code: 'predictor_error', logged: /^predictor failed$/ },
  { fault: 'throw-hostile-proxy', status: 500, code: 'predictor_error', logged: /^predictor failed$/ },
  { fault: 'undefined', status: 500, code: 'predictor_error', message: /returned nothing/, logged: /request failed/ },
  { fault: 'cyclic', status: 500, code: 'predictor_error', message: /JSON cannot encode/, logged: /request failed/ },
  {
    fault: 'bad-header',
    status: 500,
    code: 'predictor_error',
    message: /header HTTP cannot carry: "x-injected"/,
    logged: /request failed/,
  },
  {
    fault: 'hang',
    status: 504,
    code: 'predictor_timeout',
    message: new RegExp(`within ${TIMEOUT_MS} ms`),
    logged: /request failed/,
  },
];

/** Sends one fault; returns the reply and the request id it carries (also in the error body, when there is one). */
async function sendFault(send: Transport, fault: string): Promise<{ reply: Reply; requestId: string }> {
  const reply = await send({ path: `/?fault=${fault}`, body: '{}' });
  const requestId = reply.headers['x-request-id'] ?? '';
  assert.ok(requestId.length > 0, `${fault}: no x-request-id`);
  return { reply, requestId };
}

function assertMapped(reply: Reply, requestId: string, expected: (typeof EXPECTED)[number]): void {
  assert.equal(reply.status, expected.status, `${expected.fault}: ${reply.text}`);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
  const error = contractError(reply.json());
  assert.equal(error.code, expected.code);
  assert.equal(error.requestId, requestId);
  if (expected.message) assert.match(error.message, expected.message);
  assert.ok(
    !reply.text.includes('s3cr3t') && !reply.text.includes('/var/task'),
    `${expected.fault} leaks: ${reply.text}`,
  );
  assert.equal(reply.headers['set-cookie'], undefined, 'no header smuggled in');
}

/** The fault's ERROR record, under the response's request id, and its request line with the status. */
function assertLogged(lines: readonly LogRecord[], requestId: string, expected: (typeof EXPECTED)[number]): void {
  const errors = lines.filter((l) => l['level'] === 'ERROR' && l['requestId'] === requestId);
  assert.equal(errors.length, 1, `${expected.fault}: one error record for ${requestId}: ${JSON.stringify(lines)}`);
  assert.match(String(errors[0]!['message']), expected.logged);
  if (expected.fault === 'throw' || expected.fault === 'reject') {
    assert.match(JSON.stringify(errors[0]!['error']), /s3cr3t/, 'the detail the response hides is in the log');
  }
  const request = lines.find((l) => l['message'] === 'request' && l['requestId'] === requestId);
  assert.equal(request?.['status'], expected.status, `${expected.fault}: request line`);
}

async function assertServesNext(send: Transport): Promise<void> {
  const reply = await send({ path: '/?fault=ok', body: '{}' });
  assert.equal(reply.status, 200, reply.text);
  assert.deepEqual(reply.json(), { ok: true });
}

/** `lambdaHandlerFromEnv` reads process.env, as on Lambda: the env is set for the call and put back. */
async function handlerFromEnv(env: Record<string, string>): Promise<LambdaHandler> {
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return lambdaHandlerFromEnv(await loadTestPredictor(FAULTY));
  } finally {
    for (const name of Object.keys(env)) {
      if (saved[name] === undefined) Reflect.deleteProperty(process.env, name);
      else process.env[name] = saved[name];
    }
  }
}

const LAMBDA_ENV = {
  ARCLIGHT_API_NAME: 'digits',
  ARCLIGHT_MODEL_URI: DIGITS_ONNX,
  ARCLIGHT_REQUEST_TIMEOUT_MS: String(TIMEOUT_MS),
  ARCLIGHT_LOG_LEVEL: 'INFO',
  ARCLIGHT_METRICS: 'off',
};

describe('predictor faults through the Lambda handler', () => {
  let send: Transport;
  before(async () => {
    const { result } = await captureLogs(async () => {
      const handler = await handlerFromEnv(LAMBDA_ENV);
      const transport = lambdaTransport(handler);
      await assertServesNext(transport);
      return transport;
    });
    send = result;
  });

  for (const expected of EXPECTED) {
    test(`${expected.fault}: ${expected.status} ${expected.code}, logged under its request id; the next is served`, async () => {
      const { result, lines } = await captureLogs(() => sendFault(send, expected.fault));
      assertMapped(result.reply, result.requestId, expected);
      assertLogged(lines, result.requestId, expected);
      await captureLogs(() => assertServesNext(send));
    });
  }

  test('BigInt is encoded: a number when exact, else a decimal string', async () => {
    const { result } = await captureLogs(() => sendFault(send, 'bigint'));
    assert.equal(result.reply.status, 200);
    assert.equal(result.reply.text, '{"small":7,"large":"1180591620717411303424"}');
  });

  test('an init() that throws: 503 not_ready on requests, live 200, the reason logged once it fails', async () => {
    const { result, lines } = await captureLogs(async () => {
      const failing = lambdaTransport(await handlerFromEnv({ ...LAMBDA_ENV, ARCLIGHT_CONFIG: '{"failInit":true}' }));
      return { predict: await failing({ path: '/', body: '{}' }), live: await failing({ path: '/v2/health/live' }) };
    });
    assert.equal(result.predict.status, 503, result.predict.text);
    assert.equal(contractError(result.predict.json()).code, 'not_ready');
    assert.equal(result.predict.headers['retry-after'], '1');
    assert.ok(!result.predict.text.includes('s3cr3t'));
    assert.equal(result.live.status, 200);
    const failure = lines.find((l) => l['message'] === 'startup failed');
    assert.match(
      JSON.stringify(failure?.['error']),
      /the predictor's init\(\) failed: init cannot open .*Fix init\(\) in the predictor/,
    );
    await captureLogs(() => assertServesNext(send));
  });
});

/** A server process: its JSON log lines on stdout, and whether it still runs. */
interface ServerProcess {
  readonly send: Transport;
  readonly child: ChildProcessWithoutNullStreams;
  logs(): LogRecord[];
  stop(): Promise<void>;
}

function collectLogs(child: ChildProcessWithoutNullStreams): () => LogRecord[] {
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  return () =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{"level"'))
      .map((line) => JSON.parse(line) as LogRecord);
}

function stopper(child: ChildProcessWithoutNullStreams): () => Promise<void> {
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  return async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
}

/** The container image's entry, from source, with the faulty predictor named by ARCLIGHT_PREDICTOR. */
async function startContainerMain(extraEnv: Record<string, string> = {}): Promise<ServerProcess> {
  const port = await closedPort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/runtime/transports/container-main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      ...LAMBDA_ENV,
      ARCLIGHT_PREDICTOR: FAULTY,
      ARCLIGHT_WORKERS: '1',
      SAGEMAKER_BIND_TO_PORT: String(port),
      ...extraEnv,
    },
    stdio: 'pipe',
  });
  child.stderr.resume();
  const logs = collectLogs(child);
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  while (!logs().some((l) => l['message'] === 'model ready' || l['message'] === 'startup failed')) {
    if (child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`container main did not start: ${JSON.stringify(logs())}`);
    }
    await sleep(50);
  }
  return { send: httpTransport(url), child, logs, stop: stopper(child) };
}

/** `arclight serve` with the faulty predictor, as a user runs it. */
async function startServeCli(): Promise<ServerProcess> {
  const child = spawnCli([
    'serve',
    '--model',
    DIGITS_ONNX,
    '--predictor',
    FAULTY,
    '--port',
    '0',
    '--timeout-ms',
    String(TIMEOUT_MS),
  ]);
  const logs = collectLogs(child);
  const [, , url] = await waitForStderr(child, SERVING);
  return { send: httpTransport(url!), child, logs, stop: stopper(child) };
}

/** Waits for a log record (written by another process: it arrives when it arrives). */
async function waitForLog(server: ServerProcess, matches: (l: LogRecord) => boolean): Promise<LogRecord> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const found = server.logs().find(matches);
    if (found) return found;
    if (Date.now() > deadline) throw new Error(`no such log record in: ${JSON.stringify(server.logs())}`);
    await sleep(20);
  }
}

for (const [name, start] of [
  ['the container server (container-main)', () => startContainerMain()],
  ['arclight serve', startServeCli],
] as const) {
  describe(`predictor faults through ${name}, its own process`, () => {
    let server: ServerProcess;
    before(async () => {
      server = await start();
    });
    after(async () => {
      await server?.stop();
    });

    test('every fault is mapped and logged under its request id; the process serves the next request', async () => {
      for (const expected of EXPECTED) {
        const { reply, requestId } = await sendFault(server.send, expected.fault);
        assertMapped(reply, requestId, expected);
        await waitForLog(server, (l) => l['message'] === 'request' && l['requestId'] === requestId);
        assertLogged(server.logs(), requestId, expected);
        await assertServesNext(server.send);
      }
    });

    for (const [fault, record] of [
      ['late-throw', /^uncaught exception outside any request/],
      ['late-reject', /^unhandled promise rejection outside any request/],
    ] as const) {
      test(`${fault}: answered 200, the later failure is logged, and the process keeps serving`, async () => {
        const { reply } = await sendFault(server.send, fault);
        assert.equal(reply.status, 200, reply.text);
        const logged = await waitForLog(server, (l) => record.test(String(l['message'])));
        assert.equal(logged['level'], 'ERROR');
        assert.match(JSON.stringify(logged['error']), /late (failure|rejection): .*s3cr3t/);
        assert.equal(server.child.exitCode, null, 'the process is still running');
        await assertServesNext(server.send);
      });
    }
  });
}

describe('an init() that throws, in the container server', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startContainerMain({ ARCLIGHT_CONFIG: '{"failInit":true}' });
  });
  after(async () => {
    await server?.stop();
  });

  test('not ready (ping and ready 503), requests 503 not_ready, live 200, the reason logged clearly', async () => {
    for (const path of ['/ping', '/v2/health/ready']) assert.equal((await server.send({ path })).status, 503, path);
    const reply = await server.send({ path: '/', body: '{}' });
    assert.equal(reply.status, 503);
    assert.equal(contractError(reply.json()).code, 'not_ready');
    assert.ok(!reply.text.includes('s3cr3t'));
    assert.equal((await server.send({ path: '/v2/health/live' })).status, 200);
    const failure = server.logs().find((l) => l['message'] === 'startup failed');
    assert.match(JSON.stringify(failure?.['error']), /the predictor's init\(\) failed: init cannot open/);
    assert.equal(server.child.exitCode, null);
  });
});

test(`the fixture's detail is what the tests look for`, () => {
  assert.match(INTERNAL_DETAIL, /s3cr3t/);
});
