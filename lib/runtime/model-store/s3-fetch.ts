/**
 * The parallel S3 fetch: HEAD the object (size, ETag), then byte-range GETs in parallel, each pinned to the
 * ETag with If-Match, written straight into one preallocated buffer (or, above the memory budget, into a temp
 * file by positional writes, renamed once complete and verified). The sha256 is fed as the bytes arrive with the
 * contiguous prefix, so there is no second pass. Each part retries on its own (5xx, throttling, resets,
 * truncated bodies, stalls) with exponential backoff and jitter; an object replaced mid-download (412) restarts
 * the whole fetch from a new HEAD, so versions never mix.
 */
import { createHash, randomUUID } from 'node:crypto';
import { open, rename, rm, statfs, type FileHandle } from 'node:fs/promises';
import { tmpdir, totalmem } from 'node:os';
import { constants as bufferConstants } from 'node:buffer';
import { extname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { GetObjectCommand, HeadObjectCommand, S3ServiceException, type S3Client } from '@aws-sdk/client-s3';
import { ENV } from '../../contract.js';
import { checkSha256 } from './model-integrity.js';
import { StartupError } from '../startup-error.js';

const MIB = 1024 * 1024;

/**
 * Defaults. Measured against s3rver behind a proxy capping each connection at 20 MB/s with 30 ms to first byte
 * (128 MiB object, best of 3): 8 MiB parts × 1/2/4/8/16 connections gave 18/35/65/113/181 MB/s, so throughput
 * grows with connections until the receiver or the network is the limit; at 8 connections 2/4/8/16/32 MiB parts
 * gave 91/105/113/115/68 MB/s (32 MiB: fewer parts than connections). Real S3 serves about 40-90 MB/s per
 * connection, and a Lambda function's network tops out at a few hundred MB/s, which 8 connections fill.
 */
export const FETCH_DEFAULTS = {
  /** 8 MiB: on the plateau (request overhead amortised) while a 64 MiB model still gets 8 parts. */
  partSize: 8 * MIB,
  /** 8 parallel GETs: enough to fill a Lambda's network at S3's per-connection rate. */
  concurrency: 8,
  /** A part whose connection sends nothing for this long is aborted and retried. */
  readTimeoutMs: 5_000,
  /** Tries per part (and for the HEAD), the first included. */
  maxAttempts: 5,
  /** Fresh starts (new HEAD) allowed when the object is replaced during the download. */
  maxRestarts: 3,
  /** First retry waits about this long (doubling each time, with jitter, up to `backoffCapMs`). */
  backoffBaseMs: 100,
  backoffCapMs: 5_000,
} as const;

export interface S3FetchOptions {
  /** Bytes per ranged GET; objects up to this size take one GET. @default 8 MiB */
  readonly partSize?: number;
  /** Ranged GETs in flight at once. @default 8 */
  readonly concurrency?: number;
  /** No bytes for this long aborts that part's request and retries it. @default 5000 */
  readonly readTimeoutMs?: number;
  /** Tries per part, the first included. @default 5 */
  readonly maxAttempts?: number;
  /** Restarts from a new HEAD when the object changes mid-download. @default 3 */
  readonly maxRestarts?: number;
  /** @default 100 */
  readonly backoffBaseMs?: number;
  /** Objects larger than this go to a file under `spillDir` instead of memory. @default half the memory */
  readonly memoryBudgetBytes?: number;
  /** Where objects above the memory budget are written. @default os.tmpdir() */
  readonly spillDir?: string;
  /** Lower-case hex; when set, bytes whose sha256 differs are refused (and a spilled file removed). */
  readonly expectedSha256?: string;
  /** Called as bytes arrive (bytes so far, total); restarts begin again from 0. @default none */
  readonly onProgress?: (received: number, total: number) => void;
  /** Free bytes on the file system of `dir`. @default from fs.statfs (tests replace it) */
  readonly freeBytes?: (dir: string) => Promise<number>;
}

/** What the fetch did, for telemetry. */
export interface FetchStats {
  readonly bytes: number;
  readonly parts: number;
  /** Part (and HEAD) requests tried again after a transient failure. */
  readonly retries: number;
  /** Fresh starts because the object changed during the download. */
  readonly restarts: number;
  readonly ms: number;
  /**
   * Time spent verifying: hashing the bytes as they arrived (overlapped with the transfer) plus the final digest and
   * comparison. Without an expected sha256 the hash is still computed (it is reported and names the model).
   */
  readonly verifyMs: number;
  readonly partSize: number;
  readonly concurrency: number;
  /** True when the object went to a file rather than memory. */
  readonly spilled: boolean;
}

/** The fetched object: in memory (`bytes`) or, above the memory budget, in a file (`path`). */
export type FetchedObject = {
  readonly size: number;
  readonly sha256: string;
  readonly etag: string;
  readonly stats: FetchStats;
} & ({ readonly bytes: Uint8Array; readonly path?: undefined } | { readonly bytes?: undefined; readonly path: string });

/** The object was replaced (or resized) during the download: start again from a new HEAD. */
class ObjectChangedError extends Error {
  override readonly name = 'ObjectChangedError';
}

/** A transient failure of our own detection (a stall, a short or long body): retry the part. */
class TransientFetchError extends Error {
  override readonly name = 'TransientFetchError';
}

interface Part {
  readonly start: number;
  readonly length: number;
  /** Bytes received so far (a retry resumes after them). */
  received: number;
  /** Bytes fed to the hash so far. */
  hashed: number;
  /** Where the part's bytes go: a view of the whole buffer, or a pooled part buffer when spilling. */
  view: Uint8Array | undefined;
  written: boolean;
}

/** Reads the fetch settings from the environment (budget, part size, concurrency); invalid values are refused. */
export function fetchOptionsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<S3FetchOptions, 'memoryBudgetBytes' | 'partSize' | 'concurrency'> {
  const number = (name: string, min: number): number | undefined => {
    const text = env[name];
    if (text === undefined || text === '') return undefined;
    const value = Number(text);
    if (!Number.isFinite(value) || value < min) {
      throw new StartupError(`${name}='${text}' is not a number ≥ ${min}`, `Set ${name} to a number, or unset it`);
    }
    return value;
  };
  const budgetMb = number(ENV.modelMemoryBudgetMb, 0);
  const partMb = number(ENV.modelFetchPartMb, 1 / 16);
  const concurrency = number(ENV.modelFetchConcurrency, 1);
  return {
    memoryBudgetBytes: budgetMb === undefined ? defaultMemoryBudget(env) : Math.floor(budgetMb * MIB),
    ...(partMb === undefined ? {} : { partSize: Math.floor(partMb * MIB) }),
    ...(concurrency === undefined ? {} : { concurrency: Math.floor(concurrency) }),
  };
}

/**
 * Half the memory this process may use (Lambda's configured size, else the cgroup limit, else the machine's):
 * a session made from bytes briefly holds the bytes and onnxruntime's own copy, so only a model under half the
 * memory is safe in memory; above that it goes to a file and onnxruntime reads it from there.
 */
export function defaultMemoryBudget(env: NodeJS.ProcessEnv = process.env): number {
  const lambdaMb = Number(env['AWS_LAMBDA_FUNCTION_MEMORY_SIZE']);
  const constrained = (process as { constrainedMemory?: () => number | undefined }).constrainedMemory?.();
  const total = totalmem();
  const memory =
    Number.isFinite(lambdaMb) && lambdaMb > 0
      ? lambdaMb * MIB
      : constrained && constrained > 0 && constrained < total
        ? constrained
        : total;
  // One Buffer cannot be larger than this (4 GiB on Node 20).
  return Math.floor(Math.min(memory / 2, bufferConstants.MAX_LENGTH));
}

/**
 * Fetches `s3://bucket/key` in parallel byte ranges. Errors from S3 that retrying cannot fix (403, 404, bad
 * credentials) are thrown as the SDK raised them, for the caller to describe; the fetch's own failures are
 * StartupErrors.
 */
export async function fetchS3Object(
  client: S3Client,
  location: { readonly bucket: string; readonly key: string },
  options: S3FetchOptions = {},
): Promise<FetchedObject> {
  return new S3Fetch(client, location, options).run();
}

class S3Fetch {
  private readonly uri: string;
  private readonly partSize: number;
  private readonly concurrency: number;
  private readonly readTimeoutMs: number;
  private readonly maxAttempts: number;
  private readonly maxRestarts: number;
  private readonly backoffBaseMs: number;
  private readonly memoryBudget: number;
  private retries = 0;
  private restarts = 0;

  constructor(
    private readonly client: S3Client,
    private readonly location: { readonly bucket: string; readonly key: string },
    private readonly options: S3FetchOptions,
  ) {
    this.uri = `s3://${location.bucket}/${location.key}`;
    this.partSize = positive(options.partSize ?? FETCH_DEFAULTS.partSize, 'partSize');
    this.concurrency = positive(options.concurrency ?? FETCH_DEFAULTS.concurrency, 'concurrency');
    this.readTimeoutMs = positive(options.readTimeoutMs ?? FETCH_DEFAULTS.readTimeoutMs, 'readTimeoutMs');
    this.maxAttempts = positive(options.maxAttempts ?? FETCH_DEFAULTS.maxAttempts, 'maxAttempts');
    this.maxRestarts = options.maxRestarts ?? FETCH_DEFAULTS.maxRestarts;
    this.backoffBaseMs = options.backoffBaseMs ?? FETCH_DEFAULTS.backoffBaseMs;
    this.memoryBudget = options.memoryBudgetBytes ?? defaultMemoryBudget();
  }

  async run(): Promise<FetchedObject> {
    const started = performance.now();
    for (;;) {
      const { size, etag } = await this.head();
      if (size === 0) throw new StartupError(`model ${this.uri} is empty (0 bytes)`, 'Upload the model file again');
      try {
        const result = await this.download(size, etag);
        const stats: FetchStats = {
          bytes: size,
          parts: Math.ceil(size / this.partSize),
          retries: this.retries,
          restarts: this.restarts,
          ms: performance.now() - started,
          verifyMs: result.verifyMs,
          partSize: this.partSize,
          concurrency: this.concurrency,
          spilled: result.path !== undefined,
        };
        return result.path !== undefined
          ? { path: result.path, size, sha256: result.sha256, etag, stats }
          : { bytes: result.bytes!, size, sha256: result.sha256, etag, stats };
      } catch (error) {
        if (!(error instanceof ObjectChangedError)) throw error;
        if (this.restarts >= this.maxRestarts) {
          throw new StartupError(
            `model ${this.uri} kept changing during the download (${this.restarts + 1} versions seen)`,
            'Stop writing to the model object while the API starts',
            { cause: error },
          );
        }
        this.restarts++;
      }
    }
  }

  /** HEAD with the same retries as a part; returns the size and ETag. */
  private async head(): Promise<{ size: number; etag: string }> {
    const response = await this.withRetries(undefined, async () => {
      const request = new AbortController();
      const timer = setTimeout(
        () => request.abort(new TransientFetchError(`no answer to HEAD within ${this.readTimeoutMs} ms`)),
        this.readTimeoutMs,
      );
      try {
        return await this.client.send(new HeadObjectCommand({ Bucket: this.location.bucket, Key: this.location.key }), {
          abortSignal: request.signal,
        });
      } catch (error) {
        throw request.signal.aborted ? request.signal.reason : error;
      } finally {
        clearTimeout(timer);
      }
    }).catch(async (error: unknown) => {
      throw await this.explainHeadFailure(error);
    });
    const size = response.ContentLength;
    const etag = response.ETag;
    if (size === undefined || etag === undefined) {
      throw new StartupError(`S3 did not report the size and ETag of ${this.uri}`);
    }
    return { size, etag };
  }

  /**
   * A HEAD answer has no body, so a 403 or 404 does not say which (missing bucket or key, bad credentials or no
   * permission): one plain GET of the first byte asks S3 for the error with its code.
   */
  private async explainHeadFailure(error: unknown): Promise<unknown> {
    const status = error instanceof S3ServiceException ? error.$metadata.httpStatusCode : undefined;
    if (status !== 403 && status !== 404) return error;
    try {
      const probe = await this.client.send(
        new GetObjectCommand({ Bucket: this.location.bucket, Key: this.location.key, Range: 'bytes=0-0' }),
        { abortSignal: AbortSignal.timeout(this.readTimeoutMs) },
      );
      (probe.Body as Readable | undefined)?.destroy();
      return error;
    } catch (detailed) {
      return detailed instanceof S3ServiceException ? detailed : error;
    }
  }

  private async download(
    size: number,
    etag: string,
  ): Promise<{ bytes?: Uint8Array; path?: string; sha256: string; verifyMs: number }> {
    const parts: Part[] = [];
    for (let start = 0; start < size; start += this.partSize) {
      parts.push({
        start,
        length: Math.min(this.partSize, size - start),
        received: 0,
        hashed: 0,
        view: undefined,
        written: false,
      });
    }
    const sink: Sink =
      size > this.memoryBudget
        ? await FileSink.create(this.options, size, this.partSize, this.concurrency, this.uri, this.location.key)
        : new MemorySink(size);
    const hash = createHash('sha256');
    let hashMs = 0;
    let frontier = 0;
    let received = 0;
    const onProgress = this.options.onProgress;
    onProgress?.(0, size);
    const advanceHash = (bytes: number): void => {
      received += bytes;
      onProgress?.(received, size);
      while (frontier < parts.length) {
        const part = parts[frontier]!;
        if (part.hashed < part.received) {
          const hashStarted = performance.now();
          hash.update(part.view!.subarray(part.hashed, part.received));
          hashMs += performance.now() - hashStarted;
          part.hashed = part.received;
        }
        if (part.hashed < part.length) return;
        frontier++;
        sink.hashed(part);
      }
    };

    const abort = new AbortController();
    let failure: unknown;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < parts.length && !abort.signal.aborted) {
        const part = parts[next++]!;
        await sink.acquire(part, abort.signal);
        await this.fetchPart(part, etag, size, abort.signal, advanceHash);
        await sink.complete(part);
      }
    };
    const workers = Array.from({ length: Math.min(this.concurrency, parts.length) }, () =>
      worker().catch((error: unknown) => {
        if (!abort.signal.aborted) {
          failure = error;
          abort.abort(error);
        }
      }),
    );
    await Promise.all(workers);
    if (abort.signal.aborted) {
      await sink.discard();
      throw failure;
    }
    try {
      const digestStarted = performance.now();
      const sha256 = hash.digest('hex');
      if (frontier !== parts.length) throw new Error(`internal: hashed ${frontier} of ${parts.length} parts`);
      checkSha256(this.uri, this.options.expectedSha256, sha256);
      const verifyMs = hashMs + (performance.now() - digestStarted);
      return { ...(await sink.finish(sha256)), sha256, verifyMs };
    } catch (error) {
      await sink.discard();
      throw error;
    }
  }

  /** One part, retried on its own; a retry resumes after the bytes already received. */
  private async fetchPart(
    part: Part,
    etag: string,
    size: number,
    signal: AbortSignal,
    advanceHash: (bytes: number) => void,
  ): Promise<void> {
    await this.withRetries(signal, async () => {
      await this.getRange(part, etag, size, signal, advanceHash);
      if (part.received < part.length) {
        throw new TransientFetchError(
          `part at byte ${part.start} was cut short: got ${part.received} of ${part.length} bytes`,
        );
      }
    });
  }

  private async getRange(
    part: Part,
    etag: string,
    size: number,
    outer: AbortSignal,
    advanceHash: (bytes: number) => void,
  ): Promise<void> {
    const from = part.start + part.received;
    const to = part.start + part.length - 1;
    const request = new AbortController();
    let body: Readable | undefined;
    const stop = (reason: unknown): void => {
      if (!request.signal.aborted) request.abort(reason);
      body?.destroy(reason instanceof Error ? reason : new Error(String(reason)));
    };
    const stalled = new TransientFetchError(`no data for ${this.readTimeoutMs} ms (read timeout)`);
    const timer = setTimeout(() => stop(stalled), this.readTimeoutMs);
    const onOuterAbort = (): void => stop(outer.reason);
    outer.addEventListener('abort', onOuterAbort, { once: true });
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.location.bucket,
          Key: this.location.key,
          Range: `bytes=${from}-${to}`,
          IfMatch: etag,
        }),
        { abortSignal: request.signal },
      );
      body = response.Body as Readable | undefined;
      if (!body) throw new TransientFetchError(`S3 returned no body for bytes ${from}-${to}`);
      if (response.ETag !== undefined && response.ETag !== etag) throw new ObjectChangedError('ETag changed');
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(response.ContentRange ?? '');
      if (range && range[3] !== '*' && Number(range[3]) !== size) throw new ObjectChangedError('size changed');
      // A server that ignores Range answers 200 with the whole object: fine when the whole object was asked for.
      const whole = !range && from === 0 && to === size - 1 && response.ContentLength === size;
      if (!whole && (!range || Number(range[1]) !== from || Number(range[2]) !== to)) {
        throw new TransientFetchError(`S3 answered range '${response.ContentRange}' to bytes=${from}-${to}`);
      }
      timer.refresh();
      try {
        for await (const chunk of body as AsyncIterable<Buffer>) {
          timer.refresh();
          if (part.received + chunk.length > part.length) {
            throw new TransientFetchError(`S3 sent more than the ${part.length} bytes asked for`);
          }
          part.view!.set(chunk, part.received);
          part.received += chunk.length;
          advanceHash(chunk.length);
        }
      } catch (error) {
        if (request.signal.aborted || error instanceof TransientFetchError) throw error;
        // A reset or closed connection mid-body: retried like a short body, and said so if it persists.
        throw new TransientFetchError(
          `the connection broke after ${part.received} of ${part.length} bytes of the part at byte ${part.start} ` +
            `(${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
          { cause: error },
        );
      }
    } catch (error) {
      // Our own abort (a stall, or another part's fatal error) reads better than the SDK's AbortError.
      if (request.signal.aborted) throw request.signal.reason;
      throw error;
    } finally {
      clearTimeout(timer);
      outer.removeEventListener('abort', onOuterAbort);
      if (body && !body.readableEnded) body.destroy();
    }
  }

  /** Runs `attempt` until it succeeds, a failure is not transient, or the tries run out. */
  private async withRetries<T>(signal: AbortSignal | undefined, attempt: () => Promise<T>): Promise<T> {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (error) {
        if (signal?.aborted) throw signal.reason;
        const kind = classify(error);
        if (kind === 'changed') throw error instanceof ObjectChangedError ? error : new ObjectChangedError('412');
        if (kind === 'fatal') throw error;
        if (tries >= this.maxAttempts) {
          if (error instanceof TransientFetchError) {
            throw new StartupError(
              `download of ${this.uri} failed after ${tries} tries: ${error.message}`,
              'Check the network to S3, then retry',
              { cause: error },
            );
          }
          throw error;
        }
        this.retries++;
        await sleep(backoff(tries, this.backoffBaseMs), signal);
      }
    }
  }
}

type Kind = 'retry' | 'fatal' | 'changed';

const RETRYABLE_CODES = new Set([
  'SlowDown',
  'Throttling',
  'ThrottlingException',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'InternalError',
  'ServiceUnavailable',
]);

function classify(error: unknown): Kind {
  if (error instanceof ObjectChangedError) return 'changed';
  if (error instanceof TransientFetchError) return 'retry';
  if (error instanceof StartupError) return 'fatal';
  if (error instanceof S3ServiceException) {
    const status = error.$metadata.httpStatusCode;
    if (status === 412 || error.name === 'PreconditionFailed') return 'changed';
    if (status === 416 || error.name === 'InvalidRange') return 'changed';
    if (RETRYABLE_CODES.has(error.name) || status === undefined || status >= 500 || status === 429) return 'retry';
    return 'fatal';
  }
  const name = (error as Error | undefined)?.name;
  if (name === 'CredentialsProviderError' || name === 'TypeError' || name === 'RangeError') return 'fatal';
  // Connection refused or reset, socket hang up, DNS hiccups, the SDK's own timeouts.
  return 'retry';
}

/** Exponential backoff with jitter: half the doubled delay fixed, half random. */
function backoff(tries: number, baseMs: number): number {
  const delay = Math.min(FETCH_DEFAULTS.backoffCapMs, baseMs * 2 ** (tries - 1));
  return delay / 2 + Math.random() * (delay / 2);
}

function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal!.reason as Error);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

function positive(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new StartupError(`fetch option ${name}=${value} must be ≥ 1`);
  return value;
}

/** Where the parts' bytes land. */
interface Sink {
  /** Gives the part its view; may wait for room (spilling keeps a bounded number of part buffers). */
  acquire(part: Part, signal: AbortSignal): Promise<void>;
  /** The part has all its bytes. */
  complete(part: Part): Promise<void>;
  /** The hash has passed the part's end. */
  hashed(part: Part): void;
  finish(sha256: string): Promise<{ bytes?: Uint8Array; path?: string }>;
  /** Drops everything (the temp file too); safe to call twice. */
  discard(): Promise<void>;
}

/** One buffer of the object's size; each part writes into its own slice of it. */
class MemorySink implements Sink {
  private buffer: Buffer | undefined;
  constructor(size: number) {
    // Not zero-filled: every byte is written before the buffer is handed out (the hash covers every part).
    this.buffer = Buffer.allocUnsafeSlow(size);
  }
  acquire(part: Part): Promise<void> {
    part.view = this.buffer!.subarray(part.start, part.start + part.length);
    return Promise.resolve();
  }
  complete(): Promise<void> {
    return Promise.resolve();
  }
  hashed(part: Part): void {
    part.view = undefined;
  }
  finish(): Promise<{ bytes: Uint8Array }> {
    const bytes = this.buffer!;
    this.buffer = undefined;
    return Promise.resolve({ bytes });
  }
  discard(): Promise<void> {
    this.buffer = undefined;
    return Promise.resolve();
  }
}

/**
 * A temp file written by positional writes, one per completed part. Each part is received into a pooled part
 * buffer, held until the hash has passed it and it is written; at most twice `concurrency` buffers exist, so
 * memory stays bounded however the parts finish.
 */
class FileSink implements Sink {
  private readonly free: Uint8Array[] = [];
  private live = 0;
  private readonly waiting: (() => void)[] = [];
  private closed = false;

  private constructor(
    private readonly dir: string,
    private readonly tempPath: string,
    private readonly file: FileHandle,
    private readonly partSize: number,
    private readonly maxLive: number,
    private readonly extension: string,
  ) {}

  static async create(
    options: S3FetchOptions,
    size: number,
    partSize: number,
    concurrency: number,
    uri: string,
    key: string,
  ): Promise<FileSink> {
    const dir = options.spillDir ?? tmpdir();
    const free = await (options.freeBytes ?? freeBytesOn)(dir);
    if (free < size) {
      throw new StartupError(
        `model ${uri} (${mb(size)} MB) is above the memory budget and ${dir} has only ${mb(free)} MB free`,
        `Give the function more ephemeral storage (at least ${mb(size)} MB), or raise ${ENV.modelMemoryBudgetMb}`,
      );
    }
    const tempPath = join(dir, `.arclight-model-${randomUUID()}.part`);
    const file = await open(tempPath, 'wx', 0o600);
    return new FileSink(dir, tempPath, file, partSize, Math.max(2, concurrency * 2), extname(key));
  }

  /**
   * Slots go to parts in the order they were taken (FIFO, a freed slot handed straight to the next waiter), so
   * the part the hash waits for always gets one before any later part: no deadlock however parts finish.
   */
  async acquire(part: Part, signal: AbortSignal): Promise<void> {
    if (this.live < this.maxLive && this.waiting.length === 0) {
      this.live++;
    } else {
      await new Promise<void>((resolve) => {
        const wake = (): void => {
          signal.removeEventListener('abort', wake);
          resolve();
        };
        this.waiting.push(wake);
        signal.addEventListener('abort', wake, { once: true });
      });
    }
    if (signal.aborted) throw signal.reason;
    const buffer = this.free.pop() ?? Buffer.allocUnsafeSlow(this.partSize);
    part.view = buffer.subarray(0, part.length);
  }

  async complete(part: Part): Promise<void> {
    const view = part.view!;
    let done = 0;
    while (done < view.length) {
      const { bytesWritten } = await this.file.write(view, done, view.length - done, part.start + done);
      done += bytesWritten;
    }
    part.written = true;
    this.release(part);
  }

  hashed(part: Part): void {
    this.release(part);
  }

  /** Returns the part's buffer to the pool once it is both hashed and written. */
  private release(part: Part): void {
    if (!part.written || part.hashed < part.length || !part.view) return;
    this.free.push(new Uint8Array(part.view.buffer, part.view.byteOffset, this.partSize));
    part.view = undefined;
    const next = this.waiting.shift();
    // The slot passes straight to the next part waiting, so no later part can take it first.
    if (next) next();
    else this.live--;
  }

  async finish(sha256: string): Promise<{ path: string }> {
    await this.file.sync();
    await this.close();
    const path = join(this.dir, `arclight-model-${sha256}${this.extension}`);
    await rename(this.tempPath, path);
    return { path };
  }

  async discard(): Promise<void> {
    await this.close().catch(() => undefined);
    await rm(this.tempPath, { force: true });
  }

  private async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.free.length = 0;
    await this.file.close();
  }
}

async function freeBytesOn(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

function mb(bytes: number): string {
  return (bytes / MIB).toFixed(1);
}
