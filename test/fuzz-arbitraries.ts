/**
 * What the fuzz suites throw at the request pipeline (fast-check arbitraries), and the property every answer must
 * hold: a correct 200, or a JSON 4xx in the contract's error shape. Both transports (Lambda events, raw sockets)
 * draw from here, so a hostile input found through one is tried through the other.
 */
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ERROR_STATUS } from '../lib/contract.js';
import { byProfile } from './profile.js';
import { contractError, loadDigitsExpected, type Call, type Reply } from './helpers.js';

export const API = 'digits';
export const INFER = `/v2/models/${API}/infer`;
const VALID_IMAGE = loadDigitsExpected().images[0]!;

/** Runs per property: seconds in `npm test`, the figures of the closing note under `npm run soak`. */
export function fuzzRuns(short: number): number {
  return byProfile({ short, long: short * 20 });
}

/**
 * fast-check's seed: fixed in the short profile so `npm test` is reproducible (a red CI replays exactly), fresh per
 * run in the long one (new inputs every soak), or ARCLIGHT_FUZZ_SEED to replay a failure. fast-check reports the seed.
 */
export const FUZZ_SEED: number | undefined =
  process.env['ARCLIGHT_FUZZ_SEED'] !== undefined
    ? Number(process.env['ARCLIGHT_FUZZ_SEED'])
    : byProfile<number | undefined>({ short: 20261124, long: undefined });

/** fast-check parameters every fuzz property shares. */
export function fuzzParameters(runs: number): { numRuns: number; seed?: number; includeErrorInReport: true } {
  return { numRuns: runs, ...(FUZZ_SEED === undefined ? {} : { seed: FUZZ_SEED }), includeErrorInReport: true };
}

/** The digits model's one valid OIP request, and the digits predictor's: what must succeed after every hostile one. */
export const VALID_INFER: Call = {
  path: INFER,
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 8], data: VALID_IMAGE }] }),
};
export const VALID_PREDICT: Call = {
  path: '/',
  headers: { 'content-type': 'application/json' },
  body: JSON.stringify({ pixels: VALID_IMAGE.map((p) => p * 16) }),
};

/** Bodies too big to shrink or print: built once, referred to by name. */
const ENORMOUS: Readonly<Record<string, string>> = {
  'array of 1.5M zeros (3 MB)': `{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,8],"data":[${'0,'.repeat(1_500_000)}0]}]}`,
  'nested 100k deep': `{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,8],"data":${'['.repeat(100_000)}${']'.repeat(100_000)}}]}`,
  'object nested 50k deep': `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}`,
  '100k inputs': `{"inputs":[${Array.from({ length: 100_000 }, (_, i) => `{"name":"i${i}","datatype":"FP32","shape":[1],"data":[0]}`).join(',')}]}`,
  '1M-character input name': `{"inputs":[{"name":"${'x'.repeat(1_000_000)}","datatype":"FP32","shape":[1],"data":[0]}]}`,
  'just over 6 MiB': `{"pad":"${'x'.repeat(6 * 1024 * 1024)}"}`,
};

/** JSON numbers that JSON.stringify cannot write (1e999 parses to Infinity), spliced into the text. */
const LITERAL_NUMBERS = [
  '1e999',
  '-1e999',
  '1e-999',
  '-0',
  '0.0000000000000000000001',
  '3.4028236e38',
  '123456789012345678901234567890',
];

const dimension: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: -3, max: 70 }) },
  fc.constantFrom(2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, Number.MAX_SAFE_INTEGER, 1e308, 0.5, 1.5, -0, -1, -(2 ** 31)),
  fc.constantFrom('8', '', 'NaN', null, true, [8], { n: 8 }),
);

const shape: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constant([1, 1, 8, 8]) },
  { weight: 3, arbitrary: fc.array(dimension, { maxLength: 6 }) },
  // Products past 2^31, 2^32 and 2^53: overflow of a 32-bit count, or of a double's integers.
  fc.constantFrom(
    [65536, 65536, 1, 1],
    [2 ** 30, 4, 1, 1],
    [2 ** 26, 2 ** 26, 8, 8],
    [Number.MAX_SAFE_INTEGER, 1, 8, 8],
    [0, 1, 8, 8],
    [2, 1, 8, 8],
    [1, 1, 8],
    [1, 1, 8, 8, 1],
  ),
  fc.anything({ maxDepth: 2 }),
);

