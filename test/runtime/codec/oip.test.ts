/**
 * Open Inference Protocol validation, end to end: an Identity model per datatype (written in memory by
 * test/onnx-model-writer.ts) served by real onnxruntime-node, each bad request sent through the node:http server and
 * through the Lambda handler with an API Gateway v2 event. Every refusal is a 400 whose message names the input and
 * what was expected, and a valid request succeeds right after it on the same runtime.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { fromFloat16Bits, toFloat16Bits } from '../../../lib/runtime/codec/tensor-types.js';
import {
  httpTransport,
  lambdaTransport,
  startRuntime,
  startServer,
  writeTempModel,
  type Reply,
  type TestServer,
  type Transport,
  contractError,
} from '../../helpers.js';
import { identityModel } from '../../onnx-model-writer.js';

const MODEL = 'types';
const INFER = `/v2/models/${MODEL}/infer`;

/** One input per datatype: fixed, dynamic and mixed dimensions, ranks 1 to 3. */
const MODEL_INPUTS = [
  { name: 'flag', type: 'bool', dims: [2] },
  { name: 'u8', type: 'uint8', dims: ['rows', 'cols'] },
  { name: 'i8', type: 'int8', dims: [2] },
  { name: 'i16', type: 'int16', dims: [2] },
  { name: 'i32', type: 'int32', dims: ['n'] },
  { name: 'i64', type: 'int64', dims: ['n'] },
  { name: 'f16', type: 'float16', dims: ['n'] },
  { name: 'f32', type: 'float32', dims: ['batch', 3, 2] },
  { name: 'f64', type: 'float64', dims: [2, 2] },
] as const;

type InputName = (typeof MODEL_INPUTS)[number]['name'];

interface WireInput {
  name?: unknown;
  datatype?: unknown;
  shape?: unknown;
  data?: unknown;
  parameters?: unknown;
}

/** A valid tensor for every input, at the edges of each datatype's range. */
const VALID: Readonly<Record<InputName, WireInput>> = {
  flag: { datatype: 'BOOL', shape: [2], data: [true, false] },
  u8: { datatype: 'UINT8', shape: [1, 2], data: [0, 255] },
  i8: { datatype: 'INT8', shape: [2], data: [-128, 127] },
  i16: { datatype: 'INT16', shape: [2], data: [-32768, 32767] },
  i32: { datatype: 'INT32', shape: [2], data: [-2147483648, 2147483647] },
  i64: { datatype: 'INT64', shape: [2], data: ['-9223372036854775808', '9223372036854775807'] },
  f16: { datatype: 'FP16', shape: [2], data: [0.5, -65504] },
  f32: { datatype: 'FP32', shape: [1, 3, 2], data: [1, 2, 3, 4, 5, 6] },
  f64: { datatype: 'FP64', shape: [2, 2], data: [0.1, -1e300, 5e-324, 1.7976931348623157e308] },
};

/** Outputs a valid request gets back: each input's data, exactly (int64 beyond 2^53 as decimal strings). */
const VALID_OUTPUT: Readonly<Record<InputName, unknown[]>> = {
  ...(Object.fromEntries(Object.entries(VALID).map(([name, input]) => [name, input.data])) as Record<
    InputName,
    unknown[]
  >),
};

type Patch = Partial<Record<InputName, WireInput | null>>;

/** An inference request: every input valid unless patched (fields merged; null leaves the input out). */
function request(patch: Patch = {}, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const inputs = MODEL_INPUTS.flatMap(({ name }) => {
    const change = patch[name];
    if (change === null) return [];
    return [{ name, ...VALID[name], ...change }];
  });
  return { inputs, ...extra };
}

const VALID_BODY = JSON.stringify(request());

interface Output {
  name: string;
  datatype: string;
  shape: number[];
  data: unknown[];
}
interface InferResponse {
  model_name: string;
  id?: string;
  outputs: Output[];
}
function outputsOf(reply: Reply): Record<string, Output> {
  assert.equal(reply.status, 200, reply.text);
  const body = reply.json<InferResponse>();
  assert.equal(body.model_name, MODEL);
  return Object.fromEntries(body.outputs.map((o) => [o.name, o]));
}

