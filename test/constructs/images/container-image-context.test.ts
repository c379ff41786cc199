/**
 * The container image's build context as synth generates it: the GPU Dockerfile on NVIDIA's CUDA 12 + cuDNN 9 runtime
 * with Node.js 22, onnxruntime-node (the version this package pins) installed with ONNXRUNTIME_NODE_INSTALL=cuda12
 * inside the image build, a non-root USER, port 8080 and the bundled server as ENTRYPOINT; the CPU Dockerfile on the
 * Node.js 22 slim image. Every file the Dockerfiles COPY from the context is there, and the bundles keep
 * onnxruntime-node external (the image installs it). Then the GPU context is laid out as its Dockerfile lays it out
 * (onnxruntime-node in node_modules standing for the image's npm install) in a folder outside the repository and its
 * ENTRYPOINT is run with the Dockerfile's ENV (execution providers `cpu` here, no GPU): `/ping` turns 200 and
 * `/invocations` answers with the digits predictor.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { before, describe, test } from 'node:test';
import {
  APP_DIR,
  CONTAINER_UID,
  GPU_BASE_IMAGE,
  NODE_BASE_IMAGE,
  PREDICTOR_FILE,
  SERVER_FILE,
  WORKER_FILE,
  CONTAINER_NODE_OPTIONS,
  buildContainerImageContext,
  onnxRuntimeVersion,
} from '../../../lib/constructs/images/container-image-context.js';
import { freeLoopbackPort } from '../../../lib/cli/local/dev-container.js';
import { ENV } from '../../../lib/contract.js';
import { sha256, useScratchTmpdir } from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, loadDigitsExpected } from '../../helpers.js';

useScratchTmpdir();

interface Stage {
  from: string;
  lines: string[];
}

/** The Dockerfile's instructions (continuations joined), grouped by stage. */
function stages(context: string): Stage[] {
  const text = readFileSync(join(context, 'Dockerfile'), 'utf8').replace(/\\\n\s*/g, ' ');
  const result: Stage[] = [];
  for (const line of text.split('\n').map((l) => l.trim())) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('FROM ')) result.push({ from: line.slice(5), lines: [] });
    else result.at(-1)!.lines.push(line);
  }
  return result;
}

function instruction(stage: Stage, name: string): string[] {
  return stage.lines.filter((l) => l.startsWith(`${name} `)).map((l) => l.slice(name.length + 1));
}

/** `ENV A=1 B="x y"` lines as one record, as Docker reads them (double-quoted values may hold spaces). */
function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const line of instruction(stage, 'ENV')) {
    for (const [, key, value] of line.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
      env[key!] = value!.startsWith('"') ? (JSON.parse(value!) as string) : value!;
    }
  }
  return env;
}

let gpu: string;
let cpu: string;

before(() => {
  gpu = buildContainerImageContext({ gpu: true, predictorEntry: resolve(DIGITS_PREDICTOR) });
  cpu = buildContainerImageContext({ gpu: false });
});

