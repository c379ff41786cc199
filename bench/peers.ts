/**
 * Scenario `peers`: Arclight's container server and `arclight serve` beside what a user would write by hand — a
 * node:http + onnxruntime-node server and (when a Python with onnxruntime, fastapi and uvicorn is found) FastAPI +
 * uvicorn + onnxruntime — on MobileNet with a binary body (raw float32 for the peers, the OIP binary extension for
 * Arclight), load from a generator in its own process (bench/peers/load-generator.mjs), closed loop, keep-alive.
 * Per server and concurrency: req/s, p50/p99, and the server's CPU per request from /proc, split by thread role
 * (main thread, inference threads, the rest: V8's GC helpers, libuv), with its minor page faults per request; at
 * c=16, every server's `GET /ping` p99 from a prober of its own (what a health check meets on a busy endpoint). The
 * hand-written peer also runs a process per core (node:cluster), FastAPI's shape in Node.
 * CPU per request and faults do not move with the machine's load; req/s does, so ratios come from one run.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { freeLoopbackPort } from '../lib/cli/local/dev-container.js';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';
import { releaseServerContext, startServer as startContainerProcess } from './container.js';
import { SERVER_CPUS_ENV, pinServersFromEnv, type CpuPinning } from './cpu-pinning.js';
import { deployedNode } from './deployed-node.js';
import { MOBILENET, inputFor, oipBinaryBody } from './payloads.js';
import { cpuByRole, threadDelta, threadsOf, type ThreadCpu } from './proc-cpu.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatMs, formatRatio, median, summarize } from './stats.js';
import { barChart } from './svg.js';

const CONCURRENCY = [1, 4, 16] as const;
const TARGET_PEER_RATIO = 1.0;
const TARGET_CPU_RATIO = 1.1;
const TARGET_PING_P99_MS = 10;
/** Where every server's `GET /ping` is probed: saturated, as a health check meets a busy endpoint. */
const PING_CONCURRENCY = 16;
const PYTHON_ENV = 'ARCLIGHT_BENCH_PYTHON';

type Kind = 'hand-written' | 'fastapi' | 'container' | 'serve';

interface PeerConfig {
  readonly kind: Kind;
  readonly label: string;
  readonly workers: number;
  readonly threads: number;
  /** More environment for the server (the container server's logging and metrics as deployed). */
  readonly env?: Readonly<Record<string, string>>;
}

interface Running {
  readonly port: number;
  readonly pid: number;
  readonly path: string;
  readonly headers: Record<string, string>;
  readonly bodyFile: string;
  /** Threads that run inference (not the request path). */
  readonly isInference: (thread: ThreadCpu) => boolean;
  stop(): Promise<void>;
}

interface Point {
  readonly concurrency: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly errors: number;
  /** The server's CPU time per request sent (every thread of every process), ms. */
  readonly cpuMsPerRequest: number;
  readonly mainMsPerRequest: number;
  readonly inferenceMsPerRequest: number;
  readonly otherMsPerRequest: number;
  readonly minorFaultsPerRequest: number;
  readonly pingP99Ms?: number;
}

interface PeerResult {
  readonly config: PeerConfig;
  readonly points: readonly Point[];
}

const sleep = (ms: number): Promise<void> => new Promise((done) => setTimeout(done, ms));
const agent = new Agent({ keepAlive: true, maxSockets: 4 });

function get(port: number, path: string): Promise<number> {
  return new Promise((done) => {
    const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
      res.resume();
      res.once('end', () => done(res.statusCode ?? 0));
    });
    req.once('error', () => done(0));
    req.end();
  });
}

async function waitFor(port: number, path: string, child: ChildProcess, what: string): Promise<void> {
  const deadline = Date.now() + 90_000;
  while ((await get(port, path)) !== 200) {
    if (child.exitCode !== null) throw new Error(`${what} exited (${child.exitCode}) before it was ready`);
    if (Date.now() > deadline) throw new Error(`${what} was not ready within 90 s`);
    await sleep(100);
  }
}

