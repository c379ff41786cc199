/**
 * Arclight as its users meet it: `npm pack`, then the tarball installed from the npm registry into
 * (a) an app made by the current `cdk init app --language typescript` (the aws-cdk CLI of our devDependencies),
 * (b) an app in the classic ts-node / CommonJS / jest + ts-jest layout on the lowest aws-cdk-lib we support, and
 * (c) an app made by `arclight init`.
 * Each is type-checked, synthesized and tested with its own tools, and serves a prediction through `arclight dev`.
 * Slow (npm installs): the three installs run at once, started before the first test; everything else runs one
 * app at a time. The children get no npm_* variables from `npm test`: the repo's .npmrc must not leak into them.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { argmax, loadDigitsExpected, REPO_ROOT } from '../helpers.js';

const MINUTE = 60_000;
const TARBALL_LIMIT_BYTES = 2 * 1024 * 1024;
const HERE = join(REPO_ROOT, 'test', 'package');
const WORK = mkdtempSync(join(tmpdir(), 'arclight-consumer-'));
const CURRENT = join(WORK, 'current-app');
const CLASSIC = join(WORK, 'classic-app');
const STARTER = join(WORK, 'starter-api');

/** One handwritten "2" from the held-out set, as the 0–16 grey levels the predictors take. */
const expected = loadDigitsExpected();
const SAMPLE = { pixels: expected.images[0]!.map((v) => Math.round(v * 16)), label: expected.labels[0]! };

interface Ran {
  readonly code: number | null;
  readonly output: string;
  readonly ms: number;
}

/** The environment of a user's shell: this process's, less what `npm test` added (npm_config_*, npm_package_*). */
function userEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')));
}

function run(command: string, args: readonly string[], cwd: string, timeoutMs = 10 * MINUTE): Promise<Ran> {
  const started = Date.now();
  const child = spawn(command, args, { cwd, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const timer = setTimeout(() => killGroup(child.pid), timeoutMs);
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output, ms: Date.now() - started });
    });
  });
}

async function runOk(command: string, args: readonly string[], cwd: string, timeoutMs?: number): Promise<Ran> {
  const ran = await run(command, args, cwd, timeoutMs);
  assert.equal(ran.code, 0, `${command} ${args.join(' ')} in ${cwd} failed:\n${ran.output.slice(-6000)}`);
  return ran;
}

function killGroup(pid: number | undefined, signal: NodeJS.Signals = 'SIGKILL'): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, signal);
  } catch {
    // already gone
  }
}

const timings: Record<string, number> = {};
function timed(name: string, ran: Ran): Ran {
  timings[name] = ran.ms;
  return ran;
}

let tarball = '';
const installs = new Map<string, Promise<Ran>>();

function install(dir: string, args: readonly string[]): Promise<Ran> {
  return run('npm', ['install', '--no-audit', '--no-fund', ...args], dir, 15 * MINUTE);
}

/** The files every consumer app declares: the stack with three APIs, the custom predictor, the model, the test. */
function addArclightFiles(dir: string, stackFile: string, testFile: string): void {
  for (const sub of ['lib', 'functions', 'models', 'test']) mkdirSync(join(dir, sub), { recursive: true });
  cpSync(join(HERE, 'app', 'stack.ts'), join(dir, 'lib', stackFile));
  cpSync(join(HERE, 'app', 'digits.ts'), join(dir, 'functions', 'digits.ts'));
  cpSync(join(REPO_ROOT, 'templates', 'models', 'digits.onnx'), join(dir, 'models', 'digits.onnx'));
  cpSync(join(HERE, 'app', 'jest-test.ts'), join(dir, 'test', testFile));
}

function writeJson(path: string, edit: (value: Record<string, unknown>) => void): void {
  const value = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  edit(value);
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
}

