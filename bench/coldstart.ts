/**
 * Scenario `coldstart`: fresh processes → their first prediction, for digits and MobileNet served from s3rver
 * through the Lambda bundle as synth builds it, against the bundle as it was built before the model loaded in the init
 * phase (bench/coldstart-legacy.ts), side by side in one run. Two more variants of today's bundle isolate what
 * `--enable-source-maps` and onnxruntime's telemetry each cost.
 *
 * Lambda's view of a cold start: init = process start → the bundle's import resolved (the handler exists); then the
 * first invocation. Before, init ended at once and the first invocation paid the load; now init holds the load.
 */
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedS3 } from '../lib/cli/local/embedded-s3.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../lib/constructs/images/lambda-image-context.js';
import { ENV } from '../lib/contract.js';
import { initBudgetMs } from '../lib/runtime/transports/lambda.js';
import { runInChild } from './child.js';
import { deployedNode } from './deployed-node.js';
import { LEGACY_ENV, buildLegacyBundle } from './coldstart-legacy.js';
import { DIGITS, MOBILENET, apiGatewayV2Event, inputFor, oipJsonBody } from './payloads.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatMs, formatRatio, median } from './stats.js';
import { barChart } from './svg.js';

const BUCKET = 'bench-coldstart';

/** A bundle and the environment its image gives it. */
interface Variant {
  readonly name: string;
  readonly legacy: boolean;
  readonly env: Readonly<Record<string, string>>;
}

const VARIANTS: readonly Variant[] = [
  { name: 'before', legacy: true, env: LEGACY_ENV },
  { name: 'after', legacy: false, env: { ORT_DISABLE_TELEMETRY: '1' } },
  {
    name: 'after + source maps',
    legacy: false,
    env: { ORT_DISABLE_TELEMETRY: '1', NODE_OPTIONS: '--enable-source-maps' },
  },
  { name: 'after + ort telemetry', legacy: false, env: { ORT_DISABLE_TELEMETRY: '0' } },
];

/** What bench/coldstart-driver.mjs receives. */
export interface ColdstartWorkerInput {
  readonly variant: string;
  readonly model: 'digits' | 'mobilenet';
  /** The bundle (onnxruntime-node beside it, in the build context). */
  readonly bundle: string;
  /** A JSON file holding the first request's API Gateway event (too large for argv with MobileNet). */
  readonly eventFile: string;
}

/** What bench/coldstart-driver.mjs reports (and the files the process left in its HOME and TMPDIR). */
export interface ColdstartWorkerResult {
  readonly variant: string;
  readonly model: string;
  /** Process start (node and the driver, no loader) → the bundle's import begins. */
  readonly processToInitMs: number;
  /** Importing the bundle: module evaluation, and with today's entry the model's load. */
  readonly bundleImportMs: number;
  /** Lambda's init: process start → the import resolved. */
  readonly initMs: number;
  /** Bundle import start → the first prediction answered. */
  readonly firstPredictionMs: number;
  /** The first invocation alone, as the handler saw it. */
  readonly firstRequestMs: number;
  readonly status: number;
  /** The runtime's 'model ready' record: importMs, fetchMs, sessionMs, firstRunMs, initMs, totalMs, processMs, … */
  readonly ready: Record<string, unknown> | undefined;
  readonly emfLines: number;
  readonly filesWritten?: number;
}

