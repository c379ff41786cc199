/**
 * A soak: closed-loop load on a served process long enough to show a leak. A warm-up run first (JIT, allocator
 * arenas, onnxruntime's buffers reach their working size), then the measured run while the probe samples the
 * server's RSS. The drift compares the RSS after a full collection at the end with the same after the warm-up: a
 * leak survives the collection, garbage not yet collected does not count.
 */
import { loadavg } from 'node:os';
import { closedLoop, type ClosedLoopResult, type LoadRequest } from './closed-loop-load.js';
import type { ProbeSample, ServedProcess } from './served-process.js';

export interface SoakOptions {
  readonly connections: number;
  readonly warmUp: number;
  readonly amount: number;
  readonly requests: readonly LoadRequest[];
  /** How often the server's RSS is sampled during the measured run. @default 250 ms */
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
  /** (final RSS − baseline RSS) / baseline RSS. */
  readonly rssDrift: number;
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
  }, options.sampleEveryMs ?? 250);
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
    rssDrift: (final.rss - baseline.rss) / baseline.rss,
    heapDrift: (final.heapUsed - baseline.heapUsed) / baseline.heapUsed,
    loadAverage: { before: loadBefore, after: loadavg()[0]! },
  };
}

const MIB = 1024 * 1024;

/** The soak's figures in one line, for `t.diagnostic`. */
export function describeSoak(label: string, result: SoakResult): string {
  const { run, baseline, final } = result;
  const peak = Math.max(...result.rssDuringRun, final.rss);
  return [
    `${label}: ${run.ok}/${run.amount} ok after ${result.warmUp.amount} warm-up`,
    `errors ${run.errors}, timeouts ${run.timeouts}, non-2xx ${run.non2xx}, wrong answers ${run.wrong}`,
    `${run.rps.toFixed(0)} req/s in ${run.durationS.toFixed(1)} s, latency p50 ${run.latencyMs.p50} ms p99 ${run.latencyMs.p99} ms max ${run.latencyMs.max} ms`,
    `RSS ${(baseline.rss / MIB).toFixed(1)} → ${(final.rss / MIB).toFixed(1)} MiB (drift ${(result.rssDrift * 100).toFixed(2)}%, peak under load ${(peak / MIB).toFixed(1)} MiB)`,
    `heap ${(baseline.heapUsed / MIB).toFixed(1)} → ${(final.heapUsed / MIB).toFixed(1)} MiB (${(result.heapDrift * 100).toFixed(2)}%)`,
    `event-loop delay p50 ${final.loopDelay.p50Ms.toFixed(1)} ms p99 ${final.loopDelay.p99Ms.toFixed(1)} ms max ${final.loopDelay.maxMs.toFixed(1)} ms`,
    `load average ${result.loadAverage.before.toFixed(2)} → ${result.loadAverage.after.toFixed(2)}`,
  ].join('; ');
}