const element: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true, min: -20, max: 20 }) },
  fc.double(),
  fc.integer(),
  fc.constantFrom('NaN', 'Infinity', '-Infinity', '1', '9007199254740993', '', true, false, null, 3.5e38, -3.5e38),
  fc.string({ maxLength: 8 }),
  fc.object({ maxDepth: 1 }),
  fc.array(fc.integer(), { maxLength: 3 }),
);

const data: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: fc.constant(VALID_IMAGE) },
  { weight: 3, arbitrary: fc.array(element, { minLength: 0, maxLength: 130 }) },
  fc.array(element, { minLength: 64, maxLength: 64 }),
  fc.array(fc.array(fc.array(element, { maxLength: 9 }), { maxLength: 9 }), { maxLength: 2 }),
  fc.constant([[[VALID_IMAGE.slice(0, 8)]]]),
  fc.anything({ maxDepth: 3 }),
);

const datatype: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: fc.constant('FP32') },
  fc.constantFrom('BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP64', 'fp32', 'BF16', 'STRING', ''),
  fc.string({ maxLength: 6 }),
  fc.anything({ maxDepth: 1 }),
);

const inputName: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 5, arbitrary: fc.constant('image') },
  fc.constantFrom('__proto__', 'constructor', 'toString', 'hasOwnProperty', 'logits', 'IMAGE', ' image', ''),
  fc.string({ maxLength: 10 }),
  fc.anything({ maxDepth: 1 }),
);

const parameters: fc.Arbitrary<unknown> = fc.oneof(
  fc.record(
    {
      binary_data_size: fc.oneof(fc.integer({ min: -4, max: 300 }), fc.constantFrom(256, 2 ** 53, 1.5, '256', null)),
      binary_data_output: fc.anything({ maxDepth: 0 }),
      binary_data: fc.anything({ maxDepth: 0 }),
    },
    { requiredKeys: [] },
  ),
  fc.anything({ maxDepth: 1 }),
);

const input: fc.Arbitrary<unknown> = fc.record(
  { name: inputName, datatype, shape, data, parameters },
  { requiredKeys: ['name', 'datatype', 'shape'] },
);

/** OIP inference documents: mostly nearly right, wrong in one or several places. */
export const oipDocument: fc.Arbitrary<unknown> = fc.oneof(
  {
    weight: 6,
    arbitrary: fc.record(
      {
        inputs: fc.oneof(
          { weight: 4, arbitrary: fc.array(input, { minLength: 1, maxLength: 3 }) },
          // The same input twice, valid both times.
          fc.constant([
            JSON.parse(VALID_INFER.body as string).inputs[0],
            JSON.parse(VALID_INFER.body as string).inputs[0],
          ]),
          fc.anything({ maxDepth: 2 }),
        ),
        outputs: fc.oneof(
          fc.constant([{ name: 'logits' }]),
          fc.constant([{ name: 'logits' }, { name: 'logits' }]),
          fc.array(fc.record({ name: fc.oneof(fc.constant('logits'), fc.string()), parameters }), { maxLength: 3 }),
          fc.anything({ maxDepth: 2 }),
        ),
        id: fc.oneof(fc.string({ maxLength: 20 }), fc.anything({ maxDepth: 1 })),
        parameters,
      },
      { requiredKeys: ['inputs'] },
    ),
  },
  fc.anything({ maxDepth: 3 }),
);

/** A document's JSON text, sometimes with a number JSON.stringify cannot write spliced in where a number was. */
const oipText: fc.Arbitrary<string> = fc
  .tuple(oipDocument, fc.option(fc.constantFrom(...LITERAL_NUMBERS), { nil: undefined }))
  .map(([doc, literal]) => {
    const text = JSON.stringify(doc) ?? 'undefined';
    return literal === undefined ? text : text.replace(/(?<=[[,:])-?\d+(\.\d+)?(e[+-]?\d+)?(?=[\],}])/i, literal);
  });

