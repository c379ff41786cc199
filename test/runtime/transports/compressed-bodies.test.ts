/**
 * Compressed request bodies under the body limit, with memory bounded: a gzip bomb (a small body that inflates to
 * 256 MiB) is refused with 413 once what it inflates to passes the limit, and the inflated size is never allocated,
 * through node:http (inflated as it streams) and the Lambda adapter (zlib stops at the limit).
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createGzip, gzipSync } from 'node:zlib';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  contractError,
  digitsInferBody,
  httpTransport,
  lambdaTransport,
  loadDigitsExpected,
  startRuntime,
  startServer,
  type TestServer,
  type Transport,
} from '../../helpers.js';

const LIMIT = 1024 * 1024;
const INFLATED = 256 * 1024 * 1024;
/** Generous against the 256 MiB a decoder that inflated whole would need; the body limit is 1 MiB. */
const MEMORY_BOUND = 64 * 1024 * 1024;

/** gzip of `size` zero bytes, made a chunk at a time so that making it allocates no `size` either. */
async function gzipBomb(size: number): Promise<Buffer> {
  const gzip = createGzip({ level: 9 });
  const chunks: Buffer[] = [];
  gzip.on('data', (chunk: Buffer) => chunks.push(chunk));
  const done = new Promise((resolve) => gzip.once('end', resolve));
  const zeros = Buffer.alloc(1024 * 1024);
  for (let written = 0; written < size; written += zeros.length) {
    if (!gzip.write(zeros)) await new Promise((resolve) => gzip.once('drain', resolve));
  }
  gzip.end();
  await done;
  return Buffer.concat(chunks);
}

/** Runs work while sampling this process's memory; resolves with its result and the peak growth in bytes. */
async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; growth: number }> {
  const used = (): number => {
    const m = process.memoryUsage();
    return m.rss;
  };
  const baseline = used();
  let peak = baseline;
  const timer = setInterval(() => (peak = Math.max(peak, used())), 2);
  try {
    const result = await work();
    peak = Math.max(peak, used());
    return { result, growth: peak - baseline };
  } finally {
    clearInterval(timer);
  }
}

let runtime: Runtime;
let server: TestServer;
let bomb: Buffer;
const VALID = digitsInferBody([loadDigitsExpected().images[0]!]);

before(async () => {
  runtime = await startRuntime({ modelUri: DIGITS_ONNX });
  server = await startServer(runtime, { maxBodyBytes: LIMIT });
  bomb = await gzipBomb(INFLATED);
  assert.ok(bomb.length < LIMIT, `the bomb itself (${bomb.length} bytes) is under the limit`);
});

after(async () => {
  await server?.close();
});

const transports: readonly [string, () => Transport][] = [
  ['node:http', () => httpTransport(server.url, 30_000)],
  ['Lambda (API Gateway v2 event)', () => lambdaTransport(createLambdaHandler(runtime, { maxBodyBytes: LIMIT }))],
];

for (const [name, transportOf] of transports) {
  describe(`a gzip bomb through ${name}`, () => {
    test('is a 413 once it inflates past the limit, with memory bounded; the next request works', async (t) => {
      const send = transportOf();
      const { result: reply, growth } = await peakGrowth(() =>
        send({
          path: '/v2/models/digits/infer',
          headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
          body: bomb,
        }),
      );
      assert.equal(reply.status, 413, reply.text);
      const error = contractError(reply.json());
      assert.equal(error.code, 'payload_too_large');
      assert.match(error.message, new RegExp(`limit of ${LIMIT} bytes once decompressed`));
      t.diagnostic(
        `peak RSS growth while refusing a ${INFLATED / 2 ** 20} MiB bomb: ${(growth / 2 ** 20).toFixed(1)} MiB`,
      );
      assert.ok(growth < MEMORY_BOUND, `memory grew by ${(growth / 2 ** 20).toFixed(1)} MiB`);
      const next = await send({ path: '/v2/models/digits/infer', body: VALID });
      assert.equal(next.status, 200, next.text);
    });

    test('a body just under the limit once inflated is served', async () => {
      const send = transportOf();
      const padded = Buffer.from(VALID + ' '.repeat(LIMIT - VALID.length - 16));
      const compressed = await new Promise<Buffer>((resolve, reject) => {
        const gzip = createGzip();
        const chunks: Buffer[] = [];
        gzip.on('data', (c: Buffer) => chunks.push(c)).once('end', () => resolve(Buffer.concat(chunks)));
        gzip.once('error', reject);
        gzip.end(padded);
      });
      const reply = await send({
        path: '/v2/models/digits/infer',
        headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
        body: compressed,
      });
      assert.equal(reply.status, 200, reply.text);
    });
  });
}

test('a client that half-closes after a compressed request still gets its answer (inflation waits on zlib)', async () => {
  const body = gzipSync(VALID);
  const head =
    `POST /v2/models/digits/infer HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
    `content-encoding: gzip\r\ncontent-length: ${body.length}\r\n\r\n`;
  const { port } = new URL(server.url);
  const answer = await new Promise<string>((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1', () => socket.end(Buffer.concat([Buffer.from(head), body])));
    let text = '';
    socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    socket.once('close', () => resolve(text));
    socket.once('error', reject);
  });
  assert.match(answer, /^HTTP\/1\.1 200 /, answer.slice(0, 200));
  assert.match(answer, /"model_name":"digits"/);
});
