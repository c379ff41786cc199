/**
 * The parallel S3 fetch against real s3rver, through a fault-injecting proxy (test/s3-fault-proxy.ts):
 * byte-exact reassembly, per-part retries (5xx, throttling, truncated bodies, stalls), If-Match restarts when the
 * object is replaced mid-download, no retries on 403/404, the sha256 check, the /tmp spill, and memory.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { after, before, beforeEach, describe, test } from 'node:test';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import {
  loadModelBytes,
  type LoadModelOptions,
  type ModelBytes,
} from '../../../lib/runtime/model-store/model-store.js';
import { assertStartupError } from '../../helpers.js';
import { startFaultProxy, type FaultProxy, type SeenRequest } from '../../s3-fault-proxy.js';

const BUCKET = 'fetch';
const PART = 64 * 1024;
/** Small parts, quick timeouts and backoff: every fault test finishes in well under a second. */
const FAST = { partSize: PART, concurrency: 4, readTimeoutMs: 300, backoffBaseMs: 5 } as const;

let s3: EmbeddedS3;
let proxy: FaultProxy;

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  proxy = await startFaultProxy(s3.endpoint, s3.env);
});

after(async () => {
  await proxy?.close();
  await s3?.close();
});

beforeEach(() => proxy.reset());

/** The key of the test's object: requests for others (a previous test's aborted parts arriving late) are not counted. */
let current = '';

async function put(key: string, size: number): Promise<{ uri: string; bytes: Buffer; sha256: string }> {
  current = key;
  const bytes = randomBytes(size);
  const { uri, sha256 } = await s3.put(BUCKET, key, bytes);
  return { uri, bytes, sha256 };
}

function load(uri: string, options: Omit<LoadModelOptions, 'env'> = {}): Promise<ModelBytes> {
  return loadModelBytes(uri, { env: proxy.env, ...options, fetch: { ...FAST, ...options.fetch } });
}

const mine = (r: SeenRequest): boolean => new URL(r.path, 'http://x').pathname === `/${BUCKET}/${current}`;
const gets = (): SeenRequest[] => proxy.requests.filter((r) => r.method === 'GET' && mine(r));
const heads = (): SeenRequest[] => proxy.requests.filter((r) => r.method === 'HEAD' && mine(r));
/** The part of the object a GET asked for, by its first byte. */
const partOf = (request: SeenRequest): number =>
  Math.floor(Number(/bytes=(\d+)-/.exec(request.range ?? '')![1]) / PART);

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

describe('reassembly', () => {
  for (const [name, size] of [
    ['a multiple of the part size', 4 * PART],
    ['not a multiple of the part size', 4 * PART + 1000],
    ['one byte over a part', PART + 1],
    ['exactly one part', PART],
    ['smaller than a part', 1000],
  ] as const) {
    test(`byte-exact: ${name} (${size} bytes)`, async () => {
      const object = await put(`reassembly-${size}.bin`, size);
      const loaded = await load(object.uri, { expectedSha256: object.sha256 });
      assert.equal(loaded.sha256, object.sha256);
      assert.equal(sha256(loaded.bytes), object.sha256, 'the bytes returned are the bytes hashed');
      assert.ok(Buffer.from(loaded.bytes).equals(object.bytes));
      assert.equal(loaded.size, size);
      assert.equal(loaded.path, undefined);
      const parts = Math.ceil(size / PART);
      assert.equal(loaded.stats?.parts, parts);
      assert.equal(loaded.stats?.retries, 0);
      assert.equal(loaded.stats?.restarts, 0);
      assert.equal(heads().length, 1, 'one HEAD');
      assert.equal(gets().length, parts, 'one GET per part');
      for (const get of gets()) {
        assert.match(get.range ?? '', /^bytes=\d+-\d+$/);
        assert.ok(get.ifMatch, 'every part is pinned to the ETag');
      }
      assert.deepEqual(
        gets()
          .map(partOf)
          .sort((a, b) => a - b),
        [...Array(parts).keys()],
      );
    });
  }

  test('a 0-byte object is refused clearly, without any GET', async () => {
    current = 'empty.bin';
    const { uri } = await s3.put(BUCKET, current, Buffer.alloc(0));
    await assertStartupError(load(uri), new RegExp(`model ${uri} is empty \\(0 bytes\\)`));
    assert.equal(gets().length, 0);
  });
});

