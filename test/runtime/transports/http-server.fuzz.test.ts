/**
 * Fuzzing the node:http server (fast-check) over raw sockets, so nothing between the fuzzer and the server tidies
 * the bytes: hostile requests framed correctly, and requests whose framing itself is broken (garbage request lines
 * and headers, lying or conflicting lengths, bad chunks). Every answer is a correct 200 or a JSON 4xx in the
 * contract's shape — never a reset, a hang or a 5xx — and a valid request right after succeeds.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS } from '../../../lib/contract.js';
import {
  API,
  VALID_INFER,
  VALID_PREDICT,
  assertContractAnswer,
  call,
  describeCall,
  fuzzParameters,
  fuzzRuns,
  headerName,
} from '../../fuzz-arbitraries.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  loadTestPredictor,
  startRuntime,
  startServer,
  type Call,
  type Reply,
  type TestServer,
} from '../../helpers.js';

/** Longer than any answer takes on a loaded machine (client timeouts included); past it the server hangs. */
const HANG_MS = 15_000;
/** The server's time for a client to send its request: short, so a request that lies about its length ends soon. */
const CLIENT_TIMEOUT_MS = 1500;

let oip: TestServer;
let predictor: TestServer;

before(async () => {
  oip = await startServer(await startRuntime({ apiName: API, modelUri: DIGITS_ONNX }), {
    clientTimeoutMs: CLIENT_TIMEOUT_MS,
  });
  predictor = await startServer(
    await startRuntime({ apiName: API, modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) }),
    { clientTimeoutMs: CLIENT_TIMEOUT_MS },
  );
});

after(async () => {
  await oip?.close();
  await predictor?.close();
});

/** Writes raw bytes, half-closes, and reads until the server closes: one whole HTTP/1.1 response, parsed. */
function exchange(server: TestServer, raw: Buffer, head = false): Promise<Reply> {
  const { port } = new URL(server.url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer within ${HANG_MS} ms`));
    }, HANG_MS);
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (error) => {
      // A reset after the whole answer arrived (the server closing on an upload it refused) still counts.
      if (chunks.length === 0) {
        clearTimeout(timer);
        reject(error);
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(parseResponse(Buffer.concat(chunks), head));
      } catch (error) {
        reject(error as Error);
      }
    });
    socket.end(raw);
  });
}

/** A HEAD response carries the headers of its answer and no body. */
function parseResponse(bytes: Buffer, head: boolean): Reply {
  const end = bytes.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no HTTP response: ${JSON.stringify(bytes.toString('latin1').slice(0, 200))}`);
  const [statusLine = '', ...lines] = bytes.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  const length = Number(headers['content-length']);
  const rest = head ? Buffer.alloc(0) : bytes.subarray(end + 4);
  const body = Number.isInteger(length) ? rest.subarray(0, length) : rest;
  assert.ok(head || !Number.isInteger(length) || rest.length >= length, `the body was cut short: ${statusLine}`);
  const text = body.toString('utf8');
  return { status, headers, body, text, json: <T>() => JSON.parse(text) as T };
}

/** A call as the bytes of one well-framed HTTP/1.1 request. */
function requestBytes(c: Call): Buffer {
  const body = c.body === undefined ? Buffer.alloc(0) : Buffer.from(c.body);
  const method = c.method ?? (c.body === undefined ? 'GET' : 'POST');
  const headers = {
    host: '127.0.0.1',
    ...(c.headers ?? {}),
    connection: 'close',
    'content-length': String(body.length),
  };
  const head = [`${method} ${c.path} HTTP/1.1`, ...Object.entries(headers).map(([n, v]) => `${n}: ${v}`)].join('\r\n');
  return Buffer.concat([Buffer.from(`${head}\r\n\r\n`, 'latin1'), body]);
}

async function assertStillServes(): Promise<void> {
  const valid = [
    [oip, VALID_INFER],
    [predictor, VALID_PREDICT],
  ] as const;
  for (const [server, c] of valid) {
    const reply = await exchange(server, requestBytes(c));
    assert.equal(reply.status, 200, `a valid request after: ${reply.text}`);
  }
}

