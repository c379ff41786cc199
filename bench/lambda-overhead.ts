/**
 * Scenario `lambda-overhead`: Arclight's Lambda handler (the synth bundle) against a hand-written binary Lambda
 * handler (base64 body → session.run → base64 answer) and raw `session.run`, on the Node that Lambda runs (22.x,
 * whose base64 decoding is much faster than 20's). Targets: handler p50 ≤ 1.05 × hand-written on MobileNet, ≤
 * hand-written + 50 µs on digits. The Node: deployed-node.ts.
 */
import {
  SUMMARY_COLUMNS,
  compare,
  formatRoundRatio,
  holdToTarget,
  runMeasuringChild,
  summaryCells,
  variantsChart,
  type ModelPlan,
  type PlansInput,
  type Target,
} from './interleaved.js';
import { deployedNode } from './deployed-node.js';
import type { LambdaModelResult, LambdaOverheadResult } from './lambda-overhead-worker.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatDeltaMs, formatRatio } from './stats.js';

const FULL: readonly ModelPlan[] = [
  { model: 'digits', warmup: 1000, rounds: 60, block: 250 },
  { model: 'mobilenet', warmup: 20, rounds: 60, block: 10 },
];

const QUICK: readonly ModelPlan[] = [
  { model: 'digits', warmup: 300, rounds: 12, block: 200 },
  { model: 'mobilenet', warmup: 8, rounds: 16, block: 8 },
];

/** Targets against the hand-written handler, by model: a p50 ratio or a p50 difference. */
const TARGETS: Record<string, Target> = {
  mobilenet: { maxRatio: 1.05 },
  digits: { maxAddedMs: 0.05 },
};

export const lambdaOverhead: Scenario = {
  name: 'lambda-overhead',
  description:
    'Lambda handler vs a hand-written binary Lambda handler and raw session.run, on Node 22 (digits, MobileNet)',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const node = deployedNode();
    const input: PlansInput = { threads: options.threads, plans: options.quick ? QUICK : FULL };
    const { result, loadBefore, loadAfter } = await runMeasuringChild<PlansInput, LambdaOverheadResult>(
      new URL('./lambda-overhead-worker.ts', import.meta.url),
      input,
      progress,
      { execPath: node.execPath },
    );
    const tables = result.models.map((m) => modelTable(m, result, loadBefore, loadAfter, node.note));
    const checks = [
      ...result.models.map(modelCheck),
      ...result.models.map(deployedCheck),
      ...(node.note ? [{ status: 'INFO' as const, text: node.note }] : []),
    ];
    const data = {
      node: result.node,
      nodePath: node.execPath,
      onnxruntime: result.onnxruntime,
      threads: result.threads,
      loadAverage1m: { before: loadBefore, after: loadAfter },
      targets: TARGETS,
      models: result.models.map((m) => ({
        ...m,
        handlerVsHandWritten: compare(m, 'handler', 'hand-written'),
        deployedVsHandWritten: compare(m, 'deployed', 'hand-written'),
        handWrittenVsRaw: compare(m, 'hand-written', 'raw'),
      })),
    };
    return { tables, checks, data, svg: chart(result) };
  },
};

function modelTable(
  model: LambdaModelResult,
  result: LambdaOverheadResult,
  loadBefore: number,
  loadAfter: number,
  note: string | undefined,
): Table {
  const rows = model.variants.map((v) => {
    const head = summaryCells(v);
    if (v.id === 'raw') return [...head, '', ''];
    const c = compare(model, v.id, 'hand-written');
    if (v.id === 'hand-written') {
      const r = compare(model, 'hand-written', 'raw');
      return [...head, `raw ${formatRatio(r.p50Ratio)}`, `raw ${formatDeltaMs(r.p50AddedMs)}`];
    }
    return [...head, `${formatRatio(c.p50Ratio)} (${formatRoundRatio(c)} by round)`, formatDeltaMs(c.p50AddedMs)];
  });
  return {
    title: `lambda-overhead · ${model.model} (${model.path}), Node ${result.node}`,
    notes: [
      `Bodies: hand-written gets the raw float32 tensor (${model.rawBodyBytes} B), Arclight the OIP binary body (${model.oipBodyBytes} B, binary output asked for); both base64 in an HTTP API v2 event, both answer base64.`,
      `onnxruntime-node ${result.onnxruntime}, intraOpNumThreads ${result.threads}; Arclight logs at INFO (one JSON line per request) to /dev/null.`,
      `Interleaved: ${model.plan.rounds} rounds × ${model.plan.block} calls per variant (order rotates) after ${model.plan.warmup} warm-up calls each; ${model.seconds.toFixed(1)} s measured. 1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after.`,
      ...(note ? [note] : []),
    ],
    columns: [...SUMMARY_COLUMNS, 'p50 ÷ hand-written', 'p50 − hand-written'],
    rows,
  };
}

function modelCheck(model: LambdaModelResult): Check {
  const target = TARGETS[model.model] ?? {};
  const c = compare(model, 'handler', 'hand-written');
  const { pass, parts } = holdToTarget(c, target, 'p50');
  return {
    status: pass ? 'PASS' : 'FAIL',
    text: `${model.model.padEnd(9)} Arclight handler vs hand-written binary Lambda: ${parts.join(', ')}; by round ${formatRoundRatio(c)}`,
  };
}

/** The handler as deployed (metrics on) against the same target, said as information beside the check above. */
function deployedCheck(model: LambdaModelResult): Check {
  const { parts } = holdToTarget(compare(model, 'deployed', 'hand-written'), TARGETS[model.model] ?? {}, 'p50');
  return {
    status: 'INFO',
    text: `${model.model.padEnd(9)} as deployed (EMF metrics written after each invocation) vs hand-written: ${parts.join(', ')}`,
  };
}

function chart(result: LambdaOverheadResult): string {
  return variantsChart(result.models, 'hand-written', {
    title: 'Lambda handler overhead on Node 22: p50 (bar) and p99 (tick) per invocation',
    subtitle: `Node ${result.node}, onnxruntime-node ${result.onnxruntime}, ${result.threads} intra-op thread(s)`,
  });
}
