/**
 * `arclight serve` as a user runs it: `node bin/arclight.js serve ...` in a child process, talked to over a real
 * socket; startup problems are one line on stderr and a non-zero exit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import {
  DIGITS_CHECKPOINT,
  DIGITS_CLASS,
  DIGITS_DECLARED,
  DIGITS_MODULE,
  DIGITS_ONNX,
  DIGITS_TORCHSCRIPT,
  assertBatchLogits,
  DIGITS_PREDICTOR,
  REPO_ROOT,
  STACK_FRAME,
  closedPort,
  collect,
  loadDigitsExpected,
  runCli,
  spawnCli,
  stderrLines,
  waitForStderr,
  type CliResult,
  contractError,
} from '../../helpers.js';

const expected = loadDigitsExpected();
const SERVING = /arclight: serving '([^']+)' on (http:\/\/127\.0\.0\.1:(\d+))\/ \(ready\)\n/;

let dir: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'arclight-cli-serve-'));
});

after(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Asserts the run failed with exactly one `arclight: error:` line matching `pattern`, and no stack. */
function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.notEqual(result.code, 0, `exit code ${result.code}; stderr:\n${result.stderr}`);
  assert.equal(result.signal, null);
  const lines = stderrLines(result.stderr);
  assert.equal(lines.length, 1, `one line on stderr, got:\n${lines.join('\n')}`);
  assert.match(lines[0]!, /^arclight: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK_FRAME);
  assert.doesNotMatch(result.stderr, /"stack"/, 'no stack inside a JSON log record either');
  assert.equal(result.stdout, '');
}

/** The indexes of a few fixture images the model classifies correctly, one per digit. */
function oneImagePerDigit(): number[] {
  const picked = new Map<number, number>();
  expected.labels.forEach((label, i) => {
    const logits = expected.logits[i]!;
    if (!picked.has(label) && logits.indexOf(Math.max(...logits)) === label) picked.set(label, i);
  });
  return [...picked.values()];
}

describe('arclight serve --embedded-s3 with the digits predictor', () => {
  test('announces its URL, classifies digits over HTTP, answers predict, and exits 0 on SIGTERM', async () => {
    const child = spawnCli([
      'serve',
      '--model',
      DIGITS_ONNX,
      '--predictor',
      DIGITS_PREDICTOR,
      '--name',
      'digits',
      '--port',
      '0',
      '--embedded-s3',
    ]);
    const exited = collect(child, 60_000);
    try {
      const [, name, url, port] = await waitForStderr(child, SERVING);
      assert.equal(name, 'digits');
      assert.notEqual(Number(port), 0);

      for (const i of oneImagePerDigit()) {
        const response = await fetch(`${url}/`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ pixels: expected.images[i]!.map((p) => p * 16) }),
          signal: AbortSignal.timeout(10_000),
        });
        assert.equal(response.status, 200);
        assert.equal(((await response.json()) as { digit: number }).digit, expected.labels[i], `image ${i}`);
      }
      const metadata = (await (await fetch(`${url}/v2/models/digits`)).json()) as { name: string };
      assert.equal(metadata.name, 'digits');

      const i = oneImagePerDigit()[4]!;
      const predicted = await runCli([
        'predict',
        `${url}/`,
        '--data',
        JSON.stringify({ pixels: expected.images[i]!.map((p) => p * 16) }),
      ]);
      assert.equal(predicted.code, 0, predicted.stderr);
      assert.equal((JSON.parse(predicted.stdout) as { digit: number }).digit, expected.labels[i]);

      const refused = await runCli(['predict', `${url}/`, '--data', '{"pixels": [1, 2]}']);
      assert.equal(refused.code, 1);
      const error = contractError(JSON.parse(refused.stdout));
      assert.equal(error.code, 'invalid_input');
      assert.ok(
        stderrLines(refused.stderr).includes(
          `arclight: HTTP 400 invalid_input: ${error.message} (request id ${error.requestId})`,
        ),
        refused.stderr,
      );
    } finally {
      child.kill('SIGTERM');
    }
    const started = performance.now();
    const result = await exited;
    const stopMs = performance.now() - started;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.signal, null);
    assert.match(result.stderr, /arclight: SIGTERM, stopping/);
    assert.ok(stopMs < 3000, `stopped after ${Math.round(stopMs)} ms`);
    assert.doesNotMatch(result.stderr, STACK_FRAME);

    // The model went through the embedded S3 server, as a deployed function loads it.
    const logs = result.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    const ready = logs.find((record) => record['message'] === 'model ready');
    assert.ok(ready, `a 'model ready' log record; stdout:\n${result.stdout}`);
    assert.match(String(ready['model']), /^s3:\/\/[^/]+\/digits\.onnx$/);
    assert.equal(logs.filter((record) => record['message'] === 'request').length, oneImagePerDigit().length + 3);
  });

  test('a typed TypeScript predictor outside any "type": "module" package loads and serves', async () => {
    // A fresh folder with no package.json: Node takes .ts there as CommonJS, as in most users' projects.
    const predictor = join(dir, 'typed-predictor.ts');
    const lib = pathToFileURL(join(REPO_ROOT, 'lib/predictor.ts')).href;
    await writeFile(
      predictor,
      [
        `import { definePredictor } from '${lib}';`,
        `interface Answer { readonly greeting: string; readonly inputs: number }`,
        `const greeting: string = 'hello';`,
        `export default definePredictor({`,
        `  predict: (_request, { model }): Answer => ({ greeting, inputs: model.inputs.length }),`,
        `});`,
        ``,
      ].join('\n'),
    );
    const child = spawnCli(['serve', '--model', DIGITS_ONNX, '--predictor', predictor, '--port', '0']);
    const exited = collect(child, 30_000);
    try {
      const [, , url] = await waitForStderr(child, SERVING);
      const response = await fetch(`${url}/`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      assert.equal(response.status, 200);
      assert.deepEqual(await response.json(), { greeting: 'hello', inputs: 1 });
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal((await exited).code, 0);
  });

  test('SIGINT stops it too, with no request ever made', async () => {
    const child = spawnCli(['serve', '--model', DIGITS_ONNX, '--port', '0', '--log-level', 'SILENT']);
    const exited = collect(child, 30_000);
    const [, name] = await waitForStderr(child, SERVING);
    assert.equal(name, 'digits', 'the name defaults to the model file name');
    child.kill('SIGINT');
    const result = await exited;
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '', 'SILENT logs nothing');
  });
});

