/**
 * `arclight predict` against protected APIs, as a user runs it (the built CLI, a child process) over real loopback
 * sockets: SigV4 signatures verified on arrival by the AWS SDK's signer, JWT bearer tokens, one-line errors without
 * credentials or token, and image files turned into the model's tensor by a real runtime serving MobileNet.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import jpeg from 'jpeg-js';
import { PNG } from 'pngjs';
import { IMAGENET_MEAN, IMAGENET_STD } from '../../lib/cli/image-tensor.js';
import {
  MOBILENET_ONNX,
  STACK_FRAME,
  runCli,
  startRuntime,
  startServer,
  stderrLines,
  type CliResult,
  type TestServer,
} from '../helpers.js';
import { expectedAuthorization, type ReceivedRequest } from './aws/sigv4-verify.js';

const CREDENTIALS = {
  accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLE/SESSION+TOKEN==',
};
/** An environment where the standard chain finds nothing: no variables, no files, no instance metadata. */
const NO_CREDENTIALS = {
  AWS_ACCESS_KEY_ID: '',
  AWS_SECRET_ACCESS_KEY: '',
  AWS_SESSION_TOKEN: '',
  AWS_PROFILE: '',
  AWS_CONFIG_FILE: '/nonexistent/arclight-test-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/arclight-test-credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '',
  AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
  AWS_WEB_IDENTITY_TOKEN_FILE: '',
  ARCLIGHT_TOKEN: '',
};
const WITH_CREDENTIALS = {
  ...NO_CREDENTIALS,
  AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
  AWS_SESSION_TOKEN: CREDENTIALS.sessionToken,
};

/** A loopback API that records what arrives; `GET /` says it has a custom predictor. */
let recorder: { url: string; server: Server; received: ReceivedRequest[]; status: number; answer: string };
let mobilenet: TestServer;
let dir: string;

before(async () => {
  const received: ReceivedRequest[] = [];
  const server = createServer((request: IncomingMessage, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      received.push({
        method: request.method!,
        target: request.url!,
        headers: request.headers,
        body: Buffer.concat(chunks),
      });
      if (request.method === 'GET') {
        response.writeHead(200, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ name: 'recorder', predictor: 'custom' }));
        return;
      }
      response.writeHead(recorder.status, { 'content-type': 'application/json' });
      response.end(recorder.answer);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  recorder = { url: `http://127.0.0.1:${port}`, server, received, status: 200, answer: '{"ok":true}' };
  mobilenet = await startServer(await startRuntime({ modelUri: MOBILENET_ONNX, apiName: 'mobilenet' }));
  dir = await mkdtemp(join(tmpdir(), 'arclight-predict-auth-'));
});

