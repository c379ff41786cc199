/**
 * lib/ort-conversion.ts without its engine: the built module, copied where no onnxruntime-node can be resolved (as in
 * an install that lost it), says so at synth instead of failing obscurely; with it, a conversion is cached by the
 * model's sha256 and the onnxruntime version.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, test } from 'node:test';
import { OrtConversionError, isOrtFormat, ortFormatOfSync } from '../lib/ort-conversion.js';
import type * as OrtConversion from '../lib/ort-conversion.js';
import { sha256 } from './cdk-helpers.js';
import { DIGITS_ONNX } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'arclight-ort-conversion-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('without onnxruntime-node the conversion fails with an error that says what is missing', async () => {
  const built = resolve('dist/ort-conversion.js');
  assert.ok(existsSync(built), 'run npm run build first');
  // Outside the repository (no node_modules above it), so onnxruntime-node cannot be resolved from there.
  const isolated = join(dir, 'ort-conversion.mjs');
  copyFileSync(built, isolated);
  const module = (await import(pathToFileURL(isolated).href)) as typeof OrtConversion;
  assert.throws(
    () => module.ortFormatOfSync(resolve(DIGITS_ONNX), sha256(DIGITS_ONNX), join(dir, 'cache')),
    (error: Error) => {
      assert.equal(error.name, 'OrtConversionError');
      assert.match(
        error.message,
        /^onnxruntime-node, which converts the model to ORT format, is not installed .*install it \(npm install onnxruntime-node\) or drop ortFormat$/,
      );
      return true;
    },
  );
  assert.ok(!existsSync(join(dir, 'cache')), 'nothing written');
});

test('with it: converted once, then served from the cache', () => {
  const cache = join(dir, 'cache-ok');
  const first = ortFormatOfSync(resolve(DIGITS_ONNX), sha256(DIGITS_ONNX), cache);
  assert.ok(isOrtFormat(readFileSync(first)));
  assert.match(first, new RegExp(`${sha256(DIGITS_ONNX)}-onnxruntime-\\d+\\.\\d+\\.\\d+\\.ort$`));
  const second = ortFormatOfSync(resolve(DIGITS_ONNX), sha256(DIGITS_ONNX), cache);
  assert.equal(second, first);
  assert.ok(OrtConversionError.prototype instanceof Error);
});
