/**
 * The error contract: every failure is `{"error":"<message>","code","requestId"}` with its status, through the
 * node:http server (raw sockets where the transport itself matters) and the Lambda handler. Predictors here are
 * real user code over the real digits model; after every failure a valid request succeeds on the same runtime.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { definePredictor, HttpError, type PredictContext } from '../../lib/predictor.js';
import { createLambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import { createLogger } from '../../lib/runtime/telemetry/logger.js';
import { Runtime } from '../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  captureLogs,
  digitsInferBody,
  httpTransport,
  lambdaTransport,
  loadDigitsExpected,
  startRuntime,
  startServer,
  type Reply,
  type TestServer,
  type Transport,
  contractError,
  type ContractError,
} from '../helpers.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SECRET_PATH = '/home/app/.secrets/db.key';
const SECRET = 'password=hunter2';
const INFER = '/v2/models/digits/infer';
const VALID_BODY = digitsInferBody([loadDigitsExpected().images[0]!]);

/** A contract error: status, JSON content type, exactly `{error:{code,message,requestId}}`, the id in the header. */
function assertError(reply: Reply, status: number, code: string): ContractError {
  assert.equal(reply.status, status, reply.text);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
  const error = contractError(reply.json());
  assert.equal(error.code, code, error.message);
  assert.equal(reply.headers['x-request-id'], error.requestId);
  return error;
}

async function assertServesValid(send: Transport): Promise<void> {
  const reply = await send({ path: INFER, body: VALID_BODY });
  assert.equal(reply.status, 200, reply.text);
  const out = reply.json<{ outputs: { name: string; shape: number[]; data: number[] }[] }>().outputs;
  assert.equal(out.length, 1);
  assert.deepEqual(out[0]!.shape, [1, 10]);
  assert.ok(out[0]!.data.every(Number.isFinite));
}

const seenSignals: AbortSignal[] = [];

/** User code that misbehaves on request: `POST /?case=<name>`. */
const misbehaving = definePredictor({
  async predict({ query, payload }, { signal }: PredictContext<undefined>) {
    switch (query['case']) {
      case 'ok':
        return { ok: true, payload: payload as never };
      case 'throw-secret':
        throw new Error(`cannot open ${SECRET_PATH}: ${SECRET}`);
      case 'http-422':
        throw new HttpError(422, 'unprocessable_image', 'the image is blank', { 'x-hint': 'draw something' });
      case 'http-503':
        throw new HttpError(503, 'overloaded', 'busy', { 'retry-after': '7' });
      case 'reject-string':
        return Promise.reject(`plain string naming ${SECRET_PATH}`);
      case 'throw-object':
        throw { secret: SECRET };
      case 'throw-null':
        throw null;
      case 'undefined':
        return undefined as never;
      case 'bigint':
        return { n: 12n, big: 2n ** 64n, negative: -(2n ** 63n), list: [1n, 2n] };
      case 'cyclic': {
        const node: Record<string, unknown> = { name: 'loop' };
        node['self'] = node;
        return node;
      }
      case 'deep': {
        let value: unknown[] = [];
        for (let i = 0; i < 100_000; i++) value = [value];
        return { value };
      }
      case 'function':
        return (() => 1) as never;
      case 'symbol':
        return Symbol('s') as never;
      case 'string':
        return 'hello, world';
      case 'empty-string':
        return '';
      case 'bytes':
        return new Uint8Array([0, 1, 2, 255]);
      case 'buffer-view':
        return new Uint8Array([9, 8, 7, 6, 5]).subarray(1, 4);
      case 'null':
        return null;
      case 'full':
        return {
          status: 201,
          headers: { 'X-Custom': 'yes', 'Content-Type': 'application/vnd.test+json' },
          body: { created: true },
        };
      case 'full-text':
        return { status: 202, body: 'accepted' };
      case 'full-bytes':
        return { status: 200, headers: { 'content-type': 'image/png' }, body: new Uint8Array([137, 80, 78, 71]) };
      case 'status-like':
        return { status: 'fine', extra: 1 };
      case 'hang':
        seenSignals.push(signal);
        return new Promise((_, reject) => signal.addEventListener('abort', () => reject(signal.reason as Error)));
      default:
        throw new HttpError(400, 'invalid_input', `unknown case '${String(query['case'])}'`);
    }
  },
});

let runtime: Runtime;
let server: TestServer;

