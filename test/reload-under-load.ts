/**
 * Live reload under load, shared by the container server's and `arclight serve`'s tests: a served process on a
 * versioned prefix in s3rver, clients sending digits requests back to back, then version 2 (a different network,
 * test/fixtures/linear-digits.ts) uploaded, then a corrupt version 3 (its sidecar names another sha256). It records
 * every request (start, end, status, version, logits) and the process's memory and threads, for the test to judge.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { EmbeddedS3 } from '../lib/cli/local/embedded-s3.js';
import { linearDigitsModel, type LinearDigits } from './fixtures/linear-digits.js';
import { DIGITS_ONNX, digitsInferBody, loadDigitsExpected } from './helpers.js';
import type { ServedProcess } from './served-process.js';

export interface Answer {
  readonly startMs: number;
  readonly endMs: number;
  readonly status: number;
  readonly version: string | null;
  readonly image: number;
  readonly logits: readonly number[];
  readonly error?: string;
}

/** What a process holds: memory (after a collection) and OS threads (worker threads and onnxruntime's pools). */
export interface Footprint {
  readonly rssMb: number;
  readonly threads: number;
}

export interface ReloadRun {
  readonly answers: readonly Answer[];
  /** When version 2's objects were uploaded, and when the first answer from it arrived (ms, as the answers). */
  readonly v2UploadedMs: number;
  readonly firstV2Ms: number;
  /** When the corrupt version 3 was uploaded, and when the server's log said it was refused. */
  readonly v3UploadedMs: number;
  readonly v3RefusedMs: number;
  readonly before: Footprint;
  /** After the swap, once version 1 is released. */
  readonly after: Footprint;
  readonly v2: LinearDigits;
}

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

/** Uploads a version folder the documented way: the sidecar first, then the model. */
export async function putVersion(
  s3: EmbeddedS3,
  bucket: string,
  prefix: string,
  version: string,
  bytes: Uint8Array,
  sidecarSha256 = sha(bytes),
): Promise<void> {
  await s3.put(bucket, `${prefix}${version}/model.onnx.sha256`, Buffer.from(`${sidecarSha256}  model.onnx\n`));
  await s3.put(bucket, `${prefix}${version}/model.onnx`, bytes);
}

/** Uploads version 1 (digits.onnx) under the prefix: call before starting the served process. */
export async function putFirstVersion(s3: EmbeddedS3, bucket: string, prefix: string): Promise<void> {
  await putVersion(s3, bucket, prefix, '1', readFileSync(DIGITS_ONNX));
}

export function footprint(pid: number, rss: number): Footprint {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const threads = Number(/^Threads:\s+(\d+)/m.exec(status)?.[1] ?? NaN);
  return { rssMb: Math.round((rss / 2 ** 20) * 10) / 10, threads };
}

export async function reloadUnderLoad(
  s3: EmbeddedS3,
  served: ServedProcess,
  options: { readonly bucket: string; readonly prefix: string; readonly apiName: string; readonly clients?: number },
): Promise<ReloadRun> {
  const expected = loadDigitsExpected();
  const v2 = linearDigitsModel();
  const answers: Answer[] = [];
  const t0 = performance.now();
  const now = (): number => performance.now() - t0;
  let running = true;
  const client = async (offset: number): Promise<void> => {
    for (let i = offset; running; i += 7) {
      const image = i % expected.images.length;
      const startMs = now();
      try {
        const response = await fetch(`${served.url}/v2/models/${options.apiName}/infer`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: digitsInferBody([expected.images[image]!]),
        });
        const text = await response.text();
        const body = JSON.parse(text) as { outputs?: { data: number[] }[] };
        answers.push({
          startMs,
          endMs: now(),
          status: response.status,
          version: response.headers.get('x-model-version'),
          image,
          logits: body.outputs?.[0]?.data ?? [],
          ...(response.status === 200 ? {} : { error: text.slice(0, 300) }),
        });
      } catch (error) {
        answers.push({ startMs, endMs: now(), status: 0, version: null, image, logits: [], error: String(error) });
      }
    }
  };
  const clients = Array.from({ length: options.clients ?? 4 }, (_, i) => client(i));
  const until = async (what: string, check: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    while (!(await check())) {
      if (Date.now() > deadline || served.exited()) throw new Error(`${what} did not happen: ${served.output()}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };
  try {
    await until('300 answers from version 1', () => answers.length >= 300);
    const before = footprint(served.pid, (await served.sample({ gc: true })).rss);
    const v2UploadedMs = now();
    await putVersion(s3, options.bucket, options.prefix, '2', v2.bytes);
    await until('an answer from version 2', () => answers.some((a) => a.version === '2'));
    const firstV2Ms = Math.min(...answers.filter((a) => a.version === '2').map((a) => a.endMs));
    await until('version 1 released', async () => {
      const meta = (await (await fetch(`${served.url}/v2/models/${options.apiName}`)).json()) as { versions: string[] };
      return meta.versions.join() === '2';
    });
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const after = footprint(served.pid, (await served.sample({ gc: true })).rss);
    const v3UploadedMs = now();
    const corrupt = readFileSync(DIGITS_ONNX);
    await putVersion(s3, options.bucket, options.prefix, '3', corrupt, sha(v2.bytes));
    await until('version 3 refused', () => served.errorRecords().some((r) => r.includes('model version refused')));
    const v3RefusedMs = now();
    await new Promise((resolve) => setTimeout(resolve, 1000));
    return { answers, v2UploadedMs, firstV2Ms, v3UploadedMs, v3RefusedMs, before, after, v2 };
  } finally {
    running = false;
    await Promise.all(clients);
  }
}

/** p-quantile of latencies (ms). */
export function quantile(values: readonly number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}
