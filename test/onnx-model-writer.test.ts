/**
 * The test-only ONNX writer produces models that onnxruntime-node loads and runs as written: every datatype,
 * fixed and symbolic dimensions, initializers and each attribute kind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import ort from 'onnxruntime-node';
import type { TensorType } from '../lib/predictor.js';
import { identityModel, writeOnnxModel } from './onnx-model-writer.js';

const TYPES: readonly TensorType[] = [
  'bool',
  'uint8',
  'int8',
  'int16',
  'int32',
  'int64',
  'float16',
  'float32',
  'float64',
  'string',
];

function session(bytes: Uint8Array): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'all' });
}

test('an Identity model per datatype loads with the declared types and dims, and returns its input', async () => {
  const bytes = identityModel(TYPES.map((type, i) => ({ name: type, type, dims: i % 2 ? ['batch', 2] : [2] })));
  const s = await session(bytes);
  assert.deepEqual(
    s.inputMetadata.map((m) => [m.name, m.isTensor && m.type, m.isTensor && m.shape]),
    TYPES.map((type, i) => [type, type, i % 2 ? ['batch', 2] : [2]]),
  );
  assert.deepEqual(
    s.outputNames,
    TYPES.map((type) => `${type}_out`),
  );
  const feeds: Record<string, ort.Tensor> = {};
  const data: Record<TensorType, ort.Tensor['data']> = {
    bool: new Uint8Array([1, 0]),
    uint8: new Uint8Array([0, 255]),
    int8: new Int8Array([-128, 127]),
    int16: new Int16Array([-32768, 32767]),
    int32: new Int32Array([-(2 ** 31), 2 ** 31 - 1]),
    int64: new BigInt64Array([-(2n ** 63n), 2n ** 53n + 1n]),
    float16: new Uint16Array([0x3c00, 0x7bff]),
    float32: new Float32Array([0.1, -3.5]),
    float64: new Float64Array([0.1, 1e300]),
    string: ['', 'héllo ✓'],
  };
  TYPES.forEach((type, i) => (feeds[type] = new ort.Tensor(type, data[type] as never, i % 2 ? [1, 2] : [2])));
  const out = await s.run(feeds);
  TYPES.forEach((type, i) => {
    const tensor = out[`${type}_out`]!;
    assert.equal(tensor.type, type);
    assert.deepEqual(tensor.dims, i % 2 ? [1, 2] : [2]);
    assert.deepEqual(Array.from(tensor.data as ArrayLike<unknown>), Array.from(data[type] as ArrayLike<unknown>), type);
  });
  await s.release();
});

test('initializers and attributes of every kind are written as given', async () => {
  const weights = new Float32Array([1, 2, 3, 4, 5, 6]); // 2×3
  const bytes = writeOnnxModel({
    inputs: [
      { name: 'x', type: 'float32', dims: ['n', 2] },
      { name: 'k', type: 'int64', dims: [2] },
    ],
    outputs: [
      { name: 'y', type: 'float64', dims: ['n', 3] },
      { name: 't', type: 'float32', dims: [3, 'n'] },
      { name: 'sum', type: 'int64', dims: [2] },
      { name: 'c', type: 'int32', dims: [2] },
      { name: 'r', type: 'float32', dims: ['n', 3] },
    ],
    nodes: [
      { op: 'MatMul', inputs: ['x', 'w'], outputs: ['m'] },
      { op: 'LeakyRelu', inputs: ['m'], outputs: ['r'], attributes: { alpha: { float: 0.5 } } },
      { op: 'Cast', inputs: ['r'], outputs: ['y'], attributes: { to: { int: 11 } } },
      { op: 'Transpose', inputs: ['r'], outputs: ['t'], attributes: { perm: { ints: [1, 0] } } },
      { op: 'Add', inputs: ['k', 'offset'], outputs: ['sum'] },
      {
        op: 'Constant',
        inputs: [],
        outputs: ['c'],
        attributes: { value: { tensor: { name: 'cv', type: 'int32', dims: [2], data: new Int32Array([7, -7]) } } },
      },
    ],
    initializers: [
      { name: 'w', type: 'float32', dims: [2, 3], data: weights },
      { name: 'offset', type: 'int64', dims: [2], data: new BigInt64Array([1n, 2n ** 40n]) },
    ],
  });
  const s = await session(bytes);
  const out = await s.run({
    x: new ort.Tensor('float32', new Float32Array([1, 0, 0, -1]), [2, 2]),
    k: new ort.Tensor('int64', new BigInt64Array([10n, 1n]), [2]),
  });
  // [1,0]·W = [1,2,3]; [0,-1]·W = [-4,-5,-6], LeakyRelu(α=0.5) halves the negatives.
  assert.deepEqual([...(out['r']!.data as Float32Array)], [1, 2, 3, -2, -2.5, -3]);
  assert.equal(out['y']!.type, 'float64');
  assert.deepEqual([...(out['y']!.data as Float64Array)], [1, 2, 3, -2, -2.5, -3]);
  assert.deepEqual(out['t']!.dims, [3, 2]);
  assert.deepEqual([...(out['t']!.data as Float32Array)], [1, -2, 2, -2.5, 3, -3]);
  assert.deepEqual([...(out['sum']!.data as BigInt64Array)], [11n, 2n ** 40n + 1n]);
  assert.deepEqual([...(out['c']!.data as Int32Array)], [7, -7]);
  await s.release();
});

test('a large initializer (the bench case) round-trips its bytes', async () => {
  const size = 1 << 20; // 4 MiB of float32
  const bias = new Float32Array(size).map((_, i) => i % 251);
  const bytes = writeOnnxModel({
    inputs: [{ name: 'x', type: 'float32', dims: [size] }],
    outputs: [{ name: 'y', type: 'float32', dims: [size] }],
    nodes: [{ op: 'Add', inputs: ['x', 'bias'], outputs: ['y'] }],
    initializers: [{ name: 'bias', type: 'float32', dims: [size], data: bias }],
  });
  assert.ok(bytes.length > size * 4);
  const s = await session(bytes);
  const out = await s.run({ x: new ort.Tensor('float32', new Float32Array(size).fill(0.5), [size]) });
  const y = out['y']!.data as Float32Array;
  for (const i of [0, 1, 250, 251, size - 1]) assert.equal(y[i], (i % 251) + 0.5);
  await s.release();
});

test('onnxruntime refuses a graph that is wrong, so the checks above mean something', async () => {
  const bytes = writeOnnxModel({
    inputs: [{ name: 'x', type: 'float32', dims: [2] }],
    outputs: [{ name: 'y', type: 'float32', dims: [2] }],
    nodes: [{ op: 'Identity', inputs: ['missing'], outputs: ['y'] }],
  });
  await assert.rejects(session(bytes), /missing/);
});
