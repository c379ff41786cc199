/**
 * Telemetry: EMF lines written through Powertools are valid CloudWatch EMF with the Arclight namespace, the apiName
 * dimension and the metrics named; nothing is written when metrics are off; the cold start's log line carries the
 * breakdown.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import type { LogAttributes } from '../../../lib/predictor.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import type { Logger } from '../../../lib/runtime/telemetry/logger.js';
import { Runtime } from '../../../lib/runtime/runtime.js';
import { settingsFromEnv } from '../../../lib/runtime/settings.js';
import { METRICS_NAMESPACE, Telemetry, metricsModeFromEnv } from '../../../lib/runtime/telemetry/telemetry.js';
import { allMetrics, METRICS } from '../../../lib/metric-catalog.js';
import { DIGITS_ONNX } from '../../helpers.js';

interface Emf {
  readonly _aws: {
    readonly Timestamp: number;
    readonly CloudWatchMetrics: readonly {
      readonly Namespace: string;
      readonly Dimensions: readonly (readonly string[])[];
      readonly Metrics: readonly { readonly Name: string; readonly Unit: string }[];
    }[];
  };
  readonly [key: string]: unknown;
}

/** EMF lines written to stdout while installed; every other write passes through (the test runner's own). */
let emf: Emf[] = [];
const originalWrite = process.stdout.write.bind(process.stdout);
beforeEach(() => {
  emf = [];
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (text.includes('"_aws"')) {
      for (const line of text.split('\n').filter(Boolean)) emf.push(JSON.parse(line) as Emf);
      return true;
    }
    return originalWrite(chunk, ...rest);
  }) as typeof process.stdout.write;
});
afterEach(() => {
  process.stdout.write = originalWrite;
});

/** Checks the EMF envelope and returns the metric names with their units. */
function assertValidEmf(line: Emf, apiName: string): Map<string, string> {
  assert.equal(typeof line._aws.Timestamp, 'number');
  assert.equal(line._aws.CloudWatchMetrics.length, 1);
  const [directive] = line._aws.CloudWatchMetrics;
  assert.equal(directive!.Namespace, METRICS_NAMESPACE);
  assert.deepEqual(directive!.Dimensions, [['apiName']]);
  assert.equal(line['apiName'], apiName);
  const metrics = new Map(directive!.Metrics.map((m) => [m.Name, m.Unit]));
  for (const name of metrics.keys()) assert.ok(name in line, `value of ${name} present`);
  return metrics;
}

function recordingLogger(): Logger & { records: { level: string; message: string; attributes: LogAttributes }[] } {
  const records: { level: string; message: string; attributes: LogAttributes }[] = [];
  const at =
    (level: string) =>
    (message: string, attributes: LogAttributes = {}): void => {
      records.push({ level, message, attributes });
    };
  return { records, debug: at('DEBUG'), info: at('INFO'), warn: at('WARN'), error: at('ERROR') };
}

const BREAKDOWN = {
  importMs: 80,
  fetchMs: 900,
  modelBytes: 268_435_456,
  mbPerS: 298.3,
  parts: 32,
  retries: 1,
  sessionMs: 400,
  firstRunMs: 3,
  initMs: 1,
  totalMs: 1310,
};

describe('metricsModeFromEnv', () => {
  test('on (per invocation) on Lambda, off elsewhere, ARCLIGHT_METRICS overrides', () => {
    assert.equal(metricsModeFromEnv({}), 'off');
    assert.equal(metricsModeFromEnv({ AWS_LAMBDA_FUNCTION_NAME: 'fn' }), 'invocation');
    assert.equal(metricsModeFromEnv({ AWS_LAMBDA_FUNCTION_NAME: 'fn', ARCLIGHT_METRICS: 'off' }), 'off');
    assert.equal(metricsModeFromEnv({ ARCLIGHT_METRICS: 'on' }), 'interval');
    assert.equal(metricsModeFromEnv({ ARCLIGHT_METRICS: 'off' }), 'off');
  });

  test('the runtime settings refuse any other value', () => {
    assert.throws(
      () => settingsFromEnv({ ARCLIGHT_MODEL_URI: 'model.onnx', ARCLIGHT_METRICS: 'yes' }),
      /ARCLIGHT_METRICS must be on or off/,
    );
    assert.doesNotThrow(() => settingsFromEnv({ ARCLIGHT_MODEL_URI: 'model.onnx', ARCLIGHT_METRICS: 'on' }));
  });
});

