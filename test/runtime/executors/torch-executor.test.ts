/**
 * The torch executor behind the real front: python/arclight_executor.py under the Python that has torch, the digits
 * model as TorchScript and as a Lightning checkpoint (plain torch, no Lightning), over real sockets. These tests fail,
 * not skip, when no Python with torch exists (`npm run setup:python` installs one).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Tensor } from '../../../lib/predictor.js';
import { BatchingExecutor } from '../../../lib/runtime/executors/batcher.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { Runtime } from '../../../lib/runtime/runtime.js';
import { TorchExecutor, type TorchExecutorOptions } from '../../../lib/runtime/executors/torch-executor.js';
import { TORCH_MALLOC_DEFAULTS, TorchProcess } from '../../../lib/runtime/executors/torch-process.js';
import {
  DIGITS_CHECKPOINT,
  DIGITS_CLASS,
  DIGITS_DECLARED,
  DIGITS_MODULE,
  DIGITS_PREDICTOR,
  DIGITS_TORCHSCRIPT,
  MIN_ACCURACY,
  accuracy,
  assertBatchLogits,
  assertStartupError,
  assertLogitsClose,
  greyLevels,
  httpTransport,
  lambdaTransport,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
  startServer,
  type Reply,
  type TestServer,
  type Transport,
  contractError,
} from '../../helpers.js';

const expected = loadDigitsExpected();
const VARIANTS = 'test/fixtures/digits_variants.py';
const TIMEOUT = 60_000;

interface InferResponse {
  outputs: { name: string; datatype: string; shape: number[]; data: number[] }[];
}

function inferBody(name: string, images: readonly (readonly number[])[], datatype = 'FP32'): string {
  return JSON.stringify({ inputs: [{ name, datatype, shape: [images.length, 1, 8, 8], data: images.flat() }] });
}

function assertError(reply: Reply, status: number, code: string, message: RegExp): void {
  assert.equal(reply.status, status, reply.text);
  const error = contractError(reply.json());
  assert.equal(error.code, code);
  assert.match(error.message, message);
}

/** Every reference image through OIP in batches of 50: the reference logits within 1e-4. */
async function assertReferenceLogits(send: Transport, model: string, input: string, output: string): Promise<void> {
  for (let at = 0; at < expected.images.length; at += 50) {
    const images = expected.images.slice(at, at + 50);
    const reply = await send({ path: `/v2/models/${model}/infer`, body: inferBody(input, images) });
    assert.equal(reply.status, 200, reply.text);
    const [out] = reply.json<InferResponse>().outputs;
    assert.equal(out!.name, output);
    assert.deepEqual(out!.shape, [images.length, 10]);
    assertBatchLogits(out!.data, images.length, expected.logits, at);
  }
}

const FORMATS = [
  {
    title: 'TorchScript, inputs from forward (x), nothing declared',
    modelUri: DIGITS_TORCHSCRIPT,
    options: {},
    format: 'torchscript',
    platform: 'pytorch_libtorch',
    input: 'x',
    output: 'output',
  },
  {
    title: 'Lightning checkpoint into the Digits class (plain torch), inputs and outputs declared',
    modelUri: DIGITS_CHECKPOINT,
    options: { torch: { module: DIGITS_MODULE, className: DIGITS_CLASS, ...DIGITS_DECLARED } },
    format: 'lightning-checkpoint',
    platform: 'pytorch_lightning_checkpoint',
    input: 'image',
    output: 'logits',
  },
] as const;

