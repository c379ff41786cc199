/**
 * Scenario `coldstart`: a fresh process → its first prediction, for digits and MobileNet served from s3rver through
 * the Lambda bundle as synth builds it (bootFromEnv at import, then the handler), with the runtime's breakdown:
 * onnxruntime import (overlapped with the fetch), fetch, session create, first (warm-up) run, predictor init.
 */
import { readFile, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { startEmbeddedS3 } from '../lib/cli/embedded-s3.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../lib/constructs/lambda-image-context.js';
import { ENV } from '../lib/contract.js';
import { runInChild } from './child.js';
import { DIGITS, MOBILENET, apiGatewayV2Event, inputFor, oipJsonBody } from './payloads.js';
import type { BenchOptions, Scenario, ScenarioReport, Table } from './report.js';
import { formatMs, median } from './stats.js';
import { barChart } from './svg.js';

const BUCKET = 'bench-coldstart';

/** What bench/coldstart-driver.mjs receives. */
export interface ColdstartWorkerInput {
  readonly model: 'digits' | 'mobilenet';
  /** The synthesized bundle (onnxruntime-node beside it, in the build context). */
  readonly bundle: string;
  /** A JSON file holding the first request's API Gateway event (too large for argv with MobileNet). */
  readonly eventFile: string;
}

/** What bench/coldstart-driver.mjs reports. */
export interface ColdstartWorkerResult {
  readonly model: string;
  /** Process start (node and the driver, no loader) → the bundle's import begins. */
  readonly processToInitMs: number;
  /** Importing the bundle: module evaluation; the runtime's start begins inside it. */
  readonly bundleImportMs: number;
  /** Bundle import start → the first prediction answered. */
  readonly firstPredictionMs: number;
  /** The first request alone, as the handler saw it. */
  readonly firstRequestMs: number;
  readonly status: number;
  /** The runtime's 'model ready' record: importMs, fetchMs, sessionMs, firstRunMs, initMs, totalMs, … */
  readonly ready: Record<string, unknown> | undefined;
  /** EMF lines written (AWS_LAMBDA_FUNCTION_NAME is set, so metrics are on as on Lambda). */
  readonly emfLines: number;
}

export const coldstart: Scenario = {
  name: 'coldstart',
  description: 'fresh process → first prediction through the Lambda bundle, models from s3rver (digits, MobileNet)',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const rounds = options.quick ? 2 : 5;
    progress('building the Lambda bundle');
    const contextDir = buildLambdaImageContext({ arch: process.arch === 'arm64' ? 'arm64' : 'x64' });
    const s3 = await startEmbeddedS3([BUCKET]);
    const runs: ColdstartWorkerResult[] = [];
    const loadBefore = loadavg()[0]!;
    try {
      const uris: Record<string, string> = {};
      for (const model of [DIGITS, MOBILENET]) {
        uris[model.key] = (await s3.put(BUCKET, `${model.key}.onnx`, await readFile(model.path))).uri;
      }
      for (let round = 0; round < rounds; round++) {
        const order = round % 2 === 0 ? (['digits', 'mobilenet'] as const) : (['mobilenet', 'digits'] as const);
        for (const model of order) {
          progress(`round ${round + 1}/${rounds}: ${model}`);
          const env = {
            ...s3.env,
            [ENV.apiName]: model,
            [ENV.modelUri]: uris[model]!,
            [ENV.intraOpThreads]: String(options.threads),
            [ENV.logLevel]: 'INFO',
            AWS_LAMBDA_FUNCTION_NAME: `bench-${model}`,
          };
          const bench = model === 'digits' ? DIGITS : MOBILENET;
          const eventFile = join(contextDir, `event-${model}.json`);
          const event = apiGatewayV2Event(oipJsonBody(bench, inputFor(bench)), { 'content-type': 'application/json' });
          await writeFile(eventFile, JSON.stringify(event));
          const input: ColdstartWorkerInput = { model, bundle: join(contextDir, BUNDLE_FILE), eventFile };
          runs.push(
            await runInChild<ColdstartWorkerInput, ColdstartWorkerResult>(
              new URL('./coldstart-driver.mjs', import.meta.url),
              input,
              progress,
              // Plain node, no tsx loader, the env contract in the process's own environment: as on Lambda.
              { plain: true, env },
            ),
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

function report(
  runs: readonly ColdstartWorkerResult[],
  rounds: number,
  loadBefore: number,
  loadAfter: number,
): ScenarioReport {
  const models = ['digits', 'mobilenet'];
  const pick = (model: string, f: (r: ColdstartWorkerResult) => unknown): number => {
    const values = runs
      .filter((r) => r.model === model)
      .map(f)
      .filter((v): v is number => typeof v === 'number');
    return values.length === 0 ? Number.NaN : median(values);
  };
  const ready = (key: string) => (r: ColdstartWorkerResult) => r.ready?.[key];
  const rows = models.map((m) => [
    m,
    String(runs.filter((r) => r.model === m).length),
    formatMs(pick(m, (r) => r.processToInitMs)),
    formatMs(pick(m, (r) => r.bundleImportMs)),
    formatMs(pick(m, ready('importMs'))),
    formatMs(pick(m, ready('fetchMs'))),
    formatMs(pick(m, ready('importWaitMs'))),
    formatMs(pick(m, ready('sessionMs'))),
    formatMs(pick(m, ready('firstRunMs'))),
    formatMs(pick(m, ready('totalMs'))),
    formatMs(pick(m, (r) => r.firstRequestMs)),
    formatMs(pick(m, (r) => r.firstPredictionMs)),
  ]);
  const table: Table = {
    title:
      'coldstart · fresh process → first prediction (Lambda bundle as synthesized, models from s3rver on loopback)',
    notes: [
      `Medians of ${rounds} fresh child processes per model, models alternating. AWS_LAMBDA_FUNCTION_NAME set: EMF metrics on, as on Lambda.`,
      'Each process is plain node (no tsx loader) running bench/coldstart-driver.mjs, the env contract in its environment. process→init: node booting and the driver, before the bundle import; the other columns start at the bundle import.',
      'ort import runs while the model downloads; "import wait" is what was left of it once the bytes had arrived. first run: the runtime\'s warm-up on zero inputs.',
      'runtime total: the start of the load → ready. first request: the handler, called as soon as the import returns (as Lambda does), answering one OIP JSON request: it waits for the start still under way. first prediction: bundle import → that answer.',
      `1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after (a shared, noisy machine).`,
    ],
    columns: [
      'model',
      'n',
      'process→init',
      'bundle import',
      'ort import',
      'fetch',
      'import wait',
      'session',
      'first run',
      'runtime total',
      'first request',
      'first prediction',
    ],
    rows,
  };
  const failed = runs.filter((r) => r.status !== 200 || r.ready === undefined);
  const checks = [
    ...models.map((m) => ({
      status: 'INFO' as const,
      text: `${m.padEnd(9)} bundle import → first prediction ${formatMs(pick(m, (r) => r.firstPredictionMs))} (median); EMF lines per cold start + request: ${pick(m, (r) => r.emfLines)}`,
    })),
    {
      status: failed.length === 0 ? ('PASS' as const) : ('FAIL' as const),
      text: `every cold start answered 200 and logged 'model ready' (${runs.length - failed.length}/${runs.length})`,
    },
  ];
  const svg = barChart(
    models.map((m) => ({
      title: `${m}: cold start phases (median)`,
      bars: [
        { label: 'ort import (overlapped)', value: pick(m, ready('importMs')) },
        { label: 'fetch', value: pick(m, ready('fetchMs')) },
        { label: 'session create', value: pick(m, ready('sessionMs')) },
        { label: 'first run (warm-up)', value: pick(m, ready('firstRunMs')) },
        { label: 'first request', value: pick(m, (r) => r.firstRequestMs) },
        { label: 'bundle import → first prediction', value: pick(m, (r) => r.firstPredictionMs), baseline: true },
      ],
    })),
    {
      title: 'Cold start: fresh process → first prediction',
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