describe('Telemetry', () => {
  test('a cold start is one EMF line with every phase', () => {
    new Telemetry({ apiName: 'digits', mode: 'invocation' }).coldStart(BREAKDOWN);
    assert.equal(emf.length, 1);
    const metrics = assertValidEmf(emf[0]!, 'digits');
    assert.deepEqual(Object.fromEntries(metrics), {
      ColdStart: 'Count',
      RuntimeImportTime: 'Milliseconds',
      ModelFetchTime: 'Milliseconds',
      ModelBytes: 'Bytes',
      ModelFetchThroughput: 'Megabytes/Second',
      ModelFetchParts: 'Count',
      ModelFetchRetries: 'Count',
      SessionCreateTime: 'Milliseconds',
      FirstRunTime: 'Milliseconds',
      PredictorInitTime: 'Milliseconds',
      ColdStartTime: 'Milliseconds',
    });
    assert.equal(emf[0]!['ModelFetchTime'], 900);
    assert.equal(emf[0]!['ModelFetchRetries'], 1);
    assert.equal(emf[0]!['ColdStart'], 1);
  });

  test('per invocation: latency, a count per status class and the batch size, written after the invocation', () => {
    const telemetry = new Telemetry({ apiName: 'api', mode: 'invocation' });
    telemetry.request(1.5, 200);
    telemetry.request(2.5, 404);
    telemetry.request(3.5, 503);
    assert.equal(emf.length, 0, 'nothing written before the invocation ends');
    telemetry.afterInvocation();
    assert.equal(emf.length, 1);
    const metrics = assertValidEmf(emf[0]!, 'api');
    assert.equal(metrics.get('Latency'), 'Milliseconds');
    assert.deepEqual(emf[0]!['Latency'], [1.5, 2.5, 3.5]);
    assert.deepEqual(emf[0]!['BatchSize'], [1, 1, 1]);
    assert.equal(emf[0]!['Requests'], undefined, "the count is Latency's SampleCount");
    assert.equal(emf[0]!['Requests2xx'], 1);
    assert.equal(emf[0]!['Requests4xx'], 1);
    assert.equal(emf[0]!['Requests5xx'], 1);
    telemetry.afterInvocation();
    assert.equal(emf.length, 1, 'nothing more when nothing was recorded');
  });

  test('interval mode writes every 99 requests (EMF: at most 100 values a metric), on close, not per invocation', () => {
    const telemetry = new Telemetry({ apiName: 'api', mode: 'interval', flushIntervalMs: 60_000 });
    for (let i = 0; i < 150; i++) telemetry.request(1, 200);
    telemetry.afterInvocation();
    assert.equal(emf.length, 1);
    assert.equal(emf[0]!['Requests2xx'], 99);
    assert.equal((emf[0]!['Latency'] as number[]).length, 99);
    assert.equal((emf[0]!['BatchSize'] as number[]).length, 99);
    telemetry.close();
    assert.equal(emf.length, 2);
    assert.equal(emf[1]!['Requests2xx'], 51);
    assertValidEmf(emf[1]!, 'api');
  });

  test('more than 99 requests are written in valid lines of at most 99 values, in any mode', () => {
    const telemetry = new Telemetry({ apiName: 'api', mode: 'invocation' });
    for (let i = 0; i < 250; i++) telemetry.request(i, i % 2 === 0 ? 200 : 500);
    telemetry.flush();
    assert.equal(emf.length, 3);
    for (const line of emf) {
      assertValidEmf(line, 'api');
      assert.equal((line['Latency'] as number[]).length, (line['BatchSize'] as number[]).length);
    }
    assert.deepEqual(
      emf.flatMap((line) => line['Latency'] as number[]),
      Array.from({ length: 250 }, (_, i) => i),
    );
    const sum = (name: string): number => emf.reduce((total, line) => total + ((line[name] as number) ?? 0), 0);
    assert.equal(sum('Requests2xx'), 125);
    assert.equal(sum('Requests5xx'), 125);
  });

  test('off: nothing is written', () => {
    const telemetry = new Telemetry({ apiName: 'api', mode: 'off' });
    assert.equal(telemetry.enabled, false);
    telemetry.coldStart(BREAKDOWN);
    telemetry.request(1, 200);
    telemetry.afterInvocation();
    telemetry.close();
    assert.equal(emf.length, 0);
  });
});

