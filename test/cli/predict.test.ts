/**
 * `arclight predict` as a user runs it (`node bin/arclight.js predict ...`, a child process) against a runtime
 * serving digits on a real loopback socket.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  STACK_FRAME,
  closedPort,
  digitsInferBody,
  loadDigitsExpected,
  loadTestPredictor,
  runCli,
  startRuntime,
  startServer,
  stderrLines,
  type CliResult,
  type TestServer,
  contractError,
} from '../helpers.js';

const expected = loadDigitsExpected();

let server: TestServer;
let dir: string;

before(async () => {
  server = await startServer(
    await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) }),
  );
  dir = await mkdtemp(join(tmpdir(), 'arclight-cli-predict-'));
});

after(async () => {
  await server?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function pixelsOf(i: number): number[] {
  return expected.images[i]!.map((p) => p * 16);
}

function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, `exit code ${result.code}; stderr:\n${result.stderr}`);
  const lines = stderrLines(result.stderr);
  assert.equal(lines.length, 1, `one line on stderr, got:\n${lines.join('\n')}`);
  assert.match(lines[0]!, /^arclight: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK_FRAME);
  assert.equal(result.stdout, '');
}

describe('arclight predict', { concurrency: true }, () => {
  test('--data posts JSON and prints the answer; exit 0', async () => {
    const result = await runCli(['predict', `${server.url}/`, '--data', JSON.stringify({ pixels: pixelsOf(0) })]);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(stderrLines(result.stderr), []);
    assert.ok(result.stdout.endsWith('}\n'), 'the body, then a newline');
    const answer = JSON.parse(result.stdout) as { digit: number; probabilities: number[] };
    assert.equal(answer.digit, expected.labels[0]);
    assert.equal(answer.probabilities.length, 10);
  });

  test('--file with a .json file posts it as JSON', async () => {
    const file = join(dir, 'batch.json');
    await writeFile(file, JSON.stringify({ images: [pixelsOf(1), pixelsOf(2), pixelsOf(3)] }));
    const result = await runCli(['predict', `${server.url}/`, '--file', file]);
    assert.equal(result.code, 0, result.stderr);
    const digits = (JSON.parse(result.stdout) as { digit: number }[]).map((p) => p.digit);
    assert.deepEqual(digits, expected.labels.slice(1, 4));
  });

  test('an Open Inference Protocol request to /v2/models/digits/infer prints the logits', async () => {
    const result = await runCli([
      'predict',
      `${server.url}/v2/models/digits/infer`,
      '--data',
      digitsInferBody([expected.images[5]!]),
    ]);
    assert.equal(result.code, 0, result.stderr);
    const body = JSON.parse(result.stdout) as { outputs: { name: string; data: number[] }[] };
    assert.equal(body.outputs[0]!.name, 'logits');
    body.outputs[0]!.data.forEach((v, k) => assert.ok(Math.abs(v - expected.logits[5]![k]!) <= 1e-4, `logit ${k}`));
  });

  test('an HTTP 400 prints the error body and exits 1', async () => {
    const result = await runCli(['predict', `${server.url}/`, '--data', '{"pixels": [1, 2, 3]}']);
    assert.equal(result.code, 1);
    const body = { error: contractError(JSON.parse(result.stdout)) };
    assert.equal(body.error.code, 'invalid_input');
    assert.match(body.error.message, /at \$\.pixels: an image has 64 pixels/);
    assert.deepEqual(stderrLines(result.stderr), [
      `arclight: HTTP 400 invalid_input: ${body.error.message} (request id ${body.error.requestId})`,
    ]);
  });

  test('a 404 exits 1 too', async () => {
    const result = await runCli(['predict', `${server.url}/v2/models/other/infer`, '--data', '{}']);
    assert.equal(result.code, 1);
    const error = contractError(JSON.parse(result.stdout));
    assert.equal(error.code, 'model_not_found');
    assert.deepEqual(stderrLines(result.stderr), [
      `arclight: HTTP 404 model_not_found: ${error.message} (request id ${error.requestId})`,
    ]);
  });

  test('--content-type overrides the type: text to the digits predictor is a 415', async () => {
    const result = await runCli(['predict', `${server.url}/`, '--data', '"hi"', '--content-type', 'text/plain']);
    assert.equal(result.code, 1);
    assert.equal(contractError(JSON.parse(result.stdout)).code, 'unsupported_media_type');
  });

  test('an API that is not running: one line naming the URL and the reason', async () => {
    const url = `http://127.0.0.1:${await closedPort()}/`;
    const result = await runCli(['predict', url, '--data', '{}']);
    assertOneLineError(result, new RegExp(`cannot reach ${url}: ECONNREFUSED\\. Is the API running\\?`));
  });

  test('--data that is not JSON, --data with --file, no payload, a bad URL, a missing --file: one line each', async () => {
    const cases: [string[], RegExp][] = [
      [['predict', `${server.url}/`, '--data', '{pixels: [1]}'], /--data is not valid JSON/],
      [['predict', `${server.url}/`, '--data', '{}', '--file', 'x.json'], /give --data or --file, not both/],
      [['predict', `${server.url}/`], /nothing to send/],
      [['predict', 'not a url', '--data', '{}'], /'not a url' is neither a URL nor an API name/],
      [
        ['predict', `${server.url}/`, '--file', join(dir, 'absent.json')],
        /--file .*absent\.json cannot be read \(ENOENT\)/,
      ],
    ];
    const results = await Promise.all(cases.map(([args]) => runCli(args)));
    results.forEach((result, i) => assertOneLineError(result, cases[i]![1]));
  });
});
