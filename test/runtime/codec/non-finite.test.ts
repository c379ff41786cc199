/**
 * Non-finite float outputs in JSON: JSON has no NaN or Infinity, and JSON.stringify would write `null`, which numpy
 * reads as NaN for every one of them (an infinity silently lost). They are the strings "NaN", "Infinity" and
 * "-Infinity" instead: valid JSON, read back as the same float by numpy and by JavaScript's Number(). An Identity
 * model gets them through the binary extension (JSON inputs must be finite) and answers in JSON.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { before, test } from 'node:test';
import { ARCLIGHT_VERSION } from '../../../lib/contract.js';
import { toFloat16Bits } from '../../../lib/runtime/codec/tensor-types.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { lambdaTransport, startRuntime, writeTempModel, type Transport } from '../../helpers.js';
import { identityModel } from '../../onnx-model-writer.js';

const VALUES = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1.5, -0.25];
const AS_JSON = ['NaN', 'Infinity', '-Infinity', 1.5, -0.25];

let send: Transport;

before(async () => {
  const model = writeTempModel(
    identityModel([
      { name: 'f16', type: 'float16', dims: [5] },
      { name: 'f32', type: 'float32', dims: [5] },
      { name: 'f64', type: 'float64', dims: [5] },
    ]),
  );
  const runtime = await startRuntime({ modelUri: model, apiName: 'floats' });
  send = lambdaTransport(createLambdaHandler(runtime));
});

test('NaN and ±Infinity come back as "NaN", "Infinity", "-Infinity", finite values as numbers', async () => {
  const parts = [
    Buffer.from(new Uint16Array(VALUES.map(toFloat16Bits)).buffer),
    Buffer.from(new Float32Array(VALUES).buffer),
    Buffer.from(new Float64Array(VALUES).buffer),
  ];
  const header = Buffer.from(
    JSON.stringify({
      inputs: ['f16', 'f32', 'f64'].map((name, i) => ({
        name,
        datatype: ['FP16', 'FP32', 'FP64'][i],
        shape: [5],
        parameters: { binary_data_size: parts[i]!.length },
      })),
    }),
  );
  const reply = await send({
    path: '/v2/models/floats/infer',
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) },
    body: Buffer.concat([header, ...parts]),
  });
  assert.equal(reply.status, 200, reply.text);
  const { outputs } = reply.json<{ outputs: { name: string; data: unknown[] }[] }>();
  for (const output of outputs) {
    assert.deepEqual(output.data, AS_JSON, output.name);
    assert.deepEqual(output.data.map(Number), VALUES, `${output.name} reads back with Number()`);
  }
  assert.doesNotMatch(reply.text, /null/);
});

test('the server metadata reports the version package.json declares', () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string };
  assert.equal(ARCLIGHT_VERSION, pkg.version);
});