for (const f of FORMATS) {
  describe(`${f.title}: Open Inference Protocol`, { timeout: TIMEOUT }, () => {
    let server: TestServer;
    let send: Transport;
    before(async () => {
      // No format given: it is read from the file.
      server = await startServer(await startRuntime({ modelUri: f.modelUri, ...f.options }));
      send = httpTransport(server.url, 30_000);
    });
    after(async () => {
      await server?.close();
      await server?.runtime.close();
    });

    test('GET / and the OIP model metadata name the real inputs, the format and the platform', async () => {
      const meta = (await send({ path: '/' })).json<{ format: string; inputs: { name: string }[] }>();
      assert.equal(meta.format, f.format);
      assert.deepEqual(
        meta.inputs.map((i) => i.name),
        [f.input],
      );
      const model = (await send({ path: '/v2/models/digits' })).json<{
        platform: string;
        inputs: { name: string }[];
      }>();
      assert.equal(model.platform, f.platform);
      assert.equal(model.inputs[0]!.name, f.input);
    });

    test('all 397 reference images give the reference logits within 1e-4', async () => {
      await assertReferenceLogits(send, 'digits', f.input, f.output);
    });

    test('a shape the model cannot take is a 400 naming the input; the next request succeeds', async () => {
      const body = JSON.stringify({
        inputs: [{ name: f.input, datatype: 'FP32', shape: [1, 2, 8, 4], data: expected.images[0] }],
      });
      assertError(
        await send({ path: '/v2/models/digits/infer', body }),
        400,
        'invalid_input',
        new RegExp(`input '${f.input}'`),
      );
      const reply = await send({ path: '/v2/models/digits/infer', body: inferBody(f.input, [expected.images[0]!]) });
      assertLogitsClose(reply.json<InferResponse>().outputs[0]!.data, expected.logits[0]!, 'after the 400');
    });

    test('a datatype the model cannot take is a 400 naming the input', async () => {
      const body = JSON.stringify({
        inputs: [{ name: f.input, datatype: 'INT64', shape: [1, 1, 8, 8], data: new Array(64).fill(1) }],
      });
      assertError(
        await send({ path: '/v2/models/digits/infer', body }),
        400,
        'invalid_input',
        new RegExp(`input '${f.input}'`),
      );
    });
  });

  describe(`${f.title}: the digits predictor`, { timeout: TIMEOUT }, () => {
    let runtime: Runtime;
    let server: TestServer;
    before(async () => {
      runtime = await startRuntime({
        modelUri: f.modelUri,
        modelFormat: f.format,
        ...f.options,
        predictor: await loadTestPredictor(DIGITS_PREDICTOR),
      });
      server = await startServer(runtime);
    });
    after(async () => {
      await server?.close();
      await runtime?.close();
    });

    for (const [transport, sendOf] of [
      ['node:http', () => httpTransport(server.url, 30_000)],
      ['the Lambda adapter', () => lambdaTransport(createLambdaHandler(runtime))],
    ] as const) {
      test(`≥ 98% of the reference images classified right through ${transport}`, async () => {
        const images = expected.images.map(greyLevels);
        const reply = await sendOf()({ path: '/', body: JSON.stringify({ images: images.slice(0, 397) }) });
        assert.equal(reply.status, 200, reply.text);
        const digits = reply.json<{ digit: number }[]>().map((p) => p.digit);
        const found = accuracy(digits, expected.labels);
        assert.ok(found >= MIN_ACCURACY, `accuracy ${found}`);
      });
    }
  });
}

function digitsOptions(extra: Partial<TorchExecutorOptions> = {}): TorchExecutorOptions {
  return {
    format: 'lightning-checkpoint',
    module: DIGITS_MODULE,
    className: DIGITS_CLASS,
    ...DIGITS_DECLARED,
    logger: createLogger('torch-test', 'SILENT'),
    ...extra,
  };
}

function imageTensor(images: readonly (readonly number[])[]): Tensor {
  return { type: 'float32', data: Float32Array.from(images.flat()), dims: [images.length, 1, 8, 8] };
}

function logitsOf(outputs: Record<string, Tensor>): number[] {
  return Array.from(outputs['logits']!.data as Float32Array);
}

