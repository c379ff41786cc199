/** Tensor data from raw little-endian bytes: a view when aligned, a copy otherwise, booleans normalised. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { tensorDataFromBytes } from '../../../lib/runtime/codec/tensor-types.js';

function bytesAt(offset: number, values: Float32Array): Uint8Array {
  const memory = new Uint8Array(offset + values.byteLength);
  memory.set(new Uint8Array(values.buffer), offset);
  return memory.subarray(offset);
}

test('aligned bytes become a view sharing the memory (no copy)', () => {
  const bytes = bytesAt(8, Float32Array.of(1.5, -2, 3.25));
  const data = tensorDataFromBytes(bytes, 'float32', 3);
  assert.ok(data instanceof Float32Array);
  assert.deepEqual(Array.from(data), [1.5, -2, 3.25]);
  assert.equal(data.buffer, bytes.buffer, 'same memory');
});

test('misaligned bytes are copied into an aligned array with the same values', () => {
  const bytes = bytesAt(3, Float32Array.of(1.5, -2, 3.25));
  const data = tensorDataFromBytes(bytes, 'float32', 3);
  assert.deepEqual(Array.from(data as Float32Array), [1.5, -2, 3.25]);
  assert.notEqual(data.buffer, bytes.buffer);
  assert.equal(data.byteOffset % 4, 0);
});

test('booleans are always copied and normalised to 0/1', () => {
  const bytes = Uint8Array.of(0, 7, 255, 1);
  const data = tensorDataFromBytes(bytes, 'bool', 4);
  assert.deepEqual(Array.from(data as Uint8Array), [0, 1, 1, 1]);
  assert.deepEqual(Array.from(bytes), [0, 7, 255, 1], 'the body is left as sent');
});
