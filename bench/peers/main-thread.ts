/**
 * One container server under load, its CPU per request split by thread role: the quick side-by-side measure behind
 * the main-thread work (`npx tsx bench/peers/main-thread.ts [--cpu-prof dir] [c] [seconds]`, env passes through:
 * ARCLIGHT_LOG_LEVEL=INFO to count the per-request log line, NODE_OPTIONS to try other V8 flags than the image's;
 * `--trace-gc` counts scavenges and mark-compacts per request). Server from dist/ (run `npm run build` first), or
 * `--server <container-main.js>` of another build, for a side-by-side comparison.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeLoopbackPort } from '../../lib/cli/local/dev-container.js';
import { CONTAINER_NODE_OPTIONS } from '../../lib/constructs/images/container-image-context.js';
import { MOBILENET, inputFor, oipBinaryBody } from '../payloads.js';
import { deployedNode } from '../deployed-node.js';
import { cpuByRole, threadDelta, threadsOf } from '../proc-cpu.js';

const args = process.argv.slice(2);
const profIndex = args.indexOf('--cpu-prof');
const profDir = profIndex >= 0 ? args.splice(profIndex, 2)[1] : undefined;
// --trace-gc: count the server's scavenges and mark-compacts per request (V8's own trace, read from its stdout).
const traceGcIndex = args.indexOf('--trace-gc');
const traceGc = traceGcIndex >= 0 && args.splice(traceGcIndex, 1).length > 0;
// Another build's container main (e.g. a worktree of main, built) for a side-by-side run.
const serverIndex = args.indexOf('--server');
const serverFile = serverIndex >= 0 ? args.splice(serverIndex, 2)[1]! : 'dist/runtime/transports/container-main.js';
const concurrency = Number(args[0] ?? 4);
const seconds = Number(args[1] ?? 5);
const port = await freeLoopbackPort();
const dir = mkdtempSync(join(tmpdir(), 'arclight-mt-'));
const { body, headers } = oipBinaryBody(MOBILENET, inputFor(MOBILENET));
const bodyFile = join(dir, 'oip.bin');
writeFileSync(bodyFile, body);
const child = spawn(
  deployedNode().execPath,
  [
    ...(profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : []),
    ...(traceGc ? ['--trace-gc'] : []),
    resolve(serverFile),
  ],
  {
    env: {
      ARCLIGHT_API_NAME: 'mobilenet',
      ARCLIGHT_MODEL_URI: resolve(MOBILENET.path),
      ARCLIGHT_METRICS: 'off',
      ARCLIGHT_WORKERS: '2',
      ARCLIGHT_INTRA_OP_THREADS: '1',
      ARCLIGHT_MAX_BATCH_SIZE: '1',
      ARCLIGHT_LOG_LEVEL: 'WARN',
      NODE_OPTIONS: CONTAINER_NODE_OPTIONS,
      ...process.env,
      SAGEMAKER_BIND_TO_PORT: String(port),
    },
    stdio: ['ignore', traceGc ? 'pipe' : 'ignore', 'inherit'],
  },
);
const gcLines: string[] = [];
child.stdout?.setEncoding('utf8').on('data', (chunk: string) => gcLines.push(...chunk.split('\n')));
for (;;) {
  const ok = await fetch(`http://127.0.0.1:${port}/ping`).then(
    (r) => r.status === 200,
    () => false,
  );
  if (ok) break;
  await new Promise((r) => setTimeout(r, 100));
}
const before = threadsOf(child.pid!);
const gcLinesBefore = gcLines.length;
const generator = spawn(
  process.execPath,
  [
    fileURLToPath(new URL('./load-generator.mjs', import.meta.url)),
    JSON.stringify({ port, path: '/invocations', headers, bodyFile, concurrency, seconds, warmupSeconds: 1 }),
  ],
  { stdio: ['ignore', 'pipe', 'inherit'] },
);
let out = '';
generator.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
await new Promise((r) => generator.once('exit', r));
const load = JSON.parse(out) as { sent: number; rps: number; errors: number };
const roles = cpuByRole(threadDelta(before, threadsOf(child.pid!)), child.pid!, (t) => t.nice > 0);
const per = (v: number): string => (v / load.sent).toFixed(3);
console.log(
  JSON.stringify({
    sent: load.sent,
    rps: Math.round(load.rps * 10) / 10,
    errors: load.errors,
    mainMsPerReq: per(roles.mainMs),
    mainSysMsPerReq: per(roles.mainSysMs),
    inferenceMsPerReq: per(roles.inferenceMs),
    otherMsPerReq: per(roles.otherMs),
    totalMsPerReq: per(roles.totalMs),
    minorFaultsPerReq: per(roles.minorFaults),
    ...(traceGc ? gcPerRequest(gcLines.slice(gcLinesBefore), load.sent) : {}),
  }),
);
child.kill('SIGTERM');
await new Promise((r) => child.once('exit', r));

/** Scavenges and mark-compacts per request, and the milliseconds each kind took per request, from --trace-gc lines. */
function gcPerRequest(lines: readonly string[], requests: number): Record<string, string> {
  const kinds = { scavenge: /Scavenge/, markCompact: /Mark-Compact|Mark-sweep/ };
  const result: Record<string, string> = {};
  for (const [kind, pattern] of Object.entries(kinds)) {
    const matching = lines.filter((line) => pattern.test(line));
    const ms = matching.reduce((sum, line) => sum + Number(/, ([\d.]+) \/ [\d.]+ ms/.exec(line)?.[1] ?? 0), 0);
    result[`${kind}sPer1kReq`] = ((matching.length / requests) * 1000).toFixed(1);
    result[`${kind}MsPerReq`] = (ms / requests).toFixed(3);
  }
  return result;
}