async function fuzz(t: TestContext, name: string, arbitrary: fc.Arbitrary<{ c: Call; raw: Buffer }>, runs: number) {
  let tried = 0;
  const rssBefore = process.memoryUsage().rss;
  await fc.assert(
    fc.asyncProperty(arbitrary, async ({ c, raw }) => {
      tried++;
      const server = c.path.startsWith('/v2') || tried % 2 === 0 ? oip : predictor;
      const head = c.method === 'HEAD';
      let reply: Reply;
      try {
        reply = await exchange(server, raw, head);
      } catch (error) {
        assert.fail(`${(error as Error).message}: ${JSON.stringify(raw.toString('latin1').slice(0, 600))}`);
      }
      if (head) {
        // No route takes HEAD: a 404 or 405 whose headers say JSON (the body HEAD never carries). An empty target
        // (fc.webPath can draw '') makes the request line itself malformed: 400 from the parser.
        // A body over the limit is refused first, whatever the route: 413.
        const tooLarge = Buffer.byteLength(c.body ?? '') > DEFAULTS.maxBodyBytes;
        const expected = c.path === '' ? [400] : tooLarge ? [413] : [404, 405];
        assert.ok(expected.includes(reply.status), `HEAD ${JSON.stringify(c.path)} → ${reply.status}`);
        assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
      } else {
        assertContractAnswer(reply, c);
      }
      await assertStillServes();
    }),
    { ...fuzzParameters(runs), endOnFailure: true },
  );
  const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
  t.diagnostic(`${name}: ${tried} inputs tried, all answered in contract; RSS grew ${rssGrowthMb.toFixed(0)} MB`);
  assert.ok(rssGrowthMb < 1024, `RSS grew ${rssGrowthMb.toFixed(0)} MB over ${tried} inputs`);
}

const printable = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\x20-\x7e]/g, ''));

/** Request heads broken in one of the ways a parser must survive. */
const brokenFraming: fc.Arbitrary<{ c: Call; raw: Buffer }> = fc
  .oneof(
    // Garbage where the request line and headers go.
    fc
      .uint8Array({ minLength: 1, maxLength: 200 })
      .map((bytes) => Buffer.concat([Buffer.from(bytes), Buffer.from('\r\n\r\n')])),
    // A request line that is nearly right.
    fc
      .tuple(
        fc.constantFrom('POST', 'GET', 'P OST', '', 'POST\u0000'),
        printable,
        fc.constantFrom('HTTP/1.1', 'HTTP/9.9', 'HTTP/1', ''),
      )
      .map(([m, p, v]) => Buffer.from(`${m} /${p} ${v}\r\nhost: x\r\nconnection: close\r\n\r\n`, 'latin1')),
    // Headers without a colon, with control characters, folded (obsolete line folding), or very many of them.
    fc
      .tuple(headerName, fc.constantFrom('no colon', 'a\u0001b', ' folded', 'x'.repeat(20_000)))
      .map(([name, value]) =>
        Buffer.from(
          `GET /v2/health/live HTTP/1.1\r\nhost: x\r\n${value === 'no colon' ? name : `${name}: ${value}`}\r\n${value === ' folded' ? ' more\r\n' : ''}connection: close\r\n\r\n`,
          'latin1',
        ),
      ),
    fc.constant(
      Buffer.from(
        `GET / HTTP/1.1\r\nhost: x\r\n${Array.from({ length: 3000 }, (_, i) => `h${i}: v`).join('\r\n')}\r\n\r\n`,
        'latin1',
      ),
    ),
    // Lengths that lie, conflict or are not numbers; chunks that are not chunks.
    fc
      .tuple(
        fc.constantFrom(
          'content-length: 10',
          'content-length: 99999999999999999999',
          'content-length: -1',
          'content-length: abc',
          'content-length: 2\r\ncontent-length: 3',
          'transfer-encoding: chunked',
          'transfer-encoding: chunked\r\ncontent-length: 3',
          'transfer-encoding: gzip, chunked',
          'transfer-encoding: identity',
        ),
        fc.constantFrom('', '{}', 'zz\r\n{}\r\n0\r\n\r\n', '2\r\n{}\r\n0\r\n\r\n', 'ffffffffffffffff\r\n{}', '2\r\n{}'),
      )
      .map(([framing, body]) =>
        Buffer.from(
          `POST ${VALID_INFER.path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n${framing}\r\nconnection: close\r\n\r\n${body}`,
          'latin1',
        ),
      ),
  )
  .map((raw) => ({ c: { method: 'RAW', path: '(raw bytes)', body: raw.toString('latin1').slice(0, 300) }, raw }));

describe('fuzzing the node:http server over raw sockets', () => {
  test('hostile requests, framed correctly', async (t) => {
    await fuzz(
      t,
      'framed requests',
      call.map((c) => ({ c, raw: requestBytes(c) })),
      fuzzRuns(300),
    );
  });

  test('broken framing: garbage heads, bad request lines and headers, lying lengths, bad chunks', async (t) => {
    await fuzz(t, 'broken framing', brokenFraming, fuzzRuns(60));
  });
});

test('describeCall keeps a failure report short whatever the body', () => {
  const text = describeCall({ path: '/', body: 'x'.repeat(1_000_000) });
  assert.ok(text.length < 1000);
});