before(async () => {
  runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: misbehaving });
  server = await startServer(runtime, { maxBodyBytes: 64 * 1024 });
});

after(async () => {
  await server?.close();
});

const transports: readonly [string, () => Transport][] = [
  ['node:http', () => httpTransport(server.url)],
  ['Lambda (API Gateway v2 event)', () => lambdaTransport(createLambdaHandler(runtime))],
];

for (const [transportName, transportOf] of transports) {
  describe(`error contract through ${transportName}`, () => {
    let send: Transport;
    before(() => {
      send = transportOf();
    });

    test('404 for an unknown route', async () => {
      const error = assertError(await send({ path: '/nope' }), 404, 'not_found');
      assert.match(error.message, /no route for \/nope/);
      assertError(await send({ path: '/v2/models/digits/explain', body: '{}' }), 404, 'not_found');
      await assertServesValid(send);
    });

    test('404 for an unknown model name, on every model route', async () => {
      const infer = assertError(
        await send({ path: '/v2/models/other/infer', body: VALID_BODY }),
        404,
        'model_not_found',
      );
      assert.match(infer.message, /no model named 'other'; this API serves 'digits'/);
      assertError(await send({ path: '/v2/models/other' }), 404, 'model_not_found');
      assertError(await send({ path: '/v2/models/other/ready' }), 404, 'model_not_found');
      await assertServesValid(send);
    });

    test('405 with an Allow header for a known path and the wrong method', async () => {
      const infer = await send({ method: 'GET', path: INFER });
      assert.match(assertError(infer, 405, 'method_not_allowed').message, /GET is not allowed on .*; use POST/);
      assert.equal(infer.headers['allow'], 'POST');
      const root = await send({ method: 'DELETE', path: '/' });
      assertError(root, 405, 'method_not_allowed');
      assert.equal(root.headers['allow'], 'GET, POST');
      const live = await send({ method: 'POST', path: '/v2/health/live', body: '{}' });
      assertError(live, 405, 'method_not_allowed');
      assert.equal(live.headers['allow'], 'GET');
      await assertServesValid(send);
    });

    test('content type is not the protocol: any body without the binary header is the JSON request', async () => {
      for (const contentType of [
        'text/plain',
        'application/x-www-form-urlencoded',
        'application/octet-stream',
        'application/json; charset=utf-8',
      ]) {
        const reply = await send({ path: INFER, headers: { 'content-type': contentType }, body: VALID_BODY });
        assert.equal(reply.status, 200, `${contentType}: ${reply.text}`);
      }
      const notJson = await send({ path: INFER, headers: { 'content-type': 'text/plain' }, body: 'hello' });
      assert.equal(assertError(notJson, 400, 'malformed_json').code, 'malformed_json');
      await assertServesValid(send);
    });

    test('415 on the OIP route for a content type that clearly is not JSON', async () => {
      for (const contentType of ['image/png', 'multipart/form-data; boundary=x', 'application/pdf']) {
        const reply = await send({ path: INFER, headers: { 'content-type': contentType }, body: VALID_BODY });
        const error = assertError(reply, 415, 'unsupported_media_type');
        assert.match(error.message, new RegExp(`content type '${contentType.split(';')[0]}' is not accepted`));
        assert.match(error.message, /application\/json/);
      }
      await assertServesValid(send);
    });

    test('a thrown Error is a 500 that names no internals; the request id leads to the logs', async () => {
      const reply = await send({ path: '/?case=throw-secret', body: '{}' });
      const error = assertError(reply, 500, 'predictor_error');
      assert.ok(error.message.includes(error.requestId), 'the message points at the request id');
      for (const leak of [SECRET_PATH, SECRET, 'hunter2', 'cannot open', '.secrets', 'at ', 'Error:', '.ts:']) {
        assert.ok(!reply.text.includes(leak), `the response leaks ${JSON.stringify(leak)}: ${reply.text}`);
      }
      await assertServesValid(send);
    });

    test('an HttpError from the predictor keeps its status, code, message and headers', async () => {
      const reply = await send({ path: '/?case=http-422', body: '{}' });
      assert.equal(assertError(reply, 422, 'unprocessable_image').message, 'the image is blank');
      assert.equal(reply.headers['x-hint'], 'draw something');
      const busy = await send({ path: '/?case=http-503', body: '{}' });
      assertError(busy, 503, 'overloaded');
      assert.equal(busy.headers['retry-after'], '7');
      await assertServesValid(send);
    });

    for (const thrown of ['reject-string', 'throw-object', 'throw-null']) {
      test(`a predictor that throws a non-Error (${thrown}) is a 500`, async () => {
        const reply = await send({ path: `/?case=${thrown}`, body: '{}' });
        assertError(reply, 500, 'predictor_error');
        assert.ok(!reply.text.includes(SECRET_PATH) && !reply.text.includes('hunter2'), reply.text);
        await assertServesValid(send);
      });
    }

    for (const [name, pattern] of [
      ['undefined', /returned nothing \(undefined\)/],
      ['cyclic', /returned a value JSON cannot encode \(Converting circular structure to JSON/],
      ['deep', /returned a value JSON cannot encode/],
      ['function', /returned a function, which JSON cannot encode/],
      ['symbol', /returned a symbol, which JSON cannot encode/],
    ] as const) {
      test(`a predictor that returns what JSON cannot encode (${name}) is a 500`, async () => {
        const error = assertError(await send({ path: `/?case=${name}`, body: '{}' }), 500, 'predictor_error');
        assert.match(error.message, pattern);
        await assertServesValid(send);
      });
    }

    test('BigInt inside a returned object is encoded: a number when exact, else a decimal string', async () => {
      const reply = await send({ path: '/?case=bigint', body: '{}' });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.headers['content-type'], 'application/json');
      assert.equal(reply.text, '{"n":12,"big":"18446744073709551616","negative":"-9223372036854775808","list":[1,2]}');
    });

    test('a returned string is text/plain, bytes are application/octet-stream, null is JSON', async () => {
      const text = await send({ path: '/?case=string', body: '{}' });
      assert.equal(text.status, 200);
      assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(text.text, 'hello, world');
      const empty = await send({ path: '/?case=empty-string', body: '{}' });
      assert.equal(empty.status, 200);
      assert.equal(empty.text, '');
      const bytes = await send({ path: '/?case=bytes', body: '{}' });
      assert.equal(bytes.status, 200);
      assert.equal(bytes.headers['content-type'], 'application/octet-stream');
      assert.deepEqual([...bytes.body], [0, 1, 2, 255]);
      const view = await send({ path: '/?case=buffer-view', body: '{}' });
      assert.deepEqual([...view.body], [8, 7, 6], 'only the view, not its whole buffer');
      const nil = await send({ path: '/?case=null', body: '{}' });
      assert.equal(nil.status, 200);
      assert.equal(nil.text, 'null');
      await assertServesValid(send);
    });

    test('a full-control response sets status, headers and body', async () => {
      const full = await send({ path: '/?case=full', body: '{}' });
      assert.equal(full.status, 201);
      assert.equal(full.headers['x-custom'], 'yes');
      assert.equal(full.headers['content-type'], 'application/vnd.test+json');
      assert.deepEqual(full.json(), { created: true });
      const text = await send({ path: '/?case=full-text', body: '{}' });
      assert.equal(text.status, 202);
      assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
      assert.equal(text.text, 'accepted');
      const png = await send({ path: '/?case=full-bytes', body: '{}' });
      assert.equal(png.headers['content-type'], 'image/png');
      assert.deepEqual([...png.body], [137, 80, 78, 71]);
      const notResponse = await send({ path: '/?case=status-like', body: '{}' });
      assert.equal(notResponse.status, 200, 'an object with a non-numeric status is plain JSON');
      assert.deepEqual(notResponse.json(), { status: 'fine', extra: 1 });
    });

    test('the payload is the parsed JSON body; a malformed one is a 400 when the predictor reads it', async () => {
      const ok = await send({ path: '/?case=ok', body: '{"a":[1,2]}' });
      assert.deepEqual(ok.json(), { ok: true, payload: { a: [1, 2] } });
      const bad = await send({ path: '/?case=ok', body: '{"a":' });
      assert.match(assertError(bad, 400, 'malformed_json').message, /not valid JSON/);
      await assertServesValid(send);
    });
  });
}

