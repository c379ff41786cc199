/**
 * Scenario `container`: the container server (the container main as a child process, as its Dockerfile starts it,
 * worker threads on CPU) against raw in-process `session.run` on MobileNet, over loopback HTTP with keep-alive.
 * - throughput at concurrency 1–32 with 2 workers (batching off) ÷ raw `session.run` throughput, its peak held to ≥ 0.9;
 * - dynamic batching on vs off at concurrency 16: throughput and p95;
 * - `GET /ping` p99 while the workers are saturated, from a health checker in its own process (as SageMaker's is),
 *   held to ≤ 10 ms.
 * Requests use the OIP binary tensor extension (what a throughput-minded client sends).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import {
  freeLoopbackPort,
  runnableContainerContext,
  type RunnableContainerContext,
} from '../lib/cli/local/dev-container.js';
import {
  CONTAINER_NODE_OPTIONS,
  SERVER_FILE,
  buildContainerImageContext,
} from '../lib/constructs/images/container-image-context.js';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';
import { deployedNode } from './deployed-node.js';
import { MOBILENET, inputFor, oipBinaryBody } from './payloads.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatMs, formatRatio, summarize, type Summary } from './stats.js';

const WORKERS = 2;
const CONCURRENCY = [1, 2, 4, 8, 16, 32] as const;
const BATCH_CONCURRENCY = 16;
const TARGET_RATIO = 0.9;
const TARGET_PING_P99_MS = 10;

interface Point {
  readonly concurrency: number;
  readonly rps: number;
  readonly latency: Summary;
  readonly errors: number;
  /** The server process's CPU time (every thread) per answered request, ms. */
  readonly serverCpuMsPerRequest: number;
}

/** A process's CPU time so far (user + system, every thread), ms, from /proc; NaN where there is no /proc. */
function processCpuMs(pid: number): number {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND;
  } catch {
    return Number.NaN;
  }
}

/** Linux's USER_HZ: /proc/<pid>/stat counts CPU time in these. */
const CLOCK_TICKS_PER_SECOND = 100;

export interface Server {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

let context: RunnableContainerContext | undefined;

/** The GPU image's build context, as synth makes it, made runnable here once (onnxruntime-node linked). */
export function serverContext(): RunnableContainerContext {
  if (context) return context;
  const built = buildContainerImageContext({ gpu: true });
  context = runnableContainerContext(built);
  rmSync(built, { recursive: true, force: true });
  return context;
}

/** Removes the runnable copy of the build context. */
export function releaseServerContext(): void {
  context?.cleanup();
  context = undefined;
}

export async function startServer(env: Record<string, string>): Promise<Server> {
  const port = await freeLoopbackPort();
  // The bundled server exactly as the image's ENTRYPOINT runs it (no loader), from a runnable copy of its context.
  const child = spawn(deployedNode().execPath, [join(serverContext().dir, SERVER_FILE)], {
    env: {
      ...process.env,
      NODE_OPTIONS: CONTAINER_NODE_OPTIONS,
      SAGEMAKER_BIND_TO_PORT: String(port),
      ARCLIGHT_MODEL_URI: resolve(MOBILENET.path),
      ARCLIGHT_API_NAME: 'mobilenet',
      ARCLIGHT_EXECUTION_PROVIDERS: 'cpu',
      ARCLIGHT_WORKERS: String(WORKERS),
      ARCLIGHT_LOG_LEVEL: 'WARN',
      ARCLIGHT_METRICS: 'off',
      ...env,
    },
    stdio: 'ignore',
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (Date.now() > deadline) throw new Error('the container server did not become ready');
    const status = await get(port, '/ping').catch(() => 0);
    if (status === 200) break;
    await sleep(50);
  }
  return {
    port,
    child,
    async stop() {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

function get(port: number, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.once('end', () => resolve(res.statusCode ?? 0));
    });
    req.once('error', reject);
    req.end();
  });
}

function post(port: number, body: Buffer, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        path: '/invocations',
        method: 'POST',
        agent,
        headers: { ...headers, 'content-length': body.length },
      },
      (res) => {
        res.resume();
        res.once('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.once('error', reject);
    req.end(body);
  });
}

