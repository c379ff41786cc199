/**
 * Measurements run in a child process whose stdout goes to the null device: the runtime's per-request log
 * lines are still formatted and written (their cost is measured), yet nothing floods the terminal.
 * The child reports progress and its result over IPC; its stderr stays on the terminal so a crash is seen.
 */
import { fork } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { devNull } from 'node:os';
import { fileURLToPath } from 'node:url';

type Message =
  { type: 'progress'; text: string } | { type: 'result'; value: unknown } | { type: 'error'; error: string };

/** Environment variables that would change the runtime logger's level or format under the benchmark. */
const LOGGER_OVERRIDES = [
  'POWERTOOLS_DEV',
  'POWERTOOLS_LOG_LEVEL',
  'LOG_LEVEL',
  'AWS_LAMBDA_LOG_LEVEL',
  'POWERTOOLS_LOGGER_SAMPLE_RATE',
  'POWERTOOLS_LOGGER_LOG_EVENT',
];

/**
 * Runs `workerUrl` (a module that calls `serveWorker`, or plain JavaScript speaking its protocol) in a child process
 * and resolves with what it returns. `plain`: no tsx loader (a JavaScript worker, timed as production runs it);
 * `execPath`: the Node binary to run it in (default: this one).
 */
export function runInChild<I, O>(
  workerUrl: URL,
  input: I,
  progress: (text: string) => void,
  options: { readonly plain?: boolean; readonly env?: Record<string, string>; readonly execPath?: string } = {},
): Promise<O> {
  const env = {
    ...Object.fromEntries(Object.entries(process.env).filter(([name]) => !LOGGER_OVERRIDES.includes(name))),
    ...options.env,
  };
  const stdout = openSync(devNull, 'w');
  const child = fork(fileURLToPath(workerUrl), [JSON.stringify(input)], {
    execArgv: options.plain ? [] : ['--import', import.meta.resolve('tsx')],
    // Another Node than this one (the version Lambda runs), when given.
    ...(options.execPath ? { execPath: options.execPath } : {}),
    stdio: ['ignore', stdout, 'inherit', 'ipc'],
    env,
  });
  closeSync(stdout);
  return new Promise<O>((resolve, reject) => {
    let settled = false;
    child.on('message', (message: Message) => {
      if (message.type === 'progress') progress(message.text);
      else if (message.type === 'result') {
        settled = true;
        resolve(message.value as O);
      } else {
        settled = true;
        reject(new Error(message.error));
      }
    });
    child.on('error', (error) => {
      if (!settled) reject(error);
      settled = true;
    });
    child.on('exit', (code, signal) => {
      if (!settled) reject(new Error(`benchmark worker exited (${signal ?? `code ${code}`}) before reporting`));
      settled = true;
    });
  });
}

/** The child's side: runs `work` on the parent's input and reports its result (or its failure), then exits. */
export function serveWorker<I, O>(work: (input: I, progress: (text: string) => void) => Promise<O>): void {
  const send = (message: Message): Promise<void> =>
    new Promise((resolve) => {
      if (!process.send) throw new Error('this module runs as a benchmark worker under bench/index.ts');
      process.send(message, undefined, {}, () => resolve());
    });
  const input = JSON.parse(process.argv[2] ?? 'null') as I;
  work(input, (text) => void send({ type: 'progress', text }))
    .then((value) => send({ type: 'result', value }))
    .catch((error: unknown) =>
      send({ type: 'error', error: error instanceof Error ? (error.stack ?? error.message) : String(error) }),
    )
    .finally(() => process.exit(0));
}
