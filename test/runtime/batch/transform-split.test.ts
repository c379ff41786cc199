/**
 * The GPU BatchJob's record path without SageMaker (which cannot run here): the real container server on the digits
 * model with ARCLIGHT_TRANSFORM_RECORDS=on answers every `POST /invocations` record 200 with its outcome (so a bad
 * record cannot stop the job), fed record by record as a transform with `SplitType: Line`, `BatchStrategy:
 * SingleRecord` feeds it, its answers joined with newlines (`AssembleWith: Line`) into `<key>.out` on s3rver; then the
 * Lambda step splits that into results and failures.jsonl, and a rerun transforms only the failed records.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { BatchSummary, FailureRecord, ResultRecord } from '../../../lib/runtime/batch/batch-layout.js';
import { createTransformBatchHandler } from '../../../lib/runtime/batch/transform-batch-handler.js';
import { TRANSFORM_RECORDS_ENV } from '../../../lib/runtime/batch/transform-records.js';
import type { TransformPlan } from '../../../lib/runtime/batch/transform-split.js';
import { settingsFromEnv } from '../../../lib/runtime/settings.js';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { startContainerServer, type ContainerServer } from '../../../lib/runtime/transports/container-server.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, loadTestPredictor } from '../../helpers.js';
import { digitsLine, jsonLines, startDataBucket, type DataBucket } from './batch-fixture.js';

const INPUT = 's3://data/in/';
const OUTPUT = 's3://data/gpu/run-1/';

describe('GPU batch: enveloped records, the split step, a rerun of the failures only', () => {
  let data: DataBucket;
  let container: ContainerServer;
  let url: string;
  const handler = (): ReturnType<typeof createTransformBatchHandler> => createTransformBatchHandler(data.s3.env);
  let invocations = 0;

  before(async () => {
    data = await startDataBucket();
    const env = {
      ARCLIGHT_MODEL_URI: DIGITS_ONNX,
      ARCLIGHT_API_NAME: 'digits-gpu',
      ARCLIGHT_METRICS: 'off',
      ARCLIGHT_WORKERS: '1',
      [TRANSFORM_RECORDS_ENV]: 'on',
    };
    container = await startContainerServer({
      settings: settingsFromEnv(env),
      env,
      port: 0,
      host: '127.0.0.1',
      predictor: await loadTestPredictor(DIGITS_PREDICTOR),
      logger: createLogger('digits-gpu', 'SILENT'),
    });
    await container.ready;
    url = `http://127.0.0.1:${container.address.port}`;
  });
  after(async () => {
    await container?.shutdown();
    await data?.close();
  });

  /** What SageMaker does with one input object: each non-blank line to /invocations, answers joined by newlines. */
  async function transform(inputUri: string, key: string, outputUri: string): Promise<void> {
    const [, bucket, prefix] = /^s3:\/\/([^/]+)\/(.*)$/.exec(inputUri)!;
    const body = await data.textIfAny(`${prefix}${key}`);
    const answers: string[] = [];
    for (const record of body!.split('\n').filter((l) => l.trim() !== '')) {
      invocations += 1;
      const response = await fetch(`${url}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: record,
      });
      assert.equal(response.status, 200, 'no record stops the job');
      const answer = await response.text();
      assert.ok(!answer.includes('\n'), 'one line per record');
      answers.push(answer);
    }
    const outPrefix = outputUri.replace(`s3://${bucket}/`, '');
    await data.s3.put(bucket!, `${outPrefix}${key}.out`, Buffer.from(`${answers.join('\n')}\n`));
  }

  it('splits real container output; the rerun input is the failures only', async () => {
    const a = Array.from({ length: 30 }, (_, i) =>
      i === 4 ? '{"pixels": [1]}' : i === 20 ? 'not json' : digitsLine(i),
    );
    await data.s3.put('data', 'in/a.jsonl', Buffer.from(`${a.join('\n')}\n`));
    await data.s3.put(
      'data',
      'in/b.jsonl',
      Buffer.from(`${Array.from({ length: 10 }, (_, i) => digitsLine(i)).join('\n')}\n`),
    );
    await data.s3.put('data', 'in/c.jsonl', Buffer.from(`${digitsLine(1)}\n\n${digitsLine(2)}\n`));
    await data.s3.put('data', 'in/d.jsonl', Buffer.from(`${digitsLine(3)}\n${digitsLine(4)}\n`));

    const plan = (await handler()({ action: 'plan', input: INPUT, output: OUTPUT, rerun: false })) as TransformPlan;
    assert.equal(plan.attempt, 1);
    assert.equal(plan.transformInput, INPUT);
    assert.equal(plan.transformOutput, `${OUTPUT}transform/1/`);
    await transform(INPUT, 'a.jsonl', plan.transformOutput);
    await transform(INPUT, 'b.jsonl', plan.transformOutput);
    await transform(INPUT, 'c.jsonl', plan.transformOutput);
    // d.jsonl: the job ended before it; and one more line than records would be refused, not guessed at.
    const summary = (await handler()({
      action: 'split',
      input: INPUT,
      output: OUTPUT,
      attempt: 1,
      startedAt: plan.startedAt,
      transformError: { Error: 'SageMaker.ClientError', Cause: 'instance lost' },
    })) as BatchSummary;
    assert.deepEqual(
      { items: summary.items, succeeded: summary.succeeded, failed: summary.failed },
      { items: 44, succeeded: 40, failed: 4 },
    );
    const failures = jsonLines<FailureRecord>(await data.textIfAny('gpu/run-1/failures.jsonl'));
    const byId = new Map(failures.map((f) => [f.id, f]));
    assert.deepEqual([...byId.keys()].sort(), ['a.jsonl#21', 'a.jsonl#5', 'd.jsonl#1', 'd.jsonl#2']);
    assert.equal(byId.get('a.jsonl#5')!.error.code, 'invalid_input');
    assert.equal(byId.get('a.jsonl#5')!.status, 400);
    assert.equal(byId.get('a.jsonl#21')!.error.code, 'malformed_json');
    assert.equal(byId.get('d.jsonl#1')!.error.code, 'transform_failed');
    assert.match(
      byId.get('d.jsonl#1')!.error.error,
      /wrote no output for d\.jsonl \(SageMaker\.ClientError: instance lost\)/,
    );
    // The results equal what the same record gets synchronously, line numbers kept (c.jsonl's blank line 2 skipped).
    const direct = await fetch(`${url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: a[7],
    });
    const expected = (await direct.json()) as unknown;
    const parts = await Promise.all((await data.list('gpu/run-1/results/')).map(data.textIfAny));
    const all = parts.flatMap((part) => jsonLines<ResultRecord>(part));
    assert.equal(all.length, 40);
    assert.equal(new Set(all.map((r) => r.id)).size, 40);
    assert.deepEqual(all.find((r) => r.id === 'a.jsonl#8')!.output, expected);
    assert.equal(all.find((r) => r.id === 'c.jsonl#3')?.line, 3);
    assert.equal(await data.exists('gpu/run-1/_SUCCESS'), false);

    // Rerun: the user fixes a.jsonl's bad lines; the transform input is the 4 failed records, nothing else.
    a[4] = digitsLine(4);
    a[20] = digitsLine(20);
    await data.s3.put('data', 'in/a.jsonl', Buffer.from(`${a.join('\n')}\n`));
    const rerun = (await handler()({ action: 'plan', input: INPUT, output: OUTPUT, rerun: true })) as TransformPlan;
    assert.equal(rerun.attempt, 2);
    assert.equal(rerun.records, 4);
    assert.equal(rerun.transformInput, `${OUTPUT}retry/2/input/`);
    invocations = 0;
    await transform(rerun.transformInput, 'records.jsonl', rerun.transformOutput);
    assert.equal(invocations, 4, 'only the failed records ran');
    const second = (await handler()({
      action: 'split',
      input: INPUT,
      output: OUTPUT,
      attempt: 2,
      startedAt: rerun.startedAt,
    })) as BatchSummary;
    assert.deepEqual(second.lastAttempt, { processed: 4, succeeded: 4, failed: 0 });
    assert.equal(second.succeeded, 44);
    assert.equal(second.failed, 0);
    assert.equal(await data.exists('gpu/run-1/_SUCCESS'), true);
    // Split again (Step Functions retried the step): the same summary, nothing doubled.
    const again = (await handler()({
      action: 'split',
      input: INPUT,
      output: OUTPUT,
      attempt: 2,
      startedAt: rerun.startedAt,
    })) as BatchSummary;
    assert.equal(again.succeeded, 44);
  });

  it('an output with more lines than records is refused for that source, never matched up by guess', async () => {
    await data.s3.put('data', 'in2/x.jsonl', Buffer.from(`${digitsLine(1)}\n${digitsLine(2)}\n`));
    const output = 's3://data/gpu2/run-1/';
    const plan = (await handler()({ action: 'plan', input: 's3://data/in2/', output, rerun: false })) as TransformPlan;
    await data.s3.put(
      'data',
      'gpu2/run-1/transform/1/x.jsonl.out',
      Buffer.from('{"ok":true,"status":200,"contentType":"application/json","output":1}\n'.repeat(3)),
    );
    const summary = (await handler()({
      action: 'split',
      input: 's3://data/in2/',
      output,
      attempt: 1,
      startedAt: plan.startedAt,
    })) as BatchSummary;
    assert.equal(summary.failed, 2);
    const failures = jsonLines<FailureRecord>(await data.textIfAny('gpu2/run-1/failures.jsonl'));
    assert.ok(failures.every((f) => f.error.code === 'transform_output_mismatch'));
    assert.match(failures[0]!.error.error, /has 3 lines for 2 records/);
  });
});
