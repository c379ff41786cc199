/**
 * Request bodies under load: the container server reads bodies into a few shared slabs the workers copy from (a body
 * waits in its socket while every slab is taken), admission control refuses past its bound, clients trickle their
 * uploads. Whatever the interleaving, every answer is its own request's: no body is dropped, mixed with another or
 * reordered, and no slab is reused while a queued job has still to read it.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { settingsFromEnv } from '../../../lib/runtime/settings.js';
import { startContainerServer, type ContainerServer } from '../../../lib/runtime/transports/container-server.js';
import { DIGITS_ONNX, assertLogitsClose, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
const IMAGES = expected.images.length;

/** A binary OIP request for `count` images from `offset` on (wrapping), so every request's rows differ. */
function batchBody(offset: number, count: number): { body: Buffer; headerLength: number; rows: number[] } {
  const rows = Array.from({ length: count }, (_, i) => (offset + i) % IMAGES);
  const data = Float32Array.from(rows.flatMap((row) => expected.images[row]!));
  const header = Buffer.from(
    JSON.stringify({
      id: `batch-${offset}-${count}`,
      inputs: [
        { name: 'image', shape: [count, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: data.byteLength } },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  return { body: Buffer.concat([header, Buffer.from(data.buffer)]), headerLength: header.length, rows };
}

/** POSTs a body, in `pieces` writes spaced `gapMs` apart (a slow upload) or at once; resolves status and body. */
function post(
  port: number,
  body: Buffer,
  headerLength: number,
  pieces: number,
  gapMs: number,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/v2/models/digits/infer',
        method: 'POST',
        headers: {
          'content-type': 'application/octet-stream',
          'content-length': body.length,
          'inference-header-content-length': headerLength,
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.once('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
      },
    );
    req.once('error', reject);
    const size = Math.ceil(body.length / pieces);
    let at = 0;
    const next = (): void => {
      const end = Math.min(body.length, at + size);
      if (end >= body.length) {
        req.end(body.subarray(at));
        return;
      }
      req.write(body.subarray(at, end));
      at = end;
      setTimeout(next, gapMs);
    };
    next();
  });
}

function checkAnswer(
  answer: { headers: Record<string, unknown>; body: Buffer },
  sent: ReturnType<typeof batchBody>,
): void {
  const jsonLength = Number(answer.headers['inference-header-content-length']);
  const head = JSON.parse(answer.body.toString('utf8', 0, jsonLength)) as {
    id: string;
    outputs: { shape: number[] }[];
  };
  assert.deepEqual(head.outputs[0]!.shape, [sent.rows.length, 10]);
  const raw = answer.body.subarray(jsonLength);
  const logits = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  sent.rows.forEach((row, i) =>
    assertLogitsClose(Array.from(logits.subarray(i * 10, i * 10 + 10)), expected.logits[row]!, `${head.id} row ${i}`),
  );
}

describe('bodies under load, in slabs', () => {
  let container: ContainerServer;

  before(async () => {
    const env = {
      ARCLIGHT_MODEL_URI: DIGITS_ONNX,
      ARCLIGHT_API_NAME: 'digits',
      ARCLIGHT_METRICS: 'off',
      ARCLIGHT_WORKERS: '2',
      ARCLIGHT_MAX_BATCH_SIZE: '1',
      ARCLIGHT_MAX_QUEUE_LENGTH: '4',
    };
    const settings = settingsFromEnv(env);
    container = await startContainerServer({
      settings,
      env,
      port: 0,
      host: '127.0.0.1',
      logger: createLogger('digits', 'SILENT'),
    });
    await container.ready;
  });
  after(async () => {
    await container?.shutdown();
  });

  test('every answer is its own request’s, through slabs, waits, refusals and trickled uploads', async (t) => {
    const port = container.address.port;
    const wanted = 80;
    let next = 0;
    let answered = 0;
    let refused = 0;
    const client = async (lane: number): Promise<void> => {
      for (;;) {
        const n = next++;
        if (n >= wanted) return;
        // 256 to 397 images: 64 KiB to 100 KiB of tensor, several sizes of reused memory.
        const sent = batchBody((n * 37) % IMAGES, 256 + ((n * 53) % (IMAGES - 256)));
        const slow = lane % 4 === 0;
        for (;;) {
          const answer = await post(port, sent.body, sent.headerLength, slow ? 8 : 1, slow ? 3 : 0);
          if (answer.status === 503) {
            refused++;
            assert.equal(answer.headers['retry-after'], '1');
            continue;
          }
          assert.equal(answer.status, 200, answer.body.toString('utf8', 0, 300));
          checkAnswer(answer, sent);
          answered++;
          break;
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, (_, lane) => client(lane)));
    assert.equal(answered, wanted);
    const slabs = container.bodySlabs.all;
    assert.ok(
      slabs.some((slab) => slab.memory.byteLength > 0),
      'bodies were read into the slabs',
    );
    assert.ok(
      slabs.every((slab) => slab.free),
      'every slab is free once every request is answered',
    );
    // Refusals (503, retried) are admission control at work, never a lost body.
    t.diagnostic(`${refused} refusals retried`);
  });

  test('with every slab taken a POST waits, its upload unread, /ping still answers, and a client that leaves frees its place', async () => {
    const port = container.address.port;
    const slabs = container.bodySlabs;
    const sent = batchBody(0, 64);
    // Each stalled upload holds a slab: headers and half the body sent, the rest later.
    const stalled = Array.from({ length: slabs.count }, () => stalledUpload(port, sent));
    await until(() => slabs.all.every((slab) => !slab.free), 'every slab taken');
    const waiting = post(port, sent.body, sent.headerLength, 1, 0);
    await until(() => slabs.waiting === 1, 'one request waiting for a slab');
    const leaving = stalledUpload(port, sent);
    await until(() => slabs.waiting === 2, 'two requests waiting');
    const ping = await fetch(`http://127.0.0.1:${port}/ping`);
    assert.equal(ping.status, 200, '/ping answers while every slab is taken');
    leaving.socket.destroy();
    await until(() => slabs.waiting === 1, 'the client that left no longer waits');
    for (const upload of stalled) upload.finish();
    for (const upload of stalled) {
      const answer = await upload.answer;
      assert.match(answer, /^HTTP\/1\.1 200/);
    }
    const answer = await waiting;
    assert.equal(answer.status, 200);
    checkAnswer(answer, sent);
    await until(() => slabs.all.every((slab) => slab.free), 'every slab free again');
  });
});

/** An upload over a raw socket that sends its headers and half its body, then the rest on `finish()`. */
function stalledUpload(
  port: number,
  sent: ReturnType<typeof batchBody>,
): { socket: Socket; finish: () => void; answer: Promise<string> } {
  const socket = connect(port, '127.0.0.1');
  const head =
    `POST /v2/models/digits/infer HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\n` +
    `content-length: ${sent.body.length}\r\ninference-header-content-length: ${sent.headerLength}\r\nconnection: close\r\n\r\n`;
  const half = Math.floor(sent.body.length / 2);
  socket.write(head);
  socket.write(sent.body.subarray(0, half));
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  const answer = new Promise<string>((resolve) =>
    socket.once('close', () => resolve(Buffer.concat(chunks).toString('latin1'))),
  );
  return { socket, finish: () => socket.end(sent.body.subarray(half)), answer };
}

async function until(check: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
