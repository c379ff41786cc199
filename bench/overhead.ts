/**
 * Scenario `overhead`: what Arclight adds on top of onnxruntime, through the Lambda handler and node:http,
 * against raw `session.run` and a hand-written JSON Lambda, side by side in one process.
 * Targets: Lambda handler p50 ≤ 1.05 × raw on MobileNet; ≤ raw + 50 µs on digits.
 */
import {
  SUMMARY_COLUMNS,
  compare,
  findVariant,
  formatRoundRatio,
  holdToTarget,
  runMeasuringChild,
  summaryCells,
  variantsChart,
  type ModelPlan,
  type PlansInput,
  type Target,
} from './interleaved.js';
import type { ModelResult, OverheadResult, VariantId } from './overhead-worker.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatDeltaMs, formatMs, formatRatio } from './stats.js';

const FULL: readonly ModelPlan[] = [
  { model: 'digits', warmup: 1000, rounds: 60, block: 250 },
  { model: 'mobilenet', warmup: 20, rounds: 80, block: 10 },
];

const QUICK: readonly ModelPlan[] = [
  { model: 'digits', warmup: 200, rounds: 10, block: 150 },
  { model: 'mobilenet', warmup: 5, rounds: 12, block: 8 },
];

/** The targets of this scenario, by model: a p50 ratio or a p50 difference against raw. */
const TARGETS: Record<string, Target> = {
  mobilenet: { maxRatio: 1.05 },
  digits: { maxAddedMs: 0.05 },
};

/** Variants held against the targets: the Lambda handler path. */
const TARGETED: readonly VariantId[] = ['handler-json', 'handler-binary'];
const HTTP: readonly VariantId[] = ['http-json', 'http-binary'];

export const overhead: Scenario = {
  name: 'overhead',
  description: 'Lambda handler and node:http paths vs raw session.run (digits, MobileNet)',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const input: PlansInput = { threads: options.threads, plans: options.quick ? QUICK : FULL };
    const { result, loadBefore, loadAfter } = await runMeasuringChild<PlansInput, OverheadResult>(
      new URL('./overhead-worker.ts', import.meta.url),
      input,
      progress,
    );
    const tables = result.models.map((m) => modelTable(m, result, loadBefore, loadAfter));
    const checks = result.models.flatMap(modelChecks);
    const data = {
      onnxruntime: result.onnxruntime,
      threads: result.threads,
      logging: 'runtime logger at INFO, one JSON line per request, to /dev/null (the measuring child stdout)',
      loadAverage1m: { before: loadBefore, after: loadAfter },
      targets: TARGETS,
      models: result.models.map((m) => ({
        ...m,
        comparisons: Object.fromEntries(
          m.variants.filter((v) => v.id !== 'raw').map((v) => [v.id, compare(m, v.id, 'raw')]),
        ),
      })),
    };
    return { tables, checks, data, svg: chart(result) };
  },
};

function modelTable(model: ModelResult, result: OverheadResult, loadBefore: number, loadAfter: number): Table {
  const { plan } = model;
  const rows = model.variants.map((v) => {
    const head = summaryCells(v);
    if (v.id === 'raw') return [...head, formatRatio(1), '', formatRatio(1), ''];
    if (v.id === 'json-parse') return [...head, '', '', '', ''];
    const c = compare(model, v.id, 'raw');
    return [
      ...head,
      formatRatio(c.p50Ratio),
      formatDeltaMs(c.p50AddedMs),
      formatRatio(c.p99Ratio),
      formatRoundRatio(c),
    ];
  });
  return {
    title: `overhead · ${model.model} (${model.path}, FP32 [${model.shape.join(',')}])`,
    notes: [
      `Logging: runtime logger at INFO, ${model.logLinesPerRequest} JSON line(s) per request, written to /dev/null (the measuring child's stdout) — its cost is inside every Arclight row.`,
      `onnxruntime-node ${result.onnxruntime}; raw and runtime sessions alike: intraOpNumThreads ${result.threads}, interOpNumThreads 1, sequential, graphOptimizationLevel all.`,
      `Interleaved: ${plan.rounds} rounds × ${plan.block} calls per variant (order rotates each round) after ${plan.warmup} warm-up calls each; ${model.seconds.toFixed(1)} s measured.`,
      `Bodies: OIP JSON ${kib(model.jsonBodyBytes)}; OIP binary ${kib(model.binaryBodyBytes)}, binary output asked for (${kib(Math.ceil(model.binaryBodyBytes / 3) * 4)} as base64 in the Lambda event).`,
      'Lambda: API Gateway HTTP API v2 event through createLambdaHandler and the default (OIP) predictor. HTTP: createHttpServer on 127.0.0.1 and a keep-alive client (maxSockets 1) in the same process, sequential.',
      `Ratios are p50 ÷ raw p50 over all samples; "by round" is the IQR of that ratio per round. 1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after.`,
    ],
    columns: [...SUMMARY_COLUMNS, 'p50 ÷ raw', 'p50 − raw', 'p99 ÷ raw', '÷ raw by round'],
    rows,
  };
}

function modelChecks(model: ModelResult): Check[] {
  const target = TARGETS[model.model] ?? {};
  const raw = findVariant(model, 'raw');
  const parse = findVariant(model, 'json-parse');
  const name = model.model.padEnd(9);
  const checks: Check[] = [];
  for (const id of TARGETED) {
    const v = findVariant(model, id);
    const { pass, parts } = holdToTarget(compare(model, id, 'raw'), target, 'p50 ratio');
    let why = '';
    if (id === 'handler-json') {
      const hw = compare(model, 'hand-written', 'raw');
      why = holdToTarget(hw, target, 'p50 ratio').pass
        ? ` — a hand-written JSON Lambda meets it (${formatRatio(hw.p50Ratio)}, ${formatDeltaMs(hw.p50AddedMs)})`
        : ` — out of reach for any JSON body: JSON.parse alone takes ${formatMs(parse.summary.p50Ms)} against ${formatMs(raw.summary.p50Ms)} of inference, and a hand-written JSON Lambda is ${formatRatio(hw.p50Ratio)} (${formatDeltaMs(hw.p50AddedMs)})`;
    }
    checks.push({ status: pass ? 'PASS' : 'FAIL', text: `${name} ${v.label} vs raw: ${parts.join(', ')}${why}` });
  }
  const own = compare(model, 'handler-json', 'hand-written');
  checks.push({
    status: 'INFO',
    text: `${name} Arclight handler JSON vs hand-written JSON Lambda (Arclight's own cost: validation, copies, logging): p50 ${formatRatio(own.p50Ratio)}, ${formatDeltaMs(own.p50AddedMs)}`,
  });
  for (const id of HTTP) {
    const v = findVariant(model, id);
    const c = compare(model, id, 'raw');
    checks.push({
      status: 'INFO',
      text: `${name} ${v.label} vs raw: p50 ${formatRatio(c.p50Ratio)} (${formatDeltaMs(c.p50AddedMs)}), p99 ${formatRatio(c.p99Ratio)} (${formatMs(v.summary.p99Ms)} vs ${formatMs(raw.summary.p99Ms)})`,
    });
  }
  return checks;
}

function chart(result: OverheadResult): string {
  return variantsChart(result.models, 'raw', {
    title: 'Arclight overhead: p50 (bar) and p99 (tick) per request',
    subtitle: `onnxruntime-node ${result.onnxruntime}, ${result.threads} intra-op thread(s); runtime logs at INFO to /dev/null`,
  });
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}
