/** What a live reload under load (test/reload-under-load.ts) must show, asserted once for every server that runs it. */
import assert from 'node:assert/strict';
import { cpus, loadavg } from 'node:os';
import { LOGITS_TOLERANCE, loadDigitsExpected } from './helpers.js';
import { quantile, type Footprint, type ReloadRun } from './reload-under-load.js';

export interface ReloadFigures {
  /** Whether the 1-minute load average was below the core count: only then are the latencies the server's own. */
  readonly quietMachine: boolean;
  readonly requests: number;
  readonly requestsDuringSwap: number;
  readonly failed: number;
  readonly p99BeforeMs: number;
  readonly maxDuringSwapMs: number;
  readonly p99DuringSwapMs: number;
  readonly swapSeconds: number;
  readonly before: Footprint;
  readonly after: Footprint;
}

/** Asserts the run's behaviour and returns its figures for the report. */
export function assertReloadRun(run: ReloadRun): ReloadFigures {
  const expected = loadDigitsExpected();
  const { answers } = run;
  const failed = answers.filter((a) => a.status !== 200);
  assert.deepEqual(failed.slice(0, 3), [], `${failed.length} of ${answers.length} requests failed`);
  // Every answer is exactly its version's output: version 1 the digits network, version 2 the linear one.
  for (const a of answers) {
    const want =
      a.version === '1'
        ? expected.logits[a.image]!
        : a.version === '2'
          ? run.v2.logits(expected.images[a.image]!)
          : undefined;
    assert.ok(want, `an answer from version ${a.version}`);
    a.logits.forEach((x, i) =>
      assert.ok(
        Math.abs(x - want[i]!) < LOGITS_TOLERANCE * 10,
        `v${a.version} image ${a.image} logit ${i}: ${x} vs ${want[i]}`,
      ),
    );
  }
  // Once version 2 has answered, every request sent after that is answered by version 2: the swap is one step.
  const late = answers.filter((a) => a.startMs > run.firstV2Ms && a.version !== '2');
  assert.deepEqual(late.slice(0, 3), [], 'requests sent after the swap answered by the old version');
  // The corrupt version 3 never answers; version 2 answers to the end.
  assert.ok(answers.every((a) => a.version !== '3'));
  const afterRefusal = answers.filter((a) => a.startMs > run.v3RefusedMs);
  assert.ok(
    afterRefusal.length > 0 && afterRefusal.every((a) => a.version === '2'),
    'version 2 serves after the refusal',
  );
  // Version 1's session and worker threads are gone: the process is back to the threads it had before the swap.
  assert.ok(
    run.after.threads <= run.before.threads,
    `threads after the swap ${run.after.threads} > before ${run.before.threads}: version 1 was not released`,
  );
  const latency = (a: (typeof answers)[number]): number => a.endMs - a.startMs;
  const baseline = answers.filter((a) => a.endMs < run.v2UploadedMs).slice(50);
  const swapEnd = run.firstV2Ms + 1000;
  const duringSwap = answers.filter((a) => a.endMs >= run.v2UploadedMs && a.startMs <= swapEnd);
  const p99BeforeMs = quantile(baseline.map(latency), 0.99);
  const maxDuringSwapMs = Math.max(...duringSwap.map(latency));
  const quietMachine = loadavg()[0]! < cpus().length;
  const figures: ReloadFigures = {
    quietMachine,
    requests: answers.length,
    requestsDuringSwap: duringSwap.length,
    failed: failed.length,
    p99BeforeMs: round(p99BeforeMs),
    maxDuringSwapMs: round(maxDuringSwapMs),
    p99DuringSwapMs: round(quantile(duringSwap.map(latency), 0.99)),
    swapSeconds: round((run.firstV2Ms - run.v2UploadedMs) / 1000),
    before: run.before,
    after: run.after,
  };
  assert.ok(duringSwap.length > 0, 'requests ran during the swap');
  // Latency during the swap is a figure, not an assertion: with as many busy workers as cores (2 here), loading and
  // warming the new version competes with the requests for CPU, so the slowest request during the swap measured 3×
  // the p99 before it on a quiet 2-core CI machine (67.8 ms against 22.8 ms) although none waited on the swap. The
  // figures go to the report (`reload figures`); what is asserted is behaviour: none failed, each answer is its
  // version's, the old version is released.
  return figures;
}

function round(ms: number): number {
  return Math.round(ms * 10) / 10;
}