describe('dynamic batching over the torch executor', { timeout: TIMEOUT }, () => {
  let executor: TorchExecutor;
  before(async () => {
    executor = await TorchExecutor.start(DIGITS_CHECKPOINT, DIGITS_CHECKPOINT, digitsOptions());
  });
  after(() => executor?.release());

  test('concurrent runs are batched, and each result equals the unbatched one', async () => {
    const count = 32;
    const alone: number[][] = [];
    for (let i = 0; i < count; i++)
      alone.push(logitsOf(await executor.run({ image: imageTensor([expected.images[i]!]) })));
    const runsBefore = executor.runs;
    const batching = new BatchingExecutor(executor, { maxBatchSize: 8, maxBatchDelayMs: 20 });
    const batched = await Promise.all(
      Array.from({ length: count }, (_, i) => batching.run({ image: imageTensor([expected.images[i]!]) })),
    );
    const runs = executor.runs - runsBefore;
    assert.ok(runs < count, `${count} requests took ${runs} runs: they were not batched`);
    batched.forEach((outputs, i) => {
      assert.deepEqual(outputs['logits']!.dims, [1, 10]);
      const values = logitsOf(outputs);
      values.forEach((v, k) => assert.ok(Math.abs(v - alone[i]![k]!) <= 1e-5, `request ${i} logit ${k}`));
      assertLogitsClose(values, expected.logits[i]!, `batched request ${i}`);
    });
  });
});

describe('the executor crashing', { timeout: TIMEOUT }, () => {
  let server: TestServer;
  let send: Transport;
  before(async () => {
    const runtime = await startRuntime({
      modelUri: DIGITS_CHECKPOINT,
      torch: { module: VARIANTS, className: 'CrashingDigits', ...DIGITS_DECLARED },
    });
    server = await startServer(runtime);
    send = httpTransport(server.url, 30_000);
  });
  after(async () => {
    await server?.close();
    await server?.runtime.close();
  });

  const poison = (): string => inferBody('image', [expected.images[0]!.map((v, i) => (i === 0 ? -1 : v))]);
  const good = (i: number): string => inferBody('image', [expected.images[i]!]);

  test('mid-request gives that request 503; the next request succeeds after the restart', async () => {
    const crashed = await send({ path: '/v2/models/digits/infer', body: poison() });
    assertError(crashed, 503, 'not_ready', /torch executor stopped \(exit code 7\) while running this request/);
    assert.equal(crashed.headers['retry-after'], '1');
    const next = await send({ path: '/v2/models/digits/infer', body: good(3) });
    assert.equal(next.status, 200, next.text);
    assertLogitsClose(next.json<InferResponse>().outputs[0]!.data, expected.logits[3]!, 'after the restart');
    assert.equal((await send({ path: '/v2/health/ready' })).status, 200);
  });

  test('requests queued behind the crash run after the restart; only the crashing one fails', async () => {
    const [first, ...rest] = await Promise.all([
      send({ path: '/v2/models/digits/infer', body: poison() }),
      ...[4, 5, 6].map((i) => send({ path: '/v2/models/digits/infer', body: good(i) })),
    ]);
    assert.equal(first!.status, 503, first!.text);
    rest.forEach((reply, k) => {
      assert.equal(reply.status, 200, reply.text);
      assertLogitsClose(reply.json<InferResponse>().outputs[0]!.data, expected.logits[4 + k]!, `queued ${k}`);
    });
  });
});

describe('the executor process killed from outside, and shut down', { timeout: TIMEOUT }, () => {
  test('SIGKILL while idle: the next run waits for the restart and succeeds; release stops the process', async () => {
    const executor = await TorchExecutor.start(DIGITS_TORCHSCRIPT, DIGITS_TORCHSCRIPT, {
      format: 'torchscript',
      logger: createLogger('torch-test', 'SILENT'),
      restartDelayMs: 10,
    });
    try {
      const pid = executor.pid!;
      process.kill(pid, 'SIGKILL');
      // Once the executor has seen the death (a run sent before that would be in flight, and get 503).
      while (executor.restarts === 0) await new Promise((resolve) => setTimeout(resolve, 10));
      const outputs = await executor.run({ x: imageTensor([expected.images[7]!]) });
      assertLogitsClose(Array.from(outputs['output']!.data as Float32Array), expected.logits[7]!, 'after SIGKILL');
      assert.equal(executor.restarts, 1);
      assert.notEqual(executor.pid, pid);
    } finally {
      const pid = executor.pid!;
      await executor.release();
      assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the process is gone after release');
    }
    await assert.rejects(executor.run({ x: imageTensor([expected.images[0]!]) }), { status: 503 });
  });
});

