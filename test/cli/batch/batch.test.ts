/**
 * `arclight batch` as users run it (the built CLI in a child process): a local run with plain progress lines off a
 * terminal, exit 2 with failures and a rerun of only them; the progress view on a terminal; status/cancel refusing
 * a bad job id and saying in one line that there are no credentials.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import { createBatchProgress } from '../../../lib/cli/batch/batch-progress.js';
import { startEmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import { parseJobRef } from '../../../lib/cli/batch/batch-jobs.js';
import type { ProgressStream } from '../../../lib/cli/progress.js';
import type { BatchSummary } from '../../../lib/runtime/batch/batch-layout.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, loadDigitsExpected, runCli, stderrLines } from '../../helpers.js';

function fakeStream(isTTY: boolean): ProgressStream & { writes: string[] } {
  const writes: string[] = [];
  return { isTTY, columns: 200, writes, write: (text: string) => writes.push(text) };
}

/** The env of a machine without AWS credentials (no IMDS wait either). */
const NO_CREDENTIALS = {
  AWS_ACCESS_KEY_ID: '',
  AWS_SECRET_ACCESS_KEY: '',
  AWS_SESSION_TOKEN: '',
  AWS_PROFILE: '',
  AWS_CONFIG_FILE: '/nonexistent/arclight-config',
  AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/arclight-credentials',
  AWS_EC2_METADATA_DISABLED: 'true',
  AWS_CONTAINER_CREDENTIALS_FULL_URI: '',
  AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '',
  AWS_WEB_IDENTITY_TOKEN_FILE: '',
};

describe('arclight batch run --local', () => {
  test('plain progress lines, exit 2 with the failures named, and a rerun of only them', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'arclight-batch-cli-'));
    const images = loadDigitsExpected().images;
    const lines = Array.from({ length: 40 }, (_, i) =>
      i === 9 || i === 30 ? '{"pixels": "bad"}' : JSON.stringify({ pixels: images[i]!.map((v) => Math.round(v * 16)) }),
    );
    const input = join(dir, 'in.jsonl');
    const output = join(dir, 'out');
    writeFileSync(input, `${lines.join('\n')}\n`);
    const args = ['batch', 'run', '--local', '--model', DIGITS_ONNX, '--predictor', DIGITS_PREDICTOR];
    const first = await runCli([...args, '--input', input, '--output', output, '--concurrency', '4'], {
      timeoutMs: 60_000,
    });
    assert.equal(first.code, 2, first.stderr);
    const progress = stderrLines(first.stderr).filter((line) => line.startsWith('batch: ') && line.includes('items/s'));
    assert.ok(progress.length >= 1, first.stderr);
    assert.ok(!first.stderr.includes('\r'), 'no terminal control off a terminal');
    assert.match(progress.at(-1)!, /^batch: 100% 40 items, 2 failed, [\d.]+ items\/s, ETA done$/);
    assert.match(first.stderr, /attempt 1: 38 succeeded, 2 failed of 40/);
    assert.match(first.stderr, /failures in .*failures\.jsonl; run the same command again/);
    const failures = readFileSync(join(output, 'failures.jsonl'), 'utf8').trim().split('\n');
    assert.deepEqual(
      failures.map((line) => (JSON.parse(line) as { line: number }).line).sort((a, b) => a - b),
      [10, 31],
    );

    const second = await runCli([...args, '--input', input, '--output', output], { timeoutMs: 60_000 });
    assert.equal(second.code, 2, second.stderr);
    assert.match(second.stderr, /attempt 2: rerunning the 2 failed items/);
    assert.match(second.stderr, /batch: 100% 2\/2 items, 2 failed/);
    const summary = JSON.parse(readFileSync(join(output, 'summary.json'), 'utf8')) as BatchSummary;
    assert.deepEqual(summary.lastAttempt, { processed: 2, succeeded: 0, failed: 2 });
    assert.equal(summary.succeeded, 38);
  });

  test('model, input and output on S3 (s3rver): exit 0, _SUCCESS and the summary in the output prefix', async () => {
    const s3 = await startEmbeddedS3(['models', 'data']);
    try {
      await s3.put('models', 'digits.onnx', readFileSync(DIGITS_ONNX));
      const images = loadDigitsExpected().images;
      const lines = images
        .slice(0, 25)
        .map((image) => JSON.stringify({ pixels: image.map((v) => Math.round(v * 16)) }));
      await s3.put('data', 'in/part-1.jsonl', Buffer.from(`${lines.slice(0, 10).join('\n')}\n`));
      await s3.put('data', 'in/part-2.jsonl', Buffer.from(lines.slice(10).join('\n')));
      const result = await runCli(
        ['batch', 'run', '--local', '--model', 's3://models/digits.onnx', '--predictor', DIGITS_PREDICTOR].concat([
          '--input',
          's3://data/in/',
          '--output',
          's3://data/out/',
        ]),
        { env: s3.env, timeoutMs: 60_000 },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stderr, /attempt 1: 25 succeeded, 0 failed of 25/);
      const client = createS3Client(s3.env);
      try {
        const read = async (key: string): Promise<string> =>
          (await client.send(new GetObjectCommand({ Bucket: 'data', Key: key }))).Body!.transformToString();
        const summary = JSON.parse(await read('out/summary.json')) as BatchSummary;
        assert.equal(summary.input, 's3://data/in/');
        assert.equal(summary.succeeded, 25);
        assert.equal(await read('out/_SUCCESS'), '');
      } finally {
        client.destroy();
      }
    } finally {
      await s3.close();
    }
  });

  test('a missing input is one line, exit 1', async () => {
    const result = await runCli([
      'batch',
      'run',
      '--local',
      '--model',
      DIGITS_ONNX,
      '--input',
      '/nonexistent/in.jsonl',
      '--output',
      join(tmpdir(), 'arclight-never'),
    ]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /arclight: error: input \/nonexistent\/in\.jsonl does not exist/);
  });
});

