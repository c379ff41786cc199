/**
 * Shadow copies with real parts: the container main (as ECS runs it) against a second container main as its shadow,
 * and against a stalled HTTP server that accepts every copy and never answers, over real sockets with the digits
 * model. The primary's answers are its own (`x-arclight-variant: AllTraffic`), the shadow gets exactly the share asked
 * for with the same request ids and its answers are logged, a stalled shadow never holds a primary answer, and copies
 * past the bounded queue are dropped and counted.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, test } from 'node:test';
import { ENV, VARIANT_HEADER } from '../../../lib/contract.js';
import { DIGITS_ONNX, digitsInferBody, loadDigitsExpected } from '../../helpers.js';
import { startContainerMain, type ServedProcess } from '../../served-process.js';

const images = loadDigitsExpected().images;
const running: ServedProcess[] = [];

after(async () => {
  for (const served of running) await served.stop(5000);
});

async function infer(url: string, i: number): Promise<{ id: string; status: number; variant: string | null }> {
  const id = randomUUID();
  const response = await fetch(`${url}/v2/models/digits/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body: digitsInferBody([images[i % images.length]!]),
  });
  await response.arrayBuffer();
  return { id, status: response.status, variant: response.headers.get(VARIANT_HEADER) };
}

/** The JSON log lines of a process with this message. */
function logLines(served: ServedProcess, msg: string): Record<string, unknown>[] {
  return served
    .logRecords()
    .map((line) => JSON.parse(line) as Record<string, unknown>)
    .filter((line) => line['msg'] === msg || line['message'] === msg);
}

async function until(what: string, check: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const base = { ARCLIGHT_API_NAME: 'digits', ARCLIGHT_MODEL_URI: DIGITS_ONNX, ARCLIGHT_WORKERS: '1' };

describe('a shadow container gets a copy of live traffic', () => {
  test('exactly half the requests (every second one), same request ids; answers logged, never returned', async () => {
    const shadow = await startContainerMain({ ...base, [ENV.variant]: 'candidate' });
    running.push(shadow);
    const primary = await startContainerMain({
      ...base,
      [ENV.variant]: 'AllTraffic',
      [ENV.shadowUrl]: shadow.url,
      [ENV.shadowPercent]: '50',
    });
    running.push(primary);
    const sent: string[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await infer(primary.url, i);
      assert.equal(r.status, 200);
      assert.equal(r.variant, 'AllTraffic', 'the answer is the primary’s');
      sent.push(r.id);
    }
    const copied = sent.filter((_, i) => i % 2 === 1);
    await until('the shadow answers', () => logLines(primary, 'shadow answer').length >= 10);
    const answers = logLines(primary, 'shadow answer');
    assert.deepEqual(answers.map((a) => a['requestId']).sort(), [...copied].sort());
    for (const answer of answers) assert.deepEqual([answer['status'], answer['primaryStatus']], [200, 200]);
    const seenByShadow = logLines(shadow, 'request')
      .filter((line) => line['route'] === 'infer')
      .map((line) => line['requestId']);
    assert.deepEqual([...seenByShadow].sort(), [...copied].sort());
    // No body reaches either log.
    assert.doesNotMatch(primary.output() + shadow.output(), /"data":\[/);
  });

  test('a stalled shadow never holds an answer; copies past the queue are dropped and counted', async () => {
    const held: ServerResponse[] = [];
    const stalled = createServer((req, res) => {
      req.resume();
      held.push(res);
    });
    await new Promise<void>((resolve) => stalled.listen(0, '127.0.0.1', resolve));
    const port = (stalled.address() as AddressInfo).port;
    const primary = await startContainerMain({
      ...base,
      [ENV.variant]: 'AllTraffic',
      [ENV.shadowUrl]: `http://127.0.0.1:${port}`,
    });
    running.push(primary);
    try {
      // 100 copies: 16 in flight (held by the stalled shadow), 64 queued, 20 dropped.
      for (let i = 0; i < 100; i += 10) {
        const batch = await Promise.all(Array.from({ length: 10 }, (_, k) => infer(primary.url, i + k)));
        for (const r of batch) assert.equal(r.status, 200);
      }
      await until('16 copies held', () => held.length === 16);
      assert.equal(held.filter((res) => res.writableEnded).length, 0, 'the shadow answered none of them');
      await until('20 drops logged', () => logLines(primary, 'shadow copy dropped').length === 20);
      const drops = logLines(primary, 'shadow copy dropped');
      assert.ok(drops.every((d) => d['reason'] === 'queue full'));
      // The primary still answers at once while the shadow holds its copies.
      assert.equal((await infer(primary.url, 0)).status, 200);
    } finally {
      stalled.closeAllConnections();
      stalled.close();
    }
  });

  test('a queued copy carries its own request’s binary body, though the primary reused that memory for later bodies', async () => {
    // The shadow answers slowly, so most copies wait in the queue while the primary's few body slabs take new bodies.
    const received = new Map<string, Buffer>();
    const slow = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.once('end', () => {
        received.set(String(req.headers['x-request-id']), Buffer.concat(chunks));
        setTimeout(() => res.end('{}'), 30);
      });
    });
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve));
    const primary = await startContainerMain({
      ...base,
      [ENV.variant]: 'AllTraffic',
      [ENV.shadowUrl]: `http://127.0.0.1:${(slow.address() as AddressInfo).port}`,
    });
    running.push(primary);
    try {
      const sent = new Map<string, Buffer>();
      await Promise.all(
        Array.from({ length: 40 }, async (_, i) => {
          const id = randomUUID();
          const { body, headerLength } = binaryDigitsBody(i);
          sent.set(id, body);
          const response = await fetch(`${primary.url}/v2/models/digits/infer`, {
            method: 'POST',
            headers: {
              'content-type': 'application/octet-stream',
              'inference-header-content-length': String(headerLength),
              'x-request-id': id,
            },
            body,
          });
          await response.arrayBuffer();
          assert.equal(response.status, 200);
        }),
      );
      await until('every copy received', () => received.size === 40);
      for (const [id, body] of sent) assert.ok(received.get(id)?.equals(body), `the copy of ${id} is its own body`);
    } finally {
      slow.closeAllConnections();
      slow.close();
    }
  });
});

/** A binary OIP request for 32 digits images from `offset` on: every offset gives a different body. */
function binaryDigitsBody(offset: number): { body: Buffer; headerLength: number } {
  const rows = Array.from({ length: 32 }, (_, i) => images[(offset + i) % images.length]!);
  const data = Float32Array.from(rows.flat());
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        { name: 'image', shape: [32, 1, 8, 8], datatype: 'FP32', parameters: { binary_data_size: data.byteLength } },
      ],
    }),
  );
  return { body: Buffer.concat([header, Buffer.from(data.buffer)]), headerLength: header.length };
}