/** Request bodies: OIP documents, the digits predictor's documents, JSON of any kind, text, bytes, the enormous. */
export const body: fc.Arbitrary<string | Buffer> = fc.oneof(
  { weight: 8, arbitrary: oipText },
  {
    weight: 2,
    arbitrary: fc
      .record(
        {
          pixels: fc.oneof(fc.array(element, { minLength: 64, maxLength: 64 }), data),
          image: fc.oneof(
            fc.array(fc.array(element, { minLength: 8, maxLength: 8 }), { minLength: 8, maxLength: 8 }),
            data,
          ),
          images: fc.oneof(fc.array(data, { maxLength: 3 }), fc.anything({ maxDepth: 2 })),
        },
        { requiredKeys: [] },
      )
      .map((doc) => JSON.stringify(doc)),
  },
  fc.jsonValue({ maxDepth: 3 }).map((value) => JSON.stringify(value)),
  fc.string({ maxLength: 200, unit: 'binary' }),
  fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
  fc.constantFrom(
    '',
    ' ',
    'null',
    '{',
    '{"inputs":',
    '[]',
    '{"inputs":[]}',
    'NaN',
    '{"inputs":[{"name":"image","datatype":"FP32","shape":[1,1,8,8],"data":[NaN]}]}',
    '\u0000',
    '\ufeff{}',
  ),
  fc.constantFrom(...Object.keys(ENORMOUS)).map((name) => ENORMOUS[name]!),
);

/** Content types: JSON (and its look-alikes), text, binary, malformed, none. */
export const contentType: fc.Arbitrary<string | undefined> = fc.oneof(
  { weight: 6, arbitrary: fc.constant('application/json') },
  fc.constantFrom(
    'application/json; charset=utf-8',
    'APPLICATION/JSON',
    'application/problem+json',
    'application/jsonx',
    'text/plain',
    'text/json',
    'application/octet-stream',
    'multipart/form-data; boundary=x',
    'application/x-www-form-urlencoded',
    ';',
    '',
    '*/*',
  ),
  fc.constant(undefined),
  fc.string({ maxLength: 30 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, '')),
);

/** Paths the API answers on, and some it does not. */
export const path: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constant(INFER) },
  { weight: 3, arbitrary: fc.constant('/') },
  fc.constantFrom(
    '/invocations',
    '/v2/models/other/infer',
    '/v2/models/%ZZ/infer',
    `/v2/models/${API}/infer/`,
    '/v2/health/ready',
    '/v2/health/live',
    '/v2',
    `/v2/models/${API}`,
    '/ping',
    '//',
    '/v2/models//infer',
    `/v2/models/${API}/infer?x=1&x=2`,
    '/?a=%ZZ',
  ),
  fc.webPath(),
);

export const method: fc.Arbitrary<string> = fc.oneof(
  { weight: 8, arbitrary: fc.constant('POST') },
  fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD', 'post', 'TRACE', 'X-CUSTOM'),
);

/** Header values an HTTP client can send (no control characters); a header name is a token. */
export const headerName = fc.stringMatching(/^[a-z][a-z0-9-]{0,20}$/);
const headerValue = fc.string({ maxLength: 40 }).map((s) => s.replace(/[^\t\x20-\x7e]/g, '').trim());

export const extraHeaders: fc.Arbitrary<Record<string, string>> = fc
  .record(
    {
      'inference-header-content-length': fc.oneof(
        fc.nat({ max: 400 }).map(String),
        fc.constantFrom('-1', '1e3', '0x10', ' 10 ', '99999999999999999999', ''),
      ),
      'x-request-id': fc.oneof(
        fc.stringMatching(/^[A-Za-z0-9._:-]{1,128}$/),
        headerValue,
        fc.constantFrom('x'.repeat(4000), 'a"}{"level":"ERROR', '../../etc/passwd'),
      ),
      accept: fc.constantFrom('application/json', 'text/html', '*/*'),
      'content-encoding': fc.constantFrom('gzip', 'br', 'identity'),
      random: fc.dictionary(headerName, headerValue, { maxKeys: 4 }),
    },
    { requiredKeys: [] },
  )
  .map(({ random, ...named }) => ({ ...(random ?? {}), ...named }));

