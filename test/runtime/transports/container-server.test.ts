/**
 * The container server over real sockets, started as its Dockerfile starts it: the container main as a child process,
 * configured only by the deployed contract's env vars (model from s3rver or a local path, CPU here).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { OnnxExecutor } from '../../../lib/runtime/executors/onnx-executor.js';
import {
  DIGITS_CHECKPOINT,
  DIGITS_CLASS,
  DIGITS_DECLARED,
  DIGITS_MODULE,
  DIGITS_ONNX,
  MOBILENET_ONNX,
  REPO_ROOT,
  assertLogitsClose,
  closedPort,
  digitsInferBody,
  loadDigitsExpected,
  startS3WithModels,
  contractError,
} from '../../helpers.js';

const CONTAINER_MAIN = 'lib/runtime/transports/container-main.ts';
const BATCH_PREDICTOR = 'test/fixtures/batch-predictor.ts';
const expected = loadDigitsExpected();

interface Container {
  readonly url: string;
  readonly child: ChildProcessWithoutNullStreams;
  /** stdout's JSON log lines so far. */
  logs(): Record<string, unknown>[];
  readonly exited: Promise<number | null>;
  stop(): Promise<void>;
}

/** Starts the container main with env; resolves once it listens (not once it is ready). */
async function startContainer(env: Record<string, string>): Promise<Container> {
  const port = await closedPort();
  const child = spawn(process.execPath, ['--import', 'tsx', CONTAINER_MAIN], {
    cwd: REPO_ROOT,
    env: { ...process.env, ARCLIGHT_METRICS: 'off', SAGEMAKER_BIND_TO_PORT: String(port), ...env },
    stdio: 'pipe',
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const logs = (): Record<string, unknown>[] =>
    stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`container main exited ${child.exitCode}: ${stderr}${stdout}`);
    try {
      await fetch(`${url}/v2/health/live`);
      break;
    } catch {
      if (Date.now() > deadline) throw new Error(`container main did not listen: ${stderr}${stdout}`);
      await sleep(20);
    }
  }
  return {
    url,
    child,
    logs,
    exited,
    async stop() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

async function waitReady(url: string, timeoutMs = 20_000): Promise<number[]> {
  const statuses: number[] = [];
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const response = await fetch(`${url}/ping`);
    await response.arrayBuffer();
    statuses.push(response.status);
    if (response.status === 200) return statuses;
    await sleep(25);
  }
  throw new Error(`not ready within ${timeoutMs} ms: ${statuses.slice(-3).join(',')}`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

interface Reply {
  readonly status: number;
  readonly headers: Headers;
  readonly body: Record<string, unknown>;
}

async function post(url: string, body: string, contentType = 'application/json'): Promise<Reply> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': contentType }, body });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

async function get(url: string): Promise<Reply> {
  const response = await fetch(url);
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

async function call(url: string, method: string, body?: string, headers: Record<string, string> = {}): Promise<Reply> {
  const response = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: body ?? '' }),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

/** A body without the error's request id, which differs from request to request. */
function withoutRequestId(body: Record<string, unknown>): Record<string, unknown> {
  if (typeof body['error'] !== 'string') return body;
  return Object.fromEntries(Object.entries(body).filter(([name]) => name !== 'requestId'));
}

type Outputs = { name: string; shape: number[]; data: number[] }[];

function outputData(reply: Reply): number[] {
  return (reply.body['outputs'] as Outputs)[0]!.data;
}

describe('container server: digits from S3, default predictor, batching on, cuda,cpu providers', () => {
  let s3: Awaited<ReturnType<typeof startS3WithModels>>;
  let container: Container;

  before(async () => {
    s3 = await startS3WithModels();
    container = await startContainer({
      ...s3.env,
      ARCLIGHT_API_NAME: 'digits',
      ARCLIGHT_MODEL_URI: s3.digits.uri,
      ARCLIGHT_MODEL_SHA256: s3.digits.sha256,
      ARCLIGHT_EXECUTION_PROVIDERS: 'cuda,cpu',
      ARCLIGHT_WORKERS: '2',
      ARCLIGHT_INTRA_OP_THREADS: '1',
      ARCLIGHT_MAX_BATCH_SIZE: '8',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '10',
      ARCLIGHT_BIND_HOST: '127.0.0.1',
    });
    await waitReady(container.url);
  });
  after(async () => {
    await container?.stop();
    await s3?.close();
  });

  test('cuda,cpu on a machine without CUDA serves on CPU and logs the fallback loudly', () => {
    const fallback = container.logs().find((l) => l['level'] === 'WARN' && /FALLBACK/.test(String(l['message'])));
    assert.ok(fallback, 'a WARN line announces the fallback');
    assert.deepEqual(fallback['using'], ['cpu']);
    assert.match(String(fallback['reason']), /cuda/i);
  });

  test('ARCLIGHT_BIND_HOST=127.0.0.1 listens on loopback only (as arclight dev runs it)', () => {
    const port = Number(new URL(container.url).port);
    // /proc/net/tcp: local address as hex IP:port; state 0A is LISTEN.
    const listening = readFileSync('/proc/net/tcp', 'utf8')
      .split('\n')
      .slice(1)
      .map((line) => line.trim().split(/\s+/))
      .filter((fields) => fields[3] === '0A' && parseInt(fields[1]!.split(':')[1]!, 16) === port)
      .map((fields) => fields[1]!.split(':')[0]);
    assert.deepEqual(listening, ['0100007F']);
  });

  test('POST /invocations runs the model (SageMaker route)', async () => {
    const reply = await post(`${container.url}/invocations`, digitsInferBody([expected.images[0]!]));
    assert.equal(reply.status, 200);
    assertLogitsClose(outputData(reply), expected.logits[0]!, 'invocations');
  });

  test('OIP routes: health, metadata, model metadata, infer; errors as JSON', async () => {
    assert.equal((await get(`${container.url}/v2/health/live`)).status, 200);
    assert.deepEqual((await get(`${container.url}/v2/health/ready`)).body, { ready: true });
    const meta = await get(`${container.url}/`);
    assert.equal(meta.body['name'], 'digits');
    const model = await get(`${container.url}/v2/models/digits`);
    assert.deepEqual(model.body['inputs'], [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8] }]);
    const infer = await post(`${container.url}/v2/models/digits/infer`, digitsInferBody(expected.images.slice(0, 3)));
    assert.equal(infer.status, 200);
    assert.deepEqual((infer.body['outputs'] as Outputs)[0]!.shape, [3, 10]);
    const missing = await get(`${container.url}/v2/models/other`);
    assert.equal(missing.status, 404);
    assert.equal(contractError(missing.body).code, 'model_not_found');
  });

  test('POST /invocations naming a route in the SageMaker custom attributes answers as that route does', async () => {
    const infer = digitsInferBody([expected.images[0]!]);
    const routes: [method: string, path: string, body?: string][] = [
      ['GET', '/'],
      ['POST', '/', infer],
      ['GET', '/v2'],
      ['GET', '/v2/health/live'],
      ['GET', '/v2/health/ready'],
      ['GET', '/ping'],
      ['GET', '/v2/models/digits'],
      ['GET', '/v2/models/digits/ready'],
      ['POST', '/v2/models/digits/infer', infer],
      ['GET', '/v2/models/other'],
      ['DELETE', '/v2/health/live'],
      ['GET', '/no/such/route'],
    ];
    for (const [method, path, body] of routes) {
      const direct = await call(`${container.url}${path}`, method, body);
      const invoked = await call(`${container.url}/invocations`, 'POST', body ?? '', {
        'x-amzn-sagemaker-custom-attributes': `arclight-route=${method} ${path}`,
      });
      const where = `${method} ${path}`;
      assert.equal(invoked.status, direct.status, where);
      assert.deepEqual(withoutRequestId(invoked.body), withoutRequestId(direct.body), where);
      assert.equal(invoked.headers.get('allow'), direct.headers.get('allow'), where);
    }
    // Beside other attributes, forged or unknown routes get the contract's errors, as they would directly.
    for (const [method, path, status, code] of [
      ['GET', '/no/such/route', 404, 'not_found'],
      ['GET', '/v2/models/other/ready', 404, 'model_not_found'],
      ['DELETE', '/v2/health/live', 405, 'method_not_allowed'],
    ] as const) {
      const reply = await call(`${container.url}/invocations`, 'POST', '', {
        'x-amzn-sagemaker-custom-attributes': `trace=1; arclight-route=${method} ${path}`,
      });
      assert.equal(reply.status, status, `${method} ${path}`);
      assert.equal(contractError(reply.body).code, code);
    }
  });

  test('a malformed arclight-route attribute is a 400 in the contract format; other attributes are ignored', async () => {
    for (const attribute of ['arclight-route=/v2/health/ready', 'arclight-route=GET', 'arclight-route=get /v2']) {
      const reply = await call(`${container.url}/invocations`, 'POST', '', {
        'x-amzn-sagemaker-custom-attributes': attribute,
        'x-request-id': 'client-id-1',
      });
      assert.equal(reply.status, 400, attribute);
      const error = contractError(reply.body);
      assert.equal(error.code, 'invalid_input');
      assert.match(
        error.message,
        /malformed X-Amzn-SageMaker-Custom-Attributes attribute .*expected 'arclight-route=<METHOD> \/<path>'/,
      );
      assert.equal(error.requestId, 'client-id-1');
      assert.equal(reply.headers.get('x-request-id'), 'client-id-1');
    }
    // Attributes of someone else's: /invocations stays the predictor.
    const reply = await call(`${container.url}/invocations`, 'POST', digitsInferBody([expected.images[0]!]), {
      'x-amzn-sagemaker-custom-attributes': 'trace=abc',
    });
    assert.equal(reply.status, 200);
    assertLogitsClose(outputData(reply), expected.logits[0]!, 'invocations with other attributes');
  });

  test('concurrent requests are batched; each output equals the unbatched one, and a bad request fails alone', async () => {
    const n = 24;
    const bad = 5;
    const replies = await Promise.all(
      Array.from({ length: n }, (_, i) => {
        if (i === bad) {
          return post(
            `${container.url}/v2/models/digits/infer`,
            JSON.stringify({
              inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 7], data: new Array(56).fill(0) }],
            }),
          );
        }
        // Mixed row counts: 1 or 2 images per request.
        const images = i % 3 === 0 ? [expected.images[i]!, expected.images[i + 100]!] : [expected.images[i]!];
        return post(`${container.url}/v2/models/digits/infer`, digitsInferBody(images));
      }),
    );
    for (const [i, reply] of replies.entries()) {
      if (i === bad) {
        assert.equal(reply.status, 400);
        assert.equal(contractError(reply.body).code, 'invalid_input');
        continue;
      }
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      const data = outputData(reply);
      assertLogitsClose(data.slice(0, 10), expected.logits[i]!, `request ${i}`);
      if (i % 3 === 0) assertLogitsClose(data.slice(10), expected.logits[i + 100]!, `request ${i} row 2`);
    }
    // The same requests one at a time give the same numbers.
    const single = await post(`${container.url}/v2/models/digits/infer`, digitsInferBody([expected.images[1]!]));
    assert.deepEqual(outputData(single), outputData(replies[1]!));
  });
});

