/**
 * `arclight serve` on the container server's engine (worker threads) by default, or in the server's own thread with
 * `--workers 0`: the same answers either way, all 397 digits bit for bit, over real sockets.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { serve, type ServeHandle } from '../../../lib/cli/local/serve.js';
import { DIGITS_ONNX, assertBatchLogits, digitsInferBody, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();

function threadCount(): number {
  try {
    return readdirSync('/proc/self/task').length;
  } catch {
    return Number.NaN;
  }
}

async function logits(handle: ServeHandle): Promise<number[]> {
  const response = await fetch(`${handle.url}/v2/models/digits/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: digitsInferBody(expected.images),
  });
  const text = await response.text();
  assert.equal(response.status, 200, text.slice(0, 300));
  return (JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0]!.data;
}

describe('serve: worker threads by default, in-process with --workers 0', () => {
  const base = { model: DIGITS_ONNX, name: 'digits', port: 0, host: '127.0.0.1', maxBodyBytes: 6 * 2 ** 20 };
  let inProcess: ServeHandle;
  let pooled: ServeHandle;
  let threadsAdded = 0;

  before(async () => {
    inProcess = await serve({ ...base, workers: 0, timeoutMs: 30_000, logLevel: 'SILENT' });
    const threads = threadCount();
    pooled = await serve({ ...base, workers: 2, threads: 1, timeoutMs: 30_000, logLevel: 'SILENT' });
    threadsAdded = threadCount() - threads;
  });
  after(async () => {
    await inProcess?.close();
    await pooled?.close();
  });

  test('all 397 digits: the same logits, bit for bit, close to the reference', async () => {
    const [a, b] = await Promise.all([logits(inProcess), logits(pooled)]);
    assert.deepEqual(b, a);
    assertBatchLogits(b, expected.images.length, expected.logits);
  });

  test('the default engine runs the model in worker threads', { skip: process.platform !== 'linux' }, () => {
    assert.ok(threadsAdded >= 2, `${threadsAdded} threads started for 2 workers`);
  });
});
