/**
 * CPU time and fresh memory of a process tree from /proc, per thread: load-independent accounting (what a server
 * spends per request does not change when other jobs share the cores; its wall-clock throughput does).
 */
import { readFileSync, readdirSync } from 'node:fs';

/** Linux's USER_HZ: /proc stat files count CPU time in these. */
const CLOCK_TICKS_PER_SECOND = 100;

export interface ThreadCpu {
  readonly pid: number;
  readonly tid: number;
  /** The thread's name (comm): node names its main thread after the process, workers `node`, V8's GC helpers etc. */
  readonly name: string;
  readonly cpuMs: number;
  /** Of cpuMs, the part in the kernel (system calls, page faults). */
  readonly sysMs: number;
  readonly minorFaults: number;
  /** Niceness: the container server's inference threads (worker and onnxruntime's intra-op threads) run at +10. */
  readonly nice: number;
}

/** Fields after the `(comm)` of a stat file, and the comm itself. */
function readStat(path: string): { name: string; fields: string[] } | undefined {
  try {
    const text = readFileSync(path, 'utf8');
    const open = text.indexOf('(');
    const close = text.lastIndexOf(')');
    return { name: text.slice(open + 1, close), fields: text.slice(close + 2).split(' ') };
  } catch {
    return undefined;
  }
}

/** The process and every descendant (uvicorn's workers, a CLI's server child). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) {
    try {
      for (const tid of readdirSync(`/proc/${out[i]}/task`)) {
        const children = readFileSync(`/proc/${out[i]}/task/${tid}/children`, 'utf8').trim();
        if (children) out.push(...children.split(' ').map(Number));
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return out;
}

/** Every thread of the process tree with its CPU time and minor page faults so far. */
export function threadsOf(pid: number): ThreadCpu[] {
  const threads: ThreadCpu[] = [];
  for (const member of processTree(pid)) {
    let tids: string[];
    try {
      tids = readdirSync(`/proc/${member}/task`);
    } catch {
      continue;
    }
    for (const tid of tids) {
      const stat = readStat(`/proc/${member}/task/${tid}/stat`);
      if (!stat) continue;
      // After the comm: state is field 0, minflt 7, utime 11, stime 12, nice 16.
      threads.push({
        pid: member,
        tid: Number(tid),
        name: stat.name,
        cpuMs: ((Number(stat.fields[11]) + Number(stat.fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND,
        sysMs: (Number(stat.fields[12]) * 1000) / CLOCK_TICKS_PER_SECOND,
        minorFaults: Number(stat.fields[7]),
        nice: Number(stat.fields[16]),
      });
    }
  }
  return threads;
}

/** What each thread spent between two snapshots (threads born meanwhile count from zero). */
export function threadDelta(before: readonly ThreadCpu[], after: readonly ThreadCpu[]): ThreadCpu[] {
  const start = new Map(before.map((t) => [`${t.pid}/${t.tid}`, t]));
  return after.map((t) => {
    const was = start.get(`${t.pid}/${t.tid}`);
    return {
      ...t,
      cpuMs: t.cpuMs - (was?.cpuMs ?? 0),
      sysMs: t.sysMs - (was?.sysMs ?? 0),
      minorFaults: t.minorFaults - (was?.minorFaults ?? 0),
    };
  });
}

/** CPU by role: the process's main thread, the worker threads with inference (named by `isWorker`), the rest. */
export function cpuByRole(
  delta: readonly ThreadCpu[],
  rootPid: number,
  isInference: (thread: ThreadCpu) => boolean,
): { mainMs: number; mainSysMs: number; inferenceMs: number; otherMs: number; totalMs: number; minorFaults: number } {
  let mainMs = 0;
  let mainSysMs = 0;
  let inferenceMs = 0;
  let otherMs = 0;
  let minorFaults = 0;
  for (const t of delta) {
    minorFaults += t.minorFaults;
    if (t.tid === rootPid) {
      mainMs += t.cpuMs;
      mainSysMs += t.sysMs;
    } else if (isInference(t)) inferenceMs += t.cpuMs;
    else otherMs += t.cpuMs;
  }
  return { mainMs, mainSysMs, inferenceMs, otherMs, totalMs: mainMs + inferenceMs + otherMs, minorFaults };
}