describe('startup errors', { timeout: TIMEOUT }, () => {
  test('checkpoint keys that do not match the class: one error naming every missing and unexpected key', async () => {
    await assertStartupError(
      startRuntime({ modelUri: DIGITS_CHECKPOINT, torch: { module: VARIANTS, className: 'RenamedDigits' } }),
      /does not match class RenamedDigits/,
      /missing keys: conv3\.bias, conv3\.weight, norm\.bias, norm\.num_batches_tracked, norm\.running_mean, norm\.running_var, norm\.weight/,
      /unexpected keys: conv2\.bias, conv2\.weight/,
      new RegExp(DIGITS_CHECKPOINT.replace('.', '\\.')),
    );
  });

  test('a Python without torch: "no Python with torch", and the API answers 503 not ready', async () => {
    // A real interpreter that cannot import torch: Python without its site-packages.
    const dir = mkdtempSync(join(tmpdir(), 'arclight-python-'));
    const python = join(dir, 'python-without-torch');
    writeFileSync(python, '#!/bin/sh\nexec python3 -S "$@"\n');
    chmodSync(python, 0o755);
    for (const candidate of [python, join(dir, 'missing-python')]) {
      const runtime = new Runtime({
        apiName: 'digits',
        modelUri: DIGITS_TORCHSCRIPT,
        torch: { python: candidate },
        logger: createLogger('digits', 'SILENT'),
      });
      await assert.rejects(runtime.start(), /no Python with torch: set ARCLIGHT_PYTHON or install torch/);
      const server = await startServer(runtime);
      try {
        assertError(await httpTransport(server.url)({ path: '/v2/health/ready' }), 503, 'not_ready', /failed to load/);
      } finally {
        await server.close();
      }
    }
  });

  test('a checkpoint without its module and class says what to give', async () => {
    await assert.rejects(
      startRuntime({ modelUri: DIGITS_CHECKPOINT }),
      /a Lightning checkpoint needs the Python module file and class/,
    );
  });

  test('a module that does not exist, or lacks the class, is named', async () => {
    await assert.rejects(
      startRuntime({ modelUri: DIGITS_CHECKPOINT, torch: { module: 'functions/digits/nope.py', className: 'Digits' } }),
      /module file functions\/digits\/nope\.py does not exist/,
    );
    await assert.rejects(
      startRuntime({ modelUri: DIGITS_CHECKPOINT, torch: { module: DIGITS_MODULE, className: 'Nope' } }),
      /module functions\/digits\/model\.py has no class Nope/,
    );
  });

  test('cuda alone on a machine without a GPU never becomes ready and says why', async () => {
    await assert.rejects(
      startRuntime({ modelUri: DIGITS_TORCHSCRIPT, executionProviders: ['cuda'] }),
      /CUDA was asked for alone and cannot be used: torch\.cuda\.is_available\(\) is false/,
    );
  });
});

describe('the torch process environment', { timeout: TIMEOUT }, () => {
  /** The environment a running process was started with, from /proc. */
  function environOf(pid: number): Record<string, string> {
    const pairs = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter(Boolean);
    return Object.fromEntries(
      pairs.map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)]),
    );
  }

  test(
    'Python runs with glibc malloc tuned for torch (no trim/mmap per activation); a value set by the user wins',
    { skip: process.platform !== 'linux' },
    async () => {
      const saved = process.env['MALLOC_TRIM_THRESHOLD_'];
      process.env['MALLOC_TRIM_THRESHOLD_'] = '4096';
      const torch = await TorchProcess.start();
      try {
        const env = environOf(torch.pid!);
        assert.equal(env['MALLOC_MMAP_THRESHOLD_'], TORCH_MALLOC_DEFAULTS['MALLOC_MMAP_THRESHOLD_']);
        assert.equal(env['MALLOC_TRIM_THRESHOLD_'], '4096', "the user's own setting is kept");
      } finally {
        await torch.stop(0);
        if (saved === undefined) delete process.env['MALLOC_TRIM_THRESHOLD_'];
        else process.env['MALLOC_TRIM_THRESHOLD_'] = saved;
      }
    },
  );
});