export const coldstart: Scenario = {
  name: 'coldstart',
  description:
    'fresh process → first prediction through the Lambda bundle, before vs after the init-phase load (digits, MobileNet)',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const rounds = options.quick ? 2 : 5;
    progress('building the Lambda bundles');
    const contextDir = buildLambdaImageContext({ arch: process.arch === 'arm64' ? 'arm64' : 'x64' });
    const legacyBundle = buildLegacyBundle(contextDir);
    const s3 = await startEmbeddedS3([BUCKET]);
    const runs: ColdstartWorkerResult[] = [];
    const loadBefore = loadavg()[0]!;
    try {
      const uris: Record<string, string> = {};
      for (const model of [DIGITS, MOBILENET]) {
        uris[model.key] = (await s3.put(BUCKET, `${model.key}.onnx`, await readFile(model.path))).uri;
        const eventFile = join(contextDir, `event-${model.key}.json`);
        const event = apiGatewayV2Event(oipJsonBody(model, inputFor(model)), { 'content-type': 'application/json' });
        await writeFile(eventFile, JSON.stringify(event));
      }
      for (let round = 0; round < rounds; round++) {
        // Rotate the order each round so no variant always runs first (or right after the heaviest).
        const order = VARIANTS.flatMap((variant) =>
          (['digits', 'mobilenet'] as const).map((model) => ({ variant, model })),
        );
        const shift = (round * 3) % order.length;
        for (const { variant, model } of [...order.slice(shift), ...order.slice(0, shift)]) {
          progress(`round ${round + 1}/${rounds}: ${model}, ${variant.name}`);
          runs.push(
            await coldStart(variant, model, {
              bundle: variant.legacy ? legacyBundle : join(contextDir, BUNDLE_FILE),
              eventFile: join(contextDir, `event-${model}.json`),
              env: {
                ...s3.env,
                [ENV.apiName]: model,
                [ENV.modelUri]: uris[model]!,
                [ENV.intraOpThreads]: String(options.threads),
                [ENV.logLevel]: 'INFO',
                AWS_LAMBDA_FUNCTION_NAME: `bench-${model}`,
                AWS_LAMBDA_INITIALIZATION_TYPE: 'on-demand',
              },
              progress,
            }),
          );
        }
      }
    } finally {
      await s3.close();
      await rm(contextDir, { recursive: true, force: true });
    }
    return report(runs, rounds, loadBefore, loadavg()[0]!);
  },
};

