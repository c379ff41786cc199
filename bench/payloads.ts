/**
 * Request payloads shared by scenarios: model inputs, Open Inference Protocol bodies (JSON and the binary
 * tensor extension) and API Gateway HTTP API (payload 2.0) events as API Gateway delivers them.
 */
import { readFileSync } from 'node:fs';
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { BINARY_HEADER } from '../lib/runtime/codec/oip.js';

/** A model the benchmarks run, with one input tensor. */
export interface BenchModel {
  readonly key: string;
  readonly path: string;
  readonly inputName: string;
  readonly shape: readonly number[];
}

export const DIGITS: BenchModel = {
  key: 'digits',
  path: 'models/digits.onnx',
  inputName: 'image',
  shape: [1, 1, 8, 8],
};
export const MOBILENET: BenchModel = {
  key: 'mobilenet',
  path: 'models/mobilenet_v3_small.onnx',
  inputName: 'input',
  shape: [1, 3, 224, 224],
};

/** A realistic input: a real 8×8 digit for digits, an ImageNet-normalised pseudo-random image otherwise. */
export function inputFor(model: BenchModel): Float32Array {
  if (model.key === DIGITS.key) {
    const fixture = JSON.parse(readFileSync('test/fixtures/digits.expected.json', 'utf8')) as { images: number[][] };
    return Float32Array.from(fixture.images[0]!);
  }
  return normalisedImage(model.shape);
}

/** Pixels 0..255 from a fixed-seed generator, normalised per channel as torchvision does for ImageNet. */
function normalisedImage(shape: readonly number[]): Float32Array {
  const [, channels = 3, height = 1, width = 1] = shape;
  const mean = [0.485, 0.456, 0.406];
  const std = [0.229, 0.224, 0.225];
  const data = new Float32Array(channels * height * width);
  let seed = 0x2545f491;
  for (let c = 0; c < channels; c++) {
    for (let i = 0; i < height * width; i++) {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const pixel = seed >>> 24;
      data[c * height * width + i] = (pixel / 255 - mean[c % 3]!) / std[c % 3]!;
    }
  }
  return data;
}

/** An OIP request with the tensor as flat JSON `data`, as most clients send it. */
export function oipJsonBody(model: BenchModel, data: Float32Array): string {
  return JSON.stringify({
    inputs: [{ name: model.inputName, shape: model.shape, datatype: 'FP32', data: Array.from(data) }],
  });
}

/** An OIP request with the binary tensor extension: JSON header, then the raw little-endian floats; outputs binary too. */
export function oipBinaryBody(
  model: BenchModel,
  data: Float32Array,
): { body: Buffer; headers: Record<string, string> } {
  const bytes = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  const header = Buffer.from(
    JSON.stringify({
      inputs: [
        {
          name: model.inputName,
          shape: model.shape,
          datatype: 'FP32',
          parameters: { binary_data_size: bytes.length },
        },
      ],
      parameters: { binary_data_output: true },
    }),
  );
  return {
    body: Buffer.concat([header, bytes]),
    headers: { 'content-type': 'application/octet-stream', [BINARY_HEADER]: String(header.length) },
  };
}

const API_ID = 'a1b2c3d4e5';
const USER_AGENT = 'python-requests/2.32.3';
const SOURCE_IP = '203.0.113.7';

/**
 * A `POST /` event as an HTTP API's `$default` stage delivers it: header names lower-cased, the usual
 * forwarding headers, binary bodies base64-encoded with `isBase64Encoded: true`.
 */
export function apiGatewayV2Event(
  body: string | Buffer,
  headers: Readonly<Record<string, string>>,
  requestId = 'Jt0bZhx4IAMEJbQ=',
): APIGatewayProxyEventV2 {
  const binary = typeof body !== 'string';
  const length = binary ? body.length : Buffer.byteLength(body);
  const now = Date.now();
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath: '/',
    rawQueryString: '',
    headers: {
      accept: '*/*',
      'accept-encoding': 'gzip, deflate',
      'content-length': String(length),
      host: `${API_ID}.execute-api.us-east-1.amazonaws.com`,
      'user-agent': USER_AGENT,
      'x-amzn-trace-id': 'Root=1-67a0c3f1-0a1b2c3d4e5f60718293a4b5',
      'x-forwarded-for': SOURCE_IP,
      'x-forwarded-port': '443',
      'x-forwarded-proto': 'https',
      ...headers,
    },
    requestContext: {
      accountId: '123456789012',
      apiId: API_ID,
      domainName: `${API_ID}.execute-api.us-east-1.amazonaws.com`,
      domainPrefix: API_ID,
      http: { method: 'POST', path: '/', protocol: 'HTTP/1.1', sourceIp: SOURCE_IP, userAgent: USER_AGENT },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: new Date(now).toUTCString(),
      timeEpoch: now,
    },
    body: binary ? body.toString('base64') : body,
    isBase64Encoded: binary,
  };
}

/** The parts of a Lambda context the handler reads: a request id and the time left (a 30 s function). */
export function lambdaContext(): Partial<Context> {
  return {
    awsRequestId: '6f0e8c52-3b8d-4d0e-9a51-2f4c8e7d1a90',
    functionName: 'arclight-bench',
    memoryLimitInMB: '2048',
    getRemainingTimeInMillis: () => 30_000,
  };
}
