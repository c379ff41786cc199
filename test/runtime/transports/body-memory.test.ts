import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BodyMemory } from '../../../lib/runtime/transports/body-memory.js';

test('released memory takes the next body; memory in use is not handed out twice', () => {
  const memory = new BodyMemory();
  const first = memory.take(3, 1000)!;
  assert.equal(first.byteOffset, 3);
  assert.equal(first.length, 1000);
  assert.equal(memory.inUse, true);
  assert.equal(memory.take(0, 10), undefined, 'a second body while the first holds it');
  memory.release();
  const second = memory.take(0, 2000)!;
  assert.equal(second.buffer, first.buffer, 'the same memory, reused');
  memory.release();
  const larger = memory.take(0, 3 * 2 ** 20)!;
  assert.notEqual(larger.buffer, first.buffer, 'grown for a larger body');
  assert.equal(larger.buffer.byteLength, 3 * 2 ** 20);
});

test('abandoned memory stays with whoever holds it: the next body gets new memory', () => {
  const memory = new BodyMemory();
  const held = memory.take(0, 64)!;
  held.fill(7);
  memory.abandon();
  assert.equal(memory.inUse, false);
  const next = memory.take(0, 64)!;
  assert.notEqual(next.buffer, held.buffer);
  next.fill(9);
  assert.deepEqual(held, Buffer.alloc(64, 7), 'the abandoned body is untouched');
});