describe('container server: MobileNet, 2 workers, batching on', () => {
  let container: Container;
  let reference: OnnxExecutor;

  before(async () => {
    container = await startContainer({
      ARCLIGHT_API_NAME: 'mobilenet',
      ARCLIGHT_MODEL_URI: MOBILENET_ONNX,
      ARCLIGHT_EXECUTION_PROVIDERS: 'cpu',
      ARCLIGHT_WORKERS: '2',
      ARCLIGHT_INTRA_OP_THREADS: '1',
      ARCLIGHT_MAX_BATCH_SIZE: '4',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '5',
      ARCLIGHT_LOG_LEVEL: 'WARN',
    });
    reference = await OnnxExecutor.load(readFileSync(MOBILENET_ONNX), MOBILENET_ONNX, { intraOpThreads: 1 });
    await waitReady(container.url);
  });
  after(async () => {
    await container?.stop();
    await reference?.release();
  });

  function image(seed: number): number[] {
    let x = seed * 9301 + 49297;
    return Array.from({ length: 3 * 224 * 224 }, () => {
      x = (x * 9301 + 49297) % 233280;
      return x / 233280 - 0.5;
    });
  }

  function body(data: number[]): string {
    return JSON.stringify({
      inputs: [{ name: reference.inputs[0]!.name, datatype: 'FP32', shape: [1, 3, 224, 224], data }],
    });
  }

  test('batched outputs equal the unbatched in-process session.run', async () => {
    const images = Array.from({ length: 6 }, (_, i) => image(i + 1));
    const replies = await Promise.all(images.map((data) => post(`${container.url}/invocations`, body(data))));
    for (const [i, reply] of replies.entries()) {
      assert.equal(reply.status, 200);
      const feeds = {
        [reference.inputs[0]!.name]: {
          type: 'float32' as const,
          data: Float32Array.from(images[i]!),
          dims: [1, 3, 224, 224],
        },
      };
      const want = Array.from((await reference.run(feeds))[reference.outputs[0]!.name]!.data as Float32Array);
      assertLogitsClose(outputData(reply), want, `image ${i}`);
    }
  });

  test('/ping answers promptly while every worker is busy', async () => {
    const payload = body(image(7));
    let stop = false;
    const load = Array.from({ length: 8 }, async () => {
      let done = 0;
      while (!stop) {
        const reply = await post(`${container.url}/invocations`, payload);
        assert.equal(reply.status, 200);
        done++;
      }
      return done;
    });
    await sleep(300);
    const latencies: number[] = [];
    for (let i = 0; i < 40; i++) {
      const started = performance.now();
      const response = await fetch(`${container.url}/ping`);
      await response.arrayBuffer();
      latencies.push(performance.now() - started);
      assert.equal(response.status, 200);
      await sleep(10);
    }
    stop = true;
    const completed = (await Promise.all(load)).reduce((a, b) => a + b, 0);
    latencies.sort((a, b) => a - b);
    const p95 = latencies[Math.floor(latencies.length * 0.95)]!;
    assert.ok(completed > 8, `inference kept running (${completed} requests)`);
    // Generous for a loaded 2-core CI machine; the bench measures the real figure.
    assert.ok(p95 < 250, `/ping p95 ${p95.toFixed(1)} ms while saturated`);
  });
});