async function prepareCurrentApp(): Promise<void> {
  mkdirSync(CURRENT);
  await runOk(
    join(REPO_ROOT, 'node_modules', '.bin', 'cdk'),
    ['init', 'app', '--language', 'typescript', '--generate-only'],
    CURRENT,
  );
  // Replaces the template's test/current-app.test.ts, which tests an example queue left commented out.
  addArclightFiles(CURRENT, 'arclight-stack.ts', 'current-app.test.ts');
  // The template's bin/current-app.ts declares an empty stack; this one declares ours.
  writeFileSync(
    join(CURRENT, 'bin', 'current-app.ts'),
    "import * as cdk from 'aws-cdk-lib/core';\nimport { ArclightStack } from '../lib/arclight-stack';\n\nnew ArclightStack(new cdk.App(), 'ArclightStack');\n",
  );
  // README "Install": with npm 11, deny onnxruntime-node's install script in the app's package.json.
  writeJson(join(CURRENT, 'package.json'), (pkg) => (pkg['allowScripts'] = { 'onnxruntime-node': false }));
}

function prepareClassicApp(): void {
  mkdirSync(join(CLASSIC, 'bin'), { recursive: true });
  for (const file of ['package.json', 'tsconfig.json', 'jest.config.js', 'cdk.json']) {
    cpSync(join(HERE, 'classic', file), join(CLASSIC, file));
  }
  cpSync(join(HERE, 'classic', 'app.ts'), join(CLASSIC, 'bin', 'app.ts'));
  addArclightFiles(CLASSIC, 'arclight-stack.ts', 'app.test.ts');
  // README "Install": the .npmrc setting, which npm 10 and 11 both honour.
  writeFileSync(join(CLASSIC, '.npmrc'), 'onnxruntime-node-install=skip\n');
}

async function prepareStarterApp(): Promise<void> {
  await runOk(process.execPath, [join(REPO_ROOT, 'bin', 'arclight.js'), 'init', STARTER], WORK);
  // The app names arclight by version, as from the registry; this one is the tarball.
  writeJson(join(STARTER, 'package.json'), (pkg) => {
    (pkg['dependencies'] as Record<string, string>)['arclight'] = `file:${tarball}`;
  });
}

before(async () => {
  assert.ok(existsSync(join(REPO_ROOT, 'dist', 'index.js')), 'dist/ is missing: npm test runs `npm run build` first');
  const packed = await runOk('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', WORK], REPO_ROOT);
  const [info] = JSON.parse(packed.output.slice(packed.output.indexOf('['))) as [{ filename: string }];
  tarball = join(WORK, info.filename);
  await prepareCurrentApp();
  prepareClassicApp();
  await prepareStarterApp();
  // The installs are mostly waiting on the network and the disk: all three at once.
  installs.set(CURRENT, install(CURRENT, [tarball]));
  installs.set(CLASSIC, install(CLASSIC, [tarball]));
  installs.set(STARTER, install(STARTER, []));
});

after(async () => {
  await Promise.allSettled(installs.values());
  process.stderr.write(`consumer test timings (ms): ${JSON.stringify(timings)}\n`);
  rmSync(WORK, { recursive: true, force: true });
});

async function installed(dir: string, name: string): Promise<string> {
  const ran = timed(`${name} npm install`, await installs.get(dir)!);
  assert.equal(ran.code, 0, `npm install in ${dir} failed:\n${ran.output.slice(-6000)}`);
  // No CUDA files: onnxruntime-node's install step did not run (it would have fetched them from outside the registry).
  const natives = join(dir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6', 'linux', 'x64');
  if (existsSync(natives)) assert.ok(!existsSync(join(natives, 'libonnxruntime_providers_cuda.so')));
  return ran.output;
}

/** `npx arclight dev` (or `npm start`) on a free port: one POST to the digits API must name the right digit. */
async function assertDevServes(dir: string, command: string, args: readonly string[]): Promise<unknown> {
  const child = spawn(command, args, { cwd: dir, env: userEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let output = '';
  try {
    const base = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no "ready" in 5 minutes:\n${output.slice(-4000)}`)), 5 * MINUTE);
      const onData = (chunk: string): void => {
        output += chunk;
        const ready = /serving \d+ APIs? on (http:\/\/[^/\s]+)\/ \(ready\)/.exec(output);
        if (ready) {
          clearTimeout(timer);
          resolve(ready[1]!);
        }
      };
      child.stdout.setEncoding('utf8').on('data', onData);
      child.stderr.setEncoding('utf8').on('data', onData);
      child.once('close', (code) => reject(new Error(`exited ${code} before ready:\n${output.slice(-4000)}`)));
    });
    const response = await fetch(`${base}/digits/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ pixels: SAMPLE.pixels }),
    });
    const body = (await response.json()) as { digit?: unknown };
    assert.equal(response.status, 200, JSON.stringify(body));
    assert.equal(body.digit, SAMPLE.label);
    assert.equal(body.digit, argmax(expected.logits[0]!));
    return body;
  } finally {
    const closed = new Promise((resolve) => child.once('close', resolve));
    killGroup(child.pid, 'SIGTERM');
    const timer = setTimeout(() => killGroup(child.pid), 30_000);
    await closed;
    clearTimeout(timer);
  }
}

