/**
 * `arclight bench formats` as a user runs it, on the digits model in its three formats: a row per format with
 * latencies and throughput, an agreement check that passes, and the torch executor's overhead against Python.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  DIGITS_CHECKPOINT,
  DIGITS_CLASS,
  DIGITS_MODULE,
  DIGITS_ONNX,
  DIGITS_TORCHSCRIPT,
  loadDigitsExpected,
  runCli,
} from '../helpers.js';

const expected = loadDigitsExpected();
const INPUT = JSON.stringify({
  inputs: [{ name: 'image', datatype: 'FP32', shape: [2, 1, 8, 8], data: expected.images.slice(0, 2).flat() }],
});
const ALL_THREE = [
  'bench',
  'formats',
  '--onnx',
  DIGITS_ONNX,
  '--torchscript',
  DIGITS_TORCHSCRIPT,
  '--checkpoint',
  DIGITS_CHECKPOINT,
  '--module',
  DIGITS_MODULE,
  '--class',
  DIGITS_CLASS,
  '--input',
  INPUT,
  '--requests',
  '30',
];
const ROW = /^\| (onnx|torchscript|lightning-checkpoint) +\| +([\d.]+) \| +([\d.]+) \| +(\d+) \| +([\d.e+-]+) \|$/;

describe('arclight bench formats on the digits model', () => {
  test('prints one row per format and an agreement check that passes', async () => {
    const result = await runCli(ALL_THREE, { timeoutMs: 120_000 });
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trim().split('\n');
    const rows = lines.map((l) => ROW.exec(l)).filter((m): m is RegExpExecArray => m !== null);
    assert.deepEqual(
      rows.map((m) => m[1]),
      ['onnx', 'torchscript', 'lightning-checkpoint'],
      result.stdout,
    );
    for (const [, format, p50, p99, rate, diff] of rows) {
      assert.ok(Number(p50) > 0 && Number(p99) >= Number(p50), `${format}: p50 ${p50}, p99 ${p99}`);
      assert.ok(Number(rate) > 0, `${format}: ${rate} req/s`);
      assert.ok(Number(diff) <= 1e-4, `${format}: max |Δ| ${diff}`);
    }
    assert.equal(Number(rows[0]![5]), 0, 'the first format is the reference');
    assert.match(result.stdout, /^agreement: pass \(max \|Δ\| [\d.e+-]+ ≤ 0\.0001\)$/m);
    assert.match(result.stdout, /^torch executor overhead: .* = \d+\.\d\d$/m);
  });

  test('outputs that differ by more than the tolerance fail the check, and the command exits 1', async () => {
    const result = await runCli([...ALL_THREE, '--tolerance', '0'], { timeoutMs: 120_000 });
    assert.match(result.stdout, /^agreement: FAIL \(max \|Δ\| [\d.e+-]+ > 0\)$/m);
    assert.equal(result.code, 1);
  });

  test('a checkpoint without --module and --class is one line saying what to give', async () => {
    const result = await runCli(['bench', 'formats', '--checkpoint', DIGITS_CHECKPOINT, '--input', INPUT]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^arclight: error: --checkpoint needs --module and --class/m);
  });
});
