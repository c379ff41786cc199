/** Dynamic batching: gathering, concatenating along the first axis, splitting back, and failing one request alone. */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import type { Tensor, TensorInfo } from '../../../lib/predictor.js';
import {
  Batcher,
  BatchingExecutor,
  concat,
  isBatchable,
  split,
  type BatchTarget,
} from '../../../lib/runtime/executors/batcher.js';
import { ModelRunError } from '../../../lib/runtime/executors/onnx-executor.js';
import { WorkerPool } from '../../../lib/runtime/executors/worker-pool.js';
import { DIGITS_ONNX, loadDigitsExpected } from '../../helpers.js';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

const INPUT: TensorInfo = { name: 'x', datatype: 'FP32', shape: [-1, 2], dimNames: ['batch', null] };
const OUTPUT: TensorInfo = { name: 'y', datatype: 'FP32', shape: [-1, 2], dimNames: ['batch', null] };

/** A fake model: y = 2x, refusing any row holding a negative number (a run-time failure, past validation). */
function fakeTarget(inputs: readonly TensorInfo[] = [INPUT]): BatchTarget & { calls: number[] } {
  const calls: number[] = [];
  return {
    calls,
    inputs,
    outputs: [OUTPUT],
    run(feeds) {
      const x = feeds['x']!;
      calls.push(x.dims[0]!);
      const data = x.data as Float32Array;
      if (data.some((v) => v < 0)) return Promise.reject(new ModelRunError('negative input'));
      return Promise.resolve({ y: { type: 'float32', data: data.map((v) => v * 2), dims: [...x.dims] } as Tensor });
    },
  };
}

function rows(...values: number[][]): Record<string, Tensor> {
  return { x: { type: 'float32', data: Float32Array.from(values.flat()), dims: [values.length, 2] } };
}

describe('Batcher', () => {
  test('flushes at maxBatchSize, and after maxBatchDelayMs for the rest', async () => {
    const sizes: number[] = [];
    const batcher = new Batcher<number, number>(
      { maxBatchSize: 3, maxBatchDelayMs: 20 },
      {
        run: (items) => {
          sizes.push(items.length);
          return Promise.resolve(items.map((v) => ({ ok: true as const, value: v * 10 })));
        },
      },
    );
    const results = await Promise.all([1, 2, 3, 4].map((v) => batcher.submit(v)));
    assert.deepEqual(results, [10, 20, 30, 40]);
    assert.deepEqual(sizes, [3, 1]);
  });

  test('only items with equal keys share a batch; one item failing does not fail the others', async () => {
    const batches: string[][] = [];
    const batcher = new Batcher<string, string>(
      { maxBatchSize: 8, maxBatchDelayMs: 5 },
      {
        keyOf: (s) => s[0]!,
        run: (items) => {
          batches.push([...items]);
          return Promise.resolve(
            items.map((s) =>
              s.endsWith('!') ? { ok: false as const, error: new Error(s) } : { ok: true as const, value: s },
            ),
          );
        },
      },
    );
    const settled = await Promise.allSettled(['a1', 'b1', 'a2!', 'a3'].map((s) => batcher.submit(s)));
    assert.deepEqual(
      settled.map((s) => s.status),
      ['fulfilled', 'fulfilled', 'rejected', 'fulfilled'],
    );
    assert.deepEqual(batches.map((b) => b.join(',')).sort(), ['a1,a2!,a3', 'b1']);
  });

  test('a free worker takes a lone item at once rather than waiting out the delay', async () => {
    let idle = true;
    const batcher = new Batcher<number, number>(
      { maxBatchSize: 8, maxBatchDelayMs: 10_000 },
      {
        run: (items) => Promise.resolve(items.map((v) => ({ ok: true as const, value: v }))),
        whenIdle: () => (idle ? Promise.resolve() : new Promise(() => undefined)),
      },
    );
    const started = performance.now();
    assert.equal(await batcher.submit(7), 7);
    assert.ok(performance.now() - started < 1000);
    idle = false;
  });
});

