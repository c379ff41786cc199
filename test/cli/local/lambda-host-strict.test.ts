/**
 * The local Lambda host (lib/cli/local/lambda-host.ts, which `arclight dev` runs per Lambda API) is as strict as Lambda
 * behind API Gateway: event and response size limits, API Gateway's bare answers for a failed invocation (details in
 * the log only), the init retried on the next request after it failed, console lines in Lambda's format with
 * START / END / REPORT. The host runs as a child process on real sockets; the bundles are hand-written handlers (for
 * what the runtime itself never does: throw, hang, return 7 MB) and bundles made by synth's own bundler
 * (`buildLambdaImageContext`) over a predictor, with the model in s3rver.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import type { HostListening, LambdaHostSpec } from '../../../lib/cli/local/lambda-host.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../../../lib/constructs/images/lambda-image-context.js';
import { ENV } from '../../../lib/contract.js';
import { DIGITS_ONNX, REPO_ROOT } from '../../helpers.js';

/** What test/fixtures/module-init-fault-predictor.ts throws (importing it here would throw it). */
const INIT_DETAIL = 'cannot open /var/task/config/labels.json: token=s3cr3t';
const cleanups: (() => void)[] = [];
const BUCKET = 'host-models';
let s3: EmbeddedS3;
let modelUri: string;

interface Host {
  readonly url: string;
  readonly listening: HostListening;
  /** Everything the host wrote to stdout so far. */
  stdout(): string;
  readonly child: ChildProcess;
}

/** Starts the host on `bundle` with the function's env; resolves once it listens. */
async function startHost(bundle: string, env: Record<string, string> = {}, timeoutSeconds = 2): Promise<Host> {
  const spec: LambdaHostSpec = {
    apiName: 'strict',
    bundle,
    handlerExport: 'handler',
    timeoutSeconds,
    memorySize: 1024,
    functionName: 'strict-fn',
    accountId: '000000000000',
    region: 'us-east-1',
  };
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/cli/local/lambda-host.ts', JSON.stringify(spec)], {
    cwd: REPO_ROOT,
    env: {
      PATH: process.env['PATH'] ?? '',
      HOME: process.env['HOME'] ?? '/tmp',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  cleanups.push(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
  const listening = await new Promise<HostListening>((resolve, reject) => {
    child.once('message', (message: HostListening) => resolve(message));
    child.once('exit', (code) => reject(new Error(`the host exited (${code}): ${err}`)));
  });
  return { url: `http://127.0.0.1:${listening.port}`, listening, stdout: () => out, child };
}

/**
 * The host's stdout once `ready` holds of it (at most 5 s), then a further 50 ms: its lines come down a pipe of their
 * own, so they may reach this process after the HTTP answer of the invocation that wrote them.
 */
async function stdoutWhen(host: Host, ready: (out: string) => boolean): Promise<string> {
  const deadline = performance.now() + 5000;
  while (!ready(host.stdout()) && performance.now() < deadline) await delay(10);
  await delay(50);
  return host.stdout();
}

/** How many lines of `out` start with `prefix`. */
function linesStarting(out: string, prefix: string): number {
  return out.split('\n').filter((line) => line.startsWith(prefix)).length;
}

async function post(
  host: Host,
  body: string | Buffer,
  contentType = 'text/plain',
): Promise<{ status: number; text: string }> {
  const response = await fetch(`${host.url}/`, { method: 'POST', headers: { 'content-type': contentType }, body });
  return { status: response.status, text: await response.text() };
}

const INTERNAL_SERVER_ERROR = '{"message":"Internal Server Error"}';
const TOO_LARGE = '{"message":"Request Entity Too Large"}';

/** A handler written the way users write one, for what the Arclight runtime never does itself. */
const HANDLER = `
export const handler = async (event) => {
  const body = event.isBase64Encoded ? Buffer.from(event.body ?? '', 'base64') : Buffer.from(event.body ?? '');
  const text = body.subarray(0, 16).toString();
  if (text === 'throw') {
    console.log('about to\\nfail', { n: 1 });
    throw new TypeError('boom: secret-detail');
  }
  if (text === 'slow') await new Promise((resolve) => setTimeout(resolve, 5000));
  if (text === 'big') return { statusCode: 200, body: 'x'.repeat(7000000) };
  if (text === 'no-status') return { statusCode: 'abc' };
  console.warn('served', body.length);
  return { statusCode: 200, headers: { 'content-type': 'text/plain' }, body: 'len=' + body.length };
};
`;

let handlerFile: string;

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'arclight-host-strict-'));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  handlerFile = join(dir, 'index.mjs');
  writeFileSync(handlerFile, HANDLER);
  s3 = await startEmbeddedS3([BUCKET]);
  modelUri = (await s3.put(BUCKET, 'digits.onnx', readFileSync(DIGITS_ONNX))).uri;
});

