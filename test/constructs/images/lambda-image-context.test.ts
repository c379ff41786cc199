/**
 * The Lambda image's build context as synth generates it, for arm64 and x64: one platform's onnxruntime natives, a
 * Dockerfile on the Lambda Node.js 22 base image naming the bundled handler, a size that fits the budget. Then the x64
 * context is laid out as its Dockerfile's COPY lines would lay it out in the image, in a folder outside the repository,
 * and its bundle is run by a plain `node` (no loader, no NODE_PATH): it loads onnxruntime from beside itself and
 * answers an API Gateway event with digits.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, readdirSync, statSync, type Dirent } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join, relative, resolve, sep } from 'node:path';
import { before, describe, test } from 'node:test';
import {
  BUNDLE_FILE,
  buildLambdaImageContext,
  nativeDir,
  type NodeArch,
} from '../../../lib/constructs/images/lambda-image-context.js';
import { sha256, useScratchTmpdir } from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, REPO_ROOT, httpApiV2Event, loadDigitsExpected } from '../../helpers.js';

useScratchTmpdir();

const SIZE_BUDGET = 60_000_000;
/** ELF e_machine of each architecture. */
const ELF_MACHINE: Record<NodeArch, number> = { x64: 0x3e, arm64: 0xb7 };
const NATIVE_FILE = /\.(node|so(\.\d+)*|dylib|dll)$/;

const contexts: Partial<Record<NodeArch, string>> = {};

before(() => {
  contexts.x64 = buildLambdaImageContext({ arch: 'x64', predictorEntry: resolve(DIGITS_PREDICTOR) });
  contexts.arm64 = buildLambdaImageContext({ arch: 'arm64' });
});

function files(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as Dirent[])
    .filter((e) => e.isFile())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
}

function directories(dir: string): string[] {
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as Dirent[])
    .filter((e) => e.isDirectory())
    .map((e) => relative(dir, join(e.parentPath, e.name)));
}

function sizeOf(dir: string): number {
  return files(dir).reduce((total, file) => total + statSync(join(dir, file)).size, 0);
}

interface CopyLine {
  readonly sources: string[];
  readonly destination: string;
}

function dockerfile(context: string): { from: string[]; cmd: unknown; copies: CopyLine[] } {
  const lines = readFileSync(join(context, 'Dockerfile'), 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('#'));
  const args = (l: string): string[] => l.trim().split(/\s+/).slice(1);
  const cmd = lines.filter((l) => l.startsWith('CMD '));
  assert.equal(cmd.length, 1);
  return {
    from: lines.filter((l) => l.startsWith('FROM ')).map((l) => args(l).join(' ')),
    cmd: JSON.parse(cmd[0]!.slice(4)),
    copies: lines
      .filter((l) => l.startsWith('COPY '))
      .map((l) => {
        const a = args(l);
        return { sources: a.slice(0, -1), destination: a.at(-1)! };
      }),
  };
}

/** Lays the context out as `COPY` would in the image, with `${LAMBDA_TASK_ROOT}` a fresh folder; returns that folder. */
function layOutAsImage(context: string): string {
  const taskRoot = mkdtempSync(join(tmpdir(), 'lambda-task-root-'));
  for (const { sources, destination } of dockerfile(context).copies) {
    const target = destination.replace('${LAMBDA_TASK_ROOT}', taskRoot);
    for (const source of sources) {
      const from = join(context, source);
      if (statSync(from).isDirectory()) cpSync(from, target, { recursive: true });
      else cpSync(from, join(target, basename(source)));
    }
  }
  return taskRoot;
}

