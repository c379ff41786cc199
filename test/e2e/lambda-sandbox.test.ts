/**
 * The synthesized Lambda bundle as Lambda really runs it: a fresh plain-node process per execution environment
 * (test/fixtures/lambda-sandbox.mjs), the function's environment from the template, the model asset in s3rver behind a
 * proxy that counts (and can delay) every S3 request, HOME and TMPDIR fresh and empty.
 *
 * - The init phase (the bundle's import) ends only once the model is loaded, so the first request fetches nothing.
 * - Provisioned concurrency: init, then the sandbox frozen (SIGSTOP) and thawed (SIGCONT): the first request after
 *   the freeze fetches nothing either.
 * - A model store too slow for the init window: the import still resolves within the budget, and the first request
 *   completes the load.
 * - A failed start logs its error with its real class name (`StartupError`, not a minified one).
 * - onnxruntime's telemetry writes no file.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { APIGatewayProxyResult } from 'aws-lambda';
import { readAssembly, readCdkJson, synthesize, type AssemblyApi } from '../../lib/cli/deploy/assembly.js';
import { runnableContext } from '../../lib/cli/local/dev.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../../lib/cli/local/embedded-s3.js';
import { ENV } from '../../lib/contract.js';
import { REPO_ROOT, httpApiV2Event, loadDigitsExpected, type Call } from '../helpers.js';
import { startFaultProxy, type FaultProxy } from '../s3-fault-proxy.js';

const SANDBOX = join(REPO_ROOT, 'test', 'fixtures', 'lambda-sandbox.mjs');
const cleanups: (() => void)[] = [];
let outdir: string;
let digits: AssemblyApi;
let bundle: string;
let s3: EmbeddedS3;
let proxy: FaultProxy;

type LogRecord = Record<string, unknown>;
interface Initialized {
  readonly initMs: number;
  readonly lines: LogRecord[];
}
interface Invoked {
  readonly result?: APIGatewayProxyResult;
  readonly error?: string;
  readonly lines: LogRecord[];
}

/** One execution environment: the bundle imported in a fresh process, invoked over IPC. */
class Sandbox {
  readonly home = mkdtempSync(join(tmpdir(), 'arclight-sandbox-home-'));
  readonly tmp = mkdtempSync(join(tmpdir(), 'arclight-sandbox-tmp-'));
  readonly child: ChildProcess;
  readonly initialized: Promise<Initialized>;
  private nextId = 0;
  private readonly waiting = new Map<number, (invoked: Invoked) => void>();

  constructor(env: Record<string, string>) {
    this.child = fork(SANDBOX, [bundle], {
      execArgv: [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      env: { PATH: process.env['PATH'] ?? '', HOME: this.home, TMPDIR: this.tmp, ...digits.environment, ...env },
    });
    this.child.stdout!.resume();
    let stderr = '';
    this.child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString('utf8')));
    this.initialized = new Promise((resolve, reject) => {
      this.child.on('message', (message: { type: string; id?: number } & Initialized & Invoked) => {
        if (message.type === 'initialized') resolve(message);
        else if (message.type === 'init-error') reject(new Error(`init failed: ${String(message.error)}`));
        else if (message.type === 'result') this.waiting.get(message.id!)?.(message);
      });
      this.child.once('exit', (code) => reject(new Error(`the sandbox exited (${code}) during init: ${stderr}`)));
    });
    cleanups.push(() => this.stop());
  }

  invoke(call: Call): Promise<Invoked> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ type: 'invoke', id, event: httpApiV2Event(call) });
    });
  }

  /** Files under the sandbox's HOME and TMPDIR (relative paths). */
  files(): string[] {
    return [this.home, this.tmp].flatMap((dir) =>
      readdirSync(dir, { recursive: true, withFileTypes: true })
        .filter((entry) => entry.isFile())
        .map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1)),
    );
  }

  stop(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGCONT');
      this.child.kill('SIGKILL');
    }
    rmSync(this.home, { recursive: true, force: true });
    rmSync(this.tmp, { recursive: true, force: true });
  }
}

const expected = loadDigitsExpected();
const onePrediction: Call = {
  path: '/',
  body: JSON.stringify({ pixels: expected.images[0]!.map((v) => Math.round(v * 16)) }),
};
const messages = (lines: readonly LogRecord[]): unknown[] => lines.map((line) => line['message']);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