after(async () => {
  await new Promise((resolve) => recorder?.server.close(resolve));
  await mobilenet?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, `exit code ${result.code}; stderr:\n${result.stderr}`);
  const lines = stderrLines(result.stderr);
  assert.equal(lines.length, 1, `one line on stderr, got:\n${lines.join('\n')}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK_FRAME);
}

/** Runs `predict` and returns what the recorder received from it. */
async function predictRecorded(
  args: string[],
  env: Record<string, string>,
): Promise<{
  result: CliResult;
  requests: ReceivedRequest[];
}> {
  const before = recorder.received.length;
  const result = await runCli(['predict', ...args], { env });
  return { result, requests: recorder.received.slice(before) };
}

describe('arclight predict: SigV4 for IAM APIs', { concurrency: false }, () => {
  test("--auth iam signs with the chain's credentials; the signature verifies on arrival", async () => {
    const body = JSON.stringify({ pixels: [1, 2, 3] });
    const { result, requests } = await predictRecorded(
      [`${recorder.url}/prod/?trace=1&a=b`, '--auth', 'iam', '--region', 'eu-west-1', '--data', body],
      WITH_CREDENTIALS,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '{"ok":true}\n');
    assert.equal(requests.length, 1);
    const request = requests[0]!;
    assert.equal(request.body.toString(), body);
    const authorization = String(request.headers['authorization']);
    assert.match(
      authorization,
      /^AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE\/\d{8}\/eu-west-1\/execute-api\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token, Signature=[0-9a-f]{64}$/,
    );
    assert.equal(request.headers['x-amz-security-token'], CREDENTIALS.sessionToken);
    assert.equal(authorization, await expectedAuthorization(request, CREDENTIALS, 'eu-west-1'));
    // The verification is not vacuous: the same request with another secret does not verify.
    assert.notEqual(
      authorization,
      await expectedAuthorization(request, { ...CREDENTIALS, secretAccessKey: 'another' }, 'eu-west-1'),
    );
  });

  test('an image to a custom predictor: signed GET / (to learn so), then the bytes as image/png, both verify', async () => {
    const png = join(dir, 'red.png');
    await writeFile(png, solidPng(16, 16, [255, 0, 0]));
    const { result, requests } = await predictRecorded(
      [`${recorder.url}/`, '--auth', 'iam', '--region', 'us-west-2', '--file', png],
      WITH_CREDENTIALS,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(
      requests.map((r) => `${r.method} ${r.target} ${r.headers['content-type'] ?? ''}`),
      ['GET / ', 'POST / image/png'],
    );
    assert.deepEqual(requests[1]!.body, solidPng(16, 16, [255, 0, 0]));
    for (const request of requests) {
      assert.equal(request.headers['authorization'], await expectedAuthorization(request, CREDENTIALS, 'us-west-2'));
    }
  });

  test('no credentials anywhere: one line saying so and how to fix it; nothing sent', async () => {
    const { result, requests } = await predictRecorded(
      [`${recorder.url}/`, '--auth', 'iam', '--region', 'eu-west-1', '--data', '{}'],
      NO_CREDENTIALS,
    );
    assertOneLineError(result, /^arclight: error: no AWS credentials to sign the request with: .*AWS_PROFILE/);
    assert.equal(requests.length, 0);
  });

  test('no region for a URL that is not execute-api: one line asking for --region', async () => {
    const { result } = await predictRecorded([`${recorder.url}/`, '--auth', 'iam', '--data', '{}'], {
      ...WITH_CREDENTIALS,
      AWS_REGION: '',
      AWS_DEFAULT_REGION: '',
    });
    assertOneLineError(result, /cannot tell the region of 127\.0\.0\.1:\d+ to sign for\. Pass --region/);
  });

  test("API Gateway's 403 prints its message and what IAM APIs need", async () => {
    recorder.status = 403;
    recorder.answer = '{"message":"Forbidden"}';
    try {
      const { result } = await predictRecorded([`${recorder.url}/`, '--auth', 'none', '--data', '{}'], NO_CREDENTIALS);
      assert.equal(result.code, 1);
      assert.deepEqual(stderrLines(result.stderr), [
        'arclight: HTTP 403: Forbidden (an IAM API: sign with --auth iam and credentials allowed execute-api:Invoke)',
      ]);
    } finally {
      recorder.status = 200;
      recorder.answer = '{"ok":true}';
    }
  });
});

describe('arclight predict: bearer tokens for JWT APIs', { concurrency: false }, () => {
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJl';

  test('--token is sent as a bearer token (auto picks jwt when a token is given); no SigV4', async () => {
    const { result, requests } = await predictRecorded(
      [`${recorder.url}/`, '--token', jwt, '--data', '{}'],
      WITH_CREDENTIALS,
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(requests[0]!.headers['authorization'], `Bearer ${jwt}`);
    assert.equal(requests[0]!.headers['x-amz-date'], undefined);
  });

  test('ARCLIGHT_TOKEN is read when --token is not given', async () => {
    const { result, requests } = await predictRecorded([`${recorder.url}/`, '--auth', 'jwt', '--data', '{}'], {
      ...NO_CREDENTIALS,
      ARCLIGHT_TOKEN: jwt,
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(requests[0]!.headers['authorization'], `Bearer ${jwt}`);
  });

  test('--auth jwt without a token: one line; nothing sent', async () => {
    const { result, requests } = await predictRecorded(
      [`${recorder.url}/`, '--auth', 'jwt', '--data', '{}'],
      NO_CREDENTIALS,
    );
    assertOneLineError(
      result,
      /^arclight: error: the API takes a JWT and none was given\. Pass --token <jwt> or set ARCLIGHT_TOKEN$/,
    );
    assert.equal(requests.length, 0);
  });

  test('an open API over a plain URL: no Authorization header at all', async () => {
    const { result, requests } = await predictRecorded([`${recorder.url}/`, '--data', '{}'], WITH_CREDENTIALS);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(requests[0]!.headers['authorization'], undefined);
  });
});

/** A PNG of one colour. */
function solidPng(width: number, height: number, rgb: readonly number[]): Buffer {
  const png = new PNG({ width, height });
  for (let i = 0; i < width * height; i++) png.data.set([rgb[0]!, rgb[1]!, rgb[2]!, 255], i * 4);
  return PNG.sync.write(png);
}

/** MobileNet's answer to an OIP request whose input is `pixel` everywhere (NCHW, 1×3×224×224). */
async function answerForConstant(rgb: readonly number[]): Promise<number[]> {
  const plane = 224 * 224;
  const data = new Array<number>(3 * plane);
  for (let c = 0; c < 3; c++)
    data.fill((rgb[c]! / 255 - IMAGENET_MEAN[c]!) / IMAGENET_STD[c]!, c * plane, (c + 1) * plane);
  const response = await fetch(`${mobilenet.url}/v2/models/mobilenet/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], data }] }),
  });
  assert.equal(response.status, 200);
  return ((await response.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data;
}

describe("arclight predict --file <image>: the model's input tensor", { concurrency: false }, () => {
  test('a PNG of any size becomes 1×3×224×224 FP32, ImageNet-normalized: the same logits as that tensor sent by hand', async () => {
    const rgb = [200, 120, 40];
    const file = join(dir, 'photo.png');
    await writeFile(file, solidPng(320, 240, rgb));
    const result = await runCli(['predict', `${mobilenet.url}/`, '--file', file], { env: NO_CREDENTIALS });
    assert.equal(result.code, 0, result.stderr);
    const answer = JSON.parse(result.stdout) as {
      model_name: string;
      outputs: { name: string; shape: number[]; data: number[] }[];
    };
    assert.equal(answer.model_name, 'mobilenet');
    assert.deepEqual(answer.outputs[0]!.shape, [1, 1000]);
    const expected = await answerForConstant(rgb);
    answer.outputs[0]!.data.forEach((value, i) => assert.ok(Math.abs(value - expected[i]!) < 1e-4, `logit ${i}`));
  });

  test('a JPEG is decoded too; --mean/--std change the tensor (so they are applied)', async () => {
    const rgb = [30, 160, 220];
    const raw = Buffer.alloc(64 * 48 * 4);
    for (let i = 0; i < 64 * 48; i++) raw.set([rgb[0]!, rgb[1]!, rgb[2]!, 255], i * 4);
    const file = join(dir, 'photo.jpg');
    await writeFile(file, jpeg.encode({ data: raw, width: 64, height: 48 }, 100).data);
    const plain = await runCli(['predict', `${mobilenet.url}/`, '--file', file], { env: NO_CREDENTIALS });
    assert.equal(plain.code, 0, plain.stderr);
    const logits = (JSON.parse(plain.stdout) as { outputs: { data: number[] }[] }).outputs[0]!.data;
    const expected = await answerForConstant(rgb);
    // JPEG is lossy: a solid colour comes back within a level or two, so the logits agree to a looser bound.
    const worst = Math.max(...logits.map((v, i) => Math.abs(v - expected[i]!)));
    assert.ok(worst < 0.5, `largest logit difference ${worst}`);
    const other = await runCli(
      ['predict', `${mobilenet.url}/`, '--file', file, '--mean', '0.5,0.5,0.5', '--std', '0.5,0.5,0.5'],
      {
        env: NO_CREDENTIALS,
      },
    );
    assert.equal(other.code, 0, other.stderr);
    assert.notDeepEqual((JSON.parse(other.stdout) as { outputs: { data: number[] }[] }).outputs[0]!.data, logits);
  });

  test('--mean with the wrong count, and a file that only looks like a PNG: one line each', async () => {
    const file = join(dir, 'ok.png');
    await writeFile(file, solidPng(8, 8, [1, 2, 3]));
    assertOneLineError(
      await runCli(['predict', `${mobilenet.url}/`, '--file', file, '--mean', '0.5'], { env: NO_CREDENTIALS }),
      /--mean and --std need 3 values/,
    );
    const broken = join(dir, 'broken.png');
    await writeFile(broken, Buffer.concat([solidPng(8, 8, [1, 2, 3]).subarray(0, 40), Buffer.alloc(10)]));
    assertOneLineError(
      await runCli(['predict', `${mobilenet.url}/`, '--file', broken], { env: NO_CREDENTIALS }),
      /--file .*broken\.png is not a readable PNG image/,
    );
  });
});
