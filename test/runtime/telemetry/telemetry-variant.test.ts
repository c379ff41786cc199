/**
 * Per-variant metrics: a runtime that serves a variant writes every EMF line under `apiName` (the API's totals, which
 * the alarms read) and again under `apiName` + `variant` (the dashboard's per-variant charts); the shadow's copy
 * counters go out with the request metrics. Read from the real Powertools output on stdout.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { METRICS } from '../../../lib/metric-catalog.js';
import { Telemetry } from '../../../lib/runtime/telemetry/telemetry.js';

interface EmfLine {
  _aws: { CloudWatchMetrics: { Dimensions: string[][]; Metrics: { Name: string }[] }[] };
  [key: string]: unknown;
}

function emitted(work: () => void): EmfLine[] {
  const lines: EmfLine[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (!text.includes('"_aws"')) return write(chunk, ...rest);
    for (const line of text.split('\n').filter(Boolean)) lines.push(JSON.parse(line) as EmfLine);
    return true;
  }) as typeof process.stdout.write;
  try {
    work();
  } finally {
    process.stdout.write = write;
  }
  return lines;
}

describe('the variant dimension', () => {
  test('every line under apiName and under apiName + variant', () => {
    const lines = emitted(() => {
      const telemetry = new Telemetry({ apiName: 'digits', mode: 'interval', variant: 'v2' });
      telemetry.request(3, 200);
      telemetry.request(4, 503);
      telemetry.event('Overloaded');
      telemetry.shadow('sent');
      telemetry.shadow('dropped');
      telemetry.close();
    });
    assert.ok(lines.length >= 3);
    for (const line of lines) {
      assert.deepEqual(line._aws.CloudWatchMetrics[0]!.Dimensions, [['apiName'], ['apiName', 'variant']]);
      assert.deepEqual([line['apiName'], line['variant']], ['digits', 'v2']);
    }
    const shadow = lines.find((l) => l[METRICS.shadowCopies.name] !== undefined)!;
    assert.deepEqual(
      [
        shadow[METRICS.shadowCopies.name],
        shadow[METRICS.shadowCopiesDropped.name],
        shadow[METRICS.shadowCopyFailures.name],
      ],
      [1, 1, undefined],
    );
  });

  test('without a variant, only apiName (as before)', () => {
    const lines = emitted(() => {
      const telemetry = new Telemetry({ apiName: 'digits', mode: 'interval', variant: '' });
      telemetry.request(3, 200);
      telemetry.close();
    });
    assert.equal(lines.length, 1);
    assert.deepEqual(lines[0]!._aws.CloudWatchMetrics[0]!.Dimensions, [['apiName']]);
  });
});
