/**
 * Scenario `overhead`: what Arclight adds on top of onnxruntime, through the Lambda handler and node:http,
 * against raw `session.run` and a hand-written JSON Lambda, side by side in one process.
 * Targets: Lambda handler p50 ≤ 1.05 × raw on MobileNet; ≤ raw + 50 µs on digits.
 */
import { loadavg } from 'node:os';
import { runInChild } from './child.js';
import type {
  ModelPlan,
  ModelResult,
  OverheadInput,
  OverheadResult,
  VariantId,
  VariantResult,
} from './overhead-worker.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatDeltaMs, formatMs, formatRatio, quartiles } from './stats.js';
import { barChart } from './svg.js';

const FULL: readonly ModelPlan[] = [
  { model: 'digits', warmup: 1000, rounds: 60, block: 250 },
  { model: 'mobilenet', warmup: 20, rounds: 80, block: 10 },
];

const QUICK: readonly ModelPlan[] = [
  { model: 'digits', warmup: 200, rounds: 10, block: 150 },
  { model: 'mobilenet', warmup: 5, rounds: 12, block: 8 },
];

/** The targets of this scenario, by model: a p50 ratio or a p50 difference against raw. */
const TARGETS: Record<string, { readonly maxRatio?: number; readonly maxAddedMs?: number }> = {
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
    const loadBefore = loadavg()[0]!;
    const input: OverheadInput = { threads: options.threads, plans: options.quick ? QUICK : FULL };
    const result = await runInChild<OverheadInput, OverheadResult>(
      new URL('./overhead-worker.ts', import.meta.url),
      input,
      progress,
    );
    const loadAfter = loadavg()[0]!;
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
        comparisons: Object.fromEntries(m.variants.filter((v) => v.id !== 'raw').map((v) => [v.id, compare(m, v)])),
      })),
    };
    return { tables, checks, data, svg: chart(result) };
  },
};

interface Comparison {
  readonly p50Ratio: number;
  readonly p50AddedMs: number;
  readonly p99Ratio: number;
  readonly meanRatio: number;
  /** Quartiles over rounds of (this variant's block p50 ÷ raw's block p50 in the same round). */
  readonly roundRatio: { q1: number; median: number; q3: number };
}

function variant(model: ModelResult, id: VariantId): VariantResult {
  const found = model.variants.find((v) => v.id === id);
  if (!found) throw new Error(`no ${id} variant for ${model.model}`);
  return found;
}

function compare(model: ModelResult, v: VariantResult, base: VariantResult = variant(model, 'raw')): Comparison {
  const perRound = v.roundP50Ms.map((p50, i) => p50 / base.roundP50Ms[i]!);
  return {
    p50Ratio: v.summary.p50Ms / base.summary.p50Ms,
    p50AddedMs: v.summary.p50Ms - base.summary.p50Ms,
    p99Ratio: v.summary.p99Ms / base.summary.p99Ms,
    meanRatio: v.summary.meanMs / base.summary.meanMs,
    roundRatio: quartiles(perRound),
  };
}

