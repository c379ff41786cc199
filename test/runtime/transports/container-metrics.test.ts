/**
 * The container image's entry (lib/runtime/transports/container-main.ts, as its Dockerfile runs it) writes CloudWatch EMF by
 * default: with ARCLIGHT_METRICS unset, its stdout (what the SageMaker and ECS log drivers ship) carries the cold
 * start's metrics and, after /ping and inference requests, the request metrics; ARCLIGHT_METRICS=off silences them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { test } from 'node:test';
import { ENV } from '../../../lib/contract.js';
import { DIGITS_ONNX, REPO_ROOT, closedPort, digitsInferBody, loadDigitsExpected } from '../../helpers.js';

interface Emf {
  readonly _aws: { CloudWatchMetrics: { Namespace: string; Dimensions: string[][]; Metrics: { Name: string }[] }[] };
  readonly [metric: string]: unknown;
}

/** Runs the container main until its model is ready, sends `work` its URL, stops it with SIGTERM; its stdout lines. */
async function containerRun(env: Record<string, string>, work: (url: string) => Promise<void>): Promise<string[]> {
  const port = await closedPort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/runtime/transports/container-main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      [ENV.apiName]: 'digits',
      [ENV.modelUri]: DIGITS_ONNX,
      [ENV.workers]: '1',
      [ENV.metrics]: '',
      SAGEMAKER_BIND_TO_PORT: String(port),
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const url = `http://127.0.0.1:${port}`;
  try {
    for (const deadline = Date.now() + 60_000; ;) {
      const status = await fetch(`${url}/ping`).then(
        async (r) => (await r.arrayBuffer(), r.status),
        () => 0,
      );
      if (status === 200) break;
      assert.ok(Date.now() < deadline && child.exitCode === null, `not ready: ${stderr}${stdout}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await work(url);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  }
  return stdout.split('\n').filter(Boolean);
}

const emfOf = (lines: readonly string[]): Emf[] =>
  lines.filter((line) => line.startsWith('{') && line.includes('"_aws"')).map((line) => JSON.parse(line) as Emf);
const metricNames = (emf: Emf): string[] => emf._aws.CloudWatchMetrics.flatMap((m) => m.Metrics.map((x) => x.Name));

test('metrics on by default: the cold start, then /ping and inference requests as EMF on stdout', async () => {
  const images = loadDigitsExpected().images.slice(0, 3);
  const lines = await containerRun({}, async (url) => {
    for (let i = 0; i < 3; i++) assert.equal((await fetch(`${url}/ping`)).status, 200);
    const reply = await fetch(`${url}/v2/models/digits/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: digitsInferBody(images),
    });
    assert.equal(reply.status, 200, await reply.text());
    const bad = await fetch(`${url}/v2/models/digits/infer`, {
      method: 'POST',
      body: '{',
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(bad.status, 400);
  });
  const emf = emfOf(lines);
  assert.ok(emf.length >= 2, `EMF lines on stdout; got ${lines.join('\n')}`);
  for (const record of emf) {
    assert.equal(record._aws.CloudWatchMetrics[0]!.Namespace, 'Arclight');
    assert.deepEqual(record._aws.CloudWatchMetrics[0]!.Dimensions, [['apiName']]);
    assert.equal(record['apiName'], 'digits');
  }
  const coldStart = emf.find((record) => metricNames(record).includes('ColdStart'));
  assert.ok(coldStart, 'a cold-start line');
  assert.ok(metricNames(coldStart).includes('ModelFetchTime'));
  const requests = emf.find((record) => metricNames(record).includes('Latency'));
  assert.ok(requests, 'a request-metrics line (written when SIGTERM drains)');
  const latencies = requests['Latency'] as number[];
  // 3 pings, the readiness polls before them, one 200 inference and one 400: every request is counted.
  assert.ok(Array.isArray(latencies) && latencies.length >= 5, JSON.stringify(requests));
  assert.ok(Number(requests['Requests2xx']) >= 4);
  assert.equal(requests['Requests4xx'], 1);
});

test('ARCLIGHT_METRICS=off: no EMF line', async () => {
  const lines = await containerRun({ [ENV.metrics]: 'off' }, async (url) => {
    assert.equal((await fetch(`${url}/ping`)).status, 200);
  });
  assert.deepEqual(emfOf(lines), []);
});