/**
 * tsc with the app's own config plus strict and exactOptionalPropertyTypes on the app's code; with `declarations`,
 * a second run checks the .d.ts files too (slow: all of aws-cdk-lib's), of which none may be Arclight's.
 */
async function assertTypeChecks(dir: string, name: string, declarations: boolean): Promise<void> {
  timed(
    `${name} tsc`,
    await runOk('npx', ['tsc', '--noEmit', '--strict', '--exactOptionalPropertyTypes', '--skipLibCheck'], dir),
  );
  if (!declarations) return;
  // aws-cdk-lib's own .d.ts do not all hold under exactOptionalPropertyTypes, which is theirs to fix.
  const libs = await run(
    'npx',
    ['tsc', '--noEmit', '--strict', '--exactOptionalPropertyTypes', '--skipLibCheck', 'false'],
    dir,
  );
  const errors = libs.output.split('\n').filter((line) => /error TS\d+/.test(line));
  assert.deepEqual(
    errors.filter((line) => !line.startsWith('node_modules/aws-cdk-lib/')),
    [],
    libs.output.slice(-4000),
  );
}

async function assertSynth(dir: string, name: string): Promise<void> {
  const ran = timed(`${name} cdk synth`, await runOk('npx', ['cdk', 'synth', '--quiet'], dir));
  const template = JSON.parse(readFileSync(join(dir, 'cdk.out', 'ArclightStack.template.json'), 'utf8')) as {
    Resources: Record<string, { Type: string }>;
  };
  const types = Object.values(template.Resources).map((r) => r.Type);
  assert.ok(types.includes('AWS::SageMaker::Endpoint'), 'the SageMaker API synthesized');
  assert.ok(types.includes('AWS::ECS::Service'), 'the ECS API synthesized');
  assert.ok(types.includes('AWS::Lambda::Function'), 'the Lambda API synthesized');
  // Synth warnings name their ids, which the README documents with how to acknowledge them.
  assert.match(ran.output, /arclight:openApi/);
  assertBundledFromInstalledPackage(join(dir, 'cdk.out'));
}

/**
 * The image bundles were made from the installed package: their source maps (through dist/'s own maps) name the
 * runtime under node_modules/arclight, and the app's predictor.
 */
function assertBundledFromInstalledPackage(assembly: string): void {
  const sources = readdirSync(assembly, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && entry.name.startsWith('asset.'))
    .flatMap((entry) =>
      readdirSync(join(assembly, entry.name))
        .filter((file) => file.endsWith('.mjs.map'))
        .flatMap(
          (file) =>
            (JSON.parse(readFileSync(join(assembly, entry.name, file), 'utf8')) as { sources: string[] }).sources,
        ),
    );
  for (const expected of [
    'node_modules/arclight/lib/runtime/transports/lambda.ts',
    'node_modules/arclight/lib/runtime/transports/container-main.ts',
    'node_modules/arclight/lib/runtime/executors/onnx-worker.ts',
    'functions/digits.ts',
  ]) {
    assert.ok(sources.includes(expected), `${expected} is in a bundle's source map`);
  }
}

