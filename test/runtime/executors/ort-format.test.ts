/**
 * ORT-format models run from the caller's bytes in place (single touch): the same results as the same model loaded
 * the plain way (a copy), bit for bit, for all 397 digits and MobileNet; close to the ONNX original; a corrupt model
 * still refused before any session exists; memory given back after failed loads.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Tensor } from '../../../lib/predictor.js';
import { OnnxExecutor, importOnnxRuntime } from '../../../lib/runtime/executors/onnx-executor.js';
import { ORT_BYTES_IN_PLACE, convertToOrtFormat, isOrtFormat } from '../../../lib/runtime/executors/ort-format.js';
import { WorkerPool } from '../../../lib/runtime/executors/worker-pool.js';
import { StartupError } from '../../../lib/runtime/startup-error.js';
import { DIGITS_ONNX, MOBILENET_ONNX, assertLogitsClose, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
const dir = mkdtempSync(join(tmpdir(), 'arclight-ort-'));
const DIGITS_ORT = join(dir, 'digits.ort');
const MOBILENET_ORT = join(dir, 'mobilenet.ort');

function digitsFeeds(): Record<string, Tensor> {
  return {
    image: {
      type: 'float32',
      data: Float32Array.from(expected.images.flat()),
      dims: [expected.images.length, 1, 8, 8],
    },
  };
}

function mobilenetFeeds(seed: number): Record<string, Tensor> {
  const data = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.001 * seed) * 2;
  return { input: { type: 'float32', data, dims: [1, 3, 224, 224] } };
}

/** The same ORT-format bytes, loaded the plain way: onnxruntime copies them (no in-place config). */
async function plainSession(path: string): Promise<{ run: (feeds: Record<string, Tensor>) => Promise<Float32Array> }> {
  const { ort } = await importOnnxRuntime();
  const session = await ort.InferenceSession.create(readFileSync(path), {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    interOpNumThreads: 1,
  });
  return {
    run: async (feeds) => {
      const ortFeeds = Object.fromEntries(
        Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(t.type, t.data as Float32Array, t.dims)]),
      );
      const out = await session.run(ortFeeds);
      return out[session.outputNames[0]!]!.data as Float32Array;
    },
  };
}

describe('ORT-format models, bytes in place', () => {
  before(async () => {
    await convertToOrtFormat(DIGITS_ONNX, DIGITS_ORT);
    await convertToOrtFormat(MOBILENET_ONNX, MOBILENET_ORT);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('conversion writes ORT format, recognised; ONNX is not', () => {
    assert.ok(isOrtFormat(readFileSync(DIGITS_ORT)));
    assert.ok(!isOrtFormat(readFileSync(DIGITS_ONNX)));
    assert.ok(!isOrtFormat(new Uint8Array(3)));
    assert.equal(ORT_BYTES_IN_PLACE['session.use_ort_model_bytes_directly'], '1');
  });

  test('all 397 digits: in place = plain load of the same bytes, bit for bit; close to the reference', async () => {
    const inPlace = await OnnxExecutor.load(readFileSync(DIGITS_ORT), DIGITS_ORT);
    assert.ok(inPlace.bytesInPlace);
    const got = (await inPlace.run(digitsFeeds()))['logits']!.data as Float32Array;
    const plain = await (await plainSession(DIGITS_ORT)).run(digitsFeeds());
    assert.deepEqual(Array.from(got), Array.from(plain));
    for (let i = 0; i < expected.images.length; i++) {
      assertLogitsClose(Array.from(got.subarray(i * 10, i * 10 + 10)), expected.logits[i]!, `image ${i}`);
    }
    const onnx = await OnnxExecutor.load(readFileSync(DIGITS_ONNX), DIGITS_ONNX);
    assert.ok(!onnx.bytesInPlace, 'an ONNX model is parsed and copied as before');
    await Promise.all([inPlace.release(), onnx.release()]);
  });

  test('MobileNet: in place = plain load, bit for bit; close to the ONNX original; through the worker pool too', async () => {
    const bytes = readFileSync(MOBILENET_ORT);
    const inPlace = await OnnxExecutor.load(bytes, MOBILENET_ORT);
    const plain = await plainSession(MOBILENET_ORT);
    const onnx = await OnnxExecutor.load(readFileSync(MOBILENET_ONNX), MOBILENET_ONNX);
    const pool = await WorkerPool.start(bytes, MOBILENET_ORT, { workers: 2, intraOpThreads: 1 });
    try {
      for (const seed of [1, 2]) {
        const got = (await inPlace.run(mobilenetFeeds(seed)))[inPlace.outputs[0]!.name]!.data as Float32Array;
        assert.deepEqual(Array.from(got), Array.from(await plain.run(mobilenetFeeds(seed))), `seed ${seed}`);
        const pooled = (await pool.run(mobilenetFeeds(seed)))[pool.outputs[0]!.name]!.data as Float32Array;
        assert.deepEqual(Array.from(pooled), Array.from(got), `seed ${seed}: worker pool`);
        const reference = (await onnx.run(mobilenetFeeds(seed)))[onnx.outputs[0]!.name]!.data as Float32Array;
        const worst = reference.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
        assert.ok(worst < 1e-3, `seed ${seed}: max |Δ| to the ONNX original ${worst}`);
      }
    } finally {
      await Promise.all([inPlace.release(), onnx.release(), pool.release()]);
    }
  });

  test('a corrupt ORT-format model is refused with a StartupError, no session made', async () => {
    const bytes = readFileSync(DIGITS_ORT);
    const truncated = bytes.subarray(0, Math.floor(bytes.length / 2));
    const scrambled = Buffer.from(bytes);
    for (let i = 64; i < scrambled.length; i += 7) scrambled[i] = scrambled[i]! ^ 0x5a;
    for (const corrupt of [truncated, scrambled]) {
      assert.ok(isOrtFormat(corrupt), 'still looks like ORT format: the engine must be the one to refuse');
      await assert.rejects(OnnxExecutor.load(corrupt, 's3://bucket/corrupt.ort'), (error: unknown) => {
        assert.ok(error instanceof StartupError);
        assert.match(error.message, /s3:\/\/bucket\/corrupt\.ort is not a valid ONNX model/);
        return true;
      });
    }
  });

  test('failed loads give their memory back: 30 corrupt 10 MB models leave RSS near where it was', async () => {
    const bytes = readFileSync(MOBILENET_ORT);
    const corrupt = Buffer.from(bytes.subarray(0, bytes.length - 4096));
    // One failed load first, so onnxruntime's own one-time allocations are not counted.
    await OnnxExecutor.load(corrupt, 'corrupt').catch(() => undefined);
    global.gc?.();
    const before = process.memoryUsage.rss();
    for (let i = 0; i < 30; i++) await OnnxExecutor.load(Buffer.from(corrupt), 'corrupt').catch(() => undefined);
    global.gc?.();
    const grown = process.memoryUsage.rss() - before;
    // 30 leaked copies would be 300 MB; glibc keeps some freed memory, so the bound is loose but far below a leak.
    assert.ok(grown < 100 * 2 ** 20, `RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB over 30 failed loads`);
  });
});
