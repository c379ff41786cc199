/**
 * The `fetch` scenario's measuring side: one fresh process per measurement (bench/fetch.ts forks it), so every
 * variant pays its own imports and starts from a cold heap. Nothing heavy is imported before the clock starts.
 *
 * - `arclight`: loadModelBytes (parallel ranged GETs) while onnxruntime-node imports, then OnnxExecutor.load, first run.
 * - `naive`: what a user writes by hand: onnxruntime-node and the S3 client imported, one GetObject read into a
 *   Buffer, InferenceSession.create, first run.
 * - `local`: the bytes already in memory (read from disk before the clock): session create and first run alone,
 *   the measured part of the floor.
 * - `transfer`: the bytes alone, moved as fast as this machine moves them through the proxy: ranged GETs of the same
 *   part size and concurrency, each body read and dropped (no buffer, no hash). The floor's transfer, measured.
 */
import { readFile } from 'node:fs/promises';
import type { S3Client as S3ClientClass } from '@aws-sdk/client-s3';
import type Ort from 'onnxruntime-node';
import { serveWorker } from './child.js';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';

export type FetchVariant = 'arclight' | 'arclight-ort' | 'naive' | 'local' | 'local-ort' | 'transfer';

export interface FetchWorkerInput {
  readonly variant: FetchVariant;
  readonly uri: string;
  /** The same model in ORT format (the `-ort` variants). */
  readonly ortUri: string;
  /** Local copy of the model (the `local` variant), and of its ORT-format conversion (`local-ort`). */
  readonly path: string;
  readonly ortPath: string;
  /** S3 endpoint and credentials (through the throttling proxy). */
  readonly env: Record<string, string>;
  readonly threads: number;
  /** The object's size, and the part size and concurrency of the `transfer` variant. */
  readonly size: number;
  readonly partSize: number;
  readonly concurrency: number;
}

export interface FetchWorkerResult {
  readonly variant: FetchVariant;
  /** Clock start → first prediction answered. */
  readonly firstPredictionMs: number;
  readonly importMs?: number;
  readonly fetchMs?: number;
  readonly sessionMs: number;
  readonly firstRunMs: number;
  readonly modelBytes: number;
  /** RSS before the fetch began, and its peak while the fetch ran (sampled every 5 ms). */
  readonly rssBeforeFetch?: number;
  readonly peakRssDuringFetch?: number;
  /** What the model store reported about the fetch, when it reports anything. */
  readonly fetchStats?: unknown;
  /**
   * Fresh memory touched (minor faults × 4 KiB), MiB: before the clock (process start → t0), then per phase.
   * `footprintMiB`: Arclight's code loading (the model store and the S3 client), the runtime's fixed footprint,
   * whatever the model's size; `fetchMiB` starts after it.
   */
  readonly fresh: {
    beforeMiB: number;
    footprintMiB?: number;
    fetchMiB?: number;
    sessionMiB: number;
    firstRunMiB: number;
    totalMiB: number;
  };
}

const faults = (): number => process.resourceUsage().minorPageFault;
const mib = (pages: number): number => (pages * 4096) / 2 ** 20;