/** Whole calls: method, path, headers, content type and body, each drawn on its own. */
export const call: fc.Arbitrary<Call> = fc
  .record({ method, path, headers: extraHeaders, contentType, body: fc.option(body, { freq: 10, nil: undefined }) })
  .map(({ method, path, headers, contentType, body }) => ({
    method,
    path,
    headers: contentType === undefined ? headers : { ...headers, 'content-type': contentType },
    ...(body === undefined ? {} : { body }),
  }));

/** A call's body for a failure message, cut short (the enormous ones would drown the report). */
export function describeCall(c: Call): string {
  const text = c.body === undefined ? '' : c.body.toString();
  return `${c.method ?? ''} ${c.path} ${JSON.stringify(c.headers ?? {}).slice(0, 300)} ${JSON.stringify(text.slice(0, 300))}${text.length > 300 ? `… (${text.length} chars)` : ''}`;
}

/**
 * The property: a 200 that is right for its route (inference: logits for each image), or a 4xx whose body is
 * exactly `{"error":"<message>","code","requestId"}` with the code's own status and the id in `x-request-id`.
 */
export function assertContractAnswer(reply: Reply, c: Call): void {
  const where = `${describeCall(c)} → ${reply.status} ${reply.text.slice(0, 300)}`;
  if (reply.status === 200) {
    assertCorrectSuccess(reply, c, where);
    return;
  }
  assert.ok(reply.status >= 400 && reply.status < 500, `not a 200 or 4xx: ${where}`);
  assert.match(reply.headers['content-type'] ?? '', /^application\/json/, where);
  const { code, message, requestId } = contractError(reply.json());
  assert.ok(Object.hasOwn(ERROR_STATUS, code), `unknown code ${code}: ${where}`);
  assert.equal(ERROR_STATUS[code as keyof typeof ERROR_STATUS], reply.status, where);
  assert.ok(typeof message === 'string' && message.length > 0 && message.length <= 2000, `message: ${where}`);
  assert.match(requestId, /^[A-Za-z0-9._:=+/-]{1,128}$/, where);
  if (reply.headers['x-request-id'] !== undefined) assert.equal(reply.headers['x-request-id'], requestId, where);
}

interface InferResponse {
  model_name: string;
  outputs: { name: string; datatype: string; shape: number[]; data: unknown[] }[];
}

function assertCorrectSuccess(reply: Reply, c: Call, where: string): void {
  if (reply.headers['content-type'] !== 'application/json') {
    // Binary tensor output: the JSON header's length is announced, the raw logits follow.
    const headerLength = Number(reply.headers['inference-header-content-length']);
    assert.ok(Number.isInteger(headerLength) && headerLength <= reply.body.length, where);
    JSON.parse(reply.body.subarray(0, headerLength).toString('utf8'));
    return;
  }
  const value = reply.json<Record<string, unknown>>();
  const isInference = (c.method ?? 'POST').toUpperCase() === 'POST';
  if (!isInference) return;
  if ('outputs' in value) {
    const { outputs, model_name } = value as unknown as InferResponse;
    assert.equal(model_name, API, where);
    assert.equal(outputs.length, 1, where);
    const [images, classes] = outputs[0]!.shape;
    assert.equal(classes, 10, where);
    assert.equal(outputs[0]!.data.length, images! * 10, where);
  } else {
    // The digits predictor: one prediction, or a list of them.
    for (const prediction of Array.isArray(value) ? value : [value]) {
      const { digit, probabilities } = prediction as { digit: number; probabilities: number[] };
      assert.ok(Number.isInteger(digit) && digit >= 0 && digit < 10, where);
      assert.equal(probabilities.length, 10, where);
    }
  }
}
