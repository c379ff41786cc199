/**
 * `arclight plan` as a user runs it (the built CLI) on the example app (bin/app.ts, synthesized with path metadata as
 * the CDK CLI does): every figure checked against the price table and rates it names as its source, with the shipped
 * table, a table of the user's, and bench results.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { buildExampleApp } from '../../bin/app.js';
import { DEFAULT_PRICES_FILE, type Plan, type PriceTable } from '../../lib/cli/plan.js';
import { DIGITS_ONNX, MOBILENET_ONNX, runCli, STACK_FRAME, stderrLines, type CliResult } from '../helpers.js';

let assembly: string;
let scratch: string;
const shipped = JSON.parse(readFileSync(DEFAULT_PRICES_FILE, 'utf8')) as PriceTable;

before(() => {
  assembly = mkdtempSync(join(tmpdir(), 'arclight-plan-app-'));
  scratch = mkdtempSync(join(tmpdir(), 'arclight-plan-'));
  buildExampleApp(new App({ outdir: assembly, context: { 'aws:cdk:enable-path-metadata': true } })).app.synth();
});

after(() => {
  for (const dir of [assembly, scratch]) if (dir) rmSync(dir, { recursive: true, force: true });
});

async function planJson(args: string[] = []): Promise<Plan> {
  const result = await runCli([
    'plan',
    '--assembly',
    assembly,
    '--json',
    '--bench-results',
    join(scratch, 'none'),
    ...args,
  ]);
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as Plan;
}

function close(actual: number | undefined, expected: number, what: string): void {
  assert.ok(
    actual !== undefined && Math.abs(actual - expected) < 1e-9 * Math.max(1, expected),
    `${what}: ${actual} ≠ ${expected}`,
  );
}

describe('arclight plan', { concurrency: false }, () => {
  test('the example app with the shipped prices and default rates: each figure from its named source', async () => {
    const plan = await planJson();
    assert.deepEqual(
      plan.apis.map((a) => [a.name, a.compute]),
      [
        ['digits', 'lambda'],
        ['mobilenet', 'lambda'],
        ['mobilenet-gpu', 'sagemaker'],
        ['digits-ecs', 'ecs'],
        ['digits-async', 'lambda'],
        ['mobilenet-async', 'sagemaker'],
      ],
    );
    const [digits, mobilenet, gpu, ecs] = plan.apis;
    const digitsBytes = statSync(DIGITS_ONNX).size;
    const mobilenetBytes = statSync(MOBILENET_ONNX).size;
    assert.equal(digits!.modelBytes, digitsBytes);
    assert.equal(mobilenet!.modelBytes, mobilenetBytes);
    assert.equal(
      digits!.settings,
      'Lambda arm64, 1769 MB, timeout 29 s, provisioned concurrency 0; HTTP API, auth none',
    );
    // Cold start: 1.5 s + size at 100 MB/s (fetch) + size at 100 MB/s (session).
    close(mobilenet!.coldStartMs, 1500 + 2 * (mobilenetBytes / 1e8) * 1000, 'mobilenet cold start');
    // Per million on Lambda: requests + 100 ms × GB × the architecture's GB-second price + HTTP API.
    close(
      digits!.perMillionRequests.usd,
      shipped.lambda.requestsPerMillion +
        1e6 * 0.1 * (1769 / 1024) * shipped.lambda.gbSecond.arm64 +
        shipped.apiGateway.httpApiPerMillion,
      'digits per million',
    );
    close(
      mobilenet!.perMillionRequests.usd,
      shipped.lambda.requestsPerMillion +
        1e6 * 0.1 * (3008 / 1024) * shipped.lambda.gbSecond.x86_64 +
        shipped.apiGateway.httpApiPerMillion,
      'mobilenet per million',
    );
    assert.equal(digits!.perIdleHour.usd, 0);
    assert.equal(gpu!.settings, 'SageMaker endpoint, 1 × ml.g5.xlarge, autoscaling 1–2; REST API, auth none');
    close(gpu!.perMillionRequests.usd, shipped.apiGateway.restApiPerMillion, 'REST API per million');
    close(gpu!.perIdleHour.usd, shipped.sagemakerInstanceHour['ml.g5.xlarge']!, 'SageMaker idle hour');
    close(
      ecs!.perIdleHour.usd,
      shipped.ec2InstanceHour['g5.xlarge']! + shipped.loadBalancerHour + shipped.natGatewayHour,
      'ECS idle hour: instance + ALB + NAT gateway',
    );
    assert.deepEqual(
      plan.apis.flatMap((a) => a.warnings),
      [],
    );
    assert.match(
      plan.sources.prices,
      /^the price table shipped with arclight .*aws-us-east-1\.json \(us-east-1, \d{4}-\d{2}-\d{2}; /,
    );
    assert.match(
      plan.sources.coldStart,
      /^cold-start rates: Arclight's defaults \(fetch 100 MB\/s, session 100 MB\/s, runtime start 1500 ms\); no bench results/,
    );
    assert.match(plan.sources.requestMs, /100 ms, the default/);
  });

  test('--prices <file>: its figures, its region checked, a missing instance price warned about', async () => {
    const mine = structuredClone(shipped) as PriceTable & { sagemakerInstanceHour: Record<string, number> };
    mine.region = 'eu-west-1';
    mine.date = '2026-11-30';
    mine.lambda.gbSecond.arm64 = 0.00002;
    delete mine.sagemakerInstanceHour['ml.g5.xlarge'];
    const file = join(scratch, 'prices.json');
    writeFileSync(file, JSON.stringify(mine));
    const plan = await planJson(['--prices', file, '--request-ms', '250']);
    const [digits, , gpu] = plan.apis;
    close(
      digits!.perMillionRequests.usd,
      mine.lambda.requestsPerMillion + 1e6 * 0.25 * (1769 / 1024) * 0.00002 + mine.apiGateway.httpApiPerMillion,
      'digits per million at 250 ms',
    );
    assert.equal(gpu!.perIdleHour.usd, 0);
    assert.deepEqual(gpu!.warnings, [
      'the price table has no SageMaker price for ml.g5.xlarge: counted as $0 (add it with --prices)',
    ]);
    assert.match(plan.sources.prices, new RegExp(`^your price table ${file} \\(eu-west-1, 2026-11-30; `));
    assert.match(plan.sources.requestMs, /250 ms \(--request-ms\)/);
  });

  test('bench results present: cold start from the fetch and session rates bench measured, said so', async () => {
    const bench = join(scratch, 'bench-results');
    const runs = [
      { variant: 'arclight', fetchMs: 2000, sessionMs: 900, modelBytes: 256e6 },
      { variant: 'arclight', fetchMs: 4000, sessionMs: 900, modelBytes: 256e6 },
      { variant: 'arclight', fetchMs: 3200, sessionMs: 900, modelBytes: 256e6 },
      { variant: 'local', sessionMs: 512, modelBytes: 256e6 },
      { variant: 'naive', fetchMs: 20000, sessionMs: 900, modelBytes: 256e6 },
    ];
    const { mkdirSync } = await import('node:fs');
    mkdirSync(bench, { recursive: true });
    writeFileSync(
      join(bench, 'fetch.json'),
      JSON.stringify({ scenario: 'fetch', startedAt: '2026-12-01T09:00:00.000Z', data: { runs } }),
    );
    const result = await runCli(['plan', 'mobilenet', '--assembly', assembly, '--json', '--bench-results', bench]);
    assert.equal(result.code, 0, result.stderr);
    const plan = JSON.parse(result.stdout) as Plan;
    assert.equal(plan.apis.length, 1);
    const bytes = statSync(MOBILENET_ONNX).size;
    // The median of Arclight's fetches (256 MB in 3.2 s = 80 MB/s) and the local session (256 MB in 0.512 s = 500 MB/s).
    close(plan.apis[0]!.coldStartParts?.fetchMs, (bytes / 80e6) * 1000, 'fetch ms');
    close(plan.apis[0]!.coldStartParts?.sessionMs, (bytes / 500e6) * 1000, 'session ms');
    assert.match(
      plan.sources.coldStart,
      /measured by bench \(.*fetch\.json, 2026-12-01T09:00:00\.000Z\): fetch 80\.0 MB\/s, session 500\.0 MB\/s/,
    );
  });

  test('as text: a block per API and the sources', async () => {
    const result = await runCli(['plan', '--assembly', assembly, '--bench-results', join(scratch, 'none')]);
    assert.equal(result.code, 0, result.stderr);
    const text = result.stdout;
    assert.match(text, /^digits\n {2}compute {4}Lambda arm64, 1769 MB/);
    assert.match(
      text,
      /\n {2}per 1M req \$\d+\.\d\d = Lambda requests \$0\.20 \+ Lambda duration \(100 ms × 1\.728 GB, arm64\) \$\d+\.\d\d \+ HTTP API requests \$1\.00\n/,
    );
    assert.match(text, /\n {2}idle hour {2}\$1\.41 = 1 × ml\.g5\.xlarge/);
    assert.match(text, /\nSources:\n {2}prices: the price table shipped with arclight /);
  });

  test('a price table that is not valid: one line naming every problem', async () => {
    const file = join(scratch, 'bad-prices.json');
    writeFileSync(
      file,
      JSON.stringify({ ...shipped, region: 3, lambda: { ...shipped.lambda, requestsPerMillion: -1 } }),
    );
    const result: CliResult = await runCli(['plan', '--assembly', assembly, '--prices', file]);
    assert.equal(result.code, 1);
    const lines = stderrLines(result.stderr);
    assert.equal(lines.length, 1, result.stderr);
    assert.match(
      lines[0]!,
      /^arclight: error: the price table .*bad-prices\.json is not valid: region: .*; lambda\.requestsPerMillion: /,
    );
    assert.doesNotMatch(result.stderr, STACK_FRAME);
  });
});
