/**
 * The OIP binary path without copies: the body the HTTP adapter read (aligned) is what the tensor views; in the
 * container server that body lies in a shared slab the worker copies from, while a JSON body's tensors are fresh
 * arrays moved to the worker. Both must give exactly the same, for every digits image and for MobileNet, over real
 * sockets into the container server's worker pool, whatever the JSON header's length.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeInferRequest } from '../../../lib/runtime/codec/oip.js';
import { isOwned, markOwned } from '../../../lib/runtime/executors/owned-buffers.js';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { settingsFromEnv } from '../../../lib/runtime/settings.js';
import { startContainerServer, type ContainerServer } from '../../../lib/runtime/transports/container-server.js';
import { DIGITS_ONNX, MOBILENET_ONNX, assertLogitsClose, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
const DIGITS_SIGNATURE = {
  inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8], dimNames: [null, null, null, null] }],
  outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10], dimNames: [null, null] }],
} as const;

/** A binary OIP body: JSON header (padded by `id` to any length) then the tensor's bytes; asks for binary outputs. */
function binaryBody(
  input: { name: string; shape: readonly number[]; data: Float32Array },
  id: string,
): { body: Buffer; headerLength: number } {
  const header = Buffer.from(
    JSON.stringify({
      id,
      inputs: [
        {
          name: input.name,
          shape: input.shape,
          datatype: 'FP32',
          parameters: { binary_data_size: input.data.byteLength },
        },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  const bytes = Buffer.from(input.data.buffer, input.data.byteOffset, input.data.byteLength);
  return { body: Buffer.concat([header, bytes]), headerLength: header.length };
}

function jsonBody(input: { name: string; shape: readonly number[]; data: Float32Array }): string {
  return JSON.stringify({
    inputs: [{ name: input.name, shape: input.shape, datatype: 'FP32', data: Array.from(input.data) }],
  });
}

async function inferBinary(url: string, modelName: string, body: Buffer, headerLength: number): Promise<Float32Array> {
  const response = await fetch(`${url}/v2/models/${modelName}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
    body,
  });
  const raw = Buffer.from(await response.arrayBuffer());
  assert.equal(response.status, 200, raw.toString('utf8', 0, 300));
  const jsonLength = Number(response.headers.get('inference-header-content-length'));
  const head = JSON.parse(raw.toString('utf8', 0, jsonLength)) as { outputs: { parameters: object }[] };
  assert.equal(head.outputs.length, 1);
  const tensor = raw.subarray(jsonLength);
  return new Float32Array(tensor.buffer.slice(tensor.byteOffset, tensor.byteOffset + tensor.byteLength));
}

async function inferJson(url: string, modelName: string, body: string): Promise<Float32Array> {
  const response = await fetch(`${url}/v2/models/${modelName}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  const text = await response.text();
  assert.equal(response.status, 200, text.slice(0, 300));
  return Float32Array.from((JSON.parse(text) as { outputs: { data: number[] }[] }).outputs[0]!.data);
}

async function startContainer(modelUri: string, extraEnv: Record<string, string> = {}): Promise<ContainerServer> {
  const env = { ARCLIGHT_MODEL_URI: modelUri, ARCLIGHT_METRICS: 'off', ARCLIGHT_WORKERS: '2', ...extraEnv };
  const settings = settingsFromEnv(env);
  const container = await startContainerServer({
    settings,
    env,
    port: 0,
    host: '127.0.0.1',
    logger: createLogger(settings.apiName, 'SILENT'),
  });
  await container.ready;
  return container;
}

describe('decodeInferRequest on an aligned body of its own', () => {
  test('the tensor is a view into the body itself at every header length: no copy', () => {
    for (let pad = 0; pad < 8; pad++) {
      const image = Float32Array.from(expected.images[0]!);
      const { body, headerLength } = binaryBody({ name: 'image', shape: [1, 1, 8, 8], data: image }, 'x'.repeat(pad));
      // What the HTTP adapter does: memory of its own, the binary part placed 8-byte aligned.
      const lead = (8 - (headerLength % 8)) % 8;
      const memory = new ArrayBuffer(lead + body.length);
      markOwned(memory);
      const aligned = Buffer.from(memory, lead, body.length);
      body.copy(aligned);
      const decoded = decodeInferRequest(
        aligned,
        { 'inference-header-content-length': String(headerLength) },
        DIGITS_SIGNATURE,
      );
      const data = decoded.feeds['image']!.data as Float32Array;
      assert.equal(data.buffer, memory, `header of ${headerLength} bytes: the tensor shares the body's memory`);
      assert.equal(data.byteOffset, lead + headerLength);
      assert.ok(isOwned(data.buffer), 'so the worker pool may move it');
      assert.deepEqual(Array.from(data), Array.from(image));
    }
  });

  test('an unaligned body still decodes, to a copy, with the same values', () => {
    const image = Float32Array.from(expected.images[1]!);
    const { body, headerLength } = binaryBody({ name: 'image', shape: [1, 1, 8, 8], data: image }, 'ab');
    const unaligned = Buffer.alloc(body.length + 1).subarray(headerLength % 8 === 0 ? 1 : 0);
    body.copy(unaligned);
    const decoded = decodeInferRequest(
      unaligned.subarray(0, body.length),
      { 'inference-header-content-length': String(headerLength) },
      DIGITS_SIGNATURE,
    );
    assert.deepEqual(Array.from(decoded.feeds['image']!.data as Float32Array), Array.from(image));
  });
});

describe('the zero-copy binary path gives what the JSON path gives (container server, real sockets)', () => {
  let digits: ContainerServer;
  let mobilenet: ContainerServer;

  before(async () => {
    digits = await startContainer(DIGITS_ONNX, { ARCLIGHT_API_NAME: 'digits' });
    mobilenet = await startContainer(MOBILENET_ONNX, { ARCLIGHT_API_NAME: 'mobilenet' });
  });
  after(async () => {
    await digits?.shutdown();
    await mobilenet?.shutdown();
  });

  test('all 397 digits images: binary logits bit-identical to JSON logits and to the reference', async () => {
    const url = `http://127.0.0.1:${digits.address.port}`;
    for (let i = 0; i < expected.images.length; i++) {
      const input = { name: 'image', shape: [1, 1, 8, 8], data: Float32Array.from(expected.images[i]!) };
      // The id's length walks the JSON header through every alignment.
      const { body, headerLength } = binaryBody(input, `digit-${i}${'.'.repeat(i % 8)}`);
      const [binary, json] = await Promise.all([
        inferBinary(url, 'digits', body, headerLength),
        inferJson(url, 'digits', jsonBody(input)),
      ]);
      assert.deepEqual(Array.from(binary), Array.from(json), `image ${i}: binary and JSON paths differ`);
      assertLogitsClose(Array.from(binary), expected.logits[i]!, `image ${i}`);
    }
  });

  test('MobileNet: binary outputs bit-identical to JSON outputs', async () => {
    const url = `http://127.0.0.1:${mobilenet.address.port}`;
    const [info] = mobilenet.runtime.describe()['inputs'] as { name: string; shape: number[] }[];
    const shape = info!.shape.map((d) => (d < 0 ? 1 : d));
    const count = shape.reduce((a, b) => a * b, 1);
    for (const seed of [1, 2, 3]) {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = Math.sin(i * 0.001 * seed) * 2;
      const input = { name: info!.name, shape, data };
      const { body, headerLength } = binaryBody(input, 'm'.repeat(seed));
      const binary = await inferBinary(url, 'mobilenet', body, headerLength);
      const json = await inferJson(url, 'mobilenet', jsonBody(input));
      assert.equal(binary.length, 1000);
      assert.deepEqual(Array.from(binary), Array.from(json), `seed ${seed}`);
    }
  });
});
