/** Shared test fixtures: real s3rver on loopback, real runtimes behind real sockets, the reference outputs. */
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { startEmbeddedS3, type EmbeddedS3 } from '../lib/cli/embedded-s3.js';
import type { Predictor } from '../lib/predictor.js';
import { createHttpServer, listen, type HttpServerOptions } from '../lib/runtime/http-server.js';
import { createLogger, type LogLevel } from '../lib/runtime/logger.js';
import { Runtime, type RuntimeOptions } from '../lib/runtime/runtime.js';

export const DIGITS_ONNX = 'models/digits.onnx';
export const MOBILENET_ONNX = 'models/mobilenet_v3_small.onnx';
export const DIGITS_PREDICTOR = 'functions/digits/predictor.ts';
export const BUCKET = 'models';

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

export async function loadTestPredictor(path: string): Promise<Predictor<unknown>> {
  return ((await import(new URL(`../${path}`, import.meta.url).href)) as { default: Predictor<unknown> }).default;
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