describe('buildLambdaImageContext', () => {
  for (const arch of ['arm64', 'x64'] as const) {
    test(`${arch}: onnxruntime-node with exactly the linux/${arch} native files`, () => {
      const context = contexts[arch]!;
      const ortBin = join(context, 'node_modules', 'onnxruntime-node', 'bin');
      assert.deepEqual(
        directories(ortBin).sort(),
        ['napi-v6', join('napi-v6', 'linux'), join('napi-v6', 'linux', arch)].sort(),
      );
      const ortSource = join(REPO_ROOT, 'node_modules', 'onnxruntime-node');
      const natives = files(context).filter((f) => NATIVE_FILE.test(f));
      const expectedDir = join('node_modules', 'onnxruntime-node', nativeDir(arch));
      assert.deepEqual(
        natives.sort(),
        files(join(ortSource, nativeDir(arch)))
          .map((f) => join(expectedDir, f))
          .sort(),
      );
      assert.ok(
        natives.some((f) => f.endsWith('onnxruntime_binding.node')),
        natives.join(),
      );
      for (const native of natives) {
        if (!native.endsWith('.node') && !/\.so/.test(native)) continue;
        const header = readFileSync(join(context, native)).subarray(0, 20);
        assert.equal(header.subarray(0, 4).toString('latin1'), '\x7fELF', native);
        assert.equal(header.readUInt16LE(18), ELF_MACHINE[arch], `${native} is built for ${arch}`);
        assert.equal(
          sha256(join(context, native)),
          sha256(join(ortSource, native.slice('node_modules/onnxruntime-node/'.length))),
        );
      }
      assert.ok(statSync(join(context, 'node_modules', 'onnxruntime-common', 'package.json')).isFile(), 'common');
    });

    test(`${arch}: a Dockerfile on the Lambda Node.js 22 base image whose CMD names the bundled handler`, () => {
      const context = contexts[arch]!;
      const { from, cmd, copies } = dockerfile(context);
      assert.deepEqual(from, ['public.ecr.aws/lambda/nodejs:22']);
      assert.deepEqual(cmd, ['index.handler']);
      assert.equal(BUNDLE_FILE, 'index.mjs', 'CMD index.handler loads index.mjs from the task root');
      // Every COPY source is in the context, and node_modules lands beside the bundle.
      for (const { sources } of copies) for (const s of sources) assert.ok(statSync(join(context, s)), s);
      const taskRoot = layOutAsImage(context);
      assert.deepEqual(readdirSync(taskRoot).sort(), ['index.mjs', 'index.mjs.map', 'node_modules']);
      assert.ok(statSync(join(taskRoot, 'node_modules', 'onnxruntime-node', nativeDir(arch))).isDirectory(), arch);
      // No --enable-source-maps (0.3–0.4 s of every init phase; the bundle keeps names instead), telemetry off.
      const env = readFileSync(join(context, 'Dockerfile'), 'utf8')
        .split('\n')
        .filter((l) => l.startsWith('ENV '))
        .flatMap((l) => l.slice(4).trim().split(/\s+/));
      assert.deepEqual(env.sort(), ['HOME=/tmp', 'ORT_DISABLE_TELEMETRY=1']);
    });

    test(`${arch}: the entry awaits the model at its top level, and the bundle keeps class names`, () => {
      const bundle = readFileSync(join(contexts[arch]!, BUNDLE_FILE), 'utf8');
      assert.match(bundle, /export\s*\{[^}]*handler[^}]*\}/);
      assert.match(bundle, /=\s*await\s+\w+\(/, 'a top-level await makes the handler');
      // A class that names itself nowhere in its code keeps its name through minification (esbuild keepNames).
      assert.match(bundle, /static\s*\{\s*\w+\(this,\s*"OnnxExecutor"\)\s*\}/, 'names kept');
    });

    test(`${arch}: fits the 60 MB budget`, (t) => {
      const context = contexts[arch]!;
      const bytes = sizeOf(context);
      const bundle = statSync(join(context, BUNDLE_FILE)).size;
      t.diagnostic(`${arch} context: ${(bytes / 1e6).toFixed(1)} MB (bundle ${(bundle / 1e6).toFixed(2)} MB)`);
      assert.ok(bytes <= SIZE_BUDGET, `${arch} context is ${bytes} bytes`);
    });
  }

  test('is reproducible: the same inputs give the same files, so the image asset hash only moves with the code', () => {
    const again = buildLambdaImageContext({ arch: 'x64', predictorEntry: resolve(DIGITS_PREDICTOR) });
    const digest = (dir: string): string[] =>
      files(dir)
        .sort()
        .map((f) => `${f} ${sha256(join(dir, f))}`);
    assert.deepEqual(digest(again), digest(contexts.x64!));
  });

  test('the bundle holds the runtime and the predictor, never the CDK side', () => {
    const sources = (arch: NodeArch): string[] =>
      (JSON.parse(readFileSync(join(contexts[arch]!, `${BUNDLE_FILE}.map`), 'utf8')) as { sources: string[] }).sources;
    for (const arch of ['x64', 'arm64'] as const) {
      const list = sources(arch);
      assert.ok(
        list.some((s) => s.endsWith('lib/runtime/transports/lambda.ts')),
        `${arch}: the runtime`,
      );
      // Only esbuild's virtual entry sits in lib/constructs; onnxruntime stays a package beside the bundle.
      const foreign = list.filter(
        (s) =>
          /node_modules\/(aws-cdk-lib|constructs|cdk-nag|onnxruntime-[a-z]+)\//.test(s) ||
          (s.includes('lib/constructs/') && !s.endsWith('lib/constructs/arclight-lambda-entry.ts')),
      );
      assert.deepEqual(foreign, [], arch);
    }
    const predictor = (arch: NodeArch): boolean => sources(arch).some((s) => s.endsWith(DIGITS_PREDICTOR));
    assert.ok(predictor('x64'), 'the digits predictor is in the x64 bundle');
    assert.ok(!predictor('arm64'), 'the default-predictor bundle holds no user predictor');
  });
});

