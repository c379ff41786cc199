/**
 * Batch jobs through the real runtime (onnxruntime on the digits model, the digits predictor): 1,000 JSON lines with
 * 5 bad ones give 995 results equal to the synchronous answers over HTTP and 5 contract errors in the manifest; a
 * rerun runs only those 5 (counted at the runtime, and the first attempt's parts untouched); the same over s3rver.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { runBatchJob } from '../../../lib/runtime/batch/batch-engine.js';
import type { BatchSummary, FailureRecord, ResultRecord } from '../../../lib/runtime/batch/batch-layout.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  loadDigitsExpected,
  loadTestPredictor,
  startRuntime,
  startServer,
  type TestServer,
} from '../../helpers.js';

const LINES = 1000;
/** Line numbers (1-based) of the bad requests, and what is wrong with each. */
const BAD: ReadonlyMap<number, string> = new Map([
  [7, '{"pixels": [1, 2, 3'], // not JSON
  [250, '{"pixels": [99]}'], // too few pixels, out of range
  [500, '42'], // not an object
  [777, '{"image": [[0,0,0,0,0,0,0,0]]}'], // one row
  [1000, '{"pixels": [], "image": []}'], // both fields
]);

/** Grey levels 0-16 from the reference images, a different image per line. */
function goodLine(index: number): string {
  const images = loadDigitsExpected().images;
  const image = images[index % images.length]!.map((v) => Math.round(v * 16));
  return JSON.stringify({ pixels: image });
}

function inputLines(): string[] {
  return Array.from({ length: LINES }, (_, i) => BAD.get(i + 1) ?? goodLine(i));
}

/** Counts the requests the runtime answers: the proof of what a run touched. */
function countRequests(runtime: Runtime): { count: number } {
  const counter = { count: 0 };
  const handle = runtime.handle.bind(runtime);
  runtime.handle = (request, options) => {
    counter.count += 1;
    return handle(request, options);
  };
  return counter;
}

function readJsonLines<T>(text: string): T[] {
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as T);
}

async function syncAnswer(server: TestServer, body: string): Promise<{ status: number; json: unknown }> {
  const response = await fetch(`${server.url}/`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
  });
  return { status: response.status, json: await response.json() };
}