/** A refused request: status 400, the code, a request id matching the header, and every pattern in the message. */
function assertRefused(reply: Reply, code: string, patterns: readonly RegExp[]): void {
  assert.equal(reply.status, 400, reply.text);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/);
  const error = contractError(reply.json());
  assert.equal(error.code, code, error.message);
  assert.ok(error.requestId.length > 0);
  assert.equal(reply.headers['x-request-id'], error.requestId);
  for (const pattern of patterns) assert.match(error.message, pattern);
}

async function assertServesValid(send: Transport): Promise<void> {
  const outputs = outputsOf(await send({ path: INFER, body: VALID_BODY }));
  assert.deepEqual(Object.keys(outputs).sort(), MODEL_INPUTS.map(({ name }) => `${name}_out`).sort());
  for (const { name } of MODEL_INPUTS) {
    const out = outputs[`${name}_out`]!;
    assert.equal(out.datatype, VALID[name].datatype, name);
    assert.deepEqual(out.shape, VALID[name].shape, name);
    assert.deepEqual(out.data, VALID_OUTPUT[name], name);
  }
}

const deep = (depth: number): string => '['.repeat(depth) + ']'.repeat(depth);

interface RefusalCase {
  readonly name: string;
  readonly body: string;
  /** @default 'invalid_input' */
  readonly code?: string;
  readonly message: readonly RegExp[];
}

const json = (value: unknown): string => JSON.stringify(value);

