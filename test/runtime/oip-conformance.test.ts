/**
 * Open Inference Protocol conformance, written from the spec texts (inference_rest.md, extension_binary_data.md,
 * extension_statistics.md and the OIP OpenAPI): every endpoint, JSON and binary tensors both ways, BYTES tensors,
 * the error body, compressed bodies and statistics, against the three backends a client meets: `arclight serve`
 * (the CLI, a process), the container server (container-main, a process) and the Lambda handler (API Gateway v2
 * events). The model takes and gives strings: test/fixtures/text-labels.onnx (see make-text-model.ts).
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { deflateSync, gunzipSync, gzipSync } from 'node:zlib';
import { ARCLIGHT_VERSION } from '../../lib/contract.js';
import { createLambdaHandler } from '../../lib/runtime/transports/lambda-adapter.js';
import { contractError, lambdaTransport, startRuntime, type Call, type Reply, type Transport } from '../helpers.js';
import { startContainerMain, startServeCli, type ServedProcess } from '../served-process.js';

const MODEL_PATH = 'test/fixtures/text-labels.onnx';
const MODEL = 'text';
const INFER = `/v2/models/${MODEL}/infer`;
const LABELS: Readonly<Record<string, number>> = { cat: 0, dog: 1, bird: 2 };
const NAMES = ['Cat', 'Dog', 'Bird'];
/** The body limit every backend runs with here (the bomb's inflated size is far past it). */
const MAX_BODY_BYTES = 6 * 1024 * 1024;

interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data?: unknown[];
  parameters?: Record<string, unknown>;
}

interface InferResponse {
  model_name: string;
  id?: string;
  outputs: Output[];
}

/** node:http, so that no Accept-Encoding is sent unless a test says so and nothing is decoded behind its back. */
function rawHttpTransport(baseUrl: string): Transport {
  return (call: Call) =>
    new Promise<Reply>((resolve, reject) => {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(call.headers ?? {})) headers[name.toLowerCase()] = value;
      if (typeof call.body === 'string' && headers['content-type'] === undefined) {
        headers['content-type'] = 'application/json';
      }
      const req = httpRequest(
        baseUrl + call.path,
        { method: call.method ?? (call.body === undefined ? 'GET' : 'POST'), headers, timeout: 30_000 },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (chunk: Buffer) => chunks.push(chunk));
          res.on('end', () => {
            const body = Buffer.concat(chunks);
            const replyHeaders: Record<string, string> = {};
            for (const [name, value] of Object.entries(res.headers)) {
              if (value !== undefined) replyHeaders[name] = Array.isArray(value) ? value.join(', ') : value;
            }
            const text = body.toString('utf8');
            resolve({
              status: res.statusCode ?? 0,
              headers: replyHeaders,
              body,
              text,
              json: <T>() => JSON.parse(text) as T,
            });
          });
        },
      );
      req.on('error', reject);
      req.end(call.body);
    });
}

/** A BYTES tensor as the binary extension sends it: each element's 4-byte little-endian length, then its bytes. */
function bytesElements(values: readonly (string | Buffer)[]): Buffer {
  return Buffer.concat(
    values.flatMap((v) => {
      const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
      const length = Buffer.alloc(4);
      length.writeUInt32LE(bytes.length);
      return [length, bytes];
    }),
  );
}

function readBytesElements(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < bytes.length;) {
    const length = bytes.readUInt32LE(at);
    out.push(bytes.subarray(at + 4, at + 4 + length).toString('utf8'));
    at += 4 + length;
  }
  return out;
}

/** A JSON-then-binary body: the JSON header, then each tensor's bytes in order. */
function binaryBody(header: unknown, parts: readonly Buffer[]): { body: Buffer; headers: Record<string, string> } {
  const json = Buffer.from(JSON.stringify(header));
  return {
    body: Buffer.concat([json, ...parts]),
    headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(json.length) },
  };
}

/** A binary response split into its JSON header and each binary output's bytes, by name. */
function splitBinaryResponse(reply: Reply): { header: InferResponse; binary: Record<string, Buffer> } {
  const length = Number(reply.headers['inference-header-content-length']);
  assert.ok(Number.isSafeInteger(length) && length > 0, `inference-header-content-length: ${length}`);
  const header = JSON.parse(reply.body.subarray(0, length).toString('utf8')) as InferResponse;
  const binary: Record<string, Buffer> = {};
  let at = length;
  for (const output of header.outputs) {
    const size = output.parameters?.['binary_data_size'];
    if (typeof size !== 'number') continue;
    binary[output.name] = reply.body.subarray(at, at + size);
    at += size;
  }
  assert.equal(at, reply.body.length, 'the binary outputs fill the body exactly');
  return { header, binary };
}