describe('the runtime', () => {
  test("the cold start's 'model ready' line carries the breakdown, and on Lambda EMF follows it and each invocation", async () => {
    const logger = recordingLogger();
    const runtime = new Runtime({
      apiName: 'digits',
      modelUri: DIGITS_ONNX,
      logger,
      env: { AWS_LAMBDA_FUNCTION_NAME: 'digits-fn' },
    });
    const timings = await runtime.start();
    const ready = logger.records.find((r) => r.message === 'model ready');
    assert.ok(ready);
    for (const key of [
      'importMs',
      'importWaitMs',
      'fetchMs',
      'modelBytes',
      'mbPerS',
      'verifyMs',
      'sessionMs',
      'firstRunMs',
      'initMs',
      'totalMs',
      'processMs',
    ]) {
      assert.equal(typeof ready.attributes[key], 'number', `${key} in the 'model ready' line`);
    }
    assert.equal(ready.attributes['modelBytes'], timings.modelBytes);
    assert.ok(timings.totalMs >= timings.fetchMs + timings.sessionMs);

    assert.equal(emf.length, 1, 'the cold start EMF line');
    const coldStart = assertValidEmf(emf[0]!, 'digits');
    for (const name of [
      'RuntimeImportTime',
      'ModelFetchTime',
      'ModelVerifyTime',
      'SessionCreateTime',
      'FirstRunTime',
      'ColdStartTime',
    ])
      assert.ok(coldStart.has(name), name);
    assert.equal(emf[0]!['ModelVerifyTime'], timings.verifyMs, 'the sha256 check, as measured');
    assert.ok(timings.verifyMs > 0);

    const handler = createLambdaHandler(runtime);
    const event = {
      version: '2.0',
      rawPath: '/v2/health/ready',
      rawQueryString: '',
      headers: {},
      requestContext: { http: { method: 'GET' }, requestId: 'r1', stage: '$default' },
      isBase64Encoded: false,
    };
    const result = await handler(event);
    assert.equal(result.statusCode, 200);
    assert.equal(emf.length, 2, 'one EMF line per invocation');
    assertValidEmf(emf[1]!, 'digits');
    assert.equal(emf[1]!['Requests2xx'], 1);
    assert.equal(typeof emf[1]!['Latency'], 'number', 'one value: a number, not a list');
  });

  test('off Lambda, without ARCLIGHT_METRICS=on, no EMF at all', async () => {
    const logger = recordingLogger();
    const runtime = new Runtime({ apiName: 'digits', modelUri: DIGITS_ONNX, logger, env: {} });
    await runtime.start();
    await createLambdaHandler(runtime)({
      version: '2.0',
      rawPath: '/v2/health/live',
      rawQueryString: '',
      headers: {},
      requestContext: { http: { method: 'GET' }, requestId: 'r2', stage: '$default' },
      isBase64Encoded: false,
    });
    assert.equal(runtime.telemetry.enabled, false);
    assert.equal(emf.length, 0);
    assert.ok(logger.records.some((r) => r.message === 'model ready'));
  });

  test('a model that fails to load counts ModelLoadFailure (the alarm the rollouts roll back on), a catalog metric', async () => {
    const runtime = new Runtime({
      apiName: 'digits',
      modelUri: 'models/no-such-model.onnx',
      logger: recordingLogger(),
      env: { AWS_LAMBDA_FUNCTION_NAME: 'digits-fn' },
    });
    await assert.rejects(runtime.start());
    assert.equal(emf.length, 1);
    const metrics = assertValidEmf(emf[0]!, 'digits');
    assert.deepEqual(Object.fromEntries(metrics), { [METRICS.modelLoadFailure.name]: METRICS.modelLoadFailure.unit });
    assert.equal(emf[0]![METRICS.modelLoadFailure.name], 1);
  });

  test('everything a real cold start and requests write is in the metric catalog, with its unit', async () => {
    const runtime = new Runtime({
      apiName: 'digits',
      modelUri: DIGITS_ONNX,
      logger: recordingLogger(),
      env: { AWS_LAMBDA_FUNCTION_NAME: 'digits-fn' },
    });
    await runtime.start();
    const handler = createLambdaHandler(runtime);
    for (const rawPath of ['/v2/health/ready', '/no-such-route']) {
      await handler({
        version: '2.0',
        rawPath,
        rawQueryString: '',
        headers: {},
        requestContext: { http: { method: 'GET' }, requestId: rawPath, stage: '$default' },
        isBase64Encoded: false,
      });
    }
    const catalog = new Map(allMetrics().map((m) => [m.name, m.unit]));
    const written = emf.flatMap((line) => [...assertValidEmf(line, 'digits')]);
    assert.ok(written.length > 10);
    for (const [name, unit] of written) assert.equal(catalog.get(name), unit, name);
  });
});
