/**
 * A server under load, started as users start it (`node bin/arclight.js serve ...`, or the container main as its
 * Dockerfile runs it), with one addition: the test-only preload test/fixtures/process-probe.mjs, which reports the
 * server process's own memory and event-loop delay over IPC. stdout (the JSON logs) is read line by line and only
 * ERROR records are kept, so a long soak does not hold its logs in memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { REPO_ROOT, closedPort } from './helpers.js';

const PROBE = './test/fixtures/process-probe.mjs';
const CONTAINER_MAIN = 'lib/runtime/transports/container-main.ts';
const SERVING = /arclight: serving '[^']+' on (http:\/\/127\.0\.0\.1:\d+)\/ \(ready\)\n/;

/** What the probe reports: the server process's memory now, and its event-loop delay since the last reset. */
export interface ProbeSample {
  readonly rss: number;
  readonly heapUsed: number;
  readonly external: number;
  readonly arrayBuffers: number;
  /** Whether a full collection ran just before (asked for, and the process has --expose-gc). */
  readonly collected: boolean;
  readonly loopDelay: {
    readonly count: number;
    readonly p50Ms: number;
    readonly p99Ms: number;
    readonly maxMs: number;
    readonly meanMs: number;
  };
}

export interface ServedProcess {
  readonly url: string;
  readonly pid: number;
  /** Memory and event-loop delay now; `gc` collects the main thread's heap first. */
  sample(options?: { readonly gc?: boolean }): Promise<ProbeSample>;
  /** Restarts the event-loop delay histogram (after a warm-up). */
  resetLoopDelay(): Promise<void>;
  /** Log records at ERROR level so far. */
  errorRecords(): readonly string[];
  /** Every JSON log record so far, as written. */
  logRecords(): readonly string[];
  /** stdout lines that are not JSON log records (a crash, a stray print), and stderr. */
  output(): string;
  /** Whether the process has exited. */
  exited(): boolean;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

const STARTUP_TIMEOUT_MS = 60_000;
const PROBE_TIMEOUT_MS = 10_000;

/** `arclight serve <args> --port 0` with the probe; resolves once it prints that it is ready. */
export async function startServeCli(args: readonly string[]): Promise<ServedProcess> {
  const child = spawnWithProbe(['bin/arclight.js', 'serve', ...args, '--port', '0'], {});
  const url = await new Promise<string>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(
      () => fail(new Error(`not serving within ${STARTUP_TIMEOUT_MS} ms: ${seen}`)),
      STARTUP_TIMEOUT_MS,
    );
    const onData = (chunk: Buffer): void => {
      seen += chunk.toString();
      const match = SERVING.exec(seen);
      if (match) {
        clearTimeout(timer);
        child.stderr!.off('data', onData);
        child.off('exit', onExit);
        resolve(match[1]!);
      }
    };
    const onExit = (code: number | null): void => fail(new Error(`arclight serve exited (${code}): ${seen}`));
    const fail = (error: Error): void => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(error);
    };
    child.stderr!.on('data', onData);
    child.once('exit', onExit);
  });
  return served(child, url);
}

/** The container main (`node --import tsx lib/runtime/transports/container-main.ts`) with env; resolves once /ping is 200. */
export async function startContainerMain(env: Readonly<Record<string, string>>): Promise<ServedProcess> {
  const port = await closedPort();
  const child = spawnWithProbe(['--import', 'tsx', CONTAINER_MAIN], {
    ARCLIGHT_METRICS: 'off',
    SAGEMAKER_BIND_TO_PORT: String(port),
    ...env,
  });
  const handle = served(child, `http://127.0.0.1:${port}`);
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  for (;;) {
    if (handle.exited()) throw new Error(`the container main exited: ${handle.output()}`);
    const status = await fetch(`${handle.url}/ping`).then(
      async (response) => (await response.arrayBuffer(), response.status),
      () => 0,
    );
    if (status === 200) return handle;
    if (Date.now() > deadline) {
      await handle.stop(0);
      throw new Error(`the container main was not ready within ${STARTUP_TIMEOUT_MS} ms: ${handle.output()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function spawnWithProbe(args: readonly string[], env: Readonly<Record<string, string>>): ChildProcess {
  return spawn(process.execPath, ['--expose-gc', '--import', PROBE, ...args], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
}

function served(child: ChildProcess, url: string): ServedProcess {
  const errors: string[] = [];
  const records: string[] = [];
  let other = '';
  let partial = '';
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
    const lines = (partial + chunk).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (line.startsWith('{')) records.push(line);
      if (!line.startsWith('{')) other += `${line}\n`;
      else if (line.startsWith('{"level":"ERROR"')) errors.push(line);
    }
  });
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (other += chunk));
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  let nextProbe = 1;
  const ask = (op: 'sample' | 'reset', gc: boolean): Promise<ProbeSample> =>
    new Promise((resolve, reject) => {
      const id = nextProbe++;
      const timer = setTimeout(() => done(new Error(`the probe did not answer ${op} in time`)), PROBE_TIMEOUT_MS);
      const onMessage = (message: { probe?: number; sample?: ProbeSample }): void => {
        if (message.probe === id) done(undefined, message.sample);
      };
      const done = (error?: Error, sample?: ProbeSample): void => {
        clearTimeout(timer);
        child.off('message', onMessage);
        if (error) reject(error);
        else resolve(sample!);
      };
      child.on('message', onMessage);
      child.send({ probe: id, op, gc });
    });
  return {
    url,
    pid: child.pid!,
    sample: (options = {}) => ask('sample', options.gc === true),
    resetLoopDelay: async () => void (await ask('reset', false)),
    errorRecords: () => errors,
    logRecords: () => records,
    output: () => other,
    exited: () => child.exitCode !== null || child.signalCode !== null,
    async stop(graceMs = 5000) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
        const code = await exit;
        clearTimeout(timer);
        return code;
      }
      return exit;
    },
  };
}