/** `GET /ping` latencies from a health checker in its own process (bench/health-prober.mjs), as SageMaker probes. */
async function probeHealth(port: number, everyMs: number, durationMs: number): Promise<number[]> {
  const script = fileURLToPath(new URL('./health-prober.mjs', import.meta.url));
  const child = spawn(process.execPath, [script, String(port), String(everyMs), String(durationMs)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const result = JSON.parse(output || 'null') as { latencies: number[]; failures: number } | null;
  if (code !== 0 || result === null) throw new Error(`the health prober failed (exit ${code})`);
  if (result.failures > 0) throw new Error(`${result.failures} health probes did not get 200 while saturated`);
  return result.latencies;
}

/** Closed-loop clients at `concurrency` for `seconds`; with `pingEveryMs`, a health checker probes meanwhile. */
async function load(
  server: Server,
  concurrency: number,
  seconds: number,
  pingEveryMs?: number,
): Promise<{ point: Point; ping?: Summary }> {
  const { body, headers } = oipBinaryBody(MOBILENET, inputFor(MOBILENET));
  const latencies: number[] = [];
  let errors = 0;
  let measuring = false;
  let stop = false;
  const client = async (): Promise<void> => {
    while (!stop) {
      const t = performance.now();
      const status = await post(server.port, body, headers).catch(() => 0);
      if (!measuring) continue;
      if (status === 200) latencies.push(performance.now() - t);
      else errors++;
    }
  };
  const clients = Array.from({ length: concurrency }, client);
  await sleep(Math.min(1000, seconds * 250)); // warm up
  measuring = true;
  const cpuBefore = processCpuMs(server.child.pid!);
  const started = performance.now();
  const prober = pingEveryMs === undefined ? undefined : probeHealth(server.port, pingEveryMs, seconds * 1000);
  await sleep(seconds * 1000);
  stop = true;
  const elapsed = (performance.now() - started) / 1000;
  const done = latencies.length;
  const serverCpuMs = processCpuMs(server.child.pid!) - cpuBefore;
  const pings = await prober;
  await Promise.all(clients);
  return {
    point: {
      concurrency,
      rps: done / elapsed,
      latency: summarize(latencies.slice(0, done)),
      errors,
      serverCpuMsPerRequest: serverCpuMs / Math.max(1, done),
    },
    ...(pings === undefined ? {} : { ping: summarize(pings) }),
  };
}

interface RawResult {
  readonly label: string;
  readonly rps: number;
  readonly latency: Summary;
  /** Process CPU time per inference, ms. */
  readonly cpuMsPerRun: number;
}

/**
 * Raw in-process `session.run`, back to back, with no HTTP at all. One session is the ceiling: onnxruntime-node runs
 * `run` on the calling thread (in a setImmediate), so sessions in one thread never overlap.
 */
async function raw(seconds: number, threads: number): Promise<RawResult> {
  const session = await ort.InferenceSession.create(
    readFileSync(MOBILENET.path),
    onnxSessionOptions({ intraOpThreads: threads }),
  );
  const feeds = { [MOBILENET.inputName]: new ort.Tensor('float32', inputFor(MOBILENET), [...MOBILENET.shape]) };
  for (let i = 0; i < 10; i++) await session.run(feeds);
  const latencies: number[] = [];
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    const t = performance.now();
    await session.run(feeds);
    latencies.push(performance.now() - t);
  }
  const cpu = process.cpuUsage(cpuBefore);
  const rps = latencies.length / ((performance.now() - started) / 1000);
  await session.release();
  return {
    label: `${threads} intra-op thread${threads > 1 ? 's' : ''}`,
    rps,
    latency: summarize(latencies),
    cpuMsPerRun: (cpu.user + cpu.system) / 1000 / latencies.length,
  };
}

/** The raw ceiling: the faster of one session on every core and one on a single core (less contention). */
async function rawCeiling(seconds: number, cores: number): Promise<RawResult[]> {
  return [await raw(seconds, cores), await raw(seconds, 1)];
}

const fastest = (results: readonly RawResult[]): RawResult => results.reduce((a, b) => (b.rps > a.rps ? b : a));

export const container: Scenario = {
  name: 'container',
  description:
    'container server (2 worker threads) vs raw session.run on MobileNet; batching on/off; /ping while saturated',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const seconds = options.quick ? 1.5 : 4;
    const cores = availableParallelism();
    const loadBefore = loadavg()[0]!;
    const intra = String(Math.max(1, Math.floor(cores / WORKERS)));
    progress('raw session.run');
    const rawBefore = await rawCeiling(seconds, cores);

    const points: Point[] = [];
    let ping: Summary | undefined;
    const off = await startServer({ ARCLIGHT_MAX_BATCH_SIZE: '1', ARCLIGHT_INTRA_OP_THREADS: intra });
    try {
      for (const c of CONCURRENCY) {
        progress(`batching off, concurrency ${c}`);
        points.push((await load(off, c, seconds)).point);
      }
      progress('/ping while saturated');
      ping = (await load(off, BATCH_CONCURRENCY, seconds, 5)).ping;
    } finally {
      await off.stop();
    }
    const on = await startServer({
      ARCLIGHT_MAX_BATCH_SIZE: '8',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '2',
      ARCLIGHT_INTRA_OP_THREADS: intra,
    });
    let batched: Point;
    try {
      progress(`batching on, concurrency ${BATCH_CONCURRENCY}`);
      batched = (await load(on, BATCH_CONCURRENCY, seconds)).point;
    } finally {
      await on.stop();
    }
    // Raw again after the sweep: on a shared machine the best of the two is the fair (harder) ceiling.
    progress('raw session.run again');
    const rawAfter = await rawCeiling(seconds, cores);
    const rawResult = fastest([...rawBefore, ...rawAfter]);
    const rawCpuMs = Math.min(...[...rawBefore, ...rawAfter].map((r) => r.cpuMsPerRun));
    const unbatched = points.find((p) => p.concurrency === BATCH_CONCURRENCY)!;
    const peak = points.reduce((best, p) => (p.rps > best.rps ? p : best));
    const ratio = peak.rps / rawResult.rps;
    const pingP99 = ping?.p99Ms ?? Number.NaN;
    const leanest = points.reduce((best, p) => (p.serverCpuMsPerRequest < best.serverCpuMsPerRequest ? p : best));
    const cpuRatio = rawCpuMs / leanest.serverCpuMsPerRequest;

    const tables: Table[] = [
      {
        title: `Container server vs raw session.run — MobileNet v3 small, ${WORKERS} workers × ${intra} intra-op threads, ${cores} cores`,
        notes: [
          `raw: in-process session.run back to back, one session, the fastest of ${[...rawBefore, ...rawAfter].map((r) => `${r.label} ${r.rps.toFixed(1)}`).join(', ')} req/s (before and after the sweep): ${rawResult.rps.toFixed(1)} req/s, p50 ${formatMs(rawResult.latency.p50Ms)}, ${rawCpuMs.toFixed(2)} ms CPU per run at best`,
          'server: POST /invocations, OIP binary tensors, keep-alive, closed-loop clients in this process (they share the cores); batching off',
          "server CPU/req: the server process's CPU time (every thread) per answered request; the client's is not in it",
        ],
        columns: ['concurrency', 'req/s', 'ratio to raw', 'p50', 'p95 (≈p90)', 'p99', 'server CPU/req', 'errors'],
        rows: points.map((p) => [
          String(p.concurrency),
          p.rps.toFixed(1),
          formatRatio(p.rps / rawResult.rps),
          formatMs(p.latency.p50Ms),
          formatMs(p.latency.p90Ms),
          formatMs(p.latency.p99Ms),
          formatMs(p.serverCpuMsPerRequest),
          String(p.errors),
        ]),
      },
      {
        title: `Dynamic batching at concurrency ${BATCH_CONCURRENCY}`,
        notes: ['on: ARCLIGHT_MAX_BATCH_SIZE=8, ARCLIGHT_MAX_BATCH_DELAY_MS=2; off: ARCLIGHT_MAX_BATCH_SIZE=1'],
        columns: ['batching', 'req/s', 'p50', 'p90', 'p99', 'errors'],
        rows: [unbatched, batched].map((p, i) => [
          i === 0 ? 'off' : 'on',
          p.rps.toFixed(1),
          formatMs(p.latency.p50Ms),
          formatMs(p.latency.p90Ms),
          formatMs(p.latency.p99Ms),
          String(p.errors),
        ]),
      },
    ];
    const checks: Check[] = [
      {
        status: ratio >= TARGET_RATIO ? 'PASS' : 'FAIL',
        text: `peak throughput ${peak.rps.toFixed(1)} req/s at concurrency ${peak.concurrency} = ${formatRatio(ratio)} raw session.run (target ≥ ${TARGET_RATIO})`,
      },
      {
        status: 'INFO',
        text: `CPU per request: server ${formatMs(leanest.serverCpuMsPerRequest)} (at concurrency ${leanest.concurrency}) vs raw ${formatMs(rawCpuMs)} per run = ${formatRatio(cpuRatio)} — the throughput the server would reach vs raw if its clients were elsewhere`,
      },
      {
        status: 'INFO',
        text: `batching on vs off at concurrency ${BATCH_CONCURRENCY}: ${batched.rps.toFixed(1)} vs ${unbatched.rps.toFixed(1)} req/s; p90 ${formatMs(batched.latency.p90Ms)} vs ${formatMs(unbatched.latency.p90Ms)}`,
      },
      {
        status: pingP99 <= TARGET_PING_P99_MS ? 'PASS' : 'FAIL',
        text: `/ping p99 ${formatMs(pingP99)} while saturated at concurrency ${BATCH_CONCURRENCY}, probed every 5 ms from its own process (p50 ${formatMs(ping?.p50Ms ?? Number.NaN)}, n=${ping?.n ?? 0}; target ≤ ${TARGET_PING_P99_MS} ms)`,
      },
    ];
    agent.destroy();
    releaseServerContext();
    return {
      tables,
      checks,
      data: {
        cores,
        workers: WORKERS,
        intraOpThreadsPerWorker: Number(intra),
        loadAverage1m: { before: loadBefore, after: loadavg()[0] },
        raw: rawResult,
        rawBefore,
        rawAfter,
        points,
        batching: { concurrency: BATCH_CONCURRENCY, off: unbatched, on: batched },
        pingWhileSaturated: ping,
        peakRatio: ratio,
      },
    };
  },
};
