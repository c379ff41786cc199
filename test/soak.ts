/**
 * A soak: closed-loop load on a served process long enough to show a leak. A warm-up run first (JIT, allocator
 * arenas, onnxruntime's buffers reach their working size), then the measured run while the probe samples the
 * server's RSS. The drift compares the peak RSS of the run's second half with that of its first half: a leak raises
 * the second, while the native allocator's working set, which swings by several percent with the request mix and
 * the machine's speed (measured: ±4% between rounds of MobileNet, with no trend), reaches the same peak in both.
 * The RSS and heap after full collections, before and after, are reported beside it.
 */
import assert from 'node:assert/strict';
import { loadavg } from 'node:os';
import { MOBILENET, inputFor, oipBinaryBody } from '../bench/payloads.js';
import { closedLoop, type ClosedLoopResult, type LoadRequest } from './closed-loop-load.js';
import { byProfile } from './profile.js';
import type { ProbeSample, ServedProcess } from './served-process.js';

/**
 * The bound is 5%. A short run is too brief for slow growth to add up to much, and the allocator's working
 * set moves by a few MiB from run to run, so the short profile holds a looser bound; the long profile holds 5%.
 */
export const MAX_RSS_DRIFT = byProfile({ short: 0.1, long: 0.05 });

export interface SoakOptions {
  readonly connections: number;
  readonly warmUp: number;
  readonly amount: number;
  readonly requests: readonly LoadRequest[];
  /** How often the server's RSS is sampled during the measured run. @default 100 ms */
  readonly sampleEveryMs?: number;
}

export interface SoakResult {
  readonly warmUp: ClosedLoopResult;
  readonly run: ClosedLoopResult;
  /** After the warm-up, after a full collection. */
  readonly baseline: ProbeSample;
  /** After the measured run, after a full collection; its loop delay covers the measured run. */
  readonly final: ProbeSample;
  /** RSS samples during the measured run (not collected first). */
  readonly rssDuringRun: readonly number[];
  /** (peak RSS of the run's second half − that of its first half) / that of its first half. */
  readonly rssDrift: number;
  /** (final RSS − baseline RSS) / baseline RSS, both after full collections. */
  readonly settledRssDrift: number;
  /** The same for the main thread's heap after collection. */
  readonly heapDrift: number;
  /** The 1-minute load average before and after (the machine may be shared). */
  readonly loadAverage: { readonly before: number; readonly after: number };
}

export async function soak(server: ServedProcess, options: SoakOptions): Promise<SoakResult> {
  const loadBefore = loadavg()[0]!;
  const warmUp = await closedLoop(server.url, {
    connections: options.connections,
    amount: options.warmUp,
    requests: options.requests,
  });
  const baseline = await server.sample({ gc: true });
  await server.resetLoopDelay();
  const rssDuringRun: number[] = [];
  const sampler = setInterval(() => {
    server.sample().then(
      (s) => rssDuringRun.push(s.rss),
      () => undefined,
    );
  }, options.sampleEveryMs ?? 100);
  let run: ClosedLoopResult;
  try {
    run = await closedLoop(server.url, {
      connections: options.connections,
      amount: options.amount,
      requests: options.requests,
    });
  } finally {
    clearInterval(sampler);
  }
  // The loop delay is read before the collection, which would itself stall the loop.
  const loop = await server.sample();
  const collected = await server.sample({ gc: true });
  const final = { ...collected, loopDelay: loop.loopDelay };
  return {
    warmUp,
    run,
    baseline,
    final,
    rssDuringRun,
    rssDrift: halvesDrift(rssDuringRun),
    settledRssDrift: (final.rss - baseline.rss) / baseline.rss,
    heapDrift: (final.heapUsed - baseline.heapUsed) / baseline.heapUsed,
    loadAverage: { before: loadBefore, after: loadavg()[0]! },
  };
}

const MIB = 1024 * 1024;
/** Fewer samples than this cannot tell a trend from a swing. */
export const MIN_RSS_SAMPLES = 8;

