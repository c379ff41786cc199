/** Model formats read from the files themselves: the real digits model in its three formats, in memory and on disk. */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { detectModelFormat, zipEntryNames } from '../lib/model-format.js';
import { DIGITS_CHECKPOINT, DIGITS_ONNX, DIGITS_TORCHSCRIPT, writeTempModel } from './helpers.js';

const CASES = [
  [DIGITS_ONNX, 'onnx'],
  [DIGITS_TORCHSCRIPT, 'torchscript'],
  [DIGITS_CHECKPOINT, 'lightning-checkpoint'],
] as const;

for (const [path, format] of CASES) {
  test(`${path} is ${format}, from its bytes and from its file`, () => {
    assert.equal(detectModelFormat(readFileSync(path)), format);
    assert.equal(detectModelFormat(path), format);
  });
}

test("a TorchScript zip64 archive's central directory is read (code/ and constants.pkl entries)", () => {
  const names = zipEntryNames(readFileSync(DIGITS_TORCHSCRIPT));
  assert.ok(names.includes('digits.torchscript/constants.pkl'), names.join(', '));
  assert.ok(names.some((n) => n.startsWith('digits.torchscript/code/')));
});

test('an old-style torch.save checkpoint (a bare pickle, not a zip) is a checkpoint', () => {
  const path = writeTempModel(new Uint8Array(), 'legacy.ckpt');
  // The real legacy format, written by the Python with torch the executor uses.
  const python = process.env['ARCLIGHT_PYTHON'] ?? '/usr/bin/python3';
  execFileSync(python, [
    '-c',
    `import torch; torch.save({"state_dict": {"w": torch.zeros(2)}}, ${JSON.stringify(path)}, _use_new_zipfile_serialization=False)`,
  ]);
  const bytes = readFileSync(path);
  assert.equal(bytes[0], 0x80, 'a pickle');
  assert.equal(detectModelFormat(path), 'lightning-checkpoint');
});

test('anything else is taken for ONNX (its loader then says whether it is one)', () => {
  assert.equal(detectModelFormat(new TextEncoder().encode('not a model')), 'onnx');
  assert.equal(detectModelFormat(new Uint8Array()), 'onnx');
});