/** Samples RSS until stopped; resolves with the peak. */
function sampleRss(): { stop: () => number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, 5);
  return {
    stop: () => {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

async function arclight(input: FetchWorkerInput, ortFormat = false): Promise<FetchWorkerResult> {
  Object.assign(process.env, input.env);
  const f0 = faults();
  const t0 = performance.now();
  const { loadModelBytes } = await import('../lib/runtime/model-store/model-store.js');
  const { OnnxExecutor, importOnnxRuntime } = await import('../lib/runtime/executors/onnx-executor.js');
  const fImported = faults();
  const rssBeforeFetch = process.memoryUsage.rss();
  const rss = sampleRss();
  const fetching = loadModelBytes(ortFormat ? input.ortUri : input.uri, { env: process.env });
  const importing = importOnnxRuntime();
  const fetched = await fetching;
  const t1 = performance.now();
  const peakRssDuringFetch = rss.stop();
  const f1 = faults();
  const { importMs } = await importing;
  const t2 = performance.now();
  const f2 = faults();
  const executor = await OnnxExecutor.load(fetched.path ?? fetched.bytes, input.uri, {
    intraOpThreads: input.threads,
    executionProviders: ['cpu'],
  });
  const t3 = performance.now();
  const f3 = faults();
  const index = { type: 'int64' as const, data: BigInt64Array.from([7n]), dims: [1] };
  await executor.run({ index });
  const t4 = performance.now();
  const f4 = faults();
  return {
    variant: ortFormat ? 'arclight-ort' : 'arclight',
    fresh: {
      beforeMiB: mib(f0),
      footprintMiB: mib(fImported - f0),
      fetchMiB: mib(f1 - fImported),
      sessionMiB: mib(f3 - f2),
      firstRunMiB: mib(f4 - f3),
      totalMiB: mib(f4 - f0),
    },
    firstPredictionMs: t4 - t0,
    importMs,
    fetchMs: t1 - t0,
    sessionMs: t3 - t2,
    firstRunMs: t4 - t3,
    modelBytes: fetched.size,
    rssBeforeFetch,
    peakRssDuringFetch,
    fetchStats: fetched.stats,
  };
}

async function naive(input: FetchWorkerInput): Promise<FetchWorkerResult> {
  const f0 = faults();
  const t0 = performance.now();
  // A hand-written handler's static imports, in the order users write them.
  const ortModule = (await import('onnxruntime-node')) as typeof Ort & { default?: typeof Ort };
  const ort = ortModule.default ?? ortModule;
  const { S3Client, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const tImported = performance.now();
  const [bucket, ...keyParts] = input.uri.slice('s3://'.length).split('/');
  const key = keyParts.join('/');
  const client = plainS3Client(S3Client, input.env);
  const rssBeforeFetch = process.memoryUsage.rss();
  const rss = sampleRss();
  const response = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = Buffer.from(await response.Body!.transformToByteArray());
  const t1 = performance.now();
  const f1 = faults();
  const peakRssDuringFetch = rss.stop();
  const session = await ort.InferenceSession.create(bytes, onnxSessionOptions({ intraOpThreads: input.threads }));
  const t2 = performance.now();
  const f2 = faults();
  await session.run({ index: new ort.Tensor('int64', BigInt64Array.from([7n]), [1]) });
  const t3 = performance.now();
  const f3 = faults();
  client.destroy();
  return {
    variant: 'naive',
    fresh: {
      beforeMiB: mib(f0),
      fetchMiB: mib(f1 - f0),
      sessionMiB: mib(f2 - f1),
      firstRunMiB: mib(f3 - f2),
      totalMiB: mib(f3 - f0),
    },
    firstPredictionMs: t3 - t0,
    importMs: tImported - t0,
    fetchMs: t1 - tImported,
    sessionMs: t2 - t1,
    firstRunMs: t3 - t2,
    modelBytes: bytes.length,
    rssBeforeFetch,
    peakRssDuringFetch,
  };
}

/**
 * The model's bytes already on this machine: session create and first run alone (`local`), or for the ORT format
 * (`local-ort`) one touch of the bytes (copied into fresh memory, as a fetch lands them) + the in-place session + run:
 * the floor's part beyond the transfer.
 */
async function local(input: FetchWorkerInput, ortFormat = false): Promise<FetchWorkerResult> {
  const ortModule = (await import('onnxruntime-node')) as typeof Ort & { default?: typeof Ort };
  const ort = ortModule.default ?? ortModule;
  const read = await readFile(ortFormat ? input.ortPath : input.path);
  const f0 = faults();
  const t0 = performance.now();
  let bytes = read;
  const options = onnxSessionOptions({ intraOpThreads: input.threads });
  if (ortFormat) {
    bytes = Buffer.allocUnsafeSlow(read.length);
    read.copy(bytes);
    Object.assign(options, {
      extra: { session: { use_ort_model_bytes_directly: '1', use_ort_model_bytes_for_initializers: '1' } },
    });
  }
  const fTouched = faults();
  const session = await ort.InferenceSession.create(bytes, options);
  const t1 = performance.now();
  const f1 = faults();
  await session.run({ index: new ort.Tensor('int64', BigInt64Array.from([7n]), [1]) });
  const t2 = performance.now();
  const f2 = faults();
  return {
    variant: ortFormat ? 'local-ort' : 'local',
    fresh: {
      beforeMiB: mib(f0),
      ...(ortFormat ? { fetchMiB: mib(fTouched - f0) } : {}),
      sessionMiB: mib(f1 - fTouched),
      firstRunMiB: mib(f2 - f1),
      totalMiB: mib(f2 - f0),
    },
    firstPredictionMs: t2 - t0,
    sessionMs: t1 - t0,
    firstRunMs: t2 - t1,
    modelBytes: bytes.length,
  };
}

/**
 * An S3 client as a user writes one by hand (the SDK alone, no Arclight code, so the naive and transfer variants
 * measure only the SDK), pointed at the bench's s3rver.
 */
function plainS3Client(S3Client: typeof S3ClientClass, env: Readonly<Record<string, string>>): S3ClientClass {
  return new S3Client({
    region: env['AWS_REGION'],
    endpoint: env['AWS_ENDPOINT_URL_S3'],
    forcePathStyle: true,
    credentials: { accessKeyId: env['AWS_ACCESS_KEY_ID']!, secretAccessKey: env['AWS_SECRET_ACCESS_KEY']! },
  });
}

async function transfer(input: FetchWorkerInput): Promise<FetchWorkerResult> {
  const { S3Client, GetObjectCommand } = await import('@aws-sdk/client-s3');
  const [bucket, ...keyParts] = input.uri.slice('s3://'.length).split('/');
  const client = plainS3Client(S3Client, input.env);
  let next = 0;
  const t0 = performance.now();
  const worker = async (): Promise<void> => {
    while (next < input.size) {
      const start = next;
      next += input.partSize;
      const end = Math.min(input.size, start + input.partSize) - 1;
      const response = await client.send(
        new GetObjectCommand({ Bucket: bucket, Key: keyParts.join('/'), Range: `bytes=${start}-${end}` }),
      );
      for await (const chunk of response.Body as AsyncIterable<Uint8Array>) void chunk;
    }
  };
  await Promise.all(Array.from({ length: input.concurrency }, worker));
  const ms = performance.now() - t0;
  client.destroy();
  return {
    variant: 'transfer',
    fresh: { beforeMiB: 0, sessionMiB: 0, firstRunMiB: 0, totalMiB: 0 },
    firstPredictionMs: ms,
    fetchMs: ms,
    sessionMs: 0,
    firstRunMs: 0,
    modelBytes: input.size,
  };
}

serveWorker<FetchWorkerInput, FetchWorkerResult>(async (input) => {
  if (input.variant === 'transfer') return transfer(input);
  if (input.variant === 'arclight') return arclight(input);
  if (input.variant === 'arclight-ort') return arclight(input, true);
  if (input.variant === 'naive') return naive(input);
  return local(input, input.variant === 'local-ort');
});