describe('arclight serve startup errors: one line, non-zero exit, no stack', { concurrency: true }, () => {
  test('a missing model file', async () => {
    const model = join(dir, 'absent.onnx');
    const result = await runCli(['serve', '--model', model, '--port', '0']);
    assertOneLineError(result, new RegExp(`model file ${model} does not exist`));
  });

  test('a model that is not ONNX', async () => {
    const model = join(dir, 'notes.onnx');
    await writeFile(model, 'these are my notes, not a model\n');
    const result = await runCli(['serve', '--model', model, '--port', '0']);
    assertOneLineError(result, new RegExp(`model ${model} is not a valid ONNX model: .+\\. Export it with`));
  });

  test('a predictor that fails to import', async () => {
    const predictor = join(dir, 'broken-predictor.ts');
    await writeFile(predictor, `const labels: string[] = JSON.parse('not json');\nexport default labels;\n`);
    const result = await runCli(['serve', '--model', DIGITS_ONNX, '--predictor', predictor, '--port', '0']);
    assertOneLineError(result, new RegExp(`predictor ${predictor} failed to import: .*JSON`));
  });

  test('an s3:// model whose endpoint cannot be reached', async () => {
    const endpoint = `http://127.0.0.1:${await closedPort()}`;
    const result = await runCli(['serve', '--model', 's3://models/digits.onnx', '--port', '0'], {
      env: {
        AWS_ENDPOINT_URL_S3: endpoint,
        AWS_ACCESS_KEY_ID: 'AKIAIOSFODNN7EXAMPLE',
        AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
        AWS_REGION: 'us-east-1',
      },
    });
    assertOneLineError(
      result,
      new RegExp(`cannot reach S3 at ${endpoint} to read s3://models/digits\\.onnx: ECONNREFUSED`),
    );
  });

  test('--verbose adds the stack', async () => {
    const model = join(dir, 'verbose.onnx');
    await writeFile(model, 'not a model either');
    const result = await runCli(['--verbose', 'serve', '--model', model, '--port', '0']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /^arclight: error: model .+ is not a valid ONNX model/m);
    assert.match(result.stderr, STACK_FRAME);
  });

  test('a usage error (no --model) names the option and exits non-zero', async () => {
    const result = await runCli(['serve', '--port', '0']);
    assert.notEqual(result.code, 0);
    assert.match(result.stderr, /required option '--model/);
    assert.doesNotMatch(result.stderr, STACK_FRAME);
  });
});

describe('--help', { concurrency: true }, () => {
  test('arclight --help lists the commands', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Usage: arclight \[options\] \[command\]/m);
    assert.match(result.stdout, /^\s+serve\s/m);
    assert.match(result.stdout, /^\s+predict <url\|api>/m);
    assert.match(result.stdout, /--verbose/);
  });

  test('arclight serve --help lists its options', async () => {
    const result = await runCli(['serve', '--help']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Usage: arclight serve \[options\]/m);
    for (const option of ['--model', '--predictor', '--name', '--port', '--embedded-s3', '--sha256', '--log-level']) {
      assert.match(result.stdout, new RegExp(`^\\s+${option}\\b`, 'm'), option);
    }
  });

  test('arclight predict --help lists its options', async () => {
    const result = await runCli(['predict', '--help']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /^Usage: arclight predict \[options\] <url\|api>/m);
    for (const option of ['--data', '--file', '--content-type', '--timeout-ms']) {
      assert.match(result.stdout, new RegExp(`^\\s+${option}\\b`, 'm'), option);
    }
  });
});