/** Resolves when the child writes `line` on stdout (then reads the rest away, so the pipe never fills). */
function waitForLine(child: ChildProcess, line: string, what: string): Promise<void> {
  return new Promise((ready, fail) => {
    let seen = '';
    const onExit = (code: number | null): void => fail(new Error(`${what} exited (${code}) before it was ready`));
    child.once('exit', onExit);
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
      seen += chunk;
      if (seen.split('\n').includes(line)) {
        child.off('exit', onExit);
        ready();
      }
    });
  });
}

function stopper(child: ChildProcess): () => Promise<void> {
  const exited = new Promise<void>((done) => child.once('exit', () => done()));
  return async () => {
    if (child.exitCode === null) child.kill('SIGTERM');
    await exited;
  };
}

/** A Python that can run the FastAPI peer: $ARCLIGHT_BENCH_PYTHON, else python3; undefined (and why) otherwise. */
export function findPeerPython(): { python?: string; why?: string } {
  const candidates = [process.env[PYTHON_ENV], 'python3'].filter((c): c is string => !!c);
  for (const python of candidates) {
    const probe = spawnSync(python, ['-c', 'import onnxruntime, fastapi, uvicorn, numpy'], { encoding: 'utf8' });
    if (probe.status === 0) return { python };
  }
  return {
    why: `no Python with onnxruntime, fastapi, uvicorn and numpy (tried ${candidates.join(', ')}); set ${PYTHON_ENV} to one, e.g. a venv: python3 -m venv /tmp/v && /tmp/v/bin/pip install onnxruntime fastapi uvicorn numpy`,
  };
}

interface Bodies {
  readonly raw: string;
  readonly oip: string;
  readonly oipHeaders: Record<string, string>;
}

