/**
 * The async API under `arclight dev`, as a client meets it over real sockets: a synthesized app with a RealtimeApi and
 * two AsyncApis (test/fixtures/async-app.ts), the real dev server, the bundles synth built running in local Lambda
 * hosts, and the embedded S3 (s3rver) holding requests and results.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { synthesize } from '../../../lib/cli/deploy/assembly.js';
import { DevServer } from '../../../lib/cli/local/dev.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import { verifyWebhookSignature } from '../../../lib/runtime/async/webhook.js';
import { REPO_ROOT, contractError, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
const WEBHOOK_SECRET = 'dev-webhook-key-for-tests';
// DevAsyncApi signs webhooks with this key (else a random one it logs).
process.env['ARCLIGHT_DEV_WEBHOOK_SECRET'] = WEBHOOK_SECRET;
let outdir: string;
let dev: DevServer;
const log: string[] = [];

before(
  async () => {
    outdir = mkdtempSync(join(tmpdir(), 'arclight-dev-async-'));
    await synthesize('node --import tsx test/fixtures/async-app.ts', outdir, { cwd: REPO_ROOT });
    dev = new DevServer({ assembly: outdir, port: 0, host: '127.0.0.1', log: (line) => log.push(line) });
    await dev.start();
    assert.deepEqual(
      dev.apis.map((api) => [api.name, api.status]),
      [
        ['digits', 'ready'],
        ['digits-async', 'ready'],
        ['jobs-async', 'ready'],
      ],
      log.join('\n'),
    );
  },
  { timeout: 600_000 },
);

after(async () => {
  await dev?.close();
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

interface JobStatus {
  readonly id: string;
  readonly status: 'queued' | 'running' | 'succeeded' | 'failed';
  readonly attempts: number;
  readonly result?: unknown;
  readonly resultUrl?: string;
  readonly resultContentType?: string;
  readonly httpStatus?: number;
  readonly error?: string;
  readonly code?: string;
  readonly requestId?: string;
}

async function submit(
  api: string,
  body: string | Buffer,
  headers: Record<string, string> = { 'content-type': 'application/json' },
): Promise<{ status: number; body: Record<string, unknown>; headers: Headers }> {
  const response = await fetch(`${dev.url}/${api}/async`, { method: 'POST', headers, body });
  return {
    status: response.status,
    body: (await response.json()) as Record<string, unknown>,
    headers: response.headers,
  };
}

async function jobStatus(statusUrl: string): Promise<JobStatus> {
  const response = await fetch(statusUrl);
  assert.equal(response.status, 200, await response.clone().text());
  return (await response.json()) as JobStatus;
}

/** Polls until the job ended (or `until` holds), every `everyMs`. */
async function waitFor(
  statusUrl: string,
  until: (job: JobStatus) => boolean = (job) => job.status === 'succeeded' || job.status === 'failed',
  everyMs = 20,
  timeoutMs = 120_000,
): Promise<JobStatus> {
  for (const deadline = Date.now() + timeoutMs; ;) {
    const job = await jobStatus(statusUrl);
    if (until(job)) return job;
    assert.ok(Date.now() < deadline, `job still ${job.status} after ${timeoutMs} ms: ${JSON.stringify(job)}`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe('arclight dev: an AsyncApi at /<api>/async', () => {
  test('200 submissions at concurrency 32 all succeed, each result equal to the synchronous answer', async (t) => {
    const images = expected.images.slice(0, 200);
    const sync: unknown[] = [];
    for (const pixels of images) {
      const response = await fetch(`${dev.url}/digits`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ pixels }),
      });
      assert.equal(response.status, 200);
      sync.push(await response.json());
    }
    const results: unknown[] = new Array(images.length);
    const latencies: number[] = [];
    const ids = new Set<string>();
    let next = 0;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < images.length) {
          const index = next++;
          const submitted = performance.now();
          const { status, body, headers } = await submit('digits-async', JSON.stringify({ pixels: images[index] }));
          assert.equal(status, 202, JSON.stringify(body));
          assert.equal(body['status'], 'queued');
          assert.match(String(body['id']), /^[0-9a-f]{32}$/);
          assert.equal(body['statusUrl'], `${dev.url}/digits-async/async/${String(body['id'])}`);
          assert.equal(headers.get('location'), body['statusUrl']);
          ids.add(String(body['id']));
          const job = await waitFor(String(body['statusUrl']), undefined, 25);
          latencies.push(performance.now() - submitted);
          assert.equal(job.status, 'succeeded', JSON.stringify(job));
          results[index] = job.result;
        }
      }),
    );
    const seconds = (performance.now() - started) / 1000;
    assert.equal(ids.size, images.length, 'every submission got its own id');
    assert.deepEqual(results, sync);
    latencies.sort((a, b) => a - b);
    t.diagnostic(
      `submit → result at concurrency 32: p50 ${percentile(latencies, 50).toFixed(0)} ms, p99 ${percentile(latencies, 99).toFixed(0)} ms, ${(images.length / seconds).toFixed(1)} jobs/s`,
    );
    const worker = dev.asyncApi('digits-async')!;
    assert.equal(worker.outcomes.filter((o) => o.outcome === 'succeeded').length, images.length);
  });

  test('an Idempotency-Key sent again returns the same id; with another body it is refused', async () => {
    const headers = { 'content-type': 'application/json', 'idempotency-key': `order-${Date.now()}` };
    const body = JSON.stringify({ pixels: expected.images[0] });
    const first = await submit('digits-async', body, headers);
    const again = await submit('digits-async', body, headers);
    assert.equal(first.status, 202);
    assert.equal(again.status, 202);
    assert.equal(again.body['id'], first.body['id']);
    assert.equal(again.headers.get('idempotent-replayed'), 'true');
    const job = await waitFor(String(first.body['statusUrl']));
    assert.equal(job.status, 'succeeded');
    const afterEnd = await submit('digits-async', body, headers);
    assert.equal(afterEnd.body['id'], first.body['id']);
    assert.equal(afterEnd.body['status'], 'succeeded');
    const other = await submit('digits-async', JSON.stringify({ pixels: expected.images[1] }), headers);
    assert.equal(other.status, 400);
    assert.equal(contractError(other.body).code, 'idempotency_key_reused');
    // One job ran for the key, however often it was sent.
    const runs = dev.asyncApi('digits-async')!.outcomes.filter((o) => o.id === first.body['id']);
    assert.deepEqual(runs.filter((o) => o.outcome === 'succeeded').length, 1, JSON.stringify(runs));
  });

  test('a predictor that throws: the job fails with the contract error, naming no internals', async () => {
    const { body } = await submit('jobs-async', JSON.stringify({ fail: 'disk /secret/key.pem' }));
    const job = await waitFor(String(body['statusUrl']));
    assert.equal(job.status, 'failed');
    assert.equal(job.httpStatus, 500);
    assert.equal(job.code, 'predictor_error');
    assert.equal(job.requestId, body['id'], 'the job id is the request id its logs carry');
    assert.ok(job.error && !job.error.includes('/secret/key.pem'), job.error);
    assert.equal(job.attempts, 1, 'a predictor failure is an answer, not retried');
  });

  test('a 50 MB body: refused inline (413), accepted through a presigned upload, arriving whole', async () => {
    const bytes = randomBytes(50 * 1024 * 1024);
    const direct = await submit('jobs-async', bytes, { 'content-type': 'application/octet-stream' });
    assert.equal(direct.status, 413);
    assert.equal(contractError(direct.body).code, 'payload_too_large');
    const upload = await fetch(`${dev.url}/jobs-async/async/uploads`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ contentType: 'application/octet-stream' }),
    });
    assert.equal(upload.status, 201);
    const { uploadId, uploadUrl, headers } = (await upload.json()) as {
      uploadId: string;
      uploadUrl: string;
      headers: Record<string, string>;
    };
    assert.match(uploadUrl, /X-Amz-Signature=/);
    assert.match(uploadUrl, /X-Amz-Expires=900/);
    const put = await fetch(uploadUrl, { method: 'PUT', headers, body: bytes });
    assert.equal(put.status, 200, await put.text());
    const submitted = await submit('jobs-async', Buffer.alloc(0), { 'x-arclight-upload': uploadId });
    assert.equal(submitted.status, 202, JSON.stringify(submitted.body));
    const job = await waitFor(String(submitted.body['statusUrl']));
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.deepEqual(job.result, { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') });

    const unknown = await submit('jobs-async', Buffer.alloc(0), { 'x-arclight-upload': '0'.repeat(32) });
    assert.equal(unknown.status, 400);
    assert.match(contractError(unknown.body).message, /nothing was uploaded/);
  });

  test('a result above the inline size comes as a short-lived presigned URL', async () => {
    const { body } = await submit('jobs-async', JSON.stringify({ text: 100_000 }));
    const job = await waitFor(String(body['statusUrl']));
    assert.equal(job.status, 'succeeded');
    assert.equal(job.result, undefined);
    assert.ok(job.resultUrl, JSON.stringify(job));
    const result = await fetch(job.resultUrl);
    assert.equal(result.status, 200);
    assert.equal(await result.text(), 'x'.repeat(100_000));
  });

  test('a worker killed mid-job: the job is delivered again and completes once (same id, one result)', async () => {
    const { body } = await submit('jobs-async', JSON.stringify({ sleepMs: 3000, tag: 'killed' }));
    const id = String(body['id']);
    const running = await waitFor(String(body['statusUrl']), (job) => job.status === 'running');
    assert.equal(running.attempts, 1);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const pid = dev.pidOf('jobs-async');
    assert.ok(pid);
    process.kill(pid, 'SIGKILL');
    const job = await waitFor(String(body['statusUrl']));
    assert.equal(job.status, 'succeeded', JSON.stringify(job));
    assert.equal(job.attempts, 2);
    const result = job.result as { tag: string; pid: number };
    assert.equal(result.tag, 'killed');
    assert.notEqual(result.pid, pid, 'a new sandbox ran it');
    const outcomes = dev
      .asyncApi('jobs-async')!
      .outcomes.filter((o) => o.id === id)
      .map((o) => o.outcome);
    assert.deepEqual(outcomes, ['retry', 'succeeded']);
    const s3 = createS3Client(dev.embeddedS3Env!);
    const listed = await s3.send(
      new ListObjectsV2Command({ Bucket: dev.asyncApi('jobs-async')!.bucket, Prefix: `results/${id}/` }),
    );
    assert.equal(listed.KeyCount, 1, 'one result object');
    s3.destroy();
  });

  test('unknown jobs, wrong methods and the sync routes of an async API answer the contract errors', async () => {
    const unknown = await fetch(`${dev.url}/digits-async/async/${'f'.repeat(32)}`);
    assert.equal(unknown.status, 404);
    assert.equal(contractError(await unknown.json()).code, 'not_found');
    const wrong = await fetch(`${dev.url}/digits-async/async`, { method: 'GET' });
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal(contractError(await wrong.json()).code, 'method_not_allowed');
    const sync = await fetch(`${dev.url}/digits-async`, { method: 'POST', body: '{}' });
    assert.equal(sync.status, 404);
    assert.equal(contractError(await sync.json()).code, 'not_found');
    const badKey = await submit('digits-async', '{}', { 'content-type': 'application/json', 'idempotency-key': 'a b' });
    assert.equal(badKey.status, 400);
    assert.equal(contractError(badKey.body).code, 'invalid_input');
  });

  test('completion notifications: one signed webhook per job to a local receiver, the topic in the log; a failing receiver never fails the job', async () => {
    const received: { path: string; headers: IncomingHttpHeaders; body: string }[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        received.push({ path: req.url ?? '', headers: req.headers, body: Buffer.concat(chunks).toString('utf8') });
        res.writeHead(req.url === '/down' ? 500 : 204).end();
      });
    });
    receiver.listen(0, '127.0.0.1');
    await once(receiver, 'listening');
    const base = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
    try {
      const api = dev.asyncApi('jobs-async')!;
      const failuresBefore = api.notificationFailures;
      const ok = await submit('jobs-async', JSON.stringify({ tag: 'notify' }), {
        'content-type': 'application/json',
        'arclight-callback-url': `${base}/hook`,
      });
      const down = await submit('jobs-async', JSON.stringify({ tag: 'receiver down' }), {
        'content-type': 'application/json',
        'arclight-callback-url': `${base}/down`,
      });
      assert.equal(ok.status, 202);
      const okJob = await waitFor(ok.body['statusUrl'] as string);
      const downJob = await waitFor(down.body['statusUrl'] as string);
      assert.equal(okJob.status, 'succeeded');
      assert.equal(downJob.status, 'succeeded', 'a failing webhook never fails the job');
      for (const deadline = Date.now() + 10_000; received.filter((r) => r.path === '/down').length < 2;) {
        assert.ok(Date.now() < deadline, 'the failing webhook is retried');
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const hooks = received.filter((r) => r.path === '/hook');
      assert.equal(hooks.length, 1);
      assert.ok(
        verifyWebhookSignature(WEBHOOK_SECRET, hooks[0]!.body, hooks[0]!.headers['arclight-signature'] as string),
      );
      const notification = JSON.parse(hooks[0]!.body) as Record<string, unknown>;
      assert.equal(notification['id'], okJob.id);
      assert.equal(notification['status'], 'succeeded');
      assert.equal(notification['statusUrl'], ok.body['statusUrl']);
      assert.equal(received.filter((r) => r.path === '/down').length, 2, 'webhookAttempts: 2');
      assert.equal(api.notificationFailures - failuresBefore, 1);
      assert.deepEqual(
        api.topicMessages.filter((m) => m.id === okJob.id).map((m) => m.status),
        ['succeeded'],
        'the topic stand-in got it once',
      );
      // An https-only check does not apply locally; a non-URL is still refused.
      const bad = await submit('jobs-async', '{}', {
        'content-type': 'application/json',
        'arclight-callback-url': 'nope',
      });
      assert.equal(bad.status, 400);
      // digits-async has no notifications: the header is refused, saying why.
      const off = await submit('digits-async', '{}', {
        'content-type': 'application/json',
        'arclight-callback-url': `${base}/hook`,
      });
      assert.equal(off.status, 400);
      assert.match(contractError(off.body).message, /sends no webhooks/);
    } finally {
      receiver.close();
    }
  });
});
