/** Shared test fixtures: real s3rver on loopback, real runtimes behind real sockets, the reference outputs. */
import assert from 'node:assert/strict';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../lib/cli/local/dev-container.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../lib/cli/local/embedded-s3.js';
import type { DefinedPredictor } from '../lib/predictor.js';
import { createHttpServer, listen, type HttpServerOptions } from '../lib/runtime/transports/http-server.js';
import type { LambdaHandler } from '../lib/runtime/transports/lambda-adapter.js';
import { createLogger, type LogLevel } from '../lib/runtime/telemetry/logger.js';
import { Runtime, type RuntimeOptions } from '../lib/runtime/runtime.js';
import { StartupError } from '../lib/runtime/startup-error.js';

export const DIGITS_ONNX = 'models/digits.onnx';
export const MOBILENET_ONNX = 'models/mobilenet_v3_small.onnx';
export const DIGITS_PREDICTOR = 'functions/digits/predictor.ts';
/** The digits model as TorchScript and as a Lightning checkpoint, with the module and class the checkpoint needs. */
export const DIGITS_TORCHSCRIPT = 'models/digits.torchscript.pt';
export const DIGITS_CHECKPOINT = 'models/digits.ckpt';
export const DIGITS_MODULE = 'functions/digits/model.py';
export const DIGITS_CLASS = 'Digits';
/** The digits model's inputs and outputs declared as the ONNX file names them. */
export const DIGITS_DECLARED = {
  inputs: [{ name: 'image', datatype: 'FP32', shape: [-1, 1, 8, 8] }],
  outputs: [{ name: 'logits', datatype: 'FP32', shape: [-1, 10] }],
} as const;
export const BUCKET = 'models';
/** The repository root (the CLI's working directory in tests). */
export const REPO_ROOT = dirname(dirname(fileURLToPath(import.meta.url)));

export interface DigitsExpected {
  readonly images: number[][];
  readonly labels: number[];
  readonly logits: number[][];
}

export function loadDigitsExpected(): DigitsExpected {
  return JSON.parse(readFileSync('test/fixtures/digits.expected.json', 'utf8')) as DigitsExpected;
}

/** s3rver on a free loopback port holding the example models. */
export async function startS3WithModels(): Promise<
  EmbeddedS3 & { digits: { uri: string; sha256: string }; mobilenet: { uri: string; sha256: string } }
> {
  const s3 = await startEmbeddedS3([BUCKET]);
  const digits = await s3.put(BUCKET, 'digits.onnx', readFileSync(DIGITS_ONNX));
  const mobilenet = await s3.put(BUCKET, 'mobilenet_v3_small.onnx', readFileSync(MOBILENET_ONNX));
  return Object.assign(s3, { digits, mobilenet });
}

export type TestRuntimeOptions = Omit<RuntimeOptions, 'logger' | 'apiName'> & {
  readonly apiName?: string;
  readonly logLevel?: LogLevel;
};

/** A runtime, started, with logs silenced unless asked for. */
export async function startRuntime(options: TestRuntimeOptions): Promise<Runtime> {
  const apiName = options.apiName ?? 'digits';
  const runtime = new Runtime({ ...options, apiName, logger: createLogger(apiName, options.logLevel ?? 'SILENT') });
  await runtime.start();
  return runtime;
}

export interface TestServer {
  readonly url: string;
  readonly server: Server;
  readonly runtime: Runtime;
  close(): Promise<void>;
}

