/**
 * Body slabs: a few shared buffers that bound how many request bodies are read at once (first come, first served),
 * reused only once nobody refers to them, and handed to the worker pool's workers by reference.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import type { Tensor } from '../../../lib/predictor.js';
import { BodySlabs } from '../../../lib/runtime/executors/body-slabs.js';
import { OnnxExecutor } from '../../../lib/runtime/executors/onnx-executor.js';
import { WorkerPool } from '../../../lib/runtime/executors/worker-pool.js';
import { DIGITS_ONNX, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();

describe('BodySlabs', () => {
  test('hands out slabs up to its count, then serves waiters first come, first served', async () => {
    const slabs = new BodySlabs(2);
    const a = (await slabs.acquire())!;
    const b = (await slabs.acquire())!;
    assert.notEqual(a.id, b.id);
    const order: string[] = [];
    const first = slabs.acquire().then((slab) => (order.push('first'), slab));
    const second = slabs.acquire().then((slab) => (order.push('second'), slab));
    assert.equal(slabs.waiting, 2);
    b.release();
    assert.equal((await first)?.id, b.id);
    a.release();
    assert.equal((await second)?.id, a.id);
    assert.deepEqual(order, ['first', 'second']);
    assert.equal(slabs.waiting, 0);
  });

  test('a slab another holder retains (a queued job) is not handed on until that holder releases it too', async () => {
    const slabs = new BodySlabs(1);
    const slab = (await slabs.acquire())!;
    slab.retain();
    slab.release();
    let handed = false;
    const next = slabs.acquire().then((s) => ((handed = true), s));
    await new Promise((r) => setImmediate(r));
    assert.equal(handed, false, 'still referred to by the job');
    slab.release();
    assert.equal((await next)?.id, slab.id);
    assert.throws(() => {
      slab.release();
      slab.release();
    }, /released more often than retained/);
  });

  test('a wait ends, without a slab, when it times out or the client leaves; the slab then goes to the next one', async () => {
    const slabs = new BodySlabs(1);
    const held = (await slabs.acquire())!;
    assert.equal(await slabs.acquire({ timeoutMs: 20 }), undefined);
    const gone = new AbortController();
    const leaving = slabs.acquire({ signal: gone.signal });
    const staying = slabs.acquire();
    gone.abort();
    assert.equal(await leaving, undefined);
    assert.equal(slabs.waiting, 1);
    held.release();
    assert.equal((await staying)?.id, held.id);
  });

  test('memory grows in MiB steps for a larger body, is announced, and is found again from a view', async () => {
    const slabs = new BodySlabs(1);
    const announced: number[] = [];
    slabs.onMemory((slab) => announced.push(slab.memory.byteLength));
    const slab = (await slabs.acquire())!;
    assert.equal(slab.memory.byteLength, 0, 'nothing allocated before a body comes');
    const body = slab.bytes(1_500_000);
    assert.equal(body.length, 1_500_000);
    assert.deepEqual(announced, [2 * 1024 * 1024]);
    slab.bytes(1000);
    assert.deepEqual(announced, [2 * 1024 * 1024], 'a smaller body reuses the memory');
    assert.equal(slabs.slabOf(new Float32Array(slab.memory, 8, 4).buffer), slab);
    assert.equal(slabs.slabOf(new ArrayBuffer(8)), undefined);
    slab.retain();
    assert.throws(() => slab.bytes(10), /is shared/, 'memory a job refers to is never rewritten');
  });

  test('tryAcquire never waits and never jumps the queue', async () => {
    const slabs = new BodySlabs(1);
    const slab = slabs.tryAcquire()!;
    assert.equal(slabs.tryAcquire(), undefined, 'none free');
    const waiter = slabs.acquire();
    slab.release();
    assert.equal(slabs.tryAcquire(), undefined, 'the freed slab went to the waiter');
    (await waiter)!.release();
    assert.equal(slabs.tryAcquire()?.id, slab.id);
  });

  test('the count must be a positive integer', () => {
    assert.throws(() => new BodySlabs(0), /positive integer/);
  });
});

describe('WorkerPool with body slabs', () => {
  let pool: WorkerPool;
  let reference: OnnxExecutor;
  const slabs = new BodySlabs(3);

  before(async () => {
    const bytes = readFileSync(DIGITS_ONNX);
    pool = await WorkerPool.start(bytes, DIGITS_ONNX, { workers: 2, intraOpThreads: 1, bodySlabs: slabs });
    reference = await OnnxExecutor.load(bytes, DIGITS_ONNX);
  });
  after(async () => {
    await pool?.release();
    await reference?.release();
  });

  /** Every digits image, as a tensor viewing a slab at an 8-byte aligned offset, the way a decoded body lies there. */
  async function inSlab(images: readonly (readonly number[])[], offset: number) {
    const slab = (await slabs.acquire())!;
    const values = Float32Array.from(images.flat());
    const bytes = slab.bytes(offset + values.byteLength);
    bytes.set(new Uint8Array(values.buffer), offset);
    const data = new Float32Array(slab.memory, offset, values.length);
    const feeds: Record<string, Tensor> = { image: { type: 'float32', data, dims: [images.length, 1, 8, 8] } };
    return { slab, feeds };
  }

  test('slab feeds give the in-process executor’s outputs bit for bit, for all 397 images', async () => {
    const { slab, feeds } = await inSlab(expected.images, 64);
    const got = await pool.runTransferring(feeds);
    slab.release();
    const want = await reference.run({
      image: {
        type: 'float32',
        data: Float32Array.from(expected.images.flat()),
        dims: [expected.images.length, 1, 8, 8],
      },
    });
    assert.deepEqual(Array.from(got['logits']!.data as Float32Array), Array.from(want['logits']!.data as Float32Array));
    assert.ok(
      slabs.all.every((s) => s.free),
      'the job released its slab',
    );
  });

  test('a slab stays retained while its job is queued, and concurrent slab jobs never mix', async () => {
    const jobs = await Promise.all(
      [0, 1, 2].map(async (i) => {
        const images = expected.images.slice(i * 100, i * 100 + 100);
        const { slab, feeds } = await inSlab(images, 8 * (i + 1));
        const running = pool.runTransferring(feeds);
        // The request's own hold ends (its answer written, say) before the job has run: the job keeps the slab.
        slab.release();
        return { i, running, slab };
      }),
    );
    assert.ok(
      jobs.some(({ slab }) => !slab.free),
      'a slab whose job has not answered yet is still held',
    );
    for (const { i, running } of jobs) {
      const got = (await running)['logits']!.data as Float32Array;
      const want = (
        await reference.run({
          image: {
            type: 'float32',
            data: Float32Array.from(expected.images.slice(i * 100, i * 100 + 100).flat()),
            dims: [100, 1, 8, 8],
          },
        })
      )['logits']!.data as Float32Array;
      assert.deepEqual(Array.from(got), Array.from(want), `job ${i}`);
    }
    assert.ok(slabs.all.every((s) => s.free));
  });
});