function modelTable(model: ModelResult, result: OverheadResult, loadBefore: number, loadAfter: number): Table {
  const { plan } = model;
  const rows = model.variants.map((v) => {
    const s = v.summary;
    const head = [v.label, String(s.n), formatMs(s.p50Ms), formatMs(s.p99Ms), formatMs(s.meanMs)];
    if (v.id === 'raw') return [...head, formatRatio(1), '', formatRatio(1), ''];
    if (v.id === 'json-parse') return [...head, '', '', '', ''];
    const c = compare(model, v);
    return [
      ...head,
      formatRatio(c.p50Ratio),
      formatDeltaMs(c.p50AddedMs),
      formatRatio(c.p99Ratio),
      `${c.roundRatio.q1.toFixed(3)}–${c.roundRatio.q3.toFixed(3)}`,
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
    columns: ['variant', 'n', 'p50', 'p99', 'mean', 'p50 ÷ raw', 'p50 − raw', 'p99 ÷ raw', '÷ raw by round'],
    rows,
  };
}

function modelChecks(model: ModelResult): Check[] {
  const target = TARGETS[model.model] ?? {};
  const raw = variant(model, 'raw');
  const handWritten = variant(model, 'hand-written');
  const parse = variant(model, 'json-parse');
  const name = model.model.padEnd(9);
  const checks: Check[] = [];
  for (const id of TARGETED) {
    const v = variant(model, id);
    const c = compare(model, v);
    const parts: string[] = [];
    let pass = true;
    if (target.maxRatio !== undefined) {
      pass &&= c.p50Ratio <= target.maxRatio;
      parts.push(`p50 ratio ${formatRatio(c.p50Ratio)} (target ≤ ${formatRatio(target.maxRatio)})`);
    }
    if (target.maxAddedMs !== undefined) {
      pass &&= c.p50AddedMs <= target.maxAddedMs;
      parts.push(`p50 ${formatDeltaMs(c.p50AddedMs)} (target ≤ ${formatDeltaMs(target.maxAddedMs)})`);
    }
    let why = '';
    if (id === 'handler-json') {
      const hw = compare(model, handWritten);
      const hwPass =
        (target.maxRatio === undefined || hw.p50Ratio <= target.maxRatio) &&
        (target.maxAddedMs === undefined || hw.p50AddedMs <= target.maxAddedMs);
      why = hwPass
        ? ` — a hand-written JSON Lambda meets it (${formatRatio(hw.p50Ratio)}, ${formatDeltaMs(hw.p50AddedMs)})`
        : ` — out of reach for any JSON body: JSON.parse alone takes ${formatMs(parse.summary.p50Ms)} against ${formatMs(raw.summary.p50Ms)} of inference, and a hand-written JSON Lambda is ${formatRatio(hw.p50Ratio)} (${formatDeltaMs(hw.p50AddedMs)})`;
    }
    checks.push({ status: pass ? 'PASS' : 'FAIL', text: `${name} ${v.label} vs raw: ${parts.join(', ')}${why}` });
  }
  const own = compare(model, variant(model, 'handler-json'), handWritten);
  checks.push({
    status: 'INFO',
    text: `${name} Arclight handler JSON vs hand-written JSON Lambda (Arclight's own cost: validation, copies, logging): p50 ${formatRatio(own.p50Ratio)}, ${formatDeltaMs(own.p50AddedMs)}`,
  });
  for (const id of HTTP) {
    const v = variant(model, id);
    const c = compare(model, v);
    checks.push({
      status: 'INFO',
      text: `${name} ${v.label} vs raw: p50 ${formatRatio(c.p50Ratio)} (${formatDeltaMs(c.p50AddedMs)}), p99 ${formatRatio(c.p99Ratio)} (${formatMs(v.summary.p99Ms)} vs ${formatMs(raw.summary.p99Ms)})`,
    });
  }
  return checks;
}

function chart(result: OverheadResult): string {
  return barChart(
    result.models.map((m) => ({
      title: `${m.model} — ${m.path}`,
      bars: m.variants.map((v) => ({
        label: v.label,
        value: v.summary.p50Ms,
        whisker: v.summary.p99Ms,
        baseline: v.id === 'raw',
      })),
    })),
    {
      title: 'Arclight overhead: p50 (bar) and p99 (tick) per request',
      subtitle: `onnxruntime-node ${result.onnxruntime}, ${result.threads} intra-op thread(s); runtime logs at INFO to /dev/null`,
      format: formatMs,
    },
  );
}

function kib(bytes: number): string {
  return bytes >= 1024 * 1024 ? `${(bytes / 1024 / 1024).toFixed(2)} MiB` : `${(bytes / 1024).toFixed(1)} KiB`;
}