describe('batch jobs on the digits model', () => {
  let runtime: Runtime;
  let server: TestServer;
  let counter: { count: number };
  const lines = inputLines();

  before(async () => {
    runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) });
    server = await startServer(runtime);
    counter = countRequests(runtime);
  });
  after(async () => {
    await server.close();
    await runtime.close();
  });

  /** Checks one finished first attempt against the synchronous answers. */
  async function checkFirstAttempt(results: ResultRecord[], failures: FailureRecord[], source: string): Promise<void> {
    assert.equal(results.length, LINES - BAD.size);
    assert.equal(failures.length, BAD.size);
    assert.deepEqual(
      failures.map((f) => f.line).sort((a, b) => a! - b!),
      [...BAD.keys()],
    );
    for (const failure of failures) {
      assert.equal(failure.source, source);
      assert.equal(failure.id, `${source}#${failure.line}`);
      assert.equal(failure.status, 400);
      assert.ok(['invalid_input', 'malformed_json'].includes(failure.error.code), failure.error.code);
      assert.match(failure.error.requestId, /\S/);
      assert.ok(failure.error.error.length > 0);
      // The same input answered synchronously fails the same way.
      const sync = await syncAnswer(server, lines[failure.line! - 1]!);
      assert.equal(sync.status, failure.status);
      assert.equal((sync.json as { code: string }).code, failure.error.code);
    }
    const byLine = new Map(results.map((r) => [r.line!, r]));
    assert.equal(byLine.size, results.length, 'one result per line');
    for (let line = 1; line <= LINES; line += 1) {
      if (BAD.has(line)) continue;
      const result = byLine.get(line);
      assert.ok(result, `line ${line} has a result`);
      assert.equal(result.status, 200);
      const sync = await syncAnswer(server, lines[line - 1]!);
      assert.equal(sync.status, 200);
      assert.deepEqual(result.output, sync.json, `line ${line} equals the synchronous answer`);
    }
  }

  it('local file: 995 results equal to the synchronous answers, 5 contract errors; a rerun runs only the 5', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arclight-batch-'));
    const input = join(dir, 'requests.jsonl');
    const output = join(dir, 'out');
    writeFileSync(input, `${lines.join('\n')}\n`);

    counter.count = 0;
    const first = await runBatchJob({ runtime, input, output, concurrency: 8, itemsPerPart: 300 });
    assert.equal(counter.count, LINES, 'every line ran once');
    assert.equal(first.summary.attempt, 1);
    assert.equal(first.summary.items, LINES);
    assert.equal(first.summary.succeeded, LINES - BAD.size);
    assert.equal(first.summary.failed, BAD.size);
    assert.equal(existsSync(join(output, '_SUCCESS')), false, 'no _SUCCESS while items failed');

    const resultParts = readdirSync(join(output, 'results')).sort();
    assert.ok(resultParts.length >= 4, `parts of at most 300 items: ${resultParts.join(', ')}`);
    const results = resultParts.flatMap((part) =>
      readJsonLines<ResultRecord>(readFileSync(join(output, 'results', part), 'utf8')),
    );
    const failures = readJsonLines<FailureRecord>(readFileSync(join(output, 'failures.jsonl'), 'utf8'));
    await checkFirstAttempt(results, failures, 'requests.jsonl');
    const mtimes = new Map(resultParts.map((part) => [part, statSync(join(output, 'results', part)).mtimeMs]));

    // Rerun unchanged: only the 5 run, and they fail again with the same errors.
    counter.count = 0;
    const second = await runBatchJob({ runtime, input, output, concurrency: 8 });
    assert.equal(counter.count, BAD.size, 'the rerun ran exactly the failed items');
    assert.equal(second.summary.attempt, 2);
    assert.deepEqual(second.summary.lastAttempt, { processed: 5, succeeded: 0, failed: 5 });
    assert.equal(second.summary.succeeded, LINES - BAD.size);
    for (const [part, mtime] of mtimes) {
      assert.equal(statSync(join(output, 'results', part)).mtimeMs, mtime, `${part} untouched`);
    }

    // The user fixes the 5 lines: the next rerun runs them alone, and the job is complete.
    const fixed = lines.map((line, i) => (BAD.has(i + 1) ? goodLine(i) : line));
    writeFileSync(input, `${fixed.join('\n')}\n`);
    counter.count = 0;
    const third = await runBatchJob({ runtime, input, output, concurrency: 8 });
    assert.equal(counter.count, BAD.size);
    assert.equal(third.summary.attempt, 3);
    assert.equal(third.summary.succeeded, LINES);
    assert.equal(third.summary.failed, 0);
    assert.equal(readFileSync(join(output, 'failures.jsonl'), 'utf8'), '');
    assert.equal(existsSync(join(output, '_SUCCESS')), true);
    const all = readdirSync(join(output, 'results')).flatMap((part) =>
      readJsonLines<ResultRecord>(readFileSync(join(output, 'results', part), 'utf8')),
    );
    assert.deepEqual(
      all.map((r) => r.line).sort((a, b) => a! - b!),
      Array.from({ length: LINES }, (_, i) => i + 1),
      'exactly one result per line over all attempts',
    );
    for (const line of BAD.keys()) {
      const result = all.find((r) => r.line === line)!;
      assert.deepEqual(result.output, (await syncAnswer(server, fixed[line - 1]!)).json);
    }

    // Nothing failed: a fourth run does nothing.
    counter.count = 0;
    const fourth = await runBatchJob({ runtime, input, output });
    assert.equal(fourth.ran, false);
    assert.equal(counter.count, 0);
  });

  it('refuses an output holding another job, and output inside the input', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arclight-batch-'));
    writeFileSync(join(dir, 'a.jsonl'), `${goodLine(0)}\n`);
    writeFileSync(join(dir, 'b.jsonl'), `${goodLine(1)}\n`);
    const output = join(dir, '..', `${dir.split('/').pop()}-out`);
    await runBatchJob({ runtime, input: join(dir, 'a.jsonl'), output });
    await assert.rejects(
      runBatchJob({ runtime, input: join(dir, 'b.jsonl'), output }),
      /holds the output of a job over/,
    );
    await assert.rejects(runBatchJob({ runtime, input: dir, output: join(dir, 'out') }), /overlap/);
    await assert.rejects(runBatchJob({ runtime, input: join(dir, 'missing.jsonl'), output }), /does not exist/);
    // --restart starts over on the other input.
    const restarted = await runBatchJob({ runtime, input: join(dir, 'b.jsonl'), output, restart: true });
    assert.equal(restarted.summary.attempt, 1);
    assert.equal(restarted.summary.succeeded, 1);
  });

  describe('over s3rver', () => {
    let s3: EmbeddedS3;
    before(async () => {
      s3 = await startEmbeddedS3(['data']);
    });
    after(async () => s3.close());

    async function readObject(key: string): Promise<string> {
      const client = createS3Client(s3.env);
      try {
        const object = await client.send(new GetObjectCommand({ Bucket: 'data', Key: key }));
        return await object.Body!.transformToString();
      } finally {
        client.destroy();
      }
    }

    async function listKeys(prefix: string): Promise<{ key: string; modified: number }[]> {
      const client = createS3Client(s3.env);
      try {
        const page = await client.send(new ListObjectsV2Command({ Bucket: 'data', Prefix: prefix }));
        return (page.Contents ?? []).map((o) => ({ key: o.Key!, modified: o.LastModified!.getTime() }));
      } finally {
        client.destroy();
      }
    }

    it('JSON Lines and single objects under a prefix, results and the manifest under another; a rerun runs the failures only', async () => {
      await s3.put('data', 'in/requests.jsonl', Buffer.from(`${lines.join('\n')}\n`));
      // One request per object: a good one and a bad one beside the JSON Lines.
      await s3.put('data', 'in/single/good.json', Buffer.from(goodLine(3)));
      await s3.put('data', 'in/single/bad.json', Buffer.from('{"pixels": "nope"}'));

      counter.count = 0;
      const first = await runBatchJob({
        runtime,
        input: 's3://data/in/',
        output: 's3://data/out/',
        concurrency: 8,
        env: s3.env,
      });
      assert.equal(counter.count, LINES + 2);
      assert.equal(first.summary.input, 's3://data/in/');
      assert.equal(first.summary.succeeded, LINES - BAD.size + 1);
      assert.equal(first.summary.failed, BAD.size + 1);

      const parts = await listKeys('out/results/');
      const results = (await Promise.all(parts.map((p) => readObject(p.key)))).flatMap((text) =>
        readJsonLines<ResultRecord>(text),
      );
      const failures = readJsonLines<FailureRecord>(await readObject('out/failures.jsonl'));
      const single = results.find((r) => r.source === 'single/good.json')!;
      assert.equal(single.id, 'single/good.json');
      assert.deepEqual(single.output, (await syncAnswer(server, goodLine(3))).json);
      const badObject = failures.find((f) => f.source === 'single/bad.json')!;
      assert.equal(badObject.status, 400);
      assert.equal(badObject.error.code, 'invalid_input');
      await checkFirstAttempt(
        results.filter((r) => r.source === 'requests.jsonl'),
        failures.filter((f) => f.source === 'requests.jsonl'),
        'requests.jsonl',
      );
      const summary = JSON.parse(await readObject('out/summary.json')) as BatchSummary;
      assert.equal(summary.failed, BAD.size + 1);

      counter.count = 0;
      const second = await runBatchJob({ runtime, input: 's3://data/in/', output: 's3://data/out/', env: s3.env });
      assert.equal(counter.count, BAD.size + 1, 'the rerun ran exactly the failed items');
      assert.equal(second.summary.attempt, 2);
      const after = await listKeys('out/results/');
      assert.deepEqual(after, parts, 'the first attempt wrote every results part; the rerun (all failing) none');
    });
  });
});