/** A raw HTTP/1.1 exchange: what came back, and how the connection ended. */
interface RawExchange {
  readonly status: number;
  readonly head: string;
  readonly headers: Record<string, string>;
  readonly body: string;
  /** The server closed its side cleanly (FIN), not with a reset. */
  readonly ended: boolean;
  readonly error?: string;
}

function parseRaw(raw: string): Pick<RawExchange, 'status' | 'head' | 'headers' | 'body'> {
  const split = raw.indexOf('\r\n\r\n');
  const head = split < 0 ? raw : raw.slice(0, split);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), head, headers, body: split < 0 ? '' : raw.slice(split + 4) };
}

function openSocket(url: string, options: { allowHalfOpen?: boolean } = {}): Promise<Socket> {
  const { port, hostname } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect({ port: Number(port), host: hostname, ...options });
    socket.once('connect', () => resolve(socket));
    socket.once('error', reject);
  });
}

/** Reads until the server ends or resets the connection, or `timeoutMs` pass (then the socket is destroyed). */
function readUntilClosed(socket: Socket, timeoutMs: number): Promise<RawExchange & { elapsedMs: number }> {
  const started = performance.now();
  return new Promise((resolve) => {
    let raw = '';
    let ended = false;
    let error: string | undefined;
    const timer = setTimeout(() => {
      error ??= `still open after ${timeoutMs} ms`;
      socket.destroy();
    }, timeoutMs);
    socket.on('data', (chunk: Buffer) => (raw += chunk.toString('latin1')));
    socket.on('end', () => {
      ended = true;
      socket.end();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => (error ??= e.code ?? e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ ...parseRaw(raw), ended, elapsedMs: performance.now() - started, ...(error ? { error } : {}) });
    });
    socket.resume();
  });
}