after(async () => {
  for (const cleanup of cleanups.reverse()) cleanup();
  await s3?.close();
});

/** The function's env for a bundle of the runtime: the model in s3rver. */
function runtimeEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { ...s3.env, [ENV.apiName]: 'strict', [ENV.modelUri]: modelUri, [ENV.logLevel]: 'WARN', ...extra };
}

/** A Lambda build context as synth makes it, over a test predictor; the bundle's path. */
function synthBundle(predictor: string): string {
  const dir = buildLambdaImageContext({
    predictorEntry: join(REPO_ROOT, 'test', 'fixtures', predictor),
    arch: process.arch === 'arm64' ? 'arm64' : 'x64',
  });
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, BUNDLE_FILE);
}

describe('the local Lambda host answers as API Gateway and Lambda do', () => {
  test('a function error, a timeout, a 7 MB result, a malformed result: API Gateway 500, details in the log only', async () => {
    const host = await startHost(handlerFile);
    for (const [body, logged] of [
      ['throw', /\tERROR\tInvoke Error \t\{"errorType":"TypeError","errorMessage":"boom: secret-detail"/],
      ['slow', /Task timed out after 2\.00 seconds/],
      ['big', /Function\.ResponseSizeTooLarge: the result is \d+ bytes, above Lambda's 6291456/],
      ['no-status', /statusCode "abc" is not an HTTP status/],
    ] as const) {
      const reply = await post(host, body);
      assert.equal(reply.status, 500, `${body}: ${reply.text}`);
      assert.equal(reply.text, INTERNAL_SERVER_ERROR);
      assert.match(await stdoutWhen(host, (out) => logged.test(out)), logged, body);
    }
    assert.doesNotMatch(INTERNAL_SERVER_ERROR, /secret/);
    const ok = await post(host, 'hello');
    assert.equal(ok.status, 200, 'the next request is served');
    assert.equal(ok.text, 'len=5');
  });

  test("console lines in Lambda's format; START, END and REPORT around each invocation", async () => {
    const host = await startHost(handlerFile);
    await post(host, 'throw');
    await post(host, 'hello');
    const lines = (await stdoutWhen(host, (out) => linesStarting(out, 'REPORT RequestId: ') >= 2)).split('\n');
    const start = lines.filter((line) => line.startsWith('START RequestId: '));
    assert.equal(start.length, 2);
    const ids = start.map((line) => /^START RequestId: ([0-9a-f-]{36}) Version: \$LATEST$/.exec(line)![1]!);
    // console.log's newline became a carriage return: one line, one log event.
    const info = lines.find((line) => line.includes('\tINFO\t'));
    assert.ok(info, host.stdout());
    const [timestamp, requestId, level, message] = info.split('\t');
    assert.match(timestamp!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.equal(requestId, ids[0]);
    assert.equal(level, 'INFO');
    assert.equal(message, 'about to\rfail { n: 1 }');
    assert.ok(lines.some((line) => line.endsWith(`\t${ids[1]}\tWARN\tserved 5`)));
    for (const id of ids) {
      assert.ok(lines.includes(`END RequestId: ${id}`));
      assert.ok(
        lines.some((line) =>
          new RegExp(
            `^REPORT RequestId: ${id}\\tDuration: [\\d.]+ ms\\tBilled Duration: \\d+ ms\\tMemory Size: 1024 MB\\tMax Memory Used: \\d+ MB`,
          ).test(line),
        ),
      );
    }
    // The first invocation after the init reports its duration, as Lambda's REPORT does.
    assert.match(
      lines.find((line) => line.startsWith(`REPORT RequestId: ${ids[0]}`))!,
      /\tInit Duration: [\d.]+ ms$/,
    );
    assert.doesNotMatch(
      lines.find((line) => line.startsWith(`REPORT RequestId: ${ids[1]}`))!,
      /Init Duration/,
    );
  });

  test("an event above Lambda's 6,291,456 bytes is 413 without an invocation: binary bodies count base64-encoded", async () => {
    const host = await startHost(handlerFile);
    const invocations = (): number => linesStarting(host.stdout(), 'START ');
    // 4.6 MB of bytes: a 6.1 MB event, served. 4.8 MB: a 6.4 MB event, refused though below 6 MiB itself.
    const fits = await post(host, Buffer.alloc(4_600_000, 1), 'application/octet-stream');
    assert.equal(fits.status, 200, fits.text);
    assert.equal(fits.text, 'len=4600000');
    const before = linesStarting(await stdoutWhen(host, (out) => linesStarting(out, 'START ') >= 1), 'START ');
    const binary = await post(host, Buffer.alloc(4_800_000, 1), 'application/octet-stream');
    assert.equal(binary.status, 413);
    assert.equal(binary.text, TOO_LARGE);
    // 6.2 MB of text travels as it is: it fits.
    const text = await post(host, 'y'.repeat(6_200_000));
    assert.equal(text.status, 200, text.text);
    // Above API Gateway's 10 MB.
    const huge = await post(host, Buffer.alloc(11 * 1024 * 1024, 1), 'application/octet-stream');
    assert.equal(huge.status, 413);
    assert.equal(huge.text, TOO_LARGE);
    await stdoutWhen(host, () => invocations() >= before + 1);
    assert.equal(invocations(), before + 1, 'only the text request was invoked after the refusals');
  });

  test('a predictor throwing at module init: API Gateway 500, the details only in the log, the init run again on each request', async () => {
    const host = await startHost(synthBundle('module-init-fault-predictor.ts'), runtimeEnv());
    assert.match(host.listening.initError ?? '', /cannot open/);
    const failures = (): number =>
      host
        .stdout()
        .split('\n')
        .filter((line) => line.includes('\tERROR\tUncaught Exception \t')).length;
    await stdoutWhen(host, () => failures() >= 1);
    assert.equal(failures(), 1, 'the init phase failed once');
    for (const tries of [2, 3]) {
      const reply = await post(host, '{"a":1}', 'application/json');
      assert.equal(reply.status, 500);
      assert.equal(reply.text, INTERNAL_SERVER_ERROR, 'no detail of the failure reaches the client');
      await stdoutWhen(host, () => failures() >= tries);
      assert.equal(failures(), tries, 'the request ran the init again');
    }
    assert.ok(host.stdout().includes(INIT_DETAIL), 'the log has the details');
    assert.match(
      host.stdout(),
      /\tundefined\tERROR\tUncaught Exception \t\{"errorType":"Error","errorMessage":"cannot open/,
    );
  });

  test('an init that failed and succeeds when run again: the next request is served', async () => {
    const marker = join(mkdtempSync(join(tmpdir(), 'arclight-init-marker-')), 'tried');
    cleanups.push(() => rmSync(marker, { force: true }));
    const host = await startHost(
      synthBundle('module-init-fault-predictor.ts'),
      runtimeEnv({ ARCLIGHT_TEST_INIT_MARKER: marker }),
    );
    assert.match(host.listening.initError ?? '', /cannot open/);
    const reply = await post(host, '{"a":1}', 'application/json');
    assert.equal(reply.status, 200, reply.text);
    assert.deepEqual(JSON.parse(reply.text), { echo: { a: 1 } });
  });

  test("a runtime result above Lambda's 6 MB: the contract's clear 500 response_too_large, not Lambda's bare failure", async () => {
    const host = await startHost(synthBundle('sized-response-predictor.ts'), runtimeEnv(), 29);
    const small = await post(host, '{"bytes":100}', 'application/json');
    assert.equal(small.status, 200, small.text);
    const big = await post(host, '{"bytes":5000000}', 'application/json');
    assert.equal(big.status, 500);
    const body = JSON.parse(big.text) as { error: string | { code: string; message: string }; code?: string };
    const code = typeof body.error === 'string' ? body.code : body.error.code;
    const message = typeof body.error === 'string' ? body.error : body.error.message;
    assert.equal(code, 'response_too_large');
    assert.match(message, /above Lambda's limit of 6291456 bytes \(a binary body counts base64-encoded/);
  });
});