describe('faults', () => {
  test('a part that fails twice (500) then succeeds recovers; the retries are counted', async () => {
    const object = await put('fails-twice.bin', 5 * PART + 7);
    let failures = 0;
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 2 && failures++ < 2
        ? { kind: 'status', status: 500, code: 'InternalError' }
        : undefined;
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    assert.ok(Buffer.from(loaded.bytes).equals(object.bytes));
    assert.equal(loaded.stats?.retries, 2);
    assert.equal(gets().filter((r) => partOf(r) === 2).length, 3, 'only the failing part was asked again');
    assert.equal(heads().length, 1, 'retried per part, not per object');
  });

  test('throttling (503 SlowDown) is retried', async () => {
    const object = await put('throttled.bin', 3 * PART);
    let throttled = 0;
    proxy.plan = (request) =>
      request.method === 'GET' && throttled++ < 3 ? { kind: 'status', status: 503, code: 'SlowDown' } : undefined;
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    assert.equal(loaded.sha256, object.sha256);
    assert.equal(loaded.stats?.retries, 3);
  });

  test('a 5xx that persists gives up after the part tries, with a clear error', async () => {
    const object = await put('always-500.bin', 2 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 1
        ? { kind: 'status', status: 500, code: 'InternalError' }
        : undefined;
    await assertStartupError(load(object.uri, { fetch: { maxAttempts: 3 } }), /S3 error reading .*InternalError/);
    assert.equal(gets().filter((r) => partOf(r) === 1).length, 3);
  });

  test('a connection reset before any answer is retried, for a part and for the HEAD', async () => {
    const object = await put('reset.bin', 3 * PART);
    const reset = new Set<string>();
    proxy.plan = (request) => {
      const what = request.method === 'HEAD' ? 'head' : `part ${partOf(request)}`;
      if (what !== 'head' && what !== 'part 1') return undefined;
      if (reset.has(what)) return undefined;
      reset.add(what);
      return { kind: 'reset' };
    };
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    assert.ok(Buffer.from(loaded.bytes).equals(object.bytes));
    assert.equal(loaded.stats?.retries, 2);
    assert.equal(heads().length, 2);
  });

  test('a truncated part body recovers: the retry resumes after the bytes received', async () => {
    const object = await put('truncated.bin', 4 * PART + 5);
    let truncated = false;
    proxy.plan = (request) => {
      if (request.method !== 'GET' || partOf(request) !== 1 || truncated) return undefined;
      truncated = true;
      return { kind: 'truncate', afterBytes: 1000 };
    };
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    assert.ok(Buffer.from(loaded.bytes).equals(object.bytes));
    assert.equal(loaded.stats?.retries, 1);
    const ranges = gets()
      .filter((r) => partOf(r) === 1)
      .map((r) => r.range);
    assert.equal(ranges.length, 2);
    assert.equal(ranges[0], `bytes=${PART}-${2 * PART - 1}`);
    const resumedAt = Number(/bytes=(\d+)-/.exec(ranges[1]!)![1]);
    assert.ok(resumedAt > PART && resumedAt <= PART + 1000, `resumed at ${resumedAt}`);
  });

  test('a part body that is always truncated is refused, never served', async () => {
    const object = await put('always-truncated.bin', 2 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 1 ? { kind: 'truncate', afterBytes: 0 } : undefined;
    await assertStartupError(
      load(object.uri, { fetch: { maxAttempts: 3 } }),
      /failed after 3 tries/,
      /broke after 0 of 65536 bytes/,
    );
  });

  test('altered bytes: the sha256 check refuses them, naming expected and got', async () => {
    const object = await put('altered.bin', 3 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 2 ? { kind: 'alter', at: 123 } : undefined;
    const altered = Buffer.from(object.bytes);
    altered[2 * PART + 123] = altered[2 * PART + 123]! ^ 0xff;
    await assertStartupError(
      load(object.uri, { expectedSha256: object.sha256 }),
      /failed its integrity check/,
      new RegExp(`expected sha256 ${object.sha256}, got ${sha256(altered)}`),
    );
  });

  test('the object replaced mid-download: 412, a restart from a new HEAD, one consistent version', async () => {
    const key = 'replaced.bin';
    const old = await put(key, 6 * PART);
    const replacement = randomBytes(5 * PART + 99);
    let replaced = false;
    proxy.plan = (request) => {
      if (request.method !== 'GET' || replaced) return undefined;
      replaced = true;
      return { kind: 'before', run: () => s3.put(BUCKET, key, replacement).then(() => undefined) };
    };
    const loaded = await load(old.uri);
    assert.ok(Buffer.from(loaded.bytes).equals(replacement), 'the new version, whole');
    assert.equal(loaded.sha256, sha256(replacement));
    assert.equal(loaded.stats?.restarts, 1);
    assert.equal(heads().length, 2);
    const etags = new Set(gets().map((r) => r.ifMatch));
    assert.equal(etags.size, 2, 'parts of the second start are pinned to the new ETag');
  });

  test('an object that keeps changing gives up after the restarts allowed', async () => {
    const key = 'churning.bin';
    const { uri } = await put(key, 2 * PART);
    let lastHead = -1;
    proxy.plan = (request, index) => {
      if (request.method === 'HEAD') lastHead = index;
      if (request.method !== 'GET' || index !== lastHead + 1) return undefined;
      return { kind: 'before', run: () => s3.put(BUCKET, key, randomBytes(2 * PART)).then(() => undefined) };
    };
    await assertStartupError(load(uri, { fetch: { maxRestarts: 2 } }), /kept changing during the download/);
    assert.equal(heads().length, 3);
  });

  test('a stalled connection: the read timeout aborts the part, which is retried and succeeds', async () => {
    const object = await put('stalled.bin', 3 * PART);
    let stalled = false;
    proxy.plan = (request) => {
      if (request.method !== 'GET' || partOf(request) !== 0 || stalled) return undefined;
      stalled = true;
      return { kind: 'stall', afterBytes: 100 };
    };
    const started = performance.now();
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    const elapsed = performance.now() - started;
    assert.ok(Buffer.from(loaded.bytes).equals(object.bytes));
    assert.equal(loaded.stats?.retries, 1);
    assert.ok(elapsed >= FAST.readTimeoutMs, `waited out the read timeout (${elapsed} ms)`);
    assert.ok(elapsed < 5_000, `and no more (${elapsed} ms)`);
  });

  test('a stall before any body byte is a read timeout too', async () => {
    const object = await put('stalled-early.bin', PART);
    let stalled = false;
    proxy.plan = (request) => {
      if (request.method !== 'GET' || stalled) return undefined;
      stalled = true;
      return { kind: 'stall', afterBytes: 0 };
    };
    const loaded = await load(object.uri, { expectedSha256: object.sha256 });
    assert.equal(loaded.stats?.retries, 1);
  });

  test('403 on a part: no retry, access denied', async () => {
    const object = await put('forbidden-part.bin', 3 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 1
        ? { kind: 'status', status: 403, code: 'AccessDenied' }
        : undefined;
    const error = await assertStartupError(load(object.uri), new RegExp(`access denied reading ${object.uri}`));
    assert.match(error.hint ?? '', /s3:GetObject/);
    assert.equal(gets().filter((r) => partOf(r) === 1).length, 1, 'not retried');
  });

  test('404 on a part: no retry, does not exist', async () => {
    const object = await put('missing-part.bin', 3 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 2
        ? { kind: 'status', status: 404, code: 'NoSuchKey' }
        : undefined;
    await assertStartupError(load(object.uri), new RegExp(`model ${object.uri} does not exist`));
    assert.equal(gets().filter((r) => partOf(r) === 2).length, 1, 'not retried');
  });

  test('403 and 404 on the HEAD: no retry; one GET asks S3 which error it is', async () => {
    const object = await put('forbidden.bin', PART);
    for (const [status, code, message] of [
      [403, 'AccessDenied', /access denied reading/],
      [404, 'NoSuchKey', /does not exist/],
    ] as const) {
      proxy.reset();
      proxy.plan = () => ({ kind: 'status', status, code });
      await assertStartupError(load(object.uri), message);
      assert.deepEqual(
        proxy.requests.filter(mine).map((r) => r.method),
        ['HEAD', 'GET'],
        `${status}: no retries`,
      );
    }
  });
});

describe('spill to a file above the memory budget', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'arclight-spill-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    for (const name of await readdir(dir)) await rm(join(dir, name), { force: true });
  });

  test('the model goes to a verified file named by its sha256; no bytes in memory', async () => {
    const object = await put('spilled.bin', 9 * PART + 3);
    let failures = 0;
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 0 && failures++ < 1
        ? { kind: 'truncate', afterBytes: 500 }
        : undefined;
    const loaded = await load(object.uri, {
      expectedSha256: object.sha256,
      fetch: { memoryBudgetBytes: PART, spillDir: dir, concurrency: 2 },
    });
    assert.equal(loaded.bytes.length, 0);
    assert.equal(loaded.path, join(dir, `arclight-model-${object.sha256}.bin`));
    assert.equal(loaded.size, object.bytes.length);
    assert.equal(loaded.stats?.spilled, true);
    assert.equal(loaded.stats?.retries, 1);
    assert.ok((await readFile(loaded.path!)).equals(object.bytes));
    assert.deepEqual(await readdir(dir), [`arclight-model-${object.sha256}.bin`], 'no temp file left');
  });

  test('parts finishing out of order while the first is slow: bounded part buffers, no deadlock', async () => {
    const object = await put('spilled-out-of-order.bin', 24 * PART + 11);
    proxy.plan = (request) => {
      if (request.method !== 'GET') return undefined;
      const part = partOf(request);
      // The part the hash waits for is slowest; the others finish in a scrambled order.
      const delay = part === 0 ? 150 : (part * 37) % 50;
      return { kind: 'before', run: () => new Promise((resolve) => setTimeout(resolve, delay)) };
    };
    const loaded = await load(object.uri, {
      expectedSha256: object.sha256,
      fetch: { memoryBudgetBytes: 0, spillDir: dir, concurrency: 3 },
    });
    assert.ok((await readFile(loaded.path!)).equals(object.bytes));
    assert.equal(loaded.stats?.parts, 25);
  });

  test('a failed fetch (sha256 mismatch) leaves no file behind', async () => {
    const object = await put('spilled-bad.bin', 4 * PART);
    proxy.plan = (request) => (request.method === 'GET' ? { kind: 'alter', at: 7 } : undefined);
    await assertStartupError(
      load(object.uri, { expectedSha256: object.sha256, fetch: { memoryBudgetBytes: 0, spillDir: dir } }),
      /failed its integrity check/,
    );
    assert.deepEqual(await readdir(dir), []);
  });

  test('a failed fetch (403 mid-download) leaves no file behind', async () => {
    const object = await put('spilled-403.bin', 4 * PART);
    proxy.plan = (request) =>
      request.method === 'GET' && partOf(request) === 3
        ? { kind: 'status', status: 403, code: 'AccessDenied' }
        : undefined;
    await assertStartupError(load(object.uri, { fetch: { memoryBudgetBytes: 0, spillDir: dir } }), /access denied/);
    assert.deepEqual(await readdir(dir), []);
  });

  test('too little free space is refused before downloading', async () => {
    const object = await put('spilled-big.bin', 4 * PART);
    const error = await assertStartupError(
      load(object.uri, { fetch: { memoryBudgetBytes: 0, spillDir: dir, freeBytes: () => Promise.resolve(PART) } }),
      /above the memory budget/,
      new RegExp(`${dir} has only 0\\.1 MB free`),
    );
    assert.match(error.hint ?? '', /ephemeral storage/);
    assert.equal(gets().length, 0);
    assert.deepEqual(await readdir(dir), []);
  });
});

describe('memory', () => {
  const size = 96 * 1024 * 1024;
  const mb = (n: number): string => `${(n / 1024 / 1024).toFixed(1)} MB`;
  let large: { uri: string; sha256: string };
  let gc: () => void;

  before(async () => {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
    large = await s3.put(BUCKET, 'large.bin', randomBytes(size));
  });

  /** Runs `work` and reports the peak growth of RSS and of ArrayBuffer memory over a collected baseline. */
  async function peakGrowth<T>(work: () => Promise<T>): Promise<{ result: T; rss: number; arrayBuffers: number }> {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
    const base = process.memoryUsage();
    let peakRss = base.rss;
    let peakArrayBuffers = base.arrayBuffers;
    const sample = (): void => {
      const now = process.memoryUsage();
      peakRss = Math.max(peakRss, now.rss);
      peakArrayBuffers = Math.max(peakArrayBuffers, now.arrayBuffers);
    };
    const sampler = setInterval(sample, 5);
    try {
      const result = await work();
      sample();
      return { result, rss: peakRss - base.rss, arrayBuffers: peakArrayBuffers - base.arrayBuffers };
    } finally {
      clearInterval(sampler);
    }
  }

  test('spilling a large object to a file holds a few parts, not the object', async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'arclight-spill-large-'));
    try {
      const partSize = 4 * 1024 * 1024;
      const concurrency = 4;
      const { result, rss, arrayBuffers } = await peakGrowth(() =>
        loadModelBytes(large.uri, {
          env: s3.env,
          expectedSha256: large.sha256,
          fetch: { partSize, concurrency, memoryBudgetBytes: 0, spillDir: dir },
        }),
      );
      t.diagnostic(`spill: rss +${mb(rss)}, arrayBuffers +${mb(arrayBuffers)}`);
      assert.equal(result.sha256, large.sha256);
      // At most 2 × concurrency part buffers, plus the sockets' chunks not yet collected on both ends (the embedded
      // S3 serves from this process too, and how much of that is collected depends on GC timing): still well below
      // the 96 MB object, which is what this guards.
      const bound = 2 * concurrency * partSize + 40 * 1024 * 1024;
      assert.ok(arrayBuffers <= bound, `arrayBuffers +${mb(arrayBuffers)}, bound ${mb(bound)}`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test("a fetch refused for its sha256 gives the object's memory back, and no session is ever made", async (t) => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
    const before = process.memoryUsage().arrayBuffers;
    await assert.rejects(
      loadModelBytes(large.uri, { env: s3.env, expectedSha256: 'f'.repeat(64), fetch: { concurrency: 4 } }),
      /sha256/,
    );
    gc();
    await new Promise((resolve) => setTimeout(resolve, 50));
    gc();
    const grown = process.memoryUsage().arrayBuffers - before;
    t.diagnostic(`arrayBuffers after the refused fetch: +${mb(grown)}`);
    // The 96 MB buffer is dropped by the refusal itself: only what the embedded S3 still caches may remain.
    assert.ok(grown < size / 4, `arrayBuffers +${mb(grown)} after a refused ${mb(size)} fetch`);
  });

  test('fetching a large object holds one copy of it, not two', async (t) => {
    const { result, rss, arrayBuffers } = await peakGrowth(() =>
      // Straight to s3rver: the proxy's own buffers are not the fetch's.
      loadModelBytes(large.uri, {
        env: s3.env,
        expectedSha256: large.sha256,
        fetch: { partSize: 8 * 1024 * 1024, concurrency: 4 },
      }),
    );
    const bound = size + 64 * 1024 * 1024;
    const report = `rss +${mb(rss)}, arrayBuffers +${mb(arrayBuffers)}, bound ${mb(bound)}`;
    t.diagnostic(report);
    assert.equal(result.sha256, large.sha256);
    assert.ok(arrayBuffers >= size, `the model itself is counted (${report})`);
    assert.ok(arrayBuffers <= bound, report);
    assert.ok(rss <= bound, report);
  });
});
