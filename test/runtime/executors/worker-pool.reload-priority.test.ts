/**
 * A pool started beside a serving one (a live reload) loads at the lowest priority, so making and warming the new
 * version's sessions takes only CPU the serving workers leave; the threads that then run its inferences are back at
 * the workers' usual niceness (+10). The first pool never loads below +10. Threads are read from /proc (Linux).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { RELOAD_LOAD_NICENESS, WorkerPool } from '../../../lib/runtime/executors/worker-pool.js';
import { DIGITS_ONNX, MOBILENET_ONNX } from '../../helpers.js';

interface ThreadState {
  readonly nice: number;
  /** User + system CPU, in clock ticks. */
  readonly cpu: number;
}

/** Each thread of this process: niceness and CPU time (fields 19, 14 and 15 of /proc/self/task/<tid>/stat). */
function threads(): Map<number, ThreadState> {
  const all = new Map<number, ThreadState>();
  for (const tid of readdirSync('/proc/self/task')) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      all.set(Number(tid), { nice: Number(fields[16]), cpu: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // The thread ended between the listing and the read.
    }
  }
  return all;
}

/** Starts a pool while sampling its new threads' niceness: the highest seen per thread. */
async function startSampled(model: Uint8Array): Promise<{ pool: WorkerPool; highest: Map<number, number> }> {
  const existing = new Set(threads().keys());
  const highest = new Map<number, number>();
  const sample = (): void => {
    for (const [tid, { nice }] of threads())
      if (!existing.has(tid)) highest.set(tid, Math.max(highest.get(tid) ?? -20, nice));
  };
  const timer = setInterval(sample, 2);
  try {
    const pool = await WorkerPool.start(model, 'model', { workers: 2, intraOpThreads: 1 });
    sample();
    return { pool, highest };
  } finally {
    clearInterval(timer);
  }
}

test(
  'a reload pool loads at nice 19 and its inferences run at nice 10; the first pool never loads below 10',
  { skip: process.platform !== 'linux' },
  async () => {
    const first = await startSampled(readFileSync(DIGITS_ONNX));
    try {
      assert.ok(first.highest.size >= 2, 'the first pool started threads');
      const firstLevels = [...first.highest.values()];
      assert.ok(
        firstLevels.every((n) => n < RELOAD_LOAD_NICENESS),
        `first pool: ${JSON.stringify([...first.highest])}`,
      );
      const reload = await startSampled(readFileSync(MOBILENET_ONNX));
      try {
        assert.ok(
          [...reload.highest.values()].filter((n) => n === RELOAD_LOAD_NICENESS).length >= 2,
          `both of the reload pool's workers loaded at 19: ${JSON.stringify([...reload.highest])}`,
        );
        // The threads that do the reloaded version's inferences: those whose CPU time grows while it serves. Runs go
        // on, 40 at a time, until one of them has 5 clock ticks (50 ms) more: a fast machine needs more than 40.
        const before = threads();
        const input = { type: 'float32', data: new Float32Array(3 * 224 * 224), dims: [1, 3, 224, 224] } as const;
        const working = (): [number, ThreadState][] =>
          [...threads()].filter(([tid, { cpu }]) => reload.highest.has(tid) && cpu - (before.get(tid)?.cpu ?? 0) >= 5);
        for (let batch = 0; batch < 50 && working().length === 0; batch++) {
          await Promise.all(
            Array.from({ length: 40 }, () => reload.pool.run({ input: { ...input, data: input.data.slice() } })),
          );
        }
        const busy = working();
        assert.ok(busy.length >= 1, 'the reload pool ran the inferences');
        // Going back up needs CAP_SYS_NICE (root here); without it they keep 19, still below the server's thread.
        assert.deepEqual(
          busy.map(([, { nice }]) => nice),
          busy.map(() => 10),
          `inference threads at nice 10: ${JSON.stringify(busy)}`,
        );
      } finally {
        await reload.pool.release();
      }
    } finally {
      await first.pool.release();
    }
  },
);