describe('the GPU image build context', () => {
  test('installs onnxruntime-node with its CUDA 12 provider in a Node.js 22 stage', () => {
    const [install] = stages(gpu);
    assert.match(install!.from, /^node:22[-.\w]* AS node$/);
    assert.equal(envOf(install!)['ONNXRUNTIME_NODE_INSTALL'], 'cuda12');
    const [run] = instruction(install!, 'RUN');
    assert.match(
      run!,
      new RegExp(`npm install .*onnxruntime-node@${onnxRuntimeVersion().replace(/\./g, '\\.')}(\\s|$)`),
    );
    const pinned = (JSON.parse(readFileSync('package.json', 'utf8')) as { dependencies: Record<string, string> })
      .dependencies['onnxruntime-node'];
    assert.equal(onnxRuntimeVersion(), pinned, 'the image installs the version package.json pins');
  });

  test('runs on the CUDA 12 + cuDNN 9 runtime with Node.js 22 copied in, as a non-root user', () => {
    const all = stages(gpu);
    assert.equal(all.length, 2);
    const runtime = all[1]!;
    assert.equal(runtime.from, GPU_BASE_IMAGE);
    assert.match(runtime.from, /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-/);
    assert.ok(instruction(runtime, 'COPY').includes('--from=node /usr/local/bin/node /usr/local/bin/node'));
    assert.ok(
      instruction(runtime, 'COPY').includes(`--from=node ${APP_DIR}/node_modules/ ${APP_DIR}/node_modules/`),
      'the CUDA build of onnxruntime-node comes from the install stage',
    );
    const [user] = instruction(runtime, 'USER');
    assert.equal(user, `${CONTAINER_UID}:${CONTAINER_UID}`);
    assert.notEqual(CONTAINER_UID, 0);
    assert.match(instruction(runtime, 'RUN').join('\n'), new RegExp(`useradd .*--uid ${CONTAINER_UID}`));
  });

  test('serves on 8080 with the bundled server as entry, the predictor named by ARCLIGHT_PREDICTOR, CUDA first', () => {
    const runtime = stages(gpu)[1]!;
    assert.deepEqual(instruction(runtime, 'EXPOSE'), ['8080']);
    assert.deepEqual(instruction(runtime, 'ENTRYPOINT'), [`["node", "${APP_DIR}/${SERVER_FILE}"]`]);
    const env = envOf(runtime);
    assert.equal(env[ENV.executionProviders], 'cuda,cpu');
    assert.equal(
      env['NODE_OPTIONS'],
      CONTAINER_NODE_OPTIONS,
      'a young generation where request bodies’ socket chunks die',
    );
    assert.equal(env[ENV.predictorEntry], `${APP_DIR}/${PREDICTOR_FILE}`);
    assert.equal(env['HOME'], '/tmp', 'the non-root user writes only under /tmp');
  });

  test('holds every file its COPY lines take from the context, bundled with onnxruntime-node left external', () => {
    const runtime = stages(gpu)[1]!;
    const fromContext = instruction(runtime, 'COPY').filter((c) => !c.startsWith('--from='));
    const sources = fromContext.flatMap((c) => c.split(/\s+/).slice(0, -1));
    assert.ok(sources.includes(SERVER_FILE) && sources.includes(PREDICTOR_FILE) && sources.includes(WORKER_FILE));
    for (const source of sources) assert.ok(existsSync(join(gpu, source)), `${source} is in the context`);
    const server = readFileSync(join(gpu, SERVER_FILE), 'utf8');
    assert.match(server, /["']onnxruntime-node["']/, 'imported at run time, not inlined');
    assert.ok(!existsSync(join(gpu, 'node_modules')), 'the image build installs node_modules, not the context');
    const predictorMap = JSON.parse(readFileSync(join(gpu, `${PREDICTOR_FILE}.map`), 'utf8')) as {
      sources: string[];
    };
    assert.ok(predictorMap.sources.some((s) => s.endsWith('functions/digits/predictor.ts')));
  });
});

describe('the CPU image build context', () => {
  test('one stage on Node.js 22 slim, CPU onnxruntime, non-root, the same entry, no predictor', () => {
    const all = stages(cpu);
    assert.equal(all.length, 1);
    const stage = all[0]!;
    assert.equal(stage.from, NODE_BASE_IMAGE);
    assert.doesNotMatch(readFileSync(join(cpu, 'Dockerfile'), 'utf8'), /cuda12|nvidia/);
    assert.match(instruction(stage, 'RUN').join('\n'), /npm install .*onnxruntime-node@/);
    assert.deepEqual(instruction(stage, 'USER'), [`${CONTAINER_UID}:${CONTAINER_UID}`]);
    assert.deepEqual(instruction(stage, 'EXPOSE'), ['8080']);
    assert.deepEqual(instruction(stage, 'ENTRYPOINT'), [`["node", "${APP_DIR}/${SERVER_FILE}"]`]);
    const env = envOf(stage);
    assert.equal(env[ENV.executionProviders], 'cpu');
    assert.equal(env[ENV.predictorEntry], undefined);
    assert.ok(!existsSync(join(cpu, PREDICTOR_FILE)));
    assert.ok(existsSync(join(cpu, SERVER_FILE)));
  });
});

describe('the GPU context run as its ENTRYPOINT', () => {
  test('/ping turns 200 once the model is loaded; /invocations answers with the digits predictor', async (t) => {
    const runtime = stages(gpu)[1]!;
    // The image's APP_DIR: the context's files as COPY places them, onnxruntime-node where npm install puts it.
    const appDir = join(mkdtempSync(join(tmpdir(), 'arclight-image-')), 'opt', 'arclight');
    mkdirSync(join(appDir, 'node_modules'), { recursive: true });
    for (const copy of instruction(runtime, 'COPY').filter((c) => !c.startsWith('--from='))) {
      for (const source of copy.split(/\s+/).slice(0, -1)) copyFileSync(join(gpu, source), join(appDir, source));
    }
    const ortRoot = dirname(createRequireFromRepo().resolve('onnxruntime-node/package.json'));
    symlinkSync(ortRoot, join(appDir, 'node_modules', 'onnxruntime-node'));
    const env = envOf(runtime);
    const [entry, server] = JSON.parse(instruction(runtime, 'ENTRYPOINT')[0]!) as [string, string];
    assert.equal(entry, 'node');
    const port = await freeLoopbackPort();
    const child = spawn(process.execPath, [server.replace(APP_DIR, appDir), 'serve'], {
      cwd: appDir,
      env: {
        PATH: process.env['PATH'] ?? '/usr/bin:/bin',
        ...env,
        [ENV.predictorEntry]: env[ENV.predictorEntry]!.replace(APP_DIR, appDir),
        [ENV.executionProviders]: 'cpu',
        [ENV.apiName]: 'digits',
        [ENV.modelUri]: resolve(DIGITS_ONNX),
        [ENV.modelSha256]: sha256(DIGITS_ONNX),
        ARCLIGHT_METRICS: 'off',
        SAGEMAKER_BIND_TO_PORT: String(port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    try {
      const url = `http://127.0.0.1:${port}`;
      const started = performance.now();
      let ping = 0;
      while (ping !== 200) {
        assert.equal(child.exitCode, null, `the server exited:\n${output}`);
        assert.ok(performance.now() - started < 30_000, `not ready in 30 s:\n${output}`);
        ping = await fetch(`${url}/ping`).then(
          (r) => r.status,
          () => 0,
        );
        if (ping !== 200) await sleep(50);
      }
      t.diagnostic(`ready in ${(performance.now() - started).toFixed(0)} ms`);
      const expected = loadDigitsExpected();
      const greys = expected.images[0]!.map((v) => Math.round(v * 16));
      const reply = await fetch(`${url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ pixels: greys }),
      });
      const body = await reply.text();
      assert.equal(reply.status, 200, body);
      const logits = expected.logits[0]!;
      assert.equal((JSON.parse(body) as { digit: number }).digit, logits.indexOf(Math.max(...logits)));
    } finally {
      child.kill('SIGKILL');
    }
  });
});

function createRequireFromRepo(): NodeRequire {
  return createRequire(join(process.cwd(), 'package.json'));
}