function textInput(values: readonly string[]): Record<string, unknown> {
  return { name: 'text', datatype: 'BYTES', shape: [values.length], data: values };
}

function expectedLabels(values: readonly string[]): number[] {
  return values.map((v) => LABELS[v] ?? -1);
}

function expectedNames(values: readonly string[]): string[] {
  return expectedLabels(values).map((l) => NAMES[l] ?? 'unknown');
}

function outputsByName(reply: Reply): Record<string, Output> {
  assert.equal(reply.status, 200, reply.text);
  const body = reply.json<InferResponse>();
  assert.equal(body.model_name, MODEL);
  return Object.fromEntries(body.outputs.map((o) => [o.name, o]));
}

/** The protocol's error response: `error` a string (what OIP clients print), our `code` and `requestId` beside it. */
function assertProtocolError(reply: Reply, status: number, code: string, pattern?: RegExp): string {
  assert.equal(reply.status, status, reply.text);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
  const error = contractError(reply.json());
  assert.equal(error.code, code, error.message);
  assert.equal(reply.headers['x-request-id'], error.requestId);
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(error.message, /[\u0000-\u001f]/, 'no control characters in the message');
  if (pattern) assert.match(error.message, pattern);
  return error.message;
}

interface Stats {
  model_stats: {
    name: string;
    version: string;
    last_inference: number;
    inference_count: number;
    execution_count: number;
    inference_stats: Record<string, { count: number; ns: number }>;
    batch_stats: { batch_size: number; compute_infer: { count: number; ns: number } }[];
  }[];
}

interface Backend {
  readonly send: Transport;
  /** Whether responses can come compressed (node:http); API Gateway's Lambda integration leaves it to the gateway. */
  readonly compressesResponses: boolean;
  stop(): Promise<void>;
}

const BACKENDS: readonly [string, () => Promise<Backend>][] = [
  [
    'arclight serve',
    async () => {
      const served: ServedProcess = await startServeCli(['--model', MODEL_PATH, '--name', MODEL]);
      return { send: rawHttpTransport(served.url), compressesResponses: true, stop: () => served.stop().then() };
    },
  ],
  [
    'the container server',
    async () => {
      const served = await startContainerMain({
        ARCLIGHT_MODEL_URI: MODEL_PATH,
        ARCLIGHT_API_NAME: MODEL,
        ARCLIGHT_WORKERS: '1',
      });
      return { send: rawHttpTransport(served.url), compressesResponses: true, stop: () => served.stop().then() };
    },
  ],
  [
    'the Lambda handler',
    async () => {
      const runtime = await startRuntime({ modelUri: MODEL_PATH, apiName: MODEL });
      const handler = createLambdaHandler(runtime, { maxBodyBytes: MAX_BODY_BYTES });
      return { send: lambdaTransport(handler), compressesResponses: false, stop: () => runtime.close() };
    },
  ],
];