/** The runtime behind the node:http adapter on a free loopback port. */
export async function startServer(runtime: Runtime, options: HttpServerOptions = {}): Promise<TestServer> {
  const server = createHttpServer(runtime, options);
  const address = await listen(server, 0, '127.0.0.1');
  return {
    url: `http://127.0.0.1:${address.port}`,
    server,
    runtime,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export async function loadTestPredictor(path: string): Promise<DefinedPredictor<unknown>> {
  return ((await import(new URL(`../${path}`, import.meta.url).href)) as { default: DefinedPredictor<unknown> })
    .default;
}

/**
 * Captures the runtime logger's JSON records (stdout and stderr) while `work` runs; everything else is passed
 * through, since the test runner itself reports over stdout.
 */
export async function captureLogs<T>(work: () => Promise<T>): Promise<{ result: T; lines: Record<string, unknown>[] }> {
  const raw: string[] = [];
  const streams = [process.stdout, process.stderr] as const;
  const originals = streams.map((s) => s.write.bind(s));
  streams.forEach((stream, i) => {
    stream.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof chunk === 'string' && chunk.startsWith('{"level"')) {
        raw.push(chunk);
        return true;
      }
      return (originals[i] as (...args: unknown[]) => boolean)(chunk, ...rest);
    }) as typeof stream.write;
  });
  try {
    const result = await work();
    return { result, lines: parseLines(raw.join('')) };
  } finally {
    streams.forEach((stream, i) => (stream.write = originals[i]! as typeof stream.write));
  }
}

function parseLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** An OIP request for digits images (flat 64 floats each, already scaled to 0..1). */
export function digitsInferBody(images: readonly (readonly number[])[]): string {
  return JSON.stringify({
    inputs: [{ name: 'image', datatype: 'FP32', shape: [images.length, 1, 8, 8], data: images.flat() }],
  });
}

/** Writes model bytes (e.g. from test/onnx-model-writer.ts) to a fresh temp folder; returns the file's path. */
export function writeTempModel(bytes: Uint8Array, name = 'model.onnx'): string {
  const path = join(mkdtempSync(join(tmpdir(), 'arclight-model-')), name);
  writeFileSync(path, bytes);
  return path;
}

/** One request, said once and sent over any transport. */
export interface Call {
  /** @default POST when there is a body, else GET */
  readonly method?: string;
  /** Path and query string: `/v2/models/x/infer`, `/?case=ok`. */
  readonly path: string;
  /** A string body defaults to `content-type: application/json` unless a content-type is given. */
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string | Buffer;
}

/** One response, whichever transport carried it. */
export interface Reply {
  readonly status: number;
  /** Lower-cased names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
  readonly text: string;
  json<T = unknown>(): T;
}

/** Sends a call and returns the reply: the node:http server through fetch, or the Lambda handler with an event. */
export type Transport = (call: Call) => Promise<Reply>;

function callHeaders(call: Call): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(call.headers ?? {})) headers[name.toLowerCase()] = value;
  if (typeof call.body === 'string' && headers['content-type'] === undefined) {
    headers['content-type'] = 'application/json';
  }
  return headers;
}

function reply(status: number, headers: Record<string, string>, body: Buffer): Reply {
  const text = body.toString('utf8');
  return { status, headers, body, text, json: <T>() => JSON.parse(text) as T };
}

/** fetch against a running server (`startServer(...).url`), every request bounded by a timeout. */
export function httpTransport(baseUrl: string, timeoutMs = 10_000): Transport {
  return async (call) => {
    const response = await fetch(baseUrl + call.path, {
      method: call.method ?? (call.body === undefined ? 'GET' : 'POST'),
      headers: callHeaders(call),
      ...(call.body === undefined ? {} : { body: call.body }),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const headers: Record<string, string> = {};
    response.headers.forEach((value, name) => (headers[name] = value));
    return reply(response.status, headers, Buffer.from(await response.arrayBuffer()));
  };
}

/** An API Gateway HTTP API (payload format 2.0) event for a call, as API Gateway sends it on the `$default` stage. */
export function httpApiV2Event(call: Call, requestId: string = randomUUID()): APIGatewayProxyEventV2 {
  const body = call.body === undefined ? undefined : Buffer.from(call.body);
  const headers = callHeaders(call);
  const contentType = headers['content-type'] ?? '';
  // A body with a Content-Encoding (gzip) is bytes, not text: API Gateway hands it over base64-encoded.
  const textual =
    (contentType.includes('json') || contentType.startsWith('text/')) && headers['content-encoding'] === undefined;
  const method = call.method ?? (call.body === undefined ? 'GET' : 'POST');
  const [rawPath = '/', rawQueryString = ''] = call.path.split('?', 2);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    headers,
    requestContext: {
      accountId: '123456789012',
      apiId: 'api',
      domainName: 'api.example.com',
      domainPrefix: 'api',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '127.0.0.1', userAgent: 'test' },
      requestId,
      routeKey: '$default',
      stage: '$default',
      time: new Date().toISOString(),
      timeEpoch: Date.now(),
    },
    ...(body === undefined ? {} : { body: textual ? body.toString('utf8') : body.toString('base64') }),
    isBase64Encoded: body !== undefined && !textual,
  };
}