describe('concat and split', () => {
  test('concatenate along axis 0 and split back into views', () => {
    const a = rows([1, 2]);
    const b = rows([3, 4], [5, 6]);
    const joined = concat([a['x']!, b['x']!]);
    assert.deepEqual(joined.dims, [3, 2]);
    assert.deepEqual(Array.from(joined.data as Float32Array), [1, 2, 3, 4, 5, 6]);
    const parts = split({ y: joined }, [1, 2]);
    assert.deepEqual(parts[0]!['y']!.dims, [1, 2]);
    assert.deepEqual(Array.from(parts[1]!['y']!.data as Float32Array), [3, 4, 5, 6]);
  });

  test('a model is batchable only when every input has a dynamic first axis', () => {
    assert.equal(isBatchable([INPUT]), true);
    assert.equal(isBatchable([{ ...INPUT, shape: [1, 2] }]), false);
    assert.equal(isBatchable([INPUT, { ...INPUT, name: 'scalar', shape: [] }]), false);
  });
});

describe('BatchingExecutor', () => {
  test('concurrent runs share one model run; each gets its own rows', async () => {
    const target = fakeTarget();
    const executor = new BatchingExecutor(target, { maxBatchSize: 8, maxBatchDelayMs: 10 });
    const results = await Promise.all([
      executor.run(rows([1, 1])),
      executor.run(rows([2, 2], [3, 3])),
      executor.run(rows([4, 4])),
    ]);
    assert.deepEqual(target.calls, [4]);
    assert.deepEqual(
      results.map((r) => Array.from(r['y']!.data as Float32Array)),
      [
        [2, 2],
        [4, 4, 6, 6],
        [8, 8],
      ],
    );
    assert.deepEqual(results[1]!['y']!.dims, [2, 2]);
  });

  test('a request that fails at run time fails alone: the batch runs again one at a time', async () => {
    const target = fakeTarget();
    const executor = new BatchingExecutor(target, { maxBatchSize: 8, maxBatchDelayMs: 10 });
    const settled = await Promise.allSettled([
      executor.run(rows([1, 1])),
      executor.run(rows([-1, 1])),
      executor.run(rows([3, 3])),
    ]);
    assert.equal(settled[0]!.status, 'fulfilled');
    assert.ok(settled[1]!.status === 'rejected' && settled[1].reason instanceof ModelRunError);
    assert.equal(settled[2]!.status, 'fulfilled');
    assert.deepEqual(target.calls, [3, 1, 1, 1]);
  });

  test('a model without a dynamic first axis, or batching off, runs every call alone', async () => {
    const fixed = fakeTarget([{ ...INPUT, shape: [1, 2] }]);
    const executor = new BatchingExecutor(fixed, { maxBatchSize: 8, maxBatchDelayMs: 10 });
    await Promise.all([executor.run(rows([1, 1])), executor.run(rows([2, 2]))]);
    assert.deepEqual(fixed.calls, [1, 1]);
    const off = fakeTarget();
    const unbatched = new BatchingExecutor(off, { maxBatchSize: 1, maxBatchDelayMs: 10 });
    await Promise.all([unbatched.run(rows([1, 1])), unbatched.run(rows([2, 2]))]);
    assert.deepEqual(off.calls, [1, 1]);
  });

  test('digits in worker threads: batched outputs equal unbatched ones', async () => {
    const expected = loadDigitsExpected();
    const pool = await WorkerPool.start(readFileSync(DIGITS_ONNX), DIGITS_ONNX, { workers: 1, intraOpThreads: 1 });
    try {
      let batches = 0;
      const counting: BatchTarget = {
        inputs: pool.inputs,
        outputs: pool.outputs,
        run: (feeds, names) => pool.run(feeds, names),
        runTransferring: (feeds, names) => {
          batches++;
          return pool.runTransferring(feeds, names);
        },
        whenIdle: () => pool.whenIdle(),
      };
      const executor = new BatchingExecutor(counting, { maxBatchSize: 16, maxBatchDelayMs: 20 });
      const feeds = (i: number): Record<string, Tensor> => ({
        image: { type: 'float32', data: Float32Array.from(expected.images[i]!), dims: [1, 1, 8, 8] },
      });
      // Occupy the worker so the rest gather into one batch.
      const first = executor.run(feeds(0));
      await sleep(0);
      const batched = await Promise.all(Array.from({ length: 12 }, (_, i) => executor.run(feeds(i + 1))));
      await first;
      assert.ok(batches >= 1, 'at least one multi-request batch ran');
      for (const [i, out] of batched.entries()) {
        const alone = await pool.run(feeds(i + 1));
        assert.deepEqual(
          Array.from(out['logits']!.data as Float32Array),
          Array.from(alone['logits']!.data as Float32Array),
        );
        assert.deepEqual(out['logits']!.dims, [1, 10]);
      }
    } finally {
      await pool.release();
    }
  });
});