describe('container server: custom predictor with predictBatch, small queue', () => {
  let container: Container;
  let pingsBeforeReady: number[];

  before(async () => {
    container = await startContainer({
      ARCLIGHT_API_NAME: 'batchy',
      ARCLIGHT_MODEL_URI: DIGITS_ONNX,
      ARCLIGHT_PREDICTOR: BATCH_PREDICTOR,
      ARCLIGHT_CONFIG: JSON.stringify({ initDelayMs: 800 }),
      ARCLIGHT_EXECUTION_PROVIDERS: 'cpu',
      ARCLIGHT_WORKERS: '1',
      ARCLIGHT_MAX_BATCH_SIZE: '4',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '50',
      ARCLIGHT_MAX_QUEUE_LENGTH: '2',
    });
    pingsBeforeReady = await waitReady(container.url);
  });
  after(async () => {
    await container?.stop();
  });

  test('/ping is 503 until the model and predictor are ready, then 200', () => {
    assert.ok(pingsBeforeReady.length >= 2, `pings: ${pingsBeforeReady.join(',')}`);
    assert.ok(pingsBeforeReady.slice(0, -1).every((s) => s === 503));
    assert.equal(pingsBeforeReady.at(-1), 200);
  });

  test('predictBatch gets batch-mates; a bad request fails alone, an undecodable one before batching', async () => {
    const replies = await Promise.all([
      post(`${container.url}/invocations`, JSON.stringify({ id: 1 })),
      post(`${container.url}/invocations`, JSON.stringify({ id: 2, bad: true })),
      post(`${container.url}/invocations`, '{"id": 3,'),
      post(`${container.url}/invocations`, JSON.stringify({ id: 4 })),
      post(`${container.url}/invocations`, JSON.stringify({ id: 5 })),
    ]);
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 400, 400, 200, 200],
    );
    assert.equal(contractError(replies[2]!.body).code, 'malformed_json');
    assert.deepEqual(replies[0]!.body, { id: 1, batchSize: 4 });
    assert.deepEqual(replies[4]!.body, { id: 5, batchSize: 4 });
  });

  test('past the queue: 503 overloaded with Retry-After, the admitted ones succeed', async () => {
    // 1 worker × batch 4 + queue 2 = 6 admitted at once.
    const replies = await Promise.all(
      Array.from({ length: 12 }, (_, i) => post(`${container.url}/`, JSON.stringify({ id: i, sleepMs: 400 }))),
    );
    const ok = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status === 503);
    assert.equal(ok.length, 6);
    assert.equal(refused.length, 6);
    for (const r of refused) {
      assert.equal(contractError(r.body).code, 'overloaded');
      assert.equal(r.headers.get('retry-after'), '1');
    }
  });

  test('SIGTERM: stops accepting, drains in-flight requests, exits 0', async () => {
    const inFlight = Array.from({ length: 3 }, (_, i) =>
      post(`${container.url}/`, JSON.stringify({ id: i, sleepMs: 600 })),
    );
    await sleep(150);
    container.child.kill('SIGTERM');
    await sleep(100);
    await assert.rejects(fetch(`${container.url}/ping`), 'no new connections once draining');
    const replies = await Promise.all(inFlight);
    assert.deepEqual(
      replies.map((r) => r.status),
      [200, 200, 200],
    );
    assert.equal(await container.exited, 0);
  });
});