function writeBodies(dir: string): Bodies {
  const data = inputFor(MOBILENET);
  const raw = join(dir, 'raw.bin');
  writeFileSync(raw, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
  const { body, headers } = oipBinaryBody(MOBILENET, data);
  const oip = join(dir, 'oip.bin');
  writeFileSync(oip, body);
  return { raw, oip, oipHeaders: headers };
}

const PEER_DIR = fileURLToPath(new URL('./peers/', import.meta.url));

async function start(config: PeerConfig, bodies: Bodies, python: string | undefined): Promise<Running> {
  const model = resolve(MOBILENET.path);
  const rawHeaders = { 'content-type': 'application/octet-stream' };
  const everyThreadInfers = (): boolean => true;
  switch (config.kind) {
    case 'hand-written': {
      const port = await freeLoopbackPort();
      const processes = config.workers;
      const script = processes > 1 ? 'hand-written-cluster.mjs' : 'hand-written-server.mjs';
      const child = spawn(deployedNode().execPath, [join(PEER_DIR, script)], {
        env: {
          ...process.env,
          PORT: String(port),
          MODEL: model,
          INPUT_NAME: MOBILENET.inputName,
          SHAPE: MOBILENET.shape.join(','),
          THREADS: String(config.threads),
          PROCESSES: String(processes),
        },
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      // The port answers once the first process listens; the cluster says when every one does.
      await Promise.all([
        waitForLine(child, 'listening', 'the hand-written server'),
        waitFor(port, '/', child, 'the hand-written server'),
      ]);
      // One thread does HTTP and inference: its main thread's CPU is counted as inference.
      return {
        port,
        pid: child.pid!,
        path: '/',
        headers: rawHeaders,
        bodyFile: bodies.raw,
        isInference: everyThreadInfers,
        stop: stopper(child),
      };
    }
    case 'fastapi': {
      const port = await freeLoopbackPort();
      const child = spawn(
        python!,
        [
          '-m',
          'uvicorn',
          'fastapi_server:app',
          '--app-dir',
          PEER_DIR,
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          '--workers',
          String(config.workers),
          '--log-level',
          'warning',
          '--no-access-log',
        ],
        {
          env: {
            ...process.env,
            MODEL: model,
            INPUT_NAME: MOBILENET.inputName,
            SHAPE: MOBILENET.shape.join(','),
            THREADS: String(config.threads),
            OMP_NUM_THREADS: String(config.threads),
          },
          stdio: 'ignore',
        },
      );
      await waitFor(port, '/ping', child, 'the FastAPI server');
      return {
        port,
        pid: child.pid!,
        path: '/',
        headers: rawHeaders,
        bodyFile: bodies.raw,
        isInference: everyThreadInfers,
        stop: stopper(child),
      };
    }
    case 'container': {
      const server = await startContainerProcess({
        ARCLIGHT_MAX_BATCH_SIZE: '1',
        ...(config.workers > 0 ? { ARCLIGHT_WORKERS: String(config.workers) } : {}),
        ...(config.threads > 0 ? { ARCLIGHT_INTRA_OP_THREADS: String(config.threads) } : {}),
        ...config.env,
      });
      return {
        port: server.port,
        pid: server.child.pid!,
        path: '/invocations',
        headers: bodies.oipHeaders,
        bodyFile: bodies.oip,
        // The workers (and onnxruntime's threads they start) run at nice +10; the server's threads at 0.
        isInference: (t) => t.nice > 0,
        stop: () => server.stop(),
      };
    }
    case 'serve': {
      const cli = resolve('dist/cli/main.js');
      if (!existsSync(cli)) throw new Error('arclight serve runs from dist/: run `npm run build` first');
      const port = await freeLoopbackPort();
      const child = spawn(
        deployedNode().execPath,
        [
          resolve('bin/arclight.js'),
          'serve',
          '--model',
          model,
          '--name',
          'mobilenet',
          '--host',
          '127.0.0.1',
          '--port',
          String(port),
          ...(config.threads > 0 ? ['--threads', String(config.threads)] : []),
          '--log-level',
          'WARN',
          // -1: serve's own default engine.
          ...(config.workers >= 0 ? ['--workers', String(config.workers)] : []),
        ],
        { env: process.env, stdio: 'ignore' },
      );
      await waitFor(port, '/v2/health/ready', child, 'arclight serve');
      return {
        port,
        pid: child.pid!,
        path: '/',
        headers: bodies.oipHeaders,
        bodyFile: bodies.oip,
        isInference: config.workers !== 0 ? (t) => t.nice > 0 : everyThreadInfers,
        stop: stopper(child),
      };
    }
  }
}

interface LoadResult {
  readonly answered: number;
  readonly sent: number;
  readonly errors: number;
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
}

/** How the load generator and the prober are started: on the CPUs the servers do not have, when pinned. */
type Launch = (command: string, args: readonly string[]) => [string, string[]];

const unpinned: Launch = (command, args) => [command, [...args]];

function runLoadGenerator(running: Running, concurrency: number, seconds: number, launch: Launch): Promise<LoadResult> {
  const spec = {
    port: running.port,
    path: running.path,
    headers: running.headers,
    bodyFile: running.bodyFile,
    concurrency,
    seconds,
    warmupSeconds: Math.min(1, seconds / 2),
  };
  const child = spawn(...launch(process.execPath, [join(PEER_DIR, 'load-generator.mjs'), JSON.stringify(spec)]), {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  return new Promise((done, fail) =>
    child.once('exit', (code) => {
      if (code !== 0) fail(new Error(`the load generator exited ${code}`));
      else done(JSON.parse(output) as LoadResult);
    }),
  );
}

async function probePing(port: number, durationMs: number, launch: Launch): Promise<number> {
  const script = fileURLToPath(new URL('./health-prober.mjs', import.meta.url));
  const child = spawn(...launch(process.execPath, [script, String(port), '5', String(durationMs)]), {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
  await new Promise((done) => child.once('exit', done));
  const result = JSON.parse(output || 'null') as { latencies: number[] } | null;
  return result ? summarize(result.latencies).p99Ms : Number.NaN;
}

async function measure(
  running: Running,
  concurrency: number,
  seconds: number,
  ping: boolean,
  launch: Launch,
): Promise<Point> {
  const before = threadsOf(running.pid);
  const pinging = ping ? probePing(running.port, seconds * 1000, launch) : undefined;
  const load = await runLoadGenerator(running, concurrency, seconds, launch);
  const roles = cpuByRole(threadDelta(before, threadsOf(running.pid)), running.pid, running.isInference);
  const per = (value: number): number => value / Math.max(1, load.sent);
  const pingP99Ms = await pinging;
  return {
    concurrency,
    rps: load.rps,
    p50Ms: load.p50Ms,
    p99Ms: load.p99Ms,
    errors: load.errors,
    cpuMsPerRequest: per(roles.totalMs),
    mainMsPerRequest: per(roles.mainMs),
    inferenceMsPerRequest: per(roles.inferenceMs),
    otherMsPerRequest: per(roles.otherMs),
    minorFaultsPerRequest: per(roles.minorFaults),
    ...(pingP99Ms === undefined ? {} : { pingP99Ms }),
  };
}

/** Raw in-process `session.run` back to back: CPU per run (this process does nothing else meanwhile) and runs/s. */
async function raw(threads: number, seconds: number): Promise<{ threads: number; rps: number; cpuMsPerRun: number }> {
  const session = await ort.InferenceSession.create(
    readFileSync(MOBILENET.path),
    onnxSessionOptions({ intraOpThreads: threads }),
  );
  const feeds = { [MOBILENET.inputName]: new ort.Tensor('float32', inputFor(MOBILENET), [...MOBILENET.shape]) };
  for (let i = 0; i < 10; i++) await session.run(feeds);
  let runs = 0;
  const cpu = process.cpuUsage();
  const started = performance.now();
  while (performance.now() - started < seconds * 1000) {
    await session.run(feeds);
    runs++;
  }
  const used = process.cpuUsage(cpu);
  const rps = runs / ((performance.now() - started) / 1000);
  await session.release();
  return { threads, rps, cpuMsPerRun: (used.user + used.system) / 1000 / runs };
}

/**
 * Raw `session.run` in `sessions` worker threads at once (1 intra-op thread each), plain onnxruntime-node, no server:
 * the floor for a server that runs that many inferences side by side, since concurrent runs slow each other on
 * shared caches and memory bandwidth. CPU per run is the process's CPU over every thread's runs.
 */
async function rawParallel(
  sessions: number,
  seconds: number,
): Promise<{ sessions: number; rps: number; cpuMsPerRun: number }> {
  const source = `
    const { parentPort, workerData } = require('node:worker_threads');
    const ort = require(workerData.ort);
    (async () => {
      const session = await ort.InferenceSession.create(workerData.model, { intraOpNumThreads: 1, interOpNumThreads: 1, executionMode: 'sequential' });
      const data = new Float32Array(workerData.size).fill(0.5);
      const feeds = { [workerData.input]: new ort.Tensor('float32', data, workerData.shape) };
      for (let i = 0; i < 10; i++) await session.run(feeds);
      parentPort.postMessage('ready');
      await new Promise((go) => parentPort.once('message', go));
      let runs = 0;
      const until = Date.now() + workerData.ms;
      while (Date.now() < until) { await session.run(feeds); runs++; }
      parentPort.postMessage(runs);
    })();`;
  const { Worker } = await import('node:worker_threads');
  const { createRequire } = await import('node:module');
  const workerData = {
    ort: createRequire(import.meta.url).resolve('onnxruntime-node'),
    model: resolve(MOBILENET.path),
    input: MOBILENET.inputName,
    shape: [...MOBILENET.shape],
    size: MOBILENET.shape.reduce((a, b) => a * b, 1),
    ms: seconds * 1000,
  };
  const workers = Array.from({ length: sessions }, () => new Worker(source, { eval: true, workerData }));
  await Promise.all(workers.map((w) => new Promise((ready) => w.once('message', ready))));
  const cpu = process.cpuUsage();
  const started = performance.now();
  const finished = workers.map((w) => new Promise<number>((done) => w.once('message', done)));
  for (const w of workers) w.postMessage('go');
  const runs = (await Promise.all(finished)).reduce((a, b) => a + b, 0);
  const used = process.cpuUsage(cpu);
  const elapsed = (performance.now() - started) / 1000;
  await Promise.all(workers.map((w) => w.terminate()));
  return { sessions, rps: runs / elapsed, cpuMsPerRun: (used.user + used.system) / 1000 / runs };
}

function configs(python: string | undefined, cores: number): PeerConfig[] {
  const threads = (n: number): string => `${n} thread${n === 1 ? '' : 's'}`;
  const workers = (n: number): string => `${n} worker${n === 1 ? '' : 's'}`;
  const list: PeerConfig[] = [
    { kind: 'hand-written', label: `hand-written node:http, 1 × ${threads(cores)}`, workers: 1, threads: cores },
    { kind: 'hand-written', label: 'hand-written node:http, 1 × 1 thread', workers: 1, threads: 1 },
  ];
  // FastAPI's shape in Node: a process per core, each parsing and running inference on its one thread.
  if (cores > 1) {
    list.push({
      kind: 'hand-written',
      label: `hand-written node:http, ${cores} processes × 1 thread (node:cluster)`,
      workers: cores,
      threads: 1,
    });
  }
  if (python) {
    list.push(
      { kind: 'fastapi', label: `FastAPI + uvicorn, ${workers(cores)} × 1 thread`, workers: cores, threads: 1 },
      { kind: 'fastapi', label: `FastAPI + uvicorn, 1 worker × ${threads(cores)}`, workers: 1, threads: cores },
    );
  }
  list.push(
    { kind: 'container', label: `container server, ${workers(cores)} × 1 thread`, workers: cores, threads: 1 },
    { kind: 'container', label: 'container server, defaults', workers: 0, threads: 0 },
    {
      kind: 'container',
      label: 'container server, defaults, as deployed (INFO request log, EMF metrics)',
      workers: 0,
      threads: 0,
      env: { ARCLIGHT_LOG_LEVEL: 'INFO', ARCLIGHT_METRICS: 'on' },
    },
    // Worker sessions do not spin-wait (onnx-worker.ts): one worker with every core is a fair candidate again.
    { kind: 'container', label: `container server, 1 worker × ${threads(cores)}`, workers: 1, threads: cores },
    { kind: 'serve', label: 'arclight serve, defaults (worker threads)', workers: -1, threads: 0 },
    { kind: 'serve', label: `arclight serve --workers 0 (in-process, ${threads(cores)})`, workers: 0, threads: cores },
  );
  // On one core, `1 × cores threads` and `1 × 1 thread` are the same server: each runs once.
  const key = (c: PeerConfig): string => JSON.stringify([c.kind, c.workers, c.threads, c.env ?? {}]);
  return list.filter((config, i) => list.findIndex((other) => key(other) === key(config)) === i);
}

const peak = (result: PeerResult): Point => result.points.reduce((a, b) => (b.rps > a.rps ? b : a));

export const peers: Scenario = {
  name: 'peers',
  description:
    'container server and serve vs a hand-written node:http server and FastAPI (when found), MobileNet binary bodies',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    // Rounds, each configuration once per round in a rotated order, medians over rounds: run one after another, a
    // configuration alone caught whatever the host was doing then (one FastAPI point moved 37% between two runs).
    const rounds = options.quick ? 1 : 3;
    const seconds = options.quick ? 1.5 : 3;
    // Pinned first: availableParallelism() then counts the servers' CPUs, and the servers started inherit them.
    const pinning = pinServersFromEnv();
    const launch = pinning ? pinning.onLoadCpus : unpinned;
    const cores = availableParallelism();
    const loadBefore = loadavg()[0]!;
    const { python, why } = findPeerPython();
    const dir = mkdtempSync(join(tmpdir(), 'arclight-peers-'));
    const bodies = writeBodies(dir);
    const list = configs(python, cores);
    const points = list.map(() => CONCURRENCY.map((): Point[] => []));
    const rawRuns: RawRun[] = [];
    try {
      for (let round = 0; round < rounds; round++) {
        const tag = rounds > 1 ? `round ${round + 1}/${rounds}: ` : '';
        progress(`${tag}raw session.run`);
        rawRuns.push({
          one: await raw(1, seconds),
          all: await raw(cores, seconds),
          sideBySide: await rawParallel(cores, seconds),
        });
        for (let k = 0; k < list.length; k++) {
          const index = (round + k) % list.length;
          const config = list[index]!;
          progress(`${tag}${config.label}: starting`);
          const running = await start(config, bodies, python);
          try {
            for (const [i, c] of CONCURRENCY.entries()) {
              progress(`${tag}${config.label}: concurrency ${c}`);
              points[index]![i]!.push(await measure(running, c, seconds, c === PING_CONCURRENCY, launch));
            }
          } finally {
            await running.stop();
          }
        }
      }
    } finally {
      pinning?.release();
      releaseServerContext();
      agent.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
    const results: PeerResult[] = list.map((config, i) => ({ config, points: points[i]!.map(medianPoint) }));
    const rawOne = medianRaw(rawRuns.map((r) => r.one));
    const raws = [rawOne, medianRaw(rawRuns.map((r) => r.all))];
    const rawSideBySide = medianRaw(rawRuns.map((r) => r.sideBySide));
    return report(results, raws, rawOne, rawSideBySide, {
      cores,
      loadBefore,
      python,
      why,
      seconds,
      rounds,
      pinning,
    });
  },
};

interface RawRun {
  readonly one: { threads: number; rps: number; cpuMsPerRun: number };
  readonly all: { threads: number; rps: number; cpuMsPerRun: number };
  readonly sideBySide: { sessions: number; rps: number; cpuMsPerRun: number };
}

/** Each field's median over rounds (the ping's only when every round probed it). */
function medianPoint(rounds: readonly Point[]): Point {
  const of = (pick: (p: Point) => number): number => median(rounds.map(pick));
  const pings = rounds.map((p) => p.pingP99Ms).filter((v): v is number => v !== undefined);
  return {
    concurrency: rounds[0]!.concurrency,
    rps: of((p) => p.rps),
    p50Ms: of((p) => p.p50Ms),
    p99Ms: of((p) => p.p99Ms),
    errors: rounds.reduce((sum, p) => sum + p.errors, 0),
    cpuMsPerRequest: of((p) => p.cpuMsPerRequest),
    mainMsPerRequest: of((p) => p.mainMsPerRequest),
    inferenceMsPerRequest: of((p) => p.inferenceMsPerRequest),
    otherMsPerRequest: of((p) => p.otherMsPerRequest),
    minorFaultsPerRequest: of((p) => p.minorFaultsPerRequest),
    ...(pings.length === rounds.length ? { pingP99Ms: median(pings) } : {}),
  };
}

/** A raw measurement's runs/s and CPU per run as medians over rounds (its other fields are the same every round). */
function medianRaw<T extends { readonly rps: number; readonly cpuMsPerRun: number }>(runs: readonly T[]): T {
  return {
    ...runs[0]!,
    rps: median(runs.map((r) => r.rps)),
    cpuMsPerRun: median(runs.map((r) => r.cpuMsPerRun)),
  };
}

function report(
  results: readonly PeerResult[],
  raws: readonly { threads: number; rps: number; cpuMsPerRun: number }[],
  rawOne: { rps: number; cpuMsPerRun: number },
  rawSideBySide: { sessions: number; rps: number; cpuMsPerRun: number },
  run: {
    cores: number;
    loadBefore: number;
    python?: string;
    why?: string;
    seconds: number;
    rounds: number;
    pinning?: CpuPinning;
  },
): ScenarioReport {
  const best = (kind: Kind, which: (r: PeerResult) => boolean = () => true): PeerResult | undefined =>
    results
      .filter((r) => r.config.kind === kind && which(r))
      .reduce<PeerResult | undefined>((a, b) => {
        if (!a) return b;
        return peak(b).rps > peak(a).rps ? b : a;
      }, undefined);
  const container = best('container')!;
  // The issue's peer is one node:http process; one process per core is reported beside it, /ping included.
  const handWritten = best('hand-written', (r) => r.config.workers === 1)!;
  const handWrittenCluster = best('hand-written', (r) => r.config.workers > 1);
  const fastapi = best('fastapi');
  const serveResult = best('serve');
  const leanest = container.points.reduce((a, b) => (b.cpuMsPerRequest < a.cpuMsPerRequest ? b : a));
  const pingOf = (r: PeerResult): number => r.points.find((p) => p.pingP99Ms !== undefined)?.pingP99Ms ?? Number.NaN;
  const pingP99 = Math.max(...results.filter((r) => r.config.kind === 'container').map(pingOf));

  const table: Table = {
    title: `Peers — MobileNet v3 small, binary bodies, ${run.cores} cores, ${run.seconds} s per point, medians of ${run.rounds} round(s)`,
    notes: [
      `Node processes (the hand-written server, the container server, serve): Node ${deployedNode().version}, as the images run; raw session.run in this process (Node ${process.version}).`,
      'load: closed-loop keep-alive clients in a process of their own (bench/peers/load-generator.mjs)',
      run.pinning
        ? `pinned (${SERVER_CPUS_ENV}): servers and raw session.run on CPU ${run.pinning.serverCpus}, the load generator and the prober on CPU ${run.pinning.loadCpus}`
        : 'not pinned: servers, load generator and prober share every CPU',
      `rounds: each round measures raw session.run, then every server in an order rotated by one; every figure is the median over ${run.rounds} round(s), errors summed`,
      'CPU/req: the server processes’ CPU time (every thread, from /proc) ÷ requests sent; main: the thread that reads sockets; inference: worker + onnxruntime threads (nice +10) — for single-threaded servers everything; other: V8 GC helpers, libuv',
      `raw session.run: ${raws.map((r) => `${r.threads} thread${r.threads > 1 ? 's' : ''} ${r.rps.toFixed(1)} runs/s, ${r.cpuMsPerRun.toFixed(2)} ms CPU/run`).join('; ')}; ${rawSideBySide.sessions} sessions × 1 thread side by side ${rawSideBySide.rps.toFixed(1)} runs/s, ${rawSideBySide.cpuMsPerRun.toFixed(2)} ms CPU/run`,
      ...(run.why ? [`FastAPI peer skipped: ${run.why}`] : [`FastAPI peer: ${run.python}`]),
    ],
    columns: [
      'server',
      'c',
      'req/s',
      'p50',
      'p99',
      '/ping p99',
      'CPU/req',
      'main',
      'inference',
      'other',
      'faults/req',
      'errors',
    ],
    rows: results.flatMap((r) => [
      ...r.points.map((p) => [
        r.config.label,
        String(p.concurrency),
        p.rps.toFixed(1),
        formatMs(p.p50Ms),
        formatMs(p.p99Ms),
        p.pingP99Ms === undefined ? '' : formatMs(p.pingP99Ms),
        formatMs(p.cpuMsPerRequest),
        formatMs(p.mainMsPerRequest),
        formatMs(p.inferenceMsPerRequest),
        formatMs(p.otherMsPerRequest),
        p.minorFaultsPerRequest.toFixed(0),
        String(p.errors),
      ]),
      [],
    ]),
  };
  const peakOf = (r: PeerResult): string => `${peak(r).rps.toFixed(1)} req/s (c=${peak(r).concurrency})`;
  const ratio = (a: PeerResult, b: PeerResult): number => peak(a).rps / peak(b).rps;
  const checks: Check[] = [
    {
      status: ratio(container, handWritten) >= TARGET_PEER_RATIO ? 'PASS' : 'FAIL',
      text: `container ÷ hand-written: ${formatRatio(ratio(container, handWritten))} (${container.config.label} ${peakOf(container)} vs ${handWritten.config.label} ${peakOf(handWritten)}; target ≥ ${TARGET_PEER_RATIO})`,
    },
    fastapi
      ? {
          status: ratio(container, fastapi) >= TARGET_PEER_RATIO ? 'PASS' : 'FAIL',
          text: `container ÷ best FastAPI: ${formatRatio(ratio(container, fastapi))} (${peakOf(container)} vs ${fastapi.config.label} ${peakOf(fastapi)}, whose /ping p99 at c=${PING_CONCURRENCY} is ${formatMs(pingOf(fastapi))}; target ≥ ${TARGET_PEER_RATIO})`,
        }
      : { status: 'INFO', text: `container ÷ best FastAPI: not measured — ${run.why}` },
    {
      status: leanest.cpuMsPerRequest / rawOne.cpuMsPerRun <= TARGET_CPU_RATIO ? 'PASS' : 'FAIL',
      text: `container CPU/request ÷ raw session.run (1 thread): ${formatRatio(leanest.cpuMsPerRequest / rawOne.cpuMsPerRun)} (${formatMs(leanest.cpuMsPerRequest)} at c=${leanest.concurrency}: main ${formatMs(leanest.mainMsPerRequest)}, inference ${formatMs(leanest.inferenceMsPerRequest)}, other ${formatMs(leanest.otherMsPerRequest)}; raw ${formatMs(rawOne.cpuMsPerRun)}; target ≤ ${TARGET_CPU_RATIO})`,
    },
    {
      status: 'INFO',
      text: `container CPU/request ÷ raw session.run with ${rawSideBySide.sessions} sessions side by side (the floor for ${rawSideBySide.sessions} workers, which slow each other): ${formatRatio(leanest.cpuMsPerRequest / rawSideBySide.cpuMsPerRun)} (raw ${formatMs(rawSideBySide.cpuMsPerRun)}, ${rawSideBySide.rps.toFixed(1)} runs/s; the server's throughput ÷ that: ${formatRatio(peak(container).rps / rawSideBySide.rps)})`,
    },
    {
      status: pingP99 <= TARGET_PING_P99_MS ? 'PASS' : 'FAIL',
      text: `/ping p99 ${formatMs(pingP99)} while the container server is saturated at c=${PING_CONCURRENCY} (its worst configuration), probed every 5 ms from its own process (target ≤ ${TARGET_PING_P99_MS} ms)`,
    },
    ...(handWrittenCluster
      ? [
          {
            status: 'INFO' as const,
            text: `container ÷ ${handWrittenCluster.config.label}: ${formatRatio(ratio(container, handWrittenCluster))} (${peakOf(handWrittenCluster)}, /ping p99 ${formatMs(pingOf(handWrittenCluster))} vs the container's ${formatMs(pingOf(container))}): a process that parses and runs inference on one thread answers /ping only between runs`,
          },
        ]
      : []),
    ...(serveResult
      ? [
          {
            status: 'INFO' as const,
            text: `serve ÷ container: ${formatRatio(ratio(serveResult, container))} (${serveResult.config.label} ${peakOf(serveResult)})`,
          },
        ]
      : []),
  ];
  const svg = barChart(
    CONCURRENCY.map((c) => ({
      title: `concurrency ${c}: req/s`,
      bars: results.map((r) => ({
        label: r.config.label,
        value: r.points.find((p) => p.concurrency === c)?.rps ?? 0,
        baseline: r === handWritten,
      })),
    })),
    {
      title: 'Peers: MobileNet v3 small, binary bodies (req/s, higher is better)',
      subtitle: `${run.cores} cores; load from its own process; hand-written node:http highlighted`,
      format: (v) => v.toFixed(1),
    },
  );
  return {
    tables: [table],
    checks,
    svg,
    data: {
      cores: run.cores,
      pinning: run.pinning ? { serverCpus: run.pinning.serverCpus, loadCpus: run.pinning.loadCpus } : undefined,
      rounds: run.rounds,
      secondsPerPoint: run.seconds,
      loadAverage1m: { before: run.loadBefore, after: loadavg()[0] },
      raw: raws,
      rawSideBySide,
      fastapi: run.python ? { python: run.python } : { skipped: run.why },
      results,
    },
  };
}