describe('batch progress', () => {
  test('on a terminal: one rewritten line with bar, items/s, failures and ETA', () => {
    const stream = fakeStream(true);
    let t = 0;
    const view = createBatchProgress({ stream, now: () => t });
    t = 2000;
    view.update({ processed: 100, failed: 3, bytesDone: 250, bytesTotal: 1000 });
    view.done();
    assert.equal(stream.writes.length, 2);
    assert.ok(stream.writes[0]!.startsWith('\r\x1b[K'), JSON.stringify(stream.writes[0]));
    assert.match(stream.writes[0]!, /\[Kbatch \[#{6}-{18}\]\s+25% 100 items, 3 failed, 50\.0 items\/s, ETA 6s$/);
    assert.ok(stream.writes[1]!.endsWith('\n'));
  });

  test('off a terminal: a line per 10 %, not per item', () => {
    const stream = fakeStream(false);
    let t = 0;
    const view = createBatchProgress({ stream, now: () => t });
    for (let i = 1; i <= 1000; i += 1) {
      t += 1;
      view.update({ processed: i, failed: 0, bytesDone: i, bytesTotal: 1000 });
    }
    view.done();
    assert.ok(stream.writes.length <= 12, `${stream.writes.length} lines`);
    assert.match(stream.writes.at(-1)!, /^batch: 100% 1000 items, 0 failed, .* ETA done\n$/);
  });
});

describe('arclight batch status|cancel', () => {
  test('job ids: execution ARNs and transform jobs; anything else refused', () => {
    assert.deepEqual(parseJobRef('arn:aws:states:eu-west-1:123456789012:execution:Batch:run-1'), {
      kind: 'step-functions',
      arn: 'arn:aws:states:eu-west-1:123456789012:execution:Batch:run-1',
      region: 'eu-west-1',
    });
    assert.deepEqual(parseJobRef('arn:aws:sagemaker:us-east-2:123456789012:transform-job/nightly-7'), {
      kind: 'transform',
      name: 'nightly-7',
      region: 'us-east-2',
    });
    assert.deepEqual(parseJobRef('nightly-7'), { kind: 'transform', name: 'nightly-7' });
    assert.throws(() => parseJobRef('not a job!'), /names no batch job/);
  });

  for (const command of ['status', 'cancel']) {
    test(`${command} without credentials: one line saying so`, async () => {
      const result = await runCli(['batch', command, 'arn:aws:states:eu-west-1:123456789012:execution:Batch:run-1'], {
        env: NO_CREDENTIALS,
      });
      assert.equal(result.code, 1, result.stderr);
      assert.match(result.stderr, /^arclight: error: no AWS credentials found\. Configure them/m);
      assert.equal(stderrLines(result.stderr).length, 1, result.stderr);
    });
  }
});
