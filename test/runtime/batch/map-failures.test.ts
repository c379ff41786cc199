/**
 * Whole Map batches that failed (Step Functions cannot run here): the state machine's RecordFailedBatches step driven
 * over s3rver with a ResultWriter export laid out as AWS documents it (`<prefix>/<map run id>/manifest.json` naming
 * `FAILED_0.json`, a JSON array of child executions with `Input` as a JSON string, `Error`, `Cause`). Each item of
 * this run's failed batch lands in failures.jsonl with `batch_failed`; an export of another run is left alone; the
 * rerun runs exactly those items, on the digits model.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BatchSummary, FailureRecord } from '../../../lib/runtime/batch/batch-layout.js';
import { BATCH_FAILED } from '../../../lib/runtime/batch/map-failures.js';
import type { FailedBatchesResult, ItemsResult, Plan } from '../../../lib/runtime/batch/step-functions-handler.js';
import { digitsLine, jsonLines, startBatchHandler, type BatchHandlerFixture } from './batch-fixture.js';

const INPUT = 's3://data/in/';
const OUTPUT = 's3://data/jobs/run-7/';
const MAP_RESULTS = 's3://data/jobs/_stepfunctions/';

describe('Map batches that failed as a whole', () => {
  let fixture: BatchHandlerFixture;

  before(async () => {
    fixture = await startBatchHandler();
  });
  after(async () => {
    await fixture.close();
  });

  /** A child execution as the ResultWriter exports a FAILED one. */
  function failedChild(name: string, batch: unknown, error: string, cause: string): Record<string, unknown> {
    return {
      Cause: cause,
      Error: error,
      ExecutionArn: `arn:aws:states:us-east-1:123456789012:execution:job/OverInputs:${name}`,
      Input: JSON.stringify(batch),
      InputDetails: { Included: true },
      Name: name,
      StartDate: '2026-12-02T10:00:00.000Z',
      StateMachineArn: 'arn:aws:states:us-east-1:123456789012:stateMachine:job/OverInputs',
      Status: 'FAILED',
      StopDate: '2026-12-02T10:15:00.000Z',
    };
  }

  async function writeExport(mapRunId: string, failed: unknown[]): Promise<void> {
    const prefix = `jobs/_stepfunctions/${mapRunId}`;
    await fixture.s3.put('data', `${prefix}/FAILED_0.json`, Buffer.from(JSON.stringify(failed)));
    await fixture.s3.put('data', `${prefix}/SUCCEEDED_0.json`, Buffer.from('[]'));
    await fixture.s3.put(
      'data',
      `${prefix}/manifest.json`,
      Buffer.from(
        JSON.stringify({
          DestinationBucket: 'data',
          MapRunArn: `arn:aws:states:us-east-1:123456789012:mapRun:job/OverInputs:${mapRunId}`,
          ResultFiles: {
            FAILED: [{ Key: `${prefix}/FAILED_0.json`, Size: 1 }],
            PENDING: [],
            SUCCEEDED: [{ Key: `${prefix}/SUCCEEDED_0.json`, Size: 2 }],
          },
        }),
      ),
    );
  }

  it("turns each item of this run's failed batches into a batch_failed failure; the rerun runs only those", async () => {
    for (let file = 0; file < 3; file += 1) {
      const lines = Array.from({ length: 20 }, (_, i) => digitsLine(i + file));
      await fixture.s3.put('data', `in/part-${file}.jsonl`, Buffer.from(`${lines.join('\n')}\n`));
    }
    await fixture.s3.put('data', 'in/one.json', Buffer.from(digitsLine(3)));
    const plan = (await fixture.handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false })) as Plan;
    const batchInput = { input: INPUT, output: plan.output, attempt: plan.attempt };

    // Batch 1 runs; batch 2 timed out on each of its tries, so it wrote nothing and only the export knows it.
    fixture.requests = 0;
    const ran = (await fixture.handler({
      Items: [{ Key: 'in/part-0.jsonl' }, { Key: 'in/part-1.jsonl' }],
      BatchInput: batchInput,
    })) as ItemsResult;
    assert.deepEqual(ran, { succeeded: 40, failed: 0 });
    const lost = { BatchInput: batchInput, Items: [{ Key: 'in/part-2.jsonl', Size: 100 }, { Key: 'in/one.json' }] };
    await writeExport('11111111-2222-3333-4444-555555555555', [
      failedChild('batch-2', lost, 'States.Timeout', 'Task timed out after 900.00 seconds'),
    ]);
    // Another run shares the export prefix: its failed batch is not this run's.
    await writeExport('99999999-2222-3333-4444-555555555555', [
      failedChild('other', { ...lost, BatchInput: { ...batchInput, output: 's3://data/jobs/run-6/' } }, 'X', 'Y'),
    ]);

    const event = { action: 'failedBatches' as const, ...batchInput, mapResults: MAP_RESULTS };
    assert.deepEqual((await fixture.handler(event)) as FailedBatchesResult, { batches: 1, items: 21 });
    // Step Functions may run the step again: the part replaces itself.
    assert.deepEqual((await fixture.handler(event)) as FailedBatchesResult, { batches: 1, items: 21 });
    assert.equal(fixture.requests, 40, 'recording runs nothing');

    const summary = (await fixture.handler({
      action: 'finish',
      ...batchInput,
      startedAt: plan.startedAt,
    })) as BatchSummary;
    assert.equal(summary.succeeded, 40);
    assert.equal(summary.failed, 21);
    assert.equal(await fixture.exists('jobs/run-7/_SUCCESS'), false);
    const failures = jsonLines<FailureRecord>(await fixture.text('jobs/run-7/failures.jsonl'));
    assert.deepEqual(
      failures.map((f) => f.id).sort(),
      [...Array.from({ length: 20 }, (_, i) => `part-2.jsonl#${i + 1}`), 'one.json'].sort(),
    );
    for (const failure of failures) {
      assert.equal(failure.error.code, BATCH_FAILED);
      assert.equal(failure.status, 500);
      assert.match(failure.error.error, /the Map batch failed after its retries: States\.Timeout: Task timed out/);
    }
    assert.equal(failures.find((f) => f.id === 'part-2.jsonl#5')?.line, 5);

    // The rerun reads failures.jsonl: exactly those 21 items run, and the job ends clean.
    const rerun = (await fixture.handler({ action: 'plan', input: INPUT, output: OUTPUT, rerun: true })) as Plan;
    assert.equal(rerun.failures, 21);
    fixture.requests = 0;
    const retried = (await fixture.handler({
      Items: failures,
      BatchInput: { input: INPUT, output: rerun.output, attempt: rerun.attempt },
    })) as ItemsResult;
    assert.deepEqual(retried, { succeeded: 21, failed: 0 });
    assert.equal(fixture.requests, 21);
    const second = (await fixture.handler({
      action: 'failedBatches',
      input: INPUT,
      output: rerun.output,
      attempt: rerun.attempt,
      mapResults: MAP_RESULTS,
    })) as FailedBatchesResult;
    assert.deepEqual(second, { batches: 0, items: 0 }, "attempt 1's export is not attempt 2's");
    const last = (await fixture.handler({
      action: 'finish',
      input: INPUT,
      output: rerun.output,
      attempt: rerun.attempt,
      startedAt: rerun.startedAt,
    })) as BatchSummary;
    assert.equal(last.succeeded, 61);
    assert.equal(last.failed, 0);
    assert.equal(await fixture.exists('jobs/run-7/_SUCCESS'), true);
  });
});