/** The real Lambda handler (`createLambdaHandler`) invoked with v2 events. */
export function lambdaTransport(handler: LambdaHandler): Transport {
  return async (call) => {
    const result = await handler(httpApiV2Event(call), { awsRequestId: randomUUID() });
    const headers: Record<string, string> = {};
    for (const [name, value] of Object.entries(result.headers ?? {})) headers[name.toLowerCase()] = String(value);
    return reply(result.statusCode, headers, Buffer.from(result.body, result.isBase64Encoded ? 'base64' : 'utf8'));
  };
}

/** A loopback port nothing listens on (bound, then closed): connecting to it is refused. */
export function closedPort(): Promise<number> {
  return freeLoopbackPort();
}

/** What a finished CLI child process said and how it ended. */
export interface CliResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CliOptions {
  /** Extra env for the child (on top of this process's env). */
  readonly env?: Readonly<Record<string, string>>;
  /** Killed with SIGKILL past this; the test then fails on the result. @default 30 s */
  readonly timeoutMs?: number;
}

/** The CLI shim as a user runs it: `node bin/arclight.js ...`, from the repository root. */
export function spawnCli(args: readonly string[], options: CliOptions = {}): ChildProcessWithoutNullStreams {
  return spawn(process.execPath, ['bin/arclight.js', ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...options.env },
    stdio: 'pipe',
  });
}

/** Runs the CLI to its end and collects its output. */
export function runCli(args: readonly string[], options: CliOptions = {}): Promise<CliResult> {
  const child = spawnCli(args, options);
  return collect(child, options.timeoutMs ?? 30_000);
}

/** Collects a child's output until it exits (SIGKILL past `timeoutMs`). */
export function collect(child: ChildProcessWithoutNullStreams, timeoutMs = 30_000): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Waits until the child's stderr matches `pattern` (rejects if it exits first or after `timeoutMs`). */
export function waitForStderr(
  child: ChildProcessWithoutNullStreams,
  pattern: RegExp,
  timeoutMs = 30_000,
): Promise<RegExpExecArray> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const finish = (error?: Error, match?: RegExpExecArray): void => {
      clearTimeout(timer);
      child.stderr.off('data', onData);
      child.off('exit', onExit);
      if (error) reject(error);
      else resolve(match!);
    };
    const onData = (chunk: Buffer | string): void => {
      seen += chunk.toString();
      const match = pattern.exec(seen);
      if (match) finish(undefined, match);
    };
    const onExit = (code: number | null): void =>
      finish(new Error(`the process exited (${code}) before printing ${pattern}; stderr:\n${seen}`));
    const timer = setTimeout(
      () => finish(new Error(`no ${pattern} on stderr within ${timeoutMs} ms; stderr:\n${seen}`)),
      timeoutMs,
    );
    child.stderr.on('data', onData);
    child.once('exit', onExit);
  });
}