/** One fresh process (its own empty HOME and TMPDIR, as a new sandbox has) → its first prediction. */
async function coldStart(
  variant: Variant,
  model: 'digits' | 'mobilenet',
  run: {
    bundle: string;
    eventFile: string;
    env: Record<string, string>;
    progress: (text: string) => void;
  },
): Promise<ColdstartWorkerResult> {
  const home = await mkdtemp(join(tmpdir(), 'arclight-coldstart-'));
  try {
    const input: ColdstartWorkerInput = { variant: variant.name, model, bundle: run.bundle, eventFile: run.eventFile };
    const result = await runInChild<ColdstartWorkerInput, ColdstartWorkerResult>(
      new URL('./coldstart-driver.mjs', import.meta.url),
      input,
      run.progress,
      // Plain node, no tsx loader, the env contract in the process's own environment: as on Lambda.
      {
        plain: true,
        execPath: deployedNode().execPath,
        env: { NODE_OPTIONS: '', ...run.env, ...variant.env, HOME: home, TMPDIR: home },
      },
    );
    const files = (await readdir(home, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).length;
    return { ...result, filesWritten: files };
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/**
 * Today's bundle holds Lambda's init until the model is ready, unless the init budget (9 s after the process started)
 * runs out first: then the load goes on into the first invocation, as designed.
 */
function loadedInInit(runs: readonly ColdstartWorkerResult[]): Check {
  const today = runs.filter((r) => r.variant !== 'before');
  const inInit = today.filter((r) => Number(r.ready?.['processMs']) <= r.initMs);
  const budgetSpent = today.filter((r) => !inInit.includes(r) && r.initMs >= initBudgetMs({}));
  const wrong = today.length - inInit.length - budgetSpent.length;
  return {
    status: wrong === 0 ? 'PASS' : 'FAIL',
    text: `today's bundle: the model was ready inside the init phase in ${inInit.length}/${today.length} cold starts; the init budget ran out first (the load finished in the first request) in ${budgetSpent.length}`,
  };
}

function report(
  runs: readonly ColdstartWorkerResult[],
  rounds: number,
  loadBefore: number,
  loadAfter: number,
): ScenarioReport {
  const models = ['digits', 'mobilenet'];
  const pick = (model: string, variant: string, f: (r: ColdstartWorkerResult) => unknown): number => {
    const values = runs
      .filter((r) => r.model === model && r.variant === variant)
      .map(f)
      .filter((v): v is number => typeof v === 'number');
    return values.length === 0 ? Number.NaN : median(values);
  };
  const ready = (key: string) => (r: ColdstartWorkerResult) => r.ready?.[key];
  const total = (r: ColdstartWorkerResult): number => r.initMs + r.firstRequestMs;
  // The 'model ready' record's fresh memory (minor faults × 4 KiB); the bundle built before it had none.
  const mib = (value: number): string => (Number.isFinite(value) ? `${value.toFixed(1)} MiB` : '–');
  const rows = models.flatMap((m) =>
    VARIANTS.map(({ name: v }) => [
      m,
      v,
      String(runs.filter((r) => r.model === m && r.variant === v).length),
      formatMs(pick(m, v, (r) => r.processToInitMs)),
      formatMs(pick(m, v, (r) => r.initMs)),
      formatMs(pick(m, v, ready('fetchMs'))),
      formatMs(pick(m, v, ready('sessionMs'))),
      formatMs(pick(m, v, ready('totalMs'))),
      formatMs(pick(m, v, (r) => r.firstRequestMs)),
      formatMs(pick(m, v, total)),
      mib(pick(m, v, ready('fetchFreshMiB'))),
      mib(pick(m, v, ready('sessionFreshMiB'))),
      mib(pick(m, v, ready('processFreshMiB'))),
      String(pick(m, v, (r) => r.filesWritten)),
    ]),
  );
  const table: Table = {
    title: 'coldstart · fresh process → first prediction, Lambda bundle before vs after the init-phase load',
    notes: [
      `Medians of ${rounds} fresh child processes of Node ${deployedNode().version} per model and variant, the order rotated each round; models from s3rver on loopback.`,
      'before: the bundle as built before issue 12 (handler exported at once, names minified), run with NODE_OPTIONS=--enable-source-maps and onnxruntime telemetry on. after: the bundle synth builds now, as its image runs it.',
      "after + source maps / after + ort telemetry: today's bundle with only that one thing put back, to isolate its cost.",
      "init: process start → the bundle's import resolved (Lambda's Init duration). first request: the first invocation alone. init + first: what the first client waits for after the sandbox starts, on demand.",
      "Under provisioned concurrency only the first-request column is on the client's path: init ran before any request.",
      'files: what the process left in its (fresh, empty) HOME and TMPDIR.',
      "fresh: memory touched for the first time (minor page faults × 4 KiB) in the fetch and session phases and from process start to ready, from the runtime's 'model ready' record (absent in the bundle built before it counted them).",
      `1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after (a shared, noisy machine).`,
    ],
    columns: [
      'model',
      'variant',
      'n',
      'process→import',
      'init',
      'fetch',
      'session',
      'load total',
      'first request',
      'init + first',
      'fresh: fetch',
      'fresh: session',
      'fresh: process',
      'files',
    ],
    rows,
  };
  const failed = runs.filter((r) => r.status !== 200 || r.ready === undefined);
  const ratio = (m: string, variant: string, f: (r: ColdstartWorkerResult) => number): string =>
    formatRatio(pick(m, variant, f) / pick(m, 'after', f));
  const checks: Check[] = [
    ...models.flatMap((m) => [
      {
        status: 'INFO' as const,
        text: `${m.padEnd(9)} first request: before ${formatMs(pick(m, 'before', (r) => r.firstRequestMs))}, after ${formatMs(pick(m, 'after', (r) => r.firstRequestMs))} (before/after ${ratio(m, 'before', (r) => r.firstRequestMs)}); init + first: before/after ${ratio(m, 'before', total)}`,
      },
      {
        status: 'INFO' as const,
        text: `${m.padEnd(9)} init with --enable-source-maps ${formatMs(pick(m, 'after + source maps', (r) => r.initMs))} vs without ${formatMs(pick(m, 'after', (r) => r.initMs))} (${ratio(m, 'after + source maps', (r) => r.initMs)}); with onnxruntime telemetry ${formatMs(pick(m, 'after + ort telemetry', (r) => r.initMs))} (${ratio(m, 'after + ort telemetry', (r) => r.initMs)})`,
      },
    ]),
    {
      status: failed.length === 0 ? 'PASS' : 'FAIL',
      text: `every cold start answered 200 and logged 'model ready' (${runs.length - failed.length}/${runs.length})`,
    },
    loadedInInit(runs),
    {
      status: runs.filter((r) => r.variant === 'after').every((r) => r.filesWritten === 0) ? 'PASS' : 'FAIL',
      text: "today's bundle as its image runs it wrote no file to HOME or TMPDIR (onnxruntime telemetry off)",
    },
  ];
  const svg = barChart(
    models.map((m) => ({
      title: `${m}: init and first request (median)`,
      bars: VARIANTS.flatMap(({ name: v }) => [
        { label: `${v}: init`, value: pick(m, v, (r) => r.initMs) },
        { label: `${v}: first request`, value: pick(m, v, (r) => r.firstRequestMs), baseline: v === 'before' },
      ]),
    })),
    {
      title: 'Cold start: Lambda init and first request, before vs after the init-phase load',
      subtitle: 'Lambda bundle, models from s3rver',
      format: formatMs,
    },
  );
  return {
    tables: [table],
    checks,
    data: { rounds, runs, loadAverage1m: { before: loadBefore, after: loadAfter } },
    svg,
  };
}