describe('the x64 bundle, laid out as in the image', () => {
  test('loads onnxruntime from beside itself and classifies digits from an API Gateway event', async (t) => {
    const taskRoot = layOutAsImage(contexts.x64!);
    assert.ok(relative(REPO_ROOT, taskRoot).startsWith('..'), 'outside the repository');
    const expected = loadDigitsExpected();
    const greys = expected.images.slice(0, 12).map((image) => image.map((v) => Math.round(v * 16)));
    const events = [
      httpApiV2Event({ method: 'GET', path: '/v2/health/ready' }),
      httpApiV2Event({ path: '/', body: JSON.stringify({ images: greys }) }),
      httpApiV2Event({ path: '/', body: JSON.stringify({ pixels: greys[0] }) }),
    ];
    const script = `
      import { readFileSync } from 'node:fs';
      import { createRequire } from 'node:module';
      import { pathToFileURL } from 'node:url';
      const events = JSON.parse(readFileSync(0, 'utf8'));
      const { handler } = await import(pathToFileURL(process.cwd() + '/index.mjs').href);
      const results = [];
      for (const event of events) results.push(await handler(event, { awsRequestId: 'test-request' }));
      const mapped = readFileSync('/proc/self/maps', 'utf8').split('\\n')
        .map((line) => line.trim().split(/\\s+/).slice(5).join(' ')).filter((p) => /onnxruntime.*\\.(node|so[.0-9]*)$/.test(p));
      const loaded = Object.keys(createRequire(import.meta.url).cache).filter((p) => p.includes('onnxruntime'));
      process.stdout.write('\\nRESULT ' + JSON.stringify({ results, mapped: [...new Set(mapped)], loaded }) + '\\n');
    `;
    const started = performance.now();
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      cwd: taskRoot,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        NODE_OPTIONS: '--enable-source-maps',
        ARCLIGHT_API_NAME: 'digits',
        ARCLIGHT_MODEL_URI: resolve(DIGITS_ONNX),
        ARCLIGHT_MODEL_SHA256: sha256(DIGITS_ONNX),
        ARCLIGHT_LOG_LEVEL: 'ERROR',
      },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    child.stdin.end(JSON.stringify(events));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const code = await new Promise<number | null>((done) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
      child.on('close', (c) => {
        clearTimeout(timer);
        done(c);
      });
    });
    t.diagnostic(`child: import + 3 invocations in ${(performance.now() - started).toFixed(0)} ms`);
    assert.equal(code, 0, stderr);
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, `no result; stdout:\n${stdout}\nstderr:\n${stderr}`);
    const { results, mapped, loaded } = JSON.parse(line.slice(7)) as {
      results: { statusCode: number; body: string }[];
      mapped: string[];
      loaded: string[];
    };

    // onnxruntime's JS and its native library both came from the task root, not the repository.
    const inTaskRoot = (p: string): boolean => p.startsWith(taskRoot + sep);
    assert.ok(
      mapped.some((p) => p.endsWith('libonnxruntime.so.1')),
      mapped.join('\n'),
    );
    assert.ok(
      mapped.some((p) => p.endsWith('onnxruntime_binding.node')),
      mapped.join('\n'),
    );
    assert.ok(mapped.every(inTaskRoot), mapped.join('\n'));
    assert.ok(
      loaded.some((p) => p.endsWith(join('onnxruntime-node', 'dist', 'index.js'))),
      loaded.join('\n'),
    );
    assert.ok(loaded.every(inTaskRoot), loaded.join('\n'));

    const [ready, batch, single] = results as [
      { statusCode: number; body: string },
      { statusCode: number; body: string },
      { statusCode: number; body: string },
    ];
    assert.equal(ready.statusCode, 200, ready.body);
    assert.equal(batch.statusCode, 200, batch.body);
    const argmax = (xs: readonly number[]): number => xs.indexOf(Math.max(...xs));
    const digits = (JSON.parse(batch.body) as { digit: number }[]).map((p) => p.digit);
    assert.deepEqual(
      digits,
      greys.map((_, i) => argmax(expected.logits[i]!)),
    );
    assert.equal(single.statusCode, 200, single.body);
    assert.equal((JSON.parse(single.body) as { digit: number }).digit, digits[0]);
  });
});