/** stderr without the AWS SDK's multi-line NodeVersionSupportWarning (printed under Node 20). */
export function stderrLines(stderr: string): string[] {
  const lines = stderr.split('\n').filter((line) => line.trim() !== '');
  const out: string[] = [];
  let inWarning = false;
  for (const line of lines) {
    if (/NodeVersionSupportWarning/.test(line)) inWarning = true;
    else if (inWarning && /^\(Use `node --trace-warnings/.test(line)) {
      inWarning = false;
      continue;
    }
    if (!inWarning) out.push(line);
  }
  return out;
}

/** A line of a printed stack (`    at fn (file:line:col)`). */
export const STACK_FRAME = /^\s+at\s/m;

/** The digits model's outputs, and how close and how right the tests hold it to the reference. */
export const DIGIT_CLASSES = 10;
export const LOGITS_TOLERANCE = 1e-4;
export const MIN_ACCURACY = 0.98;

export function argmax(values: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

export function assertLogitsClose(actual: readonly number[], reference: readonly number[], where: string): void {
  assert.equal(actual.length, reference.length, `${where}: ${actual.length} logits, expected ${reference.length}`);
  for (let i = 0; i < reference.length; i++) {
    const diff = Math.abs(actual[i]! - reference[i]!);
    assert.ok(
      diff <= LOGITS_TOLERANCE,
      `${where} logit ${i}: got ${actual[i]}, reference ${reference[i]} (|Δ| ${diff})`,
    );
  }
}

/** A batch's flat logits, image by image, against the reference logits from `offset` on. */
export function assertBatchLogits(
  flat: readonly number[],
  count: number,
  reference: readonly (readonly number[])[],
  offset = 0,
  label = 'image',
): void {
  assert.equal(flat.length, count * DIGIT_CLASSES, `${count} images give ${count * DIGIT_CLASSES} logits`);
  for (let i = 0; i < count; i++) {
    const at = i * DIGIT_CLASSES;
    assertLogitsClose(flat.slice(at, at + DIGIT_CLASSES), reference[offset + i]!, `${label} ${offset + i}`);
  }
}

/** Grey levels 0..16 as the digits predictor takes them (the fixture holds them scaled to 0..1). */
export function greyLevels(image: readonly number[]): number[] {
  return image.map((p) => p * 16);
}

/** The share of digits found that match the labels. */
export function accuracy(found: readonly number[], labels: readonly number[]): number {
  return found.filter((d, i) => d === labels[i]).length / labels.length;
}

/** Asserts `work` rejects with a one-line StartupError whose message matches every pattern; returns it. */
export async function assertStartupError(work: Promise<unknown>, ...patterns: RegExp[]): Promise<StartupError> {
  const error = await work.then(
    () => assert.fail('expected a StartupError'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof StartupError, `expected a StartupError, got ${String(error)}`);
  for (const pattern of patterns) assert.match(error.message, pattern);
  assert.doesNotMatch(error.oneLine(), /\n/, 'the error is one line');
  return error;
}

/** The contract's error body as tests read it. */
export interface ContractError {
  readonly code: string;
  readonly message: string;
  readonly requestId: string;
}

/**
 * Asserts a parsed body is exactly the contract's error body, the Open Inference Protocol's `{"error":"<message>"}`
 * with our `code` and `requestId` beside it, and returns its fields (`error` as `message`).
 */
export function contractError(value: unknown): ContractError {
  assert.ok(typeof value === 'object' && value !== null, `not an error body: ${JSON.stringify(value)}`);
  assert.deepEqual(Object.keys(value).sort(), ['code', 'error', 'requestId'], JSON.stringify(value));
  const { error, code, requestId } = value as Record<string, unknown>;
  assert.ok(typeof error === 'string' && error.length > 0, `error is a message string: ${JSON.stringify(value)}`);
  assert.ok(typeof code === 'string' && code.length > 0, `code: ${JSON.stringify(value)}`);
  assert.ok(typeof requestId === 'string' && requestId.length > 0, `requestId: ${JSON.stringify(value)}`);
  return { code, message: error, requestId };
}
