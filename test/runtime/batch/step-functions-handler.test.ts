/**
 * The BatchJob's Lambda handler driven as its state machine drives it (plan → the Distributed Map's batches of
 * ListObjectsV2 items → finish; a rerun's batches are lines of the failures manifest), over s3rver, on the digits
 * model: the same layout and counts as a local run, a retried batch never doubles a result, and a rerun runs only
 * what failed.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BatchSummary, FailureRecord, ResultRecord } from '../../../lib/runtime/batch/batch-layout.js';
import type { ItemsResult, ObjectItem, Plan } from '../../../lib/runtime/batch/step-functions-handler.js';
import { digitsLine, jsonLines, startBatchHandler, type BatchHandlerFixture } from './batch-fixture.js';

const INPUT = 's3://data/in/';
const OUTPUT = 's3://data/out/run-1/';

describe('the BatchJob Lambda handler over s3rver', () => {
  let fixture: BatchHandlerFixture;

  before(async () => {
    fixture = await startBatchHandler();
  });
  after(async () => {
    await fixture.close();
  });

  it('plan, batches, finish; a retried batch replaces its own part; a rerun runs only the failures', async () => {
    // Three JSON Lines files (one bad line each) and two objects of one request each (one bad).
    for (let file = 0; file < 3; file += 1) {
      const lines = Array.from({ length: 50 }, (_, i) => (i === 10 * (file + 1) ? '{"pixels": [1]}' : digitsLine(i)));
      await fixture.s3.put('data', `in/part-${file}.jsonl`, Buffer.from(`${lines.join('\n')}\n`));
    }
    await fixture.s3.put('data', 'in/one/a.json', Buffer.from(digitsLine(7)));
    await fixture.s3.put('data', 'in/one/b.json', Buffer.from('not json'));

    const plan = (await fixture.handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false })) as Plan;
    assert.equal(plan.attempt, 1);
    assert.equal(plan.failuresKey, 'out/run-1/failures.jsonl');

    // What the ListObjectsV2 reader hands over, in batches of 2 objects (ItemBatcher).
    const objects: ObjectItem[] = (await fixture.list('in/')).map((Key) => ({ Key }));
    assert.equal(objects.length, 5);
    const batchInput = { input: INPUT, output: plan.output, attempt: plan.attempt };
    fixture.requests = 0;
    let counted = { succeeded: 0, failed: 0 };
    for (let i = 0; i < objects.length; i += 2) {
      const result = (await fixture.handler({ Items: objects.slice(i, i + 2), BatchInput: batchInput })) as ItemsResult;
      counted = { succeeded: counted.succeeded + result.succeeded, failed: counted.failed + result.failed };
    }
    assert.equal(fixture.requests, 152);
    assert.deepEqual(counted, { succeeded: 148, failed: 4 });
    // Lambda retries the first batch (at-least-once): its parts are replaced, not added.
    const partsBefore = await fixture.list('out/run-1/results/');
    await fixture.handler({ Items: objects.slice(0, 2), BatchInput: batchInput });
    assert.deepEqual(await fixture.list('out/run-1/results/'), partsBefore);

    const summary = (await fixture.handler({
      action: 'finish',
      ...batchInput,
      startedAt: plan.startedAt,
    })) as BatchSummary;
    assert.equal(summary.items, 152);
    assert.equal(summary.succeeded, 148);
    assert.equal(summary.failed, 4);
    const failures = jsonLines<FailureRecord>(await fixture.text('out/run-1/failures.jsonl'));
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
    const results = (await Promise.all(partsBefore.map(fixture.text))).flatMap((body) => jsonLines<ResultRecord>(body));
    assert.equal(results.length, 148);
    assert.equal(new Set(results.map((r) => r.id)).size, 148, 'no result twice');

    // The user fixes two of the inputs, then reruns the failures: the Map reads failures.jsonl, one line per item.
    const fixed = Array.from({ length: 50 }, (_, i) => digitsLine(i));
    await fixture.s3.put('data', 'in/part-0.jsonl', Buffer.from(`${fixed.join('\n')}\n`));
    await fixture.s3.put('data', 'in/one/b.json', Buffer.from(digitsLine(8)));
    const rerun = (await fixture.handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: true })) as Plan;
    assert.equal(rerun.attempt, 2);
    assert.equal(rerun.failures, 4);
    fixture.requests = 0;
    await fixture.handler({ Items: failures, BatchInput: { input: INPUT, output: rerun.output, attempt: 2 } });
    assert.equal(fixture.requests, 4, 'only the failed items ran');
    const second = (await fixture.handler({
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
      jsonLines<FailureRecord>(await fixture.text('out/run-1/failures.jsonl'))
        .map((f) => f.id)
        .sort(),
      ['part-1.jsonl#21', 'part-2.jsonl#31'],
    );
  });

  it('refuses to start over a finished output, and to rerun where nothing finished', async () => {
    await assert.rejects(
      fixture.handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false }),
      /already holds/,
    );
    await assert.rejects(
      fixture.handler({ action: 'plan', input: INPUT, output: 's3://data/out/never/', rerun: true }),
      /holds no finished batch job/,
    );
  });
});
