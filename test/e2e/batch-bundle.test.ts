/**
 * The BatchJob's Lambda bundle as synth builds it (buildLambdaImageContext with the batch entry: esbuild bundle of
 * the runtime and the digits predictor, onnxruntime-node for this platform), run the way Lambda runs it (a fresh plain
 * node process, test/fixtures/lambda-sandbox.mjs) with the contract's env and s3rver holding the model, inputs and
 * outputs, driven with the events the state machine sends: plan → one Map batch of ListObjectsV2 items → finish; the
 * results equal the synchronous answers of the in-process runtime.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { buildLambdaImageContext } from '../../lib/constructs/images/lambda-image-context.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../../lib/cli/local/embedded-s3.js';
import { ENV } from '../../lib/contract.js';
import type { BatchSummary, FailureRecord, ResultRecord } from '../../lib/runtime/batch/batch-layout.js';
import type { Plan } from '../../lib/runtime/batch/step-functions-handler.js';
import { createS3Client } from '../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  REPO_ROOT,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
} from '../helpers.js';

const SANDBOX = join(REPO_ROOT, 'test', 'fixtures', 'lambda-sandbox.mjs');
let contextDir: string;
let s3: EmbeddedS3;
let sandbox: ChildProcess;
let runtime: Runtime;
const home = mkdtempSync(join(tmpdir(), 'arclight-batch-sandbox-'));

function invoke(event: unknown): Promise<unknown> {
  const id = Math.random();
  return new Promise((resolvePromise, reject) => {
    const onMessage = (message: { type: string; id?: number; result?: unknown; error?: string }): void => {
      if (message.type !== 'result' || message.id !== id) return;
      sandbox.off('message', onMessage);
      if (message.error) reject(new Error(message.error));
      else resolvePromise(message.result);
    };
    sandbox.on('message', onMessage);
    sandbox.send({ type: 'invoke', id, event, timeoutMs: 120_000 });
  });
}

const lines = Array.from({ length: 30 }, (_, i) =>
  i === 4 || i === 17
    ? '{"pixels": [0]}'
    : JSON.stringify({ pixels: loadDigitsExpected().images[i]!.map((v) => Math.round(v * 16)) }),
);

before(async () => {
  contextDir = buildLambdaImageContext({
    predictorEntry: resolve(DIGITS_PREDICTOR),
    arch: process.arch === 'arm64' ? 'arm64' : 'x64',
    entry: 'batch',
  });
  s3 = await startEmbeddedS3(['models', 'data']);
  const model = await s3.put('models', 'digits.onnx', readFileSync(DIGITS_ONNX));
  await s3.put('data', 'in/a.jsonl', Buffer.from(`${lines.join('\n')}\n`));
  sandbox = fork(SANDBOX, [join(contextDir, 'index.mjs')], {
    execArgv: [],
    stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: home,
      TMPDIR: home,
      ...s3.env,
      [ENV.apiName]: 'digits-batch',
      [ENV.modelUri]: model.uri,
      [ENV.modelSha256]: model.sha256,
      [ENV.executionProviders]: 'cpu',
      [ENV.batchConcurrency]: '4',
      [ENV.logLevel]: 'WARN',
      ORT_DISABLE_TELEMETRY: '1',
    },
  });
  await new Promise<void>((resolvePromise, reject) => {
    sandbox.once('message', (message: { type: string; error?: string }) =>
      message.type === 'initialized' ? resolvePromise() : reject(new Error(message.error)),
    );
  });
  runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) });
});

after(async () => {
  sandbox?.disconnect();
  await runtime?.close();
  await s3?.close();
  rmSync(contextDir, { recursive: true, force: true });
  rmSync(home, { recursive: true, force: true });
});

test('the bundled batch handler runs a plan, a Map batch and finish; results equal the synchronous answers', async () => {
  const plan = (await invoke({
    action: 'plan',
    input: 's3://data/in/',
    output: 's3://data/out/r1/',
    rerun: false,
  })) as Plan;
  assert.equal(plan.attempt, 1);
  const counts = await invoke({
    Items: [{ Key: 'in/a.jsonl', Size: 1 }],
    BatchInput: { input: plan.input, output: plan.output, attempt: plan.attempt },
  });
  assert.deepEqual(counts, { succeeded: 28, failed: 2 });
  const summary = (await invoke({
    action: 'finish',
    input: plan.input,
    output: plan.output,
    attempt: 1,
    startedAt: plan.startedAt,
  })) as BatchSummary;
  assert.equal(summary.succeeded, 28);
  assert.equal(summary.failed, 2);

  const client = createS3Client(s3.env);
  try {
    const read = async (key: string): Promise<string> =>
      (await client.send(new GetObjectCommand({ Bucket: 'data', Key: key }))).Body!.transformToString();
    const parts = (await client.send(new ListObjectsV2Command({ Bucket: 'data', Prefix: 'out/r1/results/' })))
      .Contents!;
    const results = (await Promise.all(parts.map((p) => read(p.Key!))))
      .join('')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ResultRecord);
    assert.equal(results.length, 28);
    for (const result of results) {
      const sync = await runtime.handle({
        method: 'POST',
        path: '/',
        query: {},
        headers: { 'content-type': 'application/json' },
        body: Buffer.from(lines[result.line! - 1]!),
      });
      assert.equal(sync.status, 200);
      assert.deepEqual(result.output, JSON.parse(sync.body.toString('utf8')), `line ${result.line}`);
    }
    const failures = (await read('out/r1/failures.jsonl'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as FailureRecord);
    assert.deepEqual(
      failures.map((f) => f.line).sort((a, b) => a! - b!),
      [5, 18],
    );
    for (const failure of failures) assert.equal(failure.error.code, 'invalid_input');
  } finally {
    client.destroy();
  }
});