describe('the tarball', () => {
  test('holds the compiled package and nothing of the repository besides', async () => {
    const size = statSync(tarball).size;
    assert.ok(size <= TARBALL_LIMIT_BYTES, `${size} bytes`);
    timings['tarball bytes'] = size;
    const list = (await runOk('tar', ['tzf', tarball], WORK)).output
      .split('\n')
      .filter((line) => line !== '')
      .map((line) => line.replace(/^package\//, ''));
    for (const required of [
      'package.json',
      'README.md',
      'bin/arclight.js',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/index.js.map',
      'dist/cjs/index.cjs',
      'dist/cjs/index.d.cts',
      'dist/cli/main.js',
      'dist/runtime/transports/lambda.js',
      'dist/runtime/transports/container-main.js',
      'dist/runtime/executors/onnx-worker.js',
      'python/arclight_executor.py',
      'templates/app/_npmrc',
      'templates/models/digits.onnx',
    ]) {
      assert.ok(list.includes(required), `${required} is in the tarball`);
    }
    const strays = list.filter(
      (path) =>
        /^(test|bench|scripts|lib|models|functions|types|docs|\.ci)\//.test(path) ||
        /mobilenet|\.tgz$|^tsconfig.*\.json$/.test(path) ||
        (path.endsWith('.ts') && !path.endsWith('.d.ts') && !path.startsWith('templates/app/')),
    );
    assert.deepEqual(strays, []);
    for (const js of list.filter((path) => /^dist\/.*\.js$/.test(path))) {
      assert.ok(list.includes(js.replace(/\.js$/, '.d.ts')), `${js} has its declarations`);
      assert.ok(list.includes(`${js}.map`), `${js} has its source map`);
    }
  });
});

describe('an app from the current `cdk init app --language typescript`', () => {
  test('installs the tarball with nothing but the npm registry', async () => {
    await installed(CURRENT, 'current');
  });
  test('type-checks: strict, exactOptionalPropertyTypes, with and without skipLibCheck', () =>
    assertTypeChecks(CURRENT, 'current', true));
  test('cdk synth', () => assertSynth(CURRENT, 'current'));
  test("the app's jest test (npm test) imports Arclight", async () => {
    timed('current npm test', await runOk('npm', ['test'], CURRENT));
  });
  // On the assembly `cdk synth` just wrote (synth is what the test above checked); the starter app's `npm start`
  // below runs dev from the app command.
  test('npx arclight dev answers a prediction', async () => {
    await assertDevServes(CURRENT, 'npx', ['arclight', 'dev', '--assembly', 'cdk.out', '--port', '0']);
  });
});

describe('an app in the classic layout (ts-node, CommonJS, jest + ts-jest) on the lowest aws-cdk-lib supported', () => {
  test('installs the tarball with nothing but the npm registry', async () => {
    await installed(CLASSIC, 'classic');
  });
  // The same declarations as in the current app (through `types`, not `exports`): their check is not repeated.
  test('type-checks: strict, exactOptionalPropertyTypes', () => assertTypeChecks(CLASSIC, 'classic', false));
  test('cdk synth (ts-node --prefer-ts-exts)', () => assertSynth(CLASSIC, 'classic'));
  test("the app's jest test (npm test, ts-jest) imports Arclight", async () => {
    timed('classic npm test', await runOk('npm', ['test'], CLASSIC));
  });
  test('npx arclight dev answers a prediction', async () => {
    await assertDevServes(CLASSIC, 'npx', ['arclight', 'dev', '--assembly', 'cdk.out', '--port', '0']);
  });
});

describe('a new project from `arclight init`', () => {
  test('npm install', async () => {
    await installed(STARTER, 'starter');
  });
  test('npm test', async () => {
    timed('starter npm test', await runOk('npm', ['test'], STARTER));
  });
  test('npm start serves a prediction', async () => {
    const body = (await assertDevServes(STARTER, 'npm', ['start', '--', '--port', '0'])) as { probabilities: number[] };
    assert.equal(body.probabilities.length, 10);
    assert.ok(Math.abs(body.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-5);
  });
});