function halvesDrift(samples: readonly number[]): number {
  const half = Math.floor(samples.length / 2);
  const first = Math.max(...samples.slice(0, half));
  return (Math.max(...samples.slice(half)) - first) / first;
}

/** The soak's figures in one line, for `t.diagnostic`. */
export function describeSoak(label: string, result: SoakResult): string {
  const { run, baseline, final } = result;
  const peak = Math.max(...result.rssDuringRun, final.rss);
  return [
    `${label}: ${run.ok}/${run.amount} ok after ${result.warmUp.amount} warm-up`,
    `errors ${run.errors}, timeouts ${run.timeouts}, non-2xx ${run.non2xx}, wrong answers ${run.wrong}`,
    `${run.rps.toFixed(0)} req/s in ${run.durationS.toFixed(1)} s, latency p50 ${run.latencyMs.p50} ms p99 ${run.latencyMs.p99} ms max ${run.latencyMs.max} ms`,
    `RSS drift ${(result.rssDrift * 100).toFixed(2)}% (peak of 2nd half vs 1st, ${result.rssDuringRun.length} samples, peak ${(peak / MIB).toFixed(1)} MiB)`,
    `RSS after GC ${(baseline.rss / MIB).toFixed(1)} → ${(final.rss / MIB).toFixed(1)} MiB (${(result.settledRssDrift * 100).toFixed(2)}%)`,
    `heap ${(baseline.heapUsed / MIB).toFixed(1)} → ${(final.heapUsed / MIB).toFixed(1)} MiB (${(result.heapDrift * 100).toFixed(2)}%)`,
    `event-loop delay p50 ${final.loopDelay.p50Ms.toFixed(1)} ms p99 ${final.loopDelay.p99Ms.toFixed(1)} ms max ${final.loopDelay.maxMs.toFixed(1)} ms`,
    `load average ${result.loadAverage.before.toFixed(2)} → ${result.loadAverage.after.toFixed(2)}`,
  ].join('; ');
}

/** What every soak holds: each request a right 2xx, no error anywhere, RSS flat after the warm-up, still running. */
export function assertSoaked(result: SoakResult, server: ServedProcess): void {
  const { run } = result;
  assert.equal(run.errors, 0, `connection errors: ${JSON.stringify(run.statusCodes)}`);
  assert.equal(run.timeouts, 0, 'timeouts');
  assert.equal(run.non2xx, 0, `non-2xx answers: ${JSON.stringify(run.statusCodes)}`);
  assert.equal(run.ok, run.amount, 'every request answered 2xx');
  assert.equal(run.wrong, 0, `wrong answers, the first: ${run.firstWrong}`);
  assert.equal(result.warmUp.ok, result.warmUp.amount, 'the warm-up was clean too');
  assert.ok(result.baseline.collected && result.final.collected, 'the settled RSS was taken after full collections');
  assert.ok(result.rssDuringRun.length >= MIN_RSS_SAMPLES, `only ${result.rssDuringRun.length} RSS samples`);
  assert.ok(
    result.rssDrift <= MAX_RSS_DRIFT,
    `RSS drift ${(result.rssDrift * 100).toFixed(2)}% > ${MAX_RSS_DRIFT * 100}% after warm-up`,
  );
  assert.ok(result.final.loopDelay.count > 0, 'the event-loop delay was sampled during the run');
  assert.deepEqual(server.errorRecords(), [], 'no ERROR log records');
  assert.equal(server.exited(), false, 'still running');
}

/** MobileNet over the OIP binary extension; the answer's JSON header must describe a [1, 1000] output of 4000 bytes. */
export function mobileNetBinaryInfer(modelName: string): LoadRequest {
  const { body, headers } = oipBinaryBody(MOBILENET, inputFor(MOBILENET));
  const answer = new RegExp(`^\\{"model_name":"${modelName}".*"shape":\\[1,1000\\].*"binary_data_size":4000`);
  return {
    method: 'POST',
    path: `/v2/models/${modelName}/infer`,
    headers,
    body,
    check: (text) => (answer.test(text) ? undefined : `unexpected answer: ${text.slice(0, 200)}`),
  };
}
