/** The worker-thread executor pool: same face as OnnxExecutor, sessions off the main thread, crash recovery, EPs. */
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { isHttpError, type Tensor } from '../../../lib/predictor.js';
import { createModel } from '../../../lib/runtime/executors/model.js';
import { ModelRunError, OnnxExecutor } from '../../../lib/runtime/executors/onnx-executor.js';
import { markOwned } from '../../../lib/runtime/executors/owned-buffers.js';
import { StartupError } from '../../../lib/runtime/startup-error.js';
import { WorkerPool, defaultIntraOpThreads, defaultWorkerCount } from '../../../lib/runtime/executors/worker-pool.js';
import { DIGITS_ONNX, MOBILENET_ONNX, assertLogitsClose, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
const digitsBytes = readFileSync(DIGITS_ONNX);
const mobilenetBytes = readFileSync(MOBILENET_ONNX);

function digitsFeeds(images: readonly (readonly number[])[]): Record<string, Tensor> {
  return { image: { type: 'float32', data: Float32Array.from(images.flat()), dims: [images.length, 1, 8, 8] } };
}

describe('WorkerPool on digits', () => {
  let pool: WorkerPool;
  let reference: OnnxExecutor;

  before(async () => {
    pool = await WorkerPool.start(digitsBytes, DIGITS_ONNX, { workers: 2, intraOpThreads: 1 });
    reference = await OnnxExecutor.load(digitsBytes, DIGITS_ONNX);
  });
  after(async () => {
    await pool?.release();
    await reference?.release();
  });

  test('has the in-process executor metadata and gives its outputs', async () => {
    assert.equal(pool.size, 2);
    assert.deepEqual(pool.inputs, reference.inputs);
    assert.deepEqual(pool.outputs, reference.outputs);
    assert.deepEqual(pool.providers, ['cpu']);
    const images = expected.images.slice(0, 5);
    const got = await pool.run(digitsFeeds(images));
    const want = await reference.run(digitsFeeds(images));
    assert.deepEqual(got['logits']!.dims, [5, 10]);
    assert.deepEqual(Array.from(got['logits']!.data as Float32Array), Array.from(want['logits']!.data as Float32Array));
    assert.ok(got['logits']!.data instanceof Float32Array);
  });

  test('createModel wraps it: predictors see the same model.run', async () => {
    const model = createModel('digits', 'onnx', pool);
    const out = await model.run(digitsFeeds([expected.images[0]!]), ['logits']);
    assertLogitsClose(Array.from(out['logits']!.data as Float32Array), expected.logits[0]!, 'model.run');
  });

  test('run copies the feeds (still usable); runTransferring moves them (no copy)', async () => {
    const kept = digitsFeeds([expected.images[0]!]);
    await pool.run(kept);
    assert.equal(kept['image']!.data.length, 64);
    const moved = digitsFeeds([expected.images[0]!]);
    const out = await pool.runTransferring(moved);
    assert.equal(moved['image']!.data.length, 0, 'the buffer went to the worker');
    assertLogitsClose(Array.from(out['logits']!.data as Float32Array), expected.logits[0]!, 'transferred');
  });

  test('runTransferring moves a request body of its own with views into it, never a buffer it does not own', async () => {
    const image = Float32Array.from(expected.images[0]!);
    const body = new ArrayBuffer(16 + image.byteLength);
    markOwned(body);
    const view = new Float32Array(body, 16, image.length);
    view.set(image);
    const out = await pool.runTransferring({ image: { type: 'float32', data: view, dims: [1, 1, 8, 8] } });
    assert.equal(body.byteLength, 0, 'the owned body went to the worker');
    assertLogitsClose(Array.from(out['logits']!.data as Float32Array), expected.logits[0]!, 'owned view');

    const shared = new ArrayBuffer(16 + image.byteLength);
    const foreign = new Float32Array(shared, 16, image.length);
    foreign.set(image);
    await pool.runTransferring({ image: { type: 'float32', data: foreign, dims: [1, 1, 8, 8] } });
    assert.equal(shared.byteLength, 16 + image.byteLength, 'a buffer not marked owned is copied, not moved');
  });

  test(
    'worker threads run below the server thread (nice +10), so health checks stay prompt',
    { skip: process.platform !== 'linux' },
    () => {
      const niceOf = (task: string): number =>
        Number(readFileSync(`/proc/self/task/${task}/stat`, 'utf8').split(') ')[1]!.split(' ')[16]);
      const tasks = readdirSync('/proc/self/task');
      assert.equal(niceOf(String(process.pid)), 0, 'the main thread keeps its priority');
      assert.ok(tasks.filter((t) => niceOf(t) === 10).length >= 2, 'each of the 2 workers runs at nice 10');
    },
  );

  test('jobs spread over the workers and queue when all are busy', async () => {
    const runs = Array.from({ length: 6 }, (_, i) => pool.run(digitsFeeds([expected.images[i]!])));
    assert.equal(pool.busy, 2);
    assert.equal(pool.queued, 4);
    const results = await Promise.all(runs);
    results.forEach((r, i) =>
      assertLogitsClose(Array.from(r['logits']!.data as Float32Array), expected.logits[i]!, `job ${i}`),
    );
    assert.equal(pool.busy, 0);
  });

  test('a run the model refuses is a ModelRunError; the worker goes on', async () => {
    const bad: Record<string, Tensor> = { image: { type: 'float32', data: new Float32Array(56), dims: [1, 1, 8, 7] } };
    await assert.rejects(pool.run(bad), ModelRunError);
    await pool.run(digitsFeeds([expected.images[0]!]));
  });

  test('defaultWorkerCount: one per core, 1 to 4 (each then gets one intra-op thread)', () => {
    assert.equal(defaultWorkerCount(1), 1);
    assert.equal(defaultWorkerCount(2), 2);
    assert.equal(defaultIntraOpThreads(defaultWorkerCount(2), 2), 1);
    assert.equal(defaultWorkerCount(4), 4);
    assert.equal(defaultWorkerCount(8), 4);
    assert.equal(defaultWorkerCount(64), 4);
  });

  test('defaultIntraOpThreads: one core left to the server thread, the rest shared, at least 1', () => {
    assert.equal(defaultIntraOpThreads(2, 2), 1);
    assert.equal(defaultIntraOpThreads(4, 16), 3);
    assert.equal(defaultIntraOpThreads(1, 4), 3);
  });
});

describe('WorkerPool: a worker that dies', () => {
  test('fails its in-flight job with 503 and is replaced', async () => {
    const pool = await WorkerPool.start(mobilenetBytes, MOBILENET_ONNX, {
      workers: 1,
      intraOpThreads: 1,
      warmUp: false,
    });
    try {
      const name = pool.inputs[0]!.name;
      // The worker exits on the order it reads first, with the job already handed to it.
      pool.crashOne();
      const running = pool.run({
        [name]: { type: 'float32', data: new Float32Array(3 * 224 * 224), dims: [1, 3, 224, 224] },
      });
      assert.equal(pool.busy, 1);
      const error: unknown = await running.then(
        () => assert.fail('the job should fail'),
        (e: unknown) => e,
      );
      assert.ok(isHttpError(error));
      assert.equal(error.status, 503);
      assert.equal(error.headers['retry-after'], '1');
      // Another worker takes its place; queued work waits for it.
      const out = await pool.run({
        [name]: { type: 'float32', data: new Float32Array(3 * 224 * 224), dims: [1, 3, 224, 224] },
      });
      assert.deepEqual(out[pool.outputs[0]!.name]!.dims, [1, 1000]);
      assert.equal(pool.size, 1);
    } finally {
      await pool.release();
    }
  });

  test('after release, runs answer 503', async () => {
    const pool = await WorkerPool.start(digitsBytes, DIGITS_ONNX, { workers: 1 });
    await pool.release();
    await assert.rejects(
      pool.run(digitsFeeds([expected.images[0]!])),
      (e: unknown) => isHttpError(e) && e.status === 503,
    );
  });
});

describe('WorkerPool: execution providers', () => {
  test('cuda alone without CUDA: a StartupError that says what to do', async () => {
    const error: unknown = await WorkerPool.start(digitsBytes, DIGITS_ONNX, {
      workers: 1,
      executionProviders: ['cuda'],
    }).then(
      () => assert.fail('should not start'),
      (e: unknown) => e,
    );
    assert.ok(error instanceof StartupError);
    assert.match(error.message, /execution provider cuda cannot be loaded/);
    assert.match(error.hint ?? '', /cuda,cpu/);
  });

  test('cuda,cpu without CUDA: serves on CPU and reports the fallback once', async () => {
    const reasons: string[] = [];
    const pool = await WorkerPool.start(digitsBytes, DIGITS_ONNX, {
      workers: 2,
      executionProviders: ['cuda', 'cpu'],
      onFallback: (reason) => reasons.push(reason),
    });
    try {
      assert.deepEqual(pool.providers, ['cpu']);
      assert.equal(reasons.length, 1);
      assert.match(reasons[0]!, /cuda failed to load/);
      await pool.run(digitsFeeds([expected.images[0]!]));
    } finally {
      await pool.release();
    }
  });

  test('a file that is not ONNX fails as a model problem, not a provider one', async () => {
    await assert.rejects(
      WorkerPool.start(Buffer.from('not a model'), 'junk.onnx', { workers: 1, executionProviders: ['cuda', 'cpu'] }),
      (e: unknown) => e instanceof StartupError && /not a valid ONNX model/.test(e.message),
    );
  });
});