describe('container server: execution providers', () => {
  test('cuda alone on a machine without CUDA: never ready, and the log says why', async () => {
    const container = await startContainer({
      ARCLIGHT_MODEL_URI: DIGITS_ONNX,
      ARCLIGHT_EXECUTION_PROVIDERS: 'cuda',
      ARCLIGHT_WORKERS: '1',
    });
    try {
      const deadline = Date.now() + 15_000;
      let failed: Record<string, unknown> | undefined;
      while (!failed && Date.now() < deadline) {
        failed = container.logs().find((l) => l['message'] === 'startup failed');
        if (!failed) await sleep(50);
      }
      assert.ok(failed, 'startup failure logged');
      const error = failed['error'] as { message: string };
      assert.match(error.message, /execution provider cuda cannot be loaded/);
      const ping = await fetch(`${container.url}/ping`);
      assert.equal(ping.status, 503);
      assert.equal(ping.headers.get('retry-after'), '1');
      const body = { error: contractError(await ping.json()) };
      assert.equal(body.error.code, 'not_ready');
    } finally {
      await container.stop();
    }
  });
});

describe('container server: a Lightning checkpoint in the torch executor, batching on, cuda,cpu providers', () => {
  let s3: Awaited<ReturnType<typeof startS3WithModels>>;
  let container: Container;

  before(async () => {
    s3 = await startS3WithModels();
    const checkpoint = await s3.put('models', 'digits.ckpt', readFileSync(DIGITS_CHECKPOINT));
    container = await startContainer({
      ...s3.env,
      ARCLIGHT_API_NAME: 'digits',
      ARCLIGHT_MODEL_URI: checkpoint.uri,
      ARCLIGHT_MODEL_SHA256: checkpoint.sha256,
      ARCLIGHT_MODEL_FORMAT: 'lightning-checkpoint',
      ARCLIGHT_MODEL_MODULE: DIGITS_MODULE,
      ARCLIGHT_MODEL_CLASS: DIGITS_CLASS,
      ARCLIGHT_MODEL_INPUTS: JSON.stringify(DIGITS_DECLARED.inputs),
      ARCLIGHT_MODEL_OUTPUTS: JSON.stringify(DIGITS_DECLARED.outputs),
      ARCLIGHT_EXECUTION_PROVIDERS: 'cuda,cpu',
      ARCLIGHT_MAX_BATCH_SIZE: '8',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '10',
    });
    await waitReady(container.url, 60_000);
  });
  after(async () => {
    await container?.stop();
    await s3?.close();
  });

  test('cuda,cpu without a GPU: torch serves on CPU and the fallback is logged loudly', () => {
    const fallback = container.logs().find((l) => l['level'] === 'WARN' && /FALLBACK/.test(String(l['message'])));
    assert.ok(fallback, 'a WARN line announces the fallback');
    assert.match(String(fallback['reason']), /torch\.cuda\.is_available\(\) is false/);
    const ready = container.logs().find((l) => l['message'] === 'torch executor ready');
    assert.equal(ready?.['device'], 'cpu');
  });

  test('metadata names the declared input; concurrent requests give the reference logits, a bad one fails alone', async () => {
    const model = await get(`${container.url}/v2/models/digits`);
    assert.equal(model.body['platform'], 'pytorch_lightning_checkpoint');
    assert.deepEqual(model.body['inputs'], DIGITS_DECLARED.inputs);
    const bad = 3;
    const replies = await Promise.all(
      Array.from({ length: 16 }, (_, i) =>
        i === bad
          ? post(
              `${container.url}/invocations`,
              JSON.stringify({
                inputs: [{ name: 'image', datatype: 'FP32', shape: [1, 1, 8, 7], data: new Array(56).fill(0) }],
              }),
            )
          : post(`${container.url}/invocations`, digitsInferBody([expected.images[i]!])),
      ),
    );
    for (const [i, reply] of replies.entries()) {
      if (i === bad) {
        assert.equal(reply.status, 400);
        continue;
      }
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      assertLogitsClose(outputData(reply), expected.logits[i]!, `request ${i}`);
    }
  });

  test('SIGTERM drains and stops the Python process with the server', async () => {
    container.child.kill('SIGTERM');
    assert.equal(await container.exited, 0);
  });
});