describe('arclight serve with torch models', () => {
  const DECLARED_INPUTS = JSON.stringify(DIGITS_DECLARED.inputs);

  async function serveUntilReady(args: readonly string[]) {
    const child = spawnCli(['serve', '--port', '0', '--name', 'digits', '--log-level', 'WARN', ...args]);
    const exited = collect(child, 90_000);
    const [, , url] = await waitForStderr(child, SERVING, 60_000);
    return { child, exited, url: url! };
  }

  test("--model x.pt: the format and forward's input name from the file; reference logits through OIP", async () => {
    const { child, exited, url } = await serveUntilReady(['--model', DIGITS_TORCHSCRIPT]);
    try {
      const meta = (await (await fetch(`${url}/`)).json()) as {
        name: string;
        format: string;
        inputs: { name: string }[];
      };
      assert.equal(meta.name, 'digits');
      assert.equal(meta.format, 'torchscript');
      assert.deepEqual(
        meta.inputs.map((i) => i.name),
        ['x'],
      );
      const body = JSON.stringify({
        inputs: [{ name: 'x', datatype: 'FP32', shape: [2, 1, 8, 8], data: expected.images.slice(0, 2).flat() }],
      });
      const reply = await fetch(`${url}/v2/models/digits/infer`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(reply.status, 200);
      const { outputs } = (await reply.json()) as { outputs: { data: number[] }[] };
      assertBatchLogits(outputs[0]!.data, 2, expected.logits);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal((await exited).code, 0);
  });

  test('--model x.ckpt --module --class --inputs with the digits predictor classifies digits', async () => {
    const { child, exited, url } = await serveUntilReady([
      '--model',
      DIGITS_CHECKPOINT,
      '--module',
      DIGITS_MODULE,
      '--class',
      DIGITS_CLASS,
      '--inputs',
      DECLARED_INPUTS,
      '--predictor',
      DIGITS_PREDICTOR,
    ]);
    try {
      const meta = (await (await fetch(`${url}/`)).json()) as {
        format: string;
        inputs: { name: string; shape: number[] }[];
      };
      assert.equal(meta.format, 'lightning-checkpoint');
      assert.deepEqual(
        meta.inputs.map(({ name, shape }) => ({ name, shape })),
        [{ name: 'image', shape: [-1, 1, 8, 8] }],
      );
      for (const index of oneImagePerDigit()) {
        const pixels = expected.images[index]!.map((v) => v * 16);
        const reply = await fetch(`${url}/`, {
          method: 'POST',
          body: JSON.stringify({ pixels }),
          headers: { 'content-type': 'application/json' },
        });
        assert.equal(reply.status, 200);
        assert.equal(((await reply.json()) as { digit: number }).digit, expected.labels[index]);
      }
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal((await exited).code, 0);
  });

  for (const [title, args, pattern] of [
    [
      'a checkpoint without --module and --class',
      ['--model', DIGITS_CHECKPOINT],
      /needs the Python module file and class/,
    ],
    [
      '--module without --class',
      ['--model', DIGITS_CHECKPOINT, '--module', DIGITS_MODULE],
      /--module and --class go together/,
    ],
    ['--inputs that is not JSON', ['--model', DIGITS_TORCHSCRIPT, '--inputs', '[{'], /--inputs is not valid JSON/],
    [
      '--inputs with a bad datatype',
      ['--model', DIGITS_TORCHSCRIPT, '--inputs', '[{"name":"x","datatype":"F32","shape":[1]}]'],
      /--inputs is not a list of tensors: 0\.datatype datatype must be one of BOOL/,
    ],
    ['an unknown --format', ['--model', DIGITS_TORCHSCRIPT, '--format', 'keras'], /argument 'keras' is invalid/],
  ] as const) {
    test(`${title}: one line saying what to fix`, async () => {
      const result = await runCli(['serve', '--port', '0', ...args], { timeoutMs: 60_000 });
      if (title === 'an unknown --format') {
        assert.notEqual(result.code, 0);
        assert.match(result.stderr, pattern);
        return;
      }
      assertOneLineError(result, pattern);
    });
  }
});