function assertRawError(exchange: RawExchange, status: number, code: string): void {
  assert.equal(exchange.status, status, exchange.head);
  assert.match(exchange.headers['content-type'] ?? '', /^application\/json/);
  const error = contractError(JSON.parse(exchange.body));
  assert.equal(error.code, code);
  assert.ok(error.requestId.length > 0);
}

const chunk = (bytes: Buffer): Buffer =>
  Buffer.concat([Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from('\r\n')]);

describe('413 over a raw socket: the client reads the answer and the connection closes', () => {
  const MAX = 64 * 1024;
  const head = (framing: string): string =>
    `POST ${INFER} HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\nx-request-id: big-1\r\n${framing}\r\n\r\n`;

  test('Content-Length above maxBodyBytes is refused before the body is read', async () => {
    const socket = await openSocket(server.url);
    socket.write(head(`content-length: ${MAX + 1}`));
    socket.write(Buffer.alloc(1000, 0x20));
    const exchange = await readUntilClosed(socket, 5000);
    assertRawError(exchange, 413, 'payload_too_large');
    assert.equal(exchange.headers['connection'], 'close');
    assert.equal(exchange.headers['x-request-id'], 'big-1');
    assert.match(exchange.body, new RegExp(`exceeds the limit of ${MAX} bytes`));
    assert.ok(exchange.ended, `the server ends the connection (got ${exchange.error ?? 'no end'})`);
    assert.equal(exchange.error, undefined);
    await assertServesValid(httpTransport(server.url));
  });

  test('a chunked body that grows past maxBodyBytes is refused as it passes', async () => {
    const socket = await openSocket(server.url);
    socket.write(head('transfer-encoding: chunked'));
    for (let i = 0; i < 3; i++) socket.write(chunk(Buffer.alloc(30 * 1024, 0x20)));
    const exchange = await readUntilClosed(socket, 5000);
    assertRawError(exchange, 413, 'payload_too_large');
    assert.equal(exchange.headers['connection'], 'close');
    assert.ok(exchange.ended, `the server ends the connection (got ${exchange.error ?? 'no end'})`);
    assert.equal(exchange.error, undefined);
    await assertServesValid(httpTransport(server.url));
  });

  for (const framing of ['content-length', 'chunked'] as const) {
    test(`a client that sends its whole ${framing} body before reading still gets the 413, not a reset`, async () => {
      // Like a simple synchronous client: write everything, then read. If the server destroyed the socket right
      // after answering, the rest of the upload would meet a reset and the unread 413 would be thrown away.
      const total = 16 * 1024 * 1024;
      const socket = await openSocket(server.url, { allowHalfOpen: true });
      socket.pause();
      let writeError: string | undefined;
      socket.on('error', (e: NodeJS.ErrnoException) => (writeError ??= e.code ?? e.message));
      socket.write(head(framing === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${total}`));
      const piece = Buffer.alloc(64 * 1024, 0x20);
      for (let sent = 0; sent < total && writeError === undefined; sent += piece.length) {
        const flushed = socket.write(framing === 'chunked' ? chunk(piece) : piece);
        if (!flushed) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              socket.off('drain', done);
              socket.off('close', done);
              resolve();
            };
            socket.once('drain', done);
            socket.once('close', done);
          });
        }
      }
      assert.equal(writeError, undefined, 'the upload was not cut off with a reset');
      const exchange = await readUntilClosed(socket, 5000);
      assertRawError(exchange, 413, 'payload_too_large');
      assert.equal(exchange.headers['connection'], 'close');
      assert.ok(exchange.ended, 'the server ended the connection');
      await assertServesValid(httpTransport(server.url));
    });
  }

  test('a body of exactly maxBodyBytes is served; one byte more is refused', async () => {
    const size = Buffer.byteLength(VALID_BODY);
    const exact = await startServer(runtime, { maxBodyBytes: size });
    try {
      const send = httpTransport(exact.url);
      await assertServesValid(send);
      const padded = await send({ path: INFER, body: `${VALID_BODY} ` });
      assertError(padded, 413, 'payload_too_large');
      assert.equal(padded.headers['connection'], 'close');
      await assertServesValid(send);
    } finally {
      await exact.close();
    }
  });
});

describe('request targets that URL would read as a host (found by fuzzing)', () => {
  for (const [target, status, code] of [
    ['//', 200, undefined],
    ['//v2/health/live', 404, 'not_found'],
    ['//?x=1', 200, undefined],
    ['http://[', 400, 'invalid_input'],
  ] as const) {
    test(`'${target}' is answered (${status}), not dropped`, async () => {
      const socket = await openSocket(server.url);
      socket.write(`GET ${target} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n`);
      const exchange = await readUntilClosed(socket, 10_000);
      if (code === undefined) assert.equal(exchange.status, status, exchange.head);
      else assertRawError(exchange, status, code);
      await assertServesValid(httpTransport(server.url));
    });
  }
});

describe('slow and stalled clients', () => {
  const CLIENT_TIMEOUT_MS = 400;
  let slow: TestServer;
  before(async () => {
    slow = await startServer(runtime, { clientTimeoutMs: CLIENT_TIMEOUT_MS });
  });
  after(async () => {
    await slow?.close();
  });

  for (const [name, partial] of [
    [
      'headers and part of a body',
      `POST ${INFER} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 500\r\n\r\n{"inp`,
    ],
    ['part of the headers', `POST ${INFER} HTTP/1.1\r\nhost: t\r\ncontent-ty`],
  ] as const) {
    test(`a client that sends ${name} then stalls is timed out; others are served meanwhile`, async () => {
      const socket = await openSocket(slow.url);
      socket.write(partial);
      const stalled = readUntilClosed(socket, 5000);
      const send = httpTransport(slow.url);
      const started = performance.now();
      let served = 0;
      while (performance.now() - started < CLIENT_TIMEOUT_MS * 0.75) {
        await assertServesValid(send);
        served++;
      }
      assert.ok(served >= 1);
      const exchange = await stalled;
      assertRawError(exchange, 408, 'request_timeout');
      assert.equal(exchange.headers['connection'], 'close');
      assert.ok(exchange.ended, `the server ends the connection (got ${exchange.error ?? 'no end'})`);
      assert.ok(
        exchange.elapsedMs >= CLIENT_TIMEOUT_MS * 0.75 && exchange.elapsedMs < CLIENT_TIMEOUT_MS + 1500,
        `timed out after ${Math.round(exchange.elapsedMs)} ms; clientTimeoutMs is ${CLIENT_TIMEOUT_MS}`,
      );
      await assertServesValid(send);
    });
  }
});

describe('per-request timeout', () => {
  const TIMEOUT_MS = 300;
  let timed: TestServer;
  before(async () => {
    const timedRuntime = await startRuntime({
      modelUri: DIGITS_ONNX,
      predictor: misbehaving,
      requestTimeoutMs: TIMEOUT_MS,
    });
    timed = await startServer(timedRuntime);
  });
  after(async () => {
    await timed?.close();
  });

  test('a predictor that never finishes gets 504 predictor_timeout, and its AbortSignal is aborted', async () => {
    const send = httpTransport(timed.url);
    seenSignals.length = 0;
    const started = performance.now();
    const reply = await send({ path: '/?case=hang', body: '{}' });
    const elapsed = performance.now() - started;
    const error = assertError(reply, 504, 'predictor_timeout');
    assert.match(error.message, new RegExp(`did not finish within ${TIMEOUT_MS} ms`));
    assert.ok(elapsed >= TIMEOUT_MS * 0.9 && elapsed < TIMEOUT_MS + 3000, `answered after ${Math.round(elapsed)} ms`);
    assert.equal(seenSignals.length, 1);
    const signal = seenSignals[0]!;
    assert.equal(signal.aborted, true);
    assert.equal((signal.reason as HttpError).code, 'predictor_timeout');
    await assertServesValid(send);
  });

  test('the Lambda deadline bounds a request too (remaining time less the margin)', async () => {
    seenSignals.length = 0;
    const handler = createLambdaHandler(runtime, { deadlineMarginMs: 100 });
    const started = performance.now();
    const result = await handler(
      {
        version: '2.0',
        rawPath: '/',
        rawQueryString: 'case=hang',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method: 'POST' }, requestId: 'lambda-deadline', stage: '$default' },
        body: '{}',
        isBase64Encoded: false,
      },
      { awsRequestId: 'aws-1', getRemainingTimeInMillis: () => 350 },
    );
    const elapsed = performance.now() - started;
    assert.equal(result.statusCode, 504, result.body);
    assert.equal(contractError(JSON.parse(result.body)).code, 'predictor_timeout');
    assert.equal(contractError(JSON.parse(result.body)).requestId, 'lambda-deadline');
    assert.ok(elapsed >= 200 && elapsed < 3000, `answered after ${Math.round(elapsed)} ms`);
    assert.equal(seenSignals[0]?.aborted, true);
    await assertServesValid(lambdaTransport(createLambdaHandler(runtime)));
  });
});

describe('logs', () => {
  let logged: TestServer;
  before(async () => {
    const { result: loggedRuntime } = await captureLogs(() =>
      startRuntime({ modelUri: DIGITS_ONNX, predictor: misbehaving, logLevel: 'INFO' }),
    );
    logged = await startServer(loggedRuntime);
  });
  after(async () => {
    await logged?.close();
  });

  test('a predictor failure is logged as an error with the response request id and the stack', async () => {
    const send = httpTransport(logged.url);
    const { result: reply, lines } = await captureLogs(() => send({ path: '/?case=throw-secret', body: '{}' }));
    const { requestId } = assertError(reply, 500, 'predictor_error');
    const errors = lines.filter((l) => l['level'] === 'ERROR');
    assert.equal(errors.length, 1, JSON.stringify(lines));
    const record = errors[0]!;
    assert.equal(record['requestId'], requestId);
    const loggedError = record['error'] as { message: string; stack: string };
    assert.match(loggedError.message, new RegExp(`cannot open ${SECRET_PATH}`));
    assert.match(loggedError.stack, /errors\.test\.ts/, 'the stack points into the predictor');
    const access = lines.find((l) => l['message'] === 'request' && l['requestId'] === requestId);
    assert.equal(access?.['status'], 500);
    await captureLogs(() => assertServesValid(send));
  });

  test('a non-Error rejection is logged as an error with the request id', async () => {
    const send = httpTransport(logged.url);
    const { result: reply, lines } = await captureLogs(() => send({ path: '/?case=reject-string', body: '{}' }));
    const { requestId } = assertError(reply, 500, 'predictor_error');
    const record = lines.find((l) => l['level'] === 'ERROR');
    assert.equal(record?.['requestId'], requestId);
    assert.match(JSON.stringify(record?.['error']), /non-Error thrown: plain string/);
  });

  test('a client request id with quotes or over 128 characters is replaced before it reaches the logs', async () => {
    const send = httpTransport(logged.url);
    for (const injected of ['abc"}{"level":"ERROR', 'x'.repeat(129), 'a b', 'id;drop']) {
      const { result: reply, lines } = await captureLogs(() =>
        send({ path: '/?case=ok', body: '{}', headers: { 'x-request-id': injected } }),
      );
      assert.equal(reply.status, 200, reply.text);
      const id = reply.headers['x-request-id']!;
      assert.match(id, UUID, `'${injected}' is replaced by a fresh id`);
      const records = lines.filter((l) => l['message'] === 'request');
      assert.equal(records.length, 1);
      assert.equal(records[0]!['requestId'], id);
      assert.ok(!JSON.stringify(lines).includes(JSON.stringify(injected).slice(1, -1)), 'the client id is not logged');
    }
  });
});

describe('request ids', () => {
  test('a safe client x-request-id is echoed in the header, the error body and the success header', async () => {
    const send = httpTransport(server.url);
    for (const id of ['client-id_1.2:3', 'a'.repeat(128), randomUUID()]) {
      const ok = await send({ path: '/?case=ok', body: '{}', headers: { 'x-request-id': id } });
      assert.equal(ok.headers['x-request-id'], id);
      const failed = await send({ path: '/?case=throw-secret', body: '{}', headers: { 'x-request-id': id } });
      assert.equal(assertError(failed, 500, 'predictor_error').requestId, id);
    }
  });

  test('an unsafe x-request-id (quotes, spaces, over 128 characters) is replaced with a fresh one', async () => {
    const send = httpTransport(server.url);
    for (const id of ['abc"def', "it's", 'a b', 'x'.repeat(129), '<script>', 'a\tb']) {
      const reply = await send({ path: '/nope', headers: { 'x-request-id': id } });
      const error = assertError(reply, 404, 'not_found');
      assert.match(error.requestId, UUID, `${JSON.stringify(id)} was replaced`);
      assert.ok(!reply.text.includes(id));
    }
  });

  test('a request id with a newline (which HTTP cannot carry, but an adapter might) is replaced', async () => {
    for (const id of ['line\nbreak', 'carriage\r\nreturn', 'zero\u0000byte', 'é-unicode']) {
      const response = await runtime.handle({
        method: 'GET',
        path: '/v2/health/live',
        query: {},
        headers: { 'x-request-id': id },
        body: Buffer.alloc(0),
      });
      assert.equal(response.status, 200);
      assert.match(response.headers['x-request-id']!, UUID, `${JSON.stringify(id)} was replaced`);
    }
  });

  test('the 413 answer applies the same rule to the client request id', async () => {
    const socket = await openSocket(server.url);
    socket.write(
      `POST ${INFER} HTTP/1.1\r\nhost: t\r\nx-request-id: bad"id\r\ncontent-length: ${10 * 1024 * 1024}\r\n\r\n`,
    );
    const exchange = await readUntilClosed(socket, 5000);
    assertRawError(exchange, 413, 'payload_too_large');
    assert.match(exchange.headers['x-request-id'] ?? '', UUID);
  });
});

describe('an init() that throws', () => {
  let failedRuntime: Runtime;
  let failed: TestServer;
  before(async () => {
    failedRuntime = new Runtime({
      apiName: 'digits',
      modelUri: DIGITS_ONNX,
      logger: createLogger('digits', 'SILENT'),
      predictor: definePredictor({
        init() {
          throw new Error(`init cannot read ${SECRET_PATH}`);
        },
        predict: () => ({ never: true }),
      }),
    });
    await assert.rejects(failedRuntime.start(), /the predictor's init\(\) failed: init cannot read/);
    failed = await startServer(failedRuntime);
  });
  after(async () => {
    await failed?.close();
  });

  test("leaves the runtime 'failed'", () => {
    assert.equal(failedRuntime.status, 'failed');
    assert.match(failedRuntime.startupError?.message ?? '', /init\(\) failed/);
  });

  for (const [transportName, transportOf] of [
    ['node:http', () => httpTransport(failed.url)],
    ['Lambda', () => lambdaTransport(createLambdaHandler(failedRuntime))],
  ] as const) {
    test(`requests get 503 not_ready with Retry-After; live is 200, ready is 503 (${transportName})`, async () => {
      const send = transportOf();
      for (const call of [
        { path: '/', body: '{}' },
        { path: INFER, body: VALID_BODY },
        { path: '/v2/health/ready' },
        { path: '/ping' },
        { path: '/v2/models/digits' },
      ]) {
        const reply = await send(call);
        const error = assertError(reply, 503, 'not_ready');
        assert.equal(reply.headers['retry-after'], '1', call.path);
        assert.match(error.message, /failed to load/);
        assert.ok(!reply.text.includes(SECRET_PATH), 'the cause stays in the logs');
      }
      const live = await send({ path: '/v2/health/live' });
      assert.equal(live.status, 200);
      assert.deepEqual(live.json(), { live: true });
      const meta = await send({ path: '/' });
      assert.equal(meta.status, 200);
      assert.equal(meta.json<{ ready: boolean }>().ready, false);
    });
  }

  test('the other runtime keeps serving', async () => {
    await assertServesValid(httpTransport(server.url));
  });
});