for (const [backendName, startBackend] of BACKENDS) {
  describe(`Open Inference Protocol conformance: ${backendName}`, () => {
    let backend: Backend;
    let send: Transport;
    before(async () => {
      backend = await startBackend();
      send = backend.send;
    });
    after(async () => {
      await backend?.stop();
    });

    test('health: live and ready are 200 (inference_rest.md, Health)', async () => {
      for (const path of ['/v2/health/live', '/v2/health/ready', `/v2/models/${MODEL}/ready`]) {
        const reply = await send({ path });
        assert.equal(reply.status, 200, `${path}: ${reply.text}`);
      }
      const versioned = await send({ path: `/v2/models/${MODEL}/versions/1/ready` });
      assert.equal(versioned.status, 200, versioned.text);
    });

    test('server metadata: name, version and extensions, all required', async () => {
      const reply = await send({ path: '/v2' });
      assert.equal(reply.status, 200, reply.text);
      const body = reply.json<{ name: string; version: string; extensions: string[] }>();
      assert.equal(body.name, 'arclight');
      assert.equal(body.version, ARCLIGHT_VERSION);
      assert.ok(body.extensions.includes('binary_tensor_data'));
      assert.ok(body.extensions.includes('statistics'));
    });

    test('model metadata: name, versions, platform, BYTES and INT64 tensors with -1 for dynamic dimensions', async () => {
      for (const path of [`/v2/models/${MODEL}`, `/v2/models/${MODEL}/versions/1`]) {
        const reply = await send({ path });
        assert.equal(reply.status, 200, reply.text);
        assert.deepEqual(reply.json(), {
          name: MODEL,
          versions: ['1'],
          platform: 'onnxruntime_onnx',
          inputs: [{ name: 'text', datatype: 'BYTES', shape: [-1] }],
          outputs: [
            { name: 'label', datatype: 'INT64', shape: [-1] },
            { name: 'name', datatype: 'BYTES', shape: [-1] },
          ],
        });
      }
    });

    test('JSON in, JSON out: BYTES data as strings, the request id echoed', async () => {
      const values = ['cat', 'dog', 'fish', 'bird', 'Ünïcode ✓', ''];
      const reply = await send({
        path: INFER,
        body: JSON.stringify({ id: 'req-1', inputs: [textInput(values)] }),
      });
      assert.equal(reply.json<InferResponse>().id, 'req-1');
      const out = outputsByName(reply);
      assert.deepEqual(out['label'], { name: 'label', datatype: 'INT64', shape: [6], data: expectedLabels(values) });
      assert.deepEqual(out['name'], { name: 'name', datatype: 'BYTES', shape: [6], data: expectedNames(values) });
    });

    test('binary in (each BYTES element length-prefixed), JSON out', async () => {
      const values = ['bird', 'cat', 'ƒ'];
      const elements = bytesElements(values);
      const request = binaryBody(
        {
          inputs: [{ name: 'text', datatype: 'BYTES', shape: [3], parameters: { binary_data_size: elements.length } }],
        },
        [elements],
      );
      const reply = await send({ path: INFER, headers: request.headers, body: request.body });
      const out = outputsByName(reply);
      assert.deepEqual(out['label']!.data, expectedLabels(values));
      assert.deepEqual(out['name']!.data, expectedNames(values));
    });

    test('JSON in, binary out (binary_data_output): INT64 little-endian, BYTES length-prefixed', async () => {
      const values = ['dog', 'cat', 'nope'];
      const reply = await send({
        path: INFER,
        body: JSON.stringify({ inputs: [textInput(values)], parameters: { binary_data_output: true } }),
      });
      assert.equal(reply.status, 200, reply.text);
      assert.match(reply.headers['content-type'] ?? '', /^application\/octet-stream/);
      const { header, binary } = splitBinaryResponse(reply);
      assert.deepEqual(
        header.outputs.map((o) => [o.name, o.datatype, o.shape, o.data]),
        [
          ['label', 'INT64', [3], undefined],
          ['name', 'BYTES', [3], undefined],
        ],
      );
      const labels = binary['label']!;
      assert.deepEqual(
        Array.from({ length: 3 }, (_, i) => Number(labels.readBigInt64LE(i * 8))),
        expectedLabels(values),
      );
      assert.deepEqual(readBytesElements(binary['name']!), expectedNames(values));
    });

    test("binary both ways, and an output's binary_data: false overrides binary_data_output: true", async () => {
      const values = ['cat', 'bird'];
      const elements = bytesElements(values);
      const request = binaryBody(
        {
          inputs: [{ name: 'text', datatype: 'BYTES', shape: [2], parameters: { binary_data_size: elements.length } }],
          outputs: [{ name: 'name', parameters: { binary_data: false } }, { name: 'label' }],
          parameters: { binary_data_output: true },
        },
        [elements],
      );
      const reply = await send({ path: INFER, headers: request.headers, body: request.body });
      assert.equal(reply.status, 200, reply.text);
      const { header, binary } = splitBinaryResponse(reply);
      const name = header.outputs.find((o) => o.name === 'name')!;
      assert.deepEqual(name.data, expectedNames(values), 'the overridden output comes as JSON');
      assert.deepEqual(Object.keys(binary), ['label']);
      assert.deepEqual([binary['label']!.readBigInt64LE(0), binary['label']!.readBigInt64LE(8)], [0n, 2n]);
    });

    test('outputs asked for: only those, in that order', async () => {
      const reply = await send({
        path: INFER,
        body: JSON.stringify({ inputs: [textInput(['dog'])], outputs: [{ name: 'name' }] }),
      });
      assert.deepEqual(Object.keys(outputsByName(reply)), ['name']);
    });

    test('content type is not part of the protocol: octet-stream and forms are the JSON request', async () => {
      for (const contentType of ['application/octet-stream', 'application/x-www-form-urlencoded', 'text/plain']) {
        const reply = await send({
          path: INFER,
          headers: { 'content-type': contentType },
          body: Buffer.from(JSON.stringify({ inputs: [textInput(['cat'])] })),
        });
        assert.deepEqual(outputsByName(reply)['label']!.data, [0], contentType);
      }
      const image = await send({
        path: INFER,
        headers: { 'content-type': 'image/png' },
        body: Buffer.from(JSON.stringify({ inputs: [textInput(['cat'])] })),
      });
      assertProtocolError(image, 415, 'unsupported_media_type', /image\/png/);
    });

    test('errors: the protocol\'s {"error": "<message>"} with our code and request id, and the right status', async () => {
      const good = { inputs: [textInput(['cat'])] };
      const cases: [Call, number, string, RegExp][] = [
        [{ path: '/v2/models/other/infer', body: JSON.stringify(good) }, 404, 'model_not_found', /other/],
        [{ path: `/v2/models/${MODEL}/versions/7` }, 404, 'model_not_found', /version '7'/],
        [{ path: '/v2/nothing/here' }, 404, 'not_found', /no route/],
        [{ path: INFER, method: 'GET' }, 405, 'method_not_allowed', /use POST/],
        [{ path: INFER, body: '{"inputs": [' }, 400, 'malformed_json', /not valid JSON/],
        [{ path: INFER, body: JSON.stringify({ inputs: [] }) }, 400, 'invalid_input', /at least one input/],
        [
          { path: INFER, body: JSON.stringify({ inputs: [{ ...textInput(['a']), datatype: 'FP32' }] }) },
          400,
          'invalid_input',
          /datatype FP32 does not match the model's BYTES/,
        ],
        [
          { path: INFER, body: JSON.stringify({ inputs: [{ ...textInput(['a']), data: [1] }] }) },
          400,
          'invalid_input',
          /BYTES needs a string/,
        ],
        [{ path: INFER, body: JSON.stringify({ ...good, outputs: [] }) }, 400, 'invalid_input', /at least one output/],
        [
          {
            path: INFER,
            body: JSON.stringify({ ...good, outputs: [{ name: 'label', parameters: { classification: 2 } }] }),
          },
          400,
          'invalid_input',
          /classification/,
        ],
        [
          { path: INFER, body: JSON.stringify({ ...good, parameters: { sequence_id: 4 } }) },
          400,
          'invalid_input',
          /sequence/,
        ],
        [
          {
            path: INFER,
            headers: { 'inference-header-content-length': '0', 'content-type': 'application/octet-stream' },
            body: Buffer.from(JSON.stringify(good)),
          },
          400,
          'invalid_input',
          /is 0/,
        ],
      ];
      for (const [call, status, code, pattern] of cases) {
        assertProtocolError(await send(call), status, code, pattern);
      }
    });

    test('binary BYTES that lie about their lengths, or are not UTF-8, are 400s that say so', async () => {
      const lying = Buffer.concat([bytesElements(['cat']), Buffer.from([0xff, 0, 0, 0])]);
      const invalid = bytesElements([Buffer.from([0xc3, 0x28])]);
      for (const [elements, count, pattern] of [
        [lying, 2, /element 1 is 255 bytes long/],
        [bytesElements(['cat', 'dog']), 1, /bytes follow the last of its 1 elements/],
        [invalid, 1, /not UTF-8/],
      ] as const) {
        const request = binaryBody(
          {
            inputs: [
              { name: 'text', datatype: 'BYTES', shape: [count], parameters: { binary_data_size: elements.length } },
            ],
          },
          [elements],
        );
        const reply = await send({ path: INFER, headers: request.headers, body: request.body });
        assertProtocolError(reply, 400, 'invalid_input', pattern);
      }
    });

    test('compressed requests: gzip and deflate decoded; other codings 415; a lying header 400; a bomb 413', async () => {
      const body = Buffer.from(JSON.stringify({ inputs: [textInput(['dog', 'cat'])] }));
      for (const [coding, encoded] of [
        ['gzip', gzipSync(body)],
        ['deflate', deflateSync(body)],
      ] as const) {
        const reply = await send({
          path: INFER,
          headers: { 'content-encoding': coding, 'content-type': 'application/json' },
          body: encoded,
        });
        assert.deepEqual(outputsByName(reply)['label']!.data, [1, 0], coding);
      }
      const brotli = await send({
        path: INFER,
        headers: { 'content-encoding': 'br', 'content-type': 'application/json' },
        body,
      });
      assertProtocolError(brotli, 415, 'unsupported_media_type', /gzip, deflate/);
      const lying = await send({
        path: INFER,
        headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
        body,
      });
      assertProtocolError(lying, 400, 'invalid_input', /not valid gzip data/);
      // 64 MiB of zeros in ~64 KB: past the 6 MiB limit once inflated.
      const bomb = gzipSync(Buffer.alloc(64 * 1024 * 1024), { level: 9 });
      assert.ok(bomb.length < 100_000);
      const bombed = await send({
        path: INFER,
        headers: { 'content-encoding': 'gzip', 'content-type': 'application/json' },
        body: bomb,
      });
      assertProtocolError(bombed, 413, 'payload_too_large', /once decompressed/);
      // Still serving.
      const after = await send({ path: INFER, body: body.toString() });
      assert.deepEqual(outputsByName(after)['label']!.data, [1, 0]);
    });

    test('responses: compressed per Accept-Encoding where the transport allows it', async () => {
      const values = Array.from({ length: 400 }, (_, i) => (i % 2 ? 'cat' : 'dog'));
      const reply = await send({
        path: INFER,
        headers: { 'accept-encoding': 'gzip;q=1, deflate;q=0.5' },
        body: JSON.stringify({ inputs: [textInput(values)] }),
      });
      assert.equal(reply.status, 200, reply.text);
      if (!backend.compressesResponses) {
        assert.equal(reply.headers['content-encoding'], undefined, 'the Lambda adapter leaves compression alone');
        return;
      }
      assert.equal(reply.headers['content-encoding'], 'gzip');
      assert.match(reply.headers['vary'] ?? '', /accept-encoding/);
      const body = JSON.parse(gunzipSync(reply.body).toString('utf8')) as InferResponse;
      assert.deepEqual(body.outputs.find((o) => o.name === 'label')!.data, expectedLabels(values));
      const small = await send({ path: '/v2', headers: { 'accept-encoding': 'gzip' } });
      assert.equal(small.headers['content-encoding'], undefined, 'small responses are sent as they are');
    });

    test('statistics (GET /v2/models/{name}/stats): counts and times of successes, failures, executions', async () => {
      const read = async (): Promise<Stats['model_stats'][number]> => {
        const reply = await send({ path: `/v2/models/${MODEL}/stats` });
        assert.equal(reply.status, 200, reply.text);
        const stats = reply.json<Stats>();
        assert.equal(stats.model_stats.length, 1);
        return stats.model_stats[0]!;
      };
      const before = await read();
      assert.equal(before.name, MODEL);
      assert.equal(before.version, '1');
      const ok = await send({ path: INFER, body: JSON.stringify({ inputs: [textInput(['a', 'b', 'c'])] }) });
      assert.equal(ok.status, 200, ok.text);
      const bad = await send({ path: INFER, body: JSON.stringify({ inputs: [{ ...textInput(['a']), data: [1] }] }) });
      assert.equal(bad.status, 400, bad.text);
      const after = await read();
      const delta = (key: string): number => after.inference_stats[key]!.count - before.inference_stats[key]!.count;
      assert.equal(delta('success'), 1);
      assert.equal(delta('fail'), 1);
      assert.equal(after.inference_count - before.inference_count, 3, 'a batch of 3 is 3 inferences');
      assert.equal(after.execution_count - before.execution_count, 1);
      assert.equal(delta('compute_infer'), 1);
      assert.equal(delta('queue'), 1);
      assert.equal(delta('compute_input'), 1, 'the refused request never got past decoding');
      assert.equal(delta('compute_output'), 1);
      for (const key of ['success', 'fail', 'compute_infer', 'compute_input', 'compute_output']) {
        assert.ok(after.inference_stats[key]!.ns > before.inference_stats[key]!.ns, `${key} ns grew`);
      }
      assert.ok(after.last_inference >= before.last_inference && after.last_inference > 0);
      assert.ok(after.batch_stats.some((b) => b.batch_size === 3 && b.compute_infer.count >= 1));
      assertProtocolError(await send({ path: '/v2/models/other/stats' }), 404, 'model_not_found');
    });
  });
}