/** Every way a request can be refused: each names where the problem is and what was expected. */
const REFUSALS: readonly RefusalCase[] = [
  // The document
  { name: 'malformed JSON', body: '{"inputs": [', code: 'malformed_json', message: [/not valid JSON/] },
  { name: 'empty body', body: '', code: 'malformed_json', message: [/body is empty; send a JSON document/] },
  { name: 'body is an array', body: '[1, 2]', message: [/^invalid inference request: body: .*expected object/] },
  { name: 'body is a string', body: '"infer"', message: [/body: .*expected object/] },
  { name: 'body is null', body: 'null', message: [/body: .*expected object/] },
  { name: 'missing inputs', body: '{}', message: [/inputs: .*expected array/] },
  { name: 'inputs not an array', body: '{"inputs": {"name": "f32"}}', message: [/inputs: .*expected array/] },
  { name: 'empty inputs', body: '{"inputs": []}', message: [/inputs: at least one input is required/] },
  {
    name: 'input without a name',
    body: json(request({ i8: { name: '' } })),
    message: [/inputs\[2\]\.name: /],
  },
  {
    name: 'input without a shape',
    body: json({ inputs: [{ name: 'i8', datatype: 'INT8', data: [1, 2] }] }),
    message: [/inputs\[0\]\.shape: .*expected array/],
  },
  // Names
  {
    name: 'unknown input name',
    body: json({ inputs: [...(request().inputs as object[]), { name: 'nope', ...VALID.i8 }] }),
    message: [/unknown input 'nope'/, /the model takes 'flag' \(BOOL \[2\]\), 'u8' \(UINT8 \[-1,-1\]\)/],
  },
  {
    // Found by fuzzing: the name was echoed whole, a megabyte of error message.
    name: 'unknown input with a 100k-character name: the message quotes 64 characters of it',
    body: json({ inputs: [...(request().inputs as object[]), { name: 'n'.repeat(100_000), ...VALID.i8 }] }),
    message: [/unknown input 'n{63}…'; the model takes/],
  },
  {
    name: 'unknown output with a 100k-character name: clipped too',
    body: json({ ...request(), outputs: [{ name: 'o'.repeat(100_000) }] }),
    message: [/unknown output 'o{63}…'; the model gives/],
  },
  {
    name: 'missing input',
    body: json(request({ f64: null, f16: null })),
    message: [/^missing input 'f16' \(FP16 \[-1\]\), 'f64' \(FP64 \[2,2\]\)$/],
  },
  {
    name: 'duplicate input',
    body: json({ inputs: [...(request().inputs as object[]), { name: 'i8', ...VALID.i8 }] }),
    message: [/input 'i8' is given more than once/],
  },
  // Datatypes
  {
    name: 'unknown datatype',
    body: json(request({ i8: { datatype: 'INT4' } })),
    message: [/input 'i8': datatype 'INT4' is not one of BOOL, UINT8, INT8, INT16, INT32, INT64, FP16, FP32, FP64/],
  },
  {
    name: 'lower-case datatype',
    body: json(request({ f32: { datatype: 'fp32' } })),
    message: [/input 'f32': datatype 'fp32' is not one of/],
  },
  {
    name: 'datatype not matching the model',
    body: json(request({ i8: { datatype: 'INT16' } })),
    message: [/input 'i8': datatype INT16 does not match the model's INT8/],
  },
  // Shapes
  {
    name: 'wrong rank',
    body: json(request({ f32: { shape: [6] } })),
    message: [/input 'f32': shape \[6\] has rank 1; the model expects rank 3: FP32 \[-1,3,2\]/],
  },
  {
    name: 'scalar shape for a rank-1 input',
    body: json(request({ i8: { shape: [], data: [1] } })),
    message: [/input 'i8': shape \[\] has rank 0; the model expects rank 1: INT8 \[2\]/],
  },
  {
    name: 'fixed dimension differs',
    body: json(request({ f32: { shape: [1, 2, 3] } })),
    message: [/input 'f32': shape \[1,2,3\] has 2 at axis 1; the model expects 3: FP32 \[-1,3,2\]/],
  },
  {
    name: 'fixed dimension differs (last axis)',
    body: json(request({ f64: { shape: [2, 4] } })),
    message: [/input 'f64': shape \[2,4\] has 4 at axis 1; the model expects 2: FP64 \[2,2\]/],
  },
  {
    name: 'data length is not the product of the shape',
    body: json(request({ f32: { data: [1, 2, 3, 4, 5] } })),
    message: [/input 'f32': data has 5 elements; shape \[1,3,2\] needs 6/],
  },
  {
    name: 'data longer than the shape',
    body: json(request({ i32: { shape: [1] } })),
    message: [/input 'i32': data has 2 elements; shape \[1\] needs 1/],
  },
  {
    name: 'negative dimension',
    body: json(request({ i32: { shape: [-1] } })),
    message: [/input 'i32': shape\[0\] must be a non-negative integer, got -1/],
  },
  {
    name: 'fractional dimension',
    body: json(request({ i32: { shape: [1.5] } })),
    message: [/input 'i32': shape\[0\] must be a non-negative integer, got 1\.5/],
  },
  {
    name: 'string dimension',
    body: json(request({ i32: { shape: ['2'] } })),
    message: [/input 'i32': shape\[0\] must be a non-negative integer, got "2"/],
  },
  {
    name: 'null dimension',
    body: json(request({ u8: { shape: [1, null] } })),
    message: [/input 'u8': shape\[1\] must be a non-negative integer, got null/],
  },
  {
    name: 'dimension beyond 2^53',
    body: json(request({ i32: { shape: [2 ** 53] } })),
    message: [/input 'i32': shape\[0\] must be a non-negative integer, got 9007199254740992/],
  },
  {
    name: 'shape whose product overflows',
    body: json(request({ u8: { shape: [2 ** 31, 2 ** 31] } })),
    message: [/input 'u8': shape \[2147483648,2147483648\] holds more than 2147483647 elements/],
  },
  {
    name: 'shape whose product passes 2^53',
    body: json(request({ u8: { shape: [2 ** 53 - 1, 2 ** 53 - 1] } })),
    message: [/input 'u8': shape \[9007199254740991,9007199254740991\] holds more than 2147483647 elements/],
  },
  // Data layout
  {
    name: 'data missing',
    body: json(request({ i8: { data: undefined } })),
    message: [/input 'i8': data is missing/],
  },
  {
    name: 'data not an array',
    body: json(request({ i8: { data: 5 } })),
    message: [/input 'i8': data must be an array, flat or nested to the shape/],
  },
  {
    name: 'nested data not matching the shape',
    body: json(
      request({
        f32: {
          data: [
            [
              [1, 2],
              [3, 4],
            ],
          ],
        },
      }),
    ),
    message: [/input 'f32': nested data\[0\] has 2 items at axis 1; shape \[1,3,2\] needs 3/],
  },
  {
    name: 'nested data short at the last axis',
    body: json(request({ f32: { data: [[[1, 2], [3, 4], [5]]] } })),
    message: [/input 'f32': nested data\[0\]\[2\] has 1 items at axis 2; shape \[1,3,2\] needs 2/],
  },
  {
    name: 'nested data with a number where a row belongs',
    body: json(request({ f32: { data: [[[1, 2], 3, [5, 6]]] } })),
    message: [/input 'f32': data\[0\]\[1\] must be an array \(nested data follows shape \[1,3,2\]\)/],
  },
  {
    name: 'data nested deeper than the rank',
    body: json(
      request({
        f32: {
          data: [
            [
              [[1], 2],
              [3, 4],
              [5, 6],
            ],
          ],
        },
      }),
    ),
    message: [/input 'f32': data\[0\]\[0\]\[0\] nests deeper than the shape's rank 3/],
  },
  {
    name: 'a flat list holding an array',
    body: json(request({ f32: { data: [1, [2], 3, 4, 5, 6] } })),
    message: [/input 'f32': data\[1\] is \[2\]; FP32 needs a finite number/],
  },
  // Values
  {
    name: 'string in FP32',
    body: json(request({ f32: { data: [1, 2, 'x', 4, 5, 6] } })),
    message: [/input 'f32': data\[2\] is "x"; FP32 needs a finite number/],
  },
  {
    name: 'numeric string in FP32',
    body: json(request({ f32: { data: ['1', 2, 3, 4, 5, 6] } })),
    message: [/input 'f32': data\[0\] is "1"; FP32 needs a finite number/],
  },
  {
    name: 'null in FP32',
    body: json(request({ f32: { data: [1, 2, 3, null, 5, 6] } })),
    message: [/input 'f32': data\[3\] is null; FP32 needs a finite number/],
  },
  {
    name: 'object in FP32',
    body: json(request({ f32: { data: [1, 2, 3, 4, { v: 5 }, 6] } })),
    message: [/input 'f32': data\[4\] is \{"v":5\}; FP32 needs a finite number/],
  },
  {
    name: 'boolean in FP32',
    body: json(request({ f32: { data: [1, 2, 3, 4, 5, true] } })),
    message: [/input 'f32': data\[5\] is true; FP32 needs a finite number/],
  },
  {
    name: 'FP32 overflow (1e39)',
    body: json(request({ f32: { data: [1, 2, 3, 4, 5, 1e39] } })),
    message: [/input 'f32': data\[5\] is 1e\+39; FP32 needs a finite number within ±3\.4028235e38/],
  },
  {
    name: 'FP32 negative overflow',
    body: json(request({ f32: { data: [-1e39, 2, 3, 4, 5, 6] } })),
    message: [/input 'f32': data\[0\] is -1e\+39; FP32 needs a finite number within/],
  },
  {
    name: 'FP64 string',
    body: json(request({ f64: { data: [1, 2, 3, 'Infinity'] } })),
    message: [/input 'f64': data\[3\] is "Infinity"; FP64 needs a finite number/],
  },
  {
    name: 'FP16 beyond 65504',
    body: json(request({ f16: { data: [0, 70000] } })),
    message: [/input 'f16': data\[1\] is 70000; FP16 needs a finite number within ±65504/],
  },
  {
    name: 'INT8 above range',
    body: json(request({ i8: { data: [0, 128] } })),
    message: [/input 'i8': data\[1\] is 128; INT8 needs an integer in \[-128, 127\]/],
  },
  {
    name: 'INT8 below range',
    body: json(request({ i8: { data: [-129, 0] } })),
    message: [/input 'i8': data\[0\] is -129; INT8 needs an integer in \[-128, 127\]/],
  },
  {
    name: 'UINT8 above range',
    body: json(request({ u8: { data: [256, 0] } })),
    message: [/input 'u8': data\[0\] is 256; UINT8 needs an integer in \[0, 255\]/],
  },
  {
    name: 'UINT8 negative',
    body: json(request({ u8: { data: [0, -1] } })),
    message: [/input 'u8': data\[1\] is -1; UINT8 needs an integer in \[0, 255\]/],
  },
  {
    name: 'INT16 above range',
    body: json(request({ i16: { data: [32768, 0] } })),
    message: [/input 'i16': data\[0\] is 32768; INT16 needs an integer in \[-32768, 32767\]/],
  },
  {
    name: 'INT32 above range',
    body: json(request({ i32: { data: [0, 2 ** 31] } })),
    message: [/input 'i32': data\[1\] is 2147483648; INT32 needs an integer in \[-2147483648, 2147483647\]/],
  },
  {
    name: 'INT32 below range',
    body: json(request({ i32: { data: [-(2 ** 31) - 1, 0] } })),
    message: [/input 'i32': data\[0\] is -2147483649; INT32 needs an integer/],
  },
  {
    name: 'INT32 fractional',
    body: json(request({ i32: { data: [1, 1.5] } })),
    message: [/input 'i32': data\[1\] is 1\.5; INT32 needs an integer in/],
  },
  {
    name: 'INT32 as a string',
    body: json(request({ i32: { data: ['1', 2] } })),
    message: [/input 'i32': data\[0\] is "1"; INT32 needs an integer/],
  },
  {
    name: 'INT64 beyond 2^53 as a JSON number (not rounded)',
    body: '{"inputs":[{"name":"i64","datatype":"INT64","shape":[1],"data":[9007199254740993]}]}',
    message: [/input 'i64': data\[0\] is 9007199254740992; INT64 needs an integer: a safe JSON number/],
  },
  {
    name: 'INT64 of exactly 2^53 as a JSON number',
    body: json(request({ i64: { data: [1, 2 ** 53] } })),
    message: [/input 'i64': data\[1\] is 9007199254740992; INT64 needs an integer/],
  },
  {
    name: 'INT64 fractional',
    body: json(request({ i64: { data: [1, 2.5] } })),
    message: [/input 'i64': data\[1\] is 2\.5; INT64 needs an integer/],
  },
  {
    name: 'INT64 string above int64',
    body: json(request({ i64: { data: ['9223372036854775808', 0] } })),
    message: [/input 'i64': data\[0\] is "9223372036854775808"; INT64 needs an integer: .*decimal string within int64/],
  },
  {
    name: 'INT64 string below int64',
    body: json(request({ i64: { data: [0, '-9223372036854775809'] } })),
    message: [/input 'i64': data\[1\] is "-9223372036854775809"; INT64 needs/],
  },
  {
    name: 'INT64 string of 20 digits',
    body: json(request({ i64: { data: ['10000000000000000000', 0] } })),
    message: [/input 'i64': data\[0\] is "10000000000000000000"; INT64 needs/],
  },
  {
    name: 'INT64 string in exponent form',
    body: json(request({ i64: { data: ['1e3', 0] } })),
    message: [/input 'i64': data\[0\] is "1e3"; INT64 needs/],
  },
  {
    name: 'INT64 string with spaces',
    body: json(request({ i64: { data: [' 12', 0] } })),
    message: [/input 'i64': data\[0\] is " 12"; INT64 needs/],
  },
  {
    name: 'INT64 empty string',
    body: json(request({ i64: { data: ['', 0] } })),
    message: [/input 'i64': data\[0\] is ""; INT64 needs/],
  },
  {
    name: 'BOOL as 1',
    body: json(request({ flag: { data: [true, 1] } })),
    message: [/input 'flag': data\[1\] is 1; BOOL needs true or false/],
  },
  {
    name: 'BOOL as a string',
    body: json(request({ flag: { data: ['true', false] } })),
    message: [/input 'flag': data\[0\] is "true"; BOOL needs true or false/],
  },
  // Outputs
  {
    name: 'unknown requested output',
    body: json(request({}, { outputs: [{ name: 'f32_out' }, { name: 'nope' }] })),
    message: [/unknown output 'nope'; the model gives 'flag_out', 'u8_out', /],
  },
  {
    name: 'output asked for twice',
    body: json(request({}, { outputs: [{ name: 'f32_out' }, { name: 'f32_out' }] })),
    message: [/output 'f32_out' is asked for more than once/],
  },
  // Hostile nesting: a 400, never a crash or a 500
  {
    name: '100000 unclosed [',
    body: '['.repeat(100_000),
    code: 'malformed_json',
    message: [/not valid JSON/],
  },
  { name: 'body nested 100000 deep', body: deep(100_000), message: [/body: .*expected object/] },
  {
    name: 'inputs nested 100000 deep',
    body: `{"inputs":${deep(100_000)}}`,
    message: [/inputs\[0\]: .*expected object/],
  },
  {
    name: 'a dimension nested 100000 deep',
    body: `{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,3,${deep(100_000)}],"data":[1,2,3,4,5,6]}]}`,
    message: [/input 'f32': shape\[2\] must be a non-negative integer, got \[\[/],
  },
  {
    name: 'a value nested 100000 deep in flat data',
    body: `{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,3,2],"data":[1,${deep(100_000)},3,4,5,6]}]}`,
    message: [/input 'f32': data\[1\] is \[\[.*; FP32 needs a finite number/],
  },
  {
    name: 'nested data 100000 deep',
    body: `{"inputs":[{"name":"f32","datatype":"FP32","shape":[1,3,2],"data":${deep(100_000)}}]}`,
    message: [/input 'f32': data\[0\]\[0\] nests deeper than the shape's rank 3|has 1 items at axis 1/],
  },
];

interface SuccessCase {
  readonly name: string;
  readonly body: string;
  readonly check: (outputs: Record<string, Output>) => void;
}

/** Requests at the edges that must be served, with what must come back. */
const ACCEPTED: readonly SuccessCase[] = [
  {
    name: 'dynamic dimension of any size',
    body: json(request({ f32: { shape: [4, 3, 2], data: Array.from({ length: 24 }, (_, i) => i / 4) } })),
    check: (out) => {
      assert.deepEqual(out['f32_out']!.shape, [4, 3, 2]);
      assert.deepEqual(
        out['f32_out']!.data,
        Array.from({ length: 24 }, (_, i) => i / 4),
      );
    },
  },
  {
    name: 'all-dynamic dimensions',
    body: json(request({ u8: { shape: [3, 1], data: [7, 8, 9] } })),
    check: (out) => {
      assert.deepEqual(out['u8_out']!.shape, [3, 1]);
      assert.deepEqual(out['u8_out']!.data, [7, 8, 9]);
    },
  },
  {
    name: 'nested data matching the shape',
    body: json(
      request({
        f32: {
          shape: [2, 3, 2],
          data: [
            [
              [1, 2],
              [3, 4],
              [5, 6],
            ],
            [
              [7, 8],
              [9, 10],
              [11, 12],
            ],
          ],
        },
        f64: {
          data: [
            [1.5, 2.5],
            [3.5, 4.5],
          ],
        },
      }),
    ),
    check: (out) => {
      assert.deepEqual(out['f32_out']!.shape, [2, 3, 2]);
      assert.deepEqual(out['f32_out']!.data, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
      assert.deepEqual(out['f64_out']!.data, [1.5, 2.5, 3.5, 4.5]);
    },
  },
  {
    name: 'INT64 decimal strings are exact, both ways',
    body: json(
      request({
        i64: { shape: [5], data: ['9007199254740993', '-9007199254740993', '9223372036854775807', '42', -7] },
      }),
    ),
    check: (out) => {
      assert.equal(out['i64_out']!.datatype, 'INT64');
      assert.deepEqual(out['i64_out']!.data, ['9007199254740993', '-9007199254740993', '9223372036854775807', 42, -7]);
    },
  },
  {
    name: 'INT64 safe JSON numbers at ±(2^53−1)',
    body: json(request({ i64: { data: [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER] } })),
    check: (out) => assert.deepEqual(out['i64_out']!.data, [Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER]),
  },
  {
    name: 'BOOL true and false',
    body: json(request({ flag: { data: [false, true] } })),
    check: (out) => {
      assert.equal(out['flag_out']!.datatype, 'BOOL');
      assert.deepEqual(out['flag_out']!.data, [false, true]);
    },
  },
  {
    name: 'FP16 round-trips within half precision',
    body: json(request({ f16: { shape: [7], data: [0.1, -3.14159, 1e-7, 65504, -0.000061, 2049, 0] } })),
    check: (out) => {
      const sent = [0.1, -3.14159, 1e-7, 65504, -0.000061, 2049, 0];
      const got = out['f16_out']!.data as number[];
      assert.equal(out['f16_out']!.datatype, 'FP16');
      assert.equal(got.length, sent.length);
      sent.forEach((value, i) => {
        // Half precision keeps 11 significant bits: relative error ≤ 2^-11, absolute ≤ 2^-25 among subnormals.
        const tolerance = Math.max(Math.abs(value) * 2 ** -11, 2 ** -25);
        assert.ok(Math.abs(got[i]! - value) <= tolerance, `f16[${i}]: sent ${value}, got ${got[i]}`);
        assert.equal(got[i], fromFloat16Bits(toFloat16Bits(value)), `f16[${i}] is the nearest half`);
      });
      assert.notEqual(got[0], 0.1, 'a value with no exact half is rounded, so this is a real round trip');
    },
  },
  {
    name: 'one requested output',
    body: json(request({}, { id: 'req-7', outputs: [{ name: 'i64_out' }] })),
    check: (out) => assert.deepEqual(Object.keys(out), ['i64_out']),
  },
  {
    name: 'an empty dynamic dimension',
    body: json(request({ i32: { shape: [0], data: [] } })),
    check: (out) => {
      assert.deepEqual(out['i32_out']!.shape, [0]);
      assert.deepEqual(out['i32_out']!.data, []);
    },
  },
];

let runtime: Runtime;
let server: TestServer;

before(async () => {
  const modelUri = writeTempModel(identityModel(MODEL_INPUTS.map(({ name, type, dims }) => ({ name, type, dims }))));
  runtime = await startRuntime({ apiName: MODEL, modelUri, requestTimeoutMs: 10_000 });
  server = await startServer(runtime);
});

after(async () => {
  await server?.close();
});

const transports: readonly [string, () => Transport][] = [
  ['node:http', () => httpTransport(server.url)],
  ['Lambda (API Gateway v2 event)', () => lambdaTransport(createLambdaHandler(runtime))],
];

test('the model metadata lists every datatype, with -1 for dynamic dimensions', async () => {
  const reply = await httpTransport(server.url)({ path: `/v2/models/${MODEL}` });
  assert.equal(reply.status, 200, reply.text);
  const meta = reply.json<{ inputs: { name: string; datatype: string; shape: number[] }[] }>();
  assert.deepEqual(
    meta.inputs.map((i) => [i.name, i.datatype, i.shape]),
    MODEL_INPUTS.map(({ name, dims }) => [
      name,
      VALID[name].datatype,
      dims.map((d) => (typeof d === 'number' ? d : -1)),
    ]),
  );
});

for (const [transportName, transportOf] of transports) {
  describe(`OIP validation through ${transportName}`, () => {
    let send: Transport;
    before(() => {
      send = transportOf();
    });

    test('a valid request round-trips every datatype exactly', async () => {
      await assertServesValid(send);
    });

    for (const refusal of REFUSALS) {
      test(`refuses: ${refusal.name}`, async () => {
        assertRefused(
          await send({ path: INFER, body: refusal.body }),
          refusal.code ?? 'invalid_input',
          refusal.message,
        );
        await assertServesValid(send);
      });
    }

    for (const accepted of ACCEPTED) {
      test(`accepts: ${accepted.name}`, async () => {
        accepted.check(outputsOf(await send({ path: INFER, body: accepted.body })));
        await assertServesValid(send);
      });
    }

    test('the request id in an OIP response is the one sent', async () => {
      const reply = await send({ path: INFER, body: json(request({}, { id: 'abc-123' })) });
      assert.equal(reply.status, 200, reply.text);
      assert.equal(reply.json<InferResponse>().id, 'abc-123');
    });

    test('INT64 beyond 2^53 keeps every digit in the response text', async () => {
      const reply = await send({
        path: INFER,
        body: json(request({ i64: { shape: [1], data: ['9007199254740993'] } })),
      });
      assert.equal(reply.status, 200, reply.text);
      assert.match(reply.text, /"name":"i64_out","datatype":"INT64","shape":\[1\],"data":\["9007199254740993"\]/);
    });

    test('POST / serves the same Open Inference Protocol when there is no predictor', async () => {
      assertRefused(await send({ path: '/', body: json(request({ i8: { data: [0, 128] } })) }), 'invalid_input', [
        /input 'i8': data\[1\] is 128; INT8 needs an integer in \[-128, 127\]/,
      ]);
      outputsOf(await send({ path: '/', body: VALID_BODY }));
    });
  });
}
