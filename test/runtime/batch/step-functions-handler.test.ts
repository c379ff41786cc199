/**
 * The BatchJob's Lambda handler driven as its state machine drives it (plan → the Distributed Map's batches of
 * ListObjectsV2 items → finish; a rerun's batches are lines of the failures manifest), over s3rver, on the digits
 * model: the same layout and counts as a local run, a retried batch never doubles a result, and a rerun runs only
 * what failed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import type { BatchSummary, FailureRecord, ResultRecord } from '../../../lib/runtime/batch/batch-layout.js';
import {
  createBatchHandler,
  type BatchHandler,
  type ItemsResult,
  type ObjectItem,
  type Plan,
} from '../../../lib/runtime/batch/step-functions-handler.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, loadDigitsExpected, loadTestPredictor, startRuntime } from '../../helpers.js';

const INPUT = 's3://data/in/';
const OUTPUT = 's3://data/out/run-1/';

function goodLine(index: number): string {
  const images = loadDigitsExpected().images;
  return JSON.stringify({ pixels: images[index % images.length]!.map((v) => Math.round(v * 16)) });
}

describe('the BatchJob Lambda handler over s3rver', () => {
  let s3: EmbeddedS3;
  let runtime: Runtime;
  let handler: BatchHandler;
  let requests = 0;

  before(async () => {
    s3 = await startEmbeddedS3(['data']);
    runtime = await startRuntime({ modelUri: DIGITS_ONNX, predictor: await loadTestPredictor(DIGITS_PREDICTOR) });
    const handle = runtime.handle.bind(runtime);
    runtime.handle = (request, options) => {
      requests += 1;
      return handle(request, options);
    };
    handler = createBatchHandler(runtime, s3.env);
  });
  after(async () => {
    await runtime.close();
    await s3.close();
  });

  async function text(key: string): Promise<string> {
    const client = createS3Client(s3.env);
    try {
      return await (await client.send(new GetObjectCommand({ Bucket: 'data', Key: key }))).Body!.transformToString();
    } finally {
      client.destroy();
    }
  }

  async function list(prefix: string): Promise<string[]> {
    const client = createS3Client(s3.env);
    try {
      const page = await client.send(new ListObjectsV2Command({ Bucket: 'data', Prefix: prefix }));
      return (page.Contents ?? []).map((o) => o.Key!);
    } finally {
      client.destroy();
    }
  }

  const jsonLines = <T>(body: string): T[] =>
    body
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as T);

  it('plan, batches, finish; a retried batch replaces its own part; a rerun runs only the failures', async () => {
    // Three JSON Lines files (one bad line each) and two objects of one request each (one bad).
    for (let file = 0; file < 3; file += 1) {
      const lines = Array.from({ length: 50 }, (_, i) => (i === 10 * (file + 1) ? '{"pixels": [1]}' : goodLine(i)));
      await s3.put('data', `in/part-${file}.jsonl`, Buffer.from(`${lines.join('\n')}\n`));
    }
    await s3.put('data', 'in/one/a.json', Buffer.from(goodLine(7)));
    await s3.put('data', 'in/one/b.json', Buffer.from('not json'));

    const plan = (await handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false })) as Plan;
    assert.equal(plan.attempt, 1);
    assert.equal(plan.failuresKey, 'out/run-1/failures.jsonl');

    // What the ListObjectsV2 reader hands over, in batches of 2 objects (ItemBatcher).
    const objects: ObjectItem[] = (await list('in/')).map((Key) => ({ Key }));
    assert.equal(objects.length, 5);
    const batchInput = { input: INPUT, output: plan.output, attempt: plan.attempt };
    requests = 0;
    let counted = { succeeded: 0, failed: 0 };
    for (let i = 0; i < objects.length; i += 2) {
      const result = (await handler({ Items: objects.slice(i, i + 2), BatchInput: batchInput })) as ItemsResult;
      counted = { succeeded: counted.succeeded + result.succeeded, failed: counted.failed + result.failed };
    }
    assert.equal(requests, 152);
    assert.deepEqual(counted, { succeeded: 148, failed: 4 });
    // Lambda retries the first batch (at-least-once): its parts are replaced, not added.
    const partsBefore = await list('out/run-1/results/');
    await handler({ Items: objects.slice(0, 2), BatchInput: batchInput });
    assert.deepEqual(await list('out/run-1/results/'), partsBefore);

    const summary = (await handler({ action: 'finish', ...batchInput, startedAt: plan.startedAt })) as BatchSummary;
    assert.equal(summary.items, 152);
    assert.equal(summary.succeeded, 148);
    assert.equal(summary.failed, 4);
    const failures = jsonLines<FailureRecord>(await text('out/run-1/failures.jsonl'));
    assert.deepEqual(failures.map((f) => f.id).sort(), [
      'one/b.json',
      'part-0.jsonl#11',
      'part-1.jsonl#21',
      'part-2.jsonl#31',
    ]);
    for (const failure of failures) {
      assert.equal(failure.status, 400);
      assert.ok(['invalid_input', 'malformed_json'].includes(failure.error.code));
    }
    const results = (await Promise.all(partsBefore.map(text))).flatMap((body) => jsonLines<ResultRecord>(body));
    assert.equal(results.length, 148);
    assert.equal(new Set(results.map((r) => r.id)).size, 148, 'no result twice');

    // The user fixes two of the inputs, then reruns the failures: the Map reads failures.jsonl, one line per item.
    const fixed = Array.from({ length: 50 }, (_, i) => goodLine(i));
    await s3.put('data', 'in/part-0.jsonl', Buffer.from(`${fixed.join('\n')}\n`));
    await s3.put('data', 'in/one/b.json', Buffer.from(goodLine(8)));
    const rerun = (await handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: true })) as Plan;
    assert.equal(rerun.attempt, 2);
    assert.equal(rerun.failures, 4);
    requests = 0;
    await handler({ Items: failures, BatchInput: { input: INPUT, output: rerun.output, attempt: 2 } });
    assert.equal(requests, 4, 'only the failed items ran');
    const second = (await handler({
      action: 'finish',
      input: INPUT,
      output: rerun.output,
      attempt: 2,
      startedAt: rerun.startedAt,
    })) as BatchSummary;
    assert.deepEqual(second.lastAttempt, { processed: 4, succeeded: 2, failed: 2 });
    assert.equal(second.succeeded, 150);
    assert.equal(second.failed, 2);
    assert.deepEqual(
      jsonLines<FailureRecord>(await text('out/run-1/failures.jsonl'))
        .map((f) => f.id)
        .sort(),
      ['part-1.jsonl#21', 'part-2.jsonl#31'],
    );
  });

  it('refuses to start over a finished output, and to rerun where nothing finished', async () => {
    await assert.rejects(handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false }), /already holds/);
    await assert.rejects(
      handler({ action: 'plan', input: INPUT, output: 's3://data/out/never/', rerun: true }),
      /holds no finished batch job/,
    );
  });
});
