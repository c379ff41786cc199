/**
 * An image as a model input: the centre crop after an aspect-keeping resize, the layouts (NCHW, NHWC, batchless),
 * grey inputs, UINT8 inputs, and what is refused.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { decodeImage, IMAGENET_MEAN, IMAGENET_STD, imageKind, imageTensor } from '../../lib/cli/image-tensor.js';

/** A 4×2 RGBA image: the left half red, the right half blue. */
function halves(): { width: number; height: number; data: Uint8Array } {
  const data = new Uint8Array(4 * 2 * 4);
  for (let y = 0; y < 2; y++) {
    for (let x = 0; x < 4; x++) data.set(x < 2 ? [255, 0, 0, 255] : [0, 0, 255, 255], (y * 4 + x) * 4);
  }
  return { width: 4, height: 2, data };
}

const unit = { mean: [0, 0, 0], std: [1, 1, 1] };

test('a wide image into a square input: the centre is cut out, not squashed (NCHW)', () => {
  const tensor = imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [1, 3, 2, 2] }, unit);
  assert.deepEqual(tensor.shape, [1, 3, 2, 2]);
  // Columns 1 and 2 of the source: red then blue, on both rows; channel planes R, G, B.
  assert.deepEqual(tensor.data, [1, 0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 1]);
});

test('NHWC and batchless inputs, dynamic sizes from --size', () => {
  const nhwc = imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [-1, 2, 2, 3] }, unit);
  assert.deepEqual(nhwc.shape, [1, 2, 2, 3]);
  assert.deepEqual(nhwc.data, [1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 1]);
  const dynamic = imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [3, -1, -1] }, { ...unit, size: 4 });
  assert.deepEqual(dynamic.shape, [3, 4, 4]);
});

test('ImageNet normalization by default; one grey channel; UINT8 pixels as they are', () => {
  const red = imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [1, 3, 1, 1] });
  // A 1×1 crop of the centre straddles red and blue: half of each.
  const expected = [127.5, 0, 127.5].map((v, c) => (v / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!);
  red.data.forEach((value, c) => assert.ok(Math.abs(value - expected[c]!) < 1e-12));
  const grey = imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [1, 1, 2, 2] });
  assert.deepEqual(
    grey.data.map((v) => Math.round(v * 1000) / 1000),
    [0.299, 0.114, 0.299, 0.114],
  );
  const bytes = imageTensor(halves(), { name: 'x', datatype: 'UINT8', shape: [1, 2, 2, 3] });
  assert.deepEqual(bytes.data, [255, 0, 0, 0, 0, 255, 255, 0, 0, 0, 0, 255]);
});

test('refused: a shape that is no image, a datatype no image becomes, wrong counts of --mean', () => {
  assert.throws(
    () => imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [1, 64] }),
    /input 'x' has shape \[1, 64\], not an image's/,
  );
  assert.throws(
    () => imageTensor(halves(), { name: 'x', datatype: 'INT64', shape: [1, 3, 2, 2] }),
    /the model's image input is INT64/,
  );
  assert.throws(
    () => imageTensor(halves(), { name: 'x', datatype: 'FP32', shape: [1, 3, 2, 2] }, { mean: [0.5] }),
    /--mean and --std need 3 values/,
  );
  assert.throws(
    () => imageTensor(halves(), { name: 'x', datatype: 'UINT8', shape: [1, 3, 2, 2] }, { mean: [0, 0, 0] }),
    /UINT8 pixels: --mean, --std and --pixel-scale do not apply/,
  );
});

test('PNG and JPEG are told by their bytes and decoded to RGBA', () => {
  const png = new PNG({ width: 3, height: 2 });
  png.data.fill(200);
  const pngBytes = PNG.sync.write(png);
  const jpegBytes = jpeg.encode({ data: Buffer.alloc(3 * 2 * 4, 200), width: 3, height: 2 }, 100).data;
  assert.equal(imageKind(pngBytes), 'png');
  assert.equal(imageKind(jpegBytes), 'jpeg');
  assert.equal(imageKind(Buffer.from('{"pixels":[]}')), undefined);
  const decoded = decodeImage(pngBytes, 'a.png');
  assert.deepEqual([decoded.width, decoded.height, decoded.data.length], [3, 2, 24]);
  const fromJpeg = decodeImage(jpegBytes, 'a.jpg');
  assert.deepEqual([fromJpeg.width, fromJpeg.height], [3, 2]);
  assert.throws(() => decodeImage(Buffer.from('not an image'), 'b.bin'), /--file b\.bin is neither a PNG nor a JPEG/);
});

test('shrinking averages every pixel under the output pixel: fine stripes become their mean grey', () => {
  // 64×64, every fourth column white: its mean is 63.75; sampling a few pixels (bilinear) would give 0 or 127.5.
  const size = 64;
  const data = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const v = x % 4 === 0 ? 255 : 0;
      data.set([v, v, v, 255], (y * size + x) * 4);
    }
  }
  const tensor = imageTensor(
    { width: size, height: size, data },
    { name: 'x', datatype: 'FP32', shape: [1, 3, 4, 4] },
    { mean: [0, 0, 0], std: [1, 1, 1], scale: 1 },
  );
  for (const value of tensor.data) assert.equal(value, 63.75);
});