before(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'arclight-sandbox-e2e-'));
  await synthesize(readCdkJson(REPO_ROOT).app!, outdir, { cwd: REPO_ROOT });
  digits = readAssembly(outdir).find((api) => api.apiName === 'digits')!;
  const context = runnableContext(digits.contextDir);
  cleanups.push(context.cleanup);
  bundle = join(context.dir, digits.handlerFile);
  const asset = digits.assets[0]!;
  s3 = await startEmbeddedS3([asset.bucket]);
  await s3.put(asset.bucket, asset.key, readFileSync(asset.path));
  proxy = await startFaultProxy(s3.endpoint, s3.env);
});

after(async () => {
  for (const cleanup of cleanups) cleanup();
  await proxy?.close();
  await s3?.close();
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

/** The function's env pointed at the proxy, with what the test adds. */
function sandboxEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { ...proxy.env, AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true', ...extra };
}

describe('the synthesized Lambda bundle: the model loads in the init phase', () => {
  test('on demand: the import resolves once the model is ready; the first request fetches nothing', async () => {
    proxy.reset();
    const sandbox = new Sandbox(sandboxEnv({ AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand' }));
    const init = await sandbox.initialized;
    assert.ok(messages(init.lines).includes('model ready'), `init logged ${JSON.stringify(messages(init.lines))}`);
    assert.ok(!messages(init.lines).includes('init budget spent'));
    const fetched = proxy.requests.length;
    assert.ok(fetched > 0, 'the model came from S3');
    const first = await sandbox.invoke(onePrediction);
    assert.equal(first.result?.statusCode, 200, JSON.stringify(first));
    assert.equal(proxy.requests.length, fetched, 'no S3 request during the first invocation');
    assert.ok(!messages(first.lines).includes('model ready'));
    assert.deepEqual(sandbox.files(), [], 'onnxruntime telemetry (and nothing else) wrote no file to HOME or TMPDIR');
  });

  test('provisioned concurrency: init, frozen (SIGSTOP), thawed (SIGCONT): the first request fetches nothing', async () => {
    proxy.reset();
    const sandbox = new Sandbox(sandboxEnv({ AWS_LAMBDA_INITIALIZATION_TYPE: 'provisioned-concurrency' }));
    const init = await sandbox.initialized;
    assert.ok(messages(init.lines).includes('model ready'));
    const fetched = proxy.requests.length;
    sandbox.child.kill('SIGSTOP');
    await sleep(2000);
    sandbox.child.kill('SIGCONT');
    const first = await sandbox.invoke(onePrediction);
    assert.equal(first.result?.statusCode, 200, JSON.stringify(first));
    assert.equal(proxy.requests.length, fetched, 'no S3 request after the freeze');
    const reply = JSON.parse(first.result!.body) as { digit: number };
    assert.equal(typeof reply.digit, 'number');
  });

  test('a model store too slow for the init window: the import resolves at the budget, the first request completes the load', async () => {
    proxy.reset();
    // The first S3 request answers only after 4.5 s (under the fetch's 5 s stall limit); the budget is 2 s.
    proxy.plan = (_request, index) => (index === 0 ? { kind: 'before', run: () => sleep(4500) } : undefined);
    const sandbox = new Sandbox(sandboxEnv({ [ENV.initBudgetMs]: '2000' }));
    const init = await sandbox.initialized;
    assert.ok(!messages(init.lines).includes('model ready'), 'init ended before the model was ready');
    const spent = init.lines.find((line) => String(line['message']).startsWith('init budget spent'));
    assert.ok(spent, `a warning says the load continues; got ${JSON.stringify(messages(init.lines))}`);
    assert.equal(spent['level'], 'WARN');
    assert.equal(spent['initBudgetMs'], 2000);
    const first = await sandbox.invoke(onePrediction);
    assert.equal(first.result?.statusCode, 200, JSON.stringify(first));
    assert.ok(messages(first.lines).includes('model ready'), 'the load completed inside the first invocation');
  });

  test('a start that fails logs a StartupError by its real class name; init still ends and requests answer 503', async () => {
    proxy.reset();
    const sandbox = new Sandbox(
      sandboxEnv({ [ENV.modelUri]: `s3://${digits.assets[0]!.bucket}/no-such-model.onnx`, [ENV.modelSha256]: '' }),
    );
    const init = await sandbox.initialized;
    const failed = init.lines.find((line) => line['message'] === 'startup failed');
    assert.ok(failed, `init logged ${JSON.stringify(messages(init.lines))}`);
    const error = failed['error'] as { type: string; message: string; stack: string };
    assert.equal(error.type, 'StartupError');
    assert.match(error.stack, /StartupError/);
    const reply = await sandbox.invoke(onePrediction);
    assert.equal(reply.result?.statusCode, 503, JSON.stringify(reply));
  });
});
