/**
 * What the `overhead` and `lambda-overhead` scenarios share. In a child process: per model, variants that answer the
 * same input are checked to compute the same logits, then timed interleaved in round-robin blocks (the order rotates
 * each round) after a warm-up. In the parent: the child's run between two load-average readings, each variant held
 * against a baseline variant (over all samples and round by round), the table cells and the chart.
 *
 * onnxruntime-node is imported here for its types only: lambda-overhead's child must load the one copy that sits
 * beside the synth bundle (a second copy of the native library in the process is a confound no deployment has).
 */
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import { ENV } from '../lib/contract.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../lib/constructs/images/lambda-image-context.js';
import { BINARY_HEADER } from '../lib/runtime/codec/oip.js';
import type { LambdaHandler, LambdaResult } from '../lib/runtime/transports/lambda-adapter.js';
import { runInChild } from './child.js';
import { DIGITS, MOBILENET, lambdaContext, type BenchModel } from './payloads.js';
import { formatDeltaMs, formatMs, formatRatio, median, quartiles, summarize, type Summary } from './stats.js';
import { barChart } from './svg.js';

export interface ModelPlan {
  readonly model: 'digits' | 'mobilenet';
  /** Unmeasured calls per variant before measuring. */
  readonly warmup: number;
  readonly rounds: number;
  /** Consecutive measured calls of one variant inside a round. */
  readonly block: number;
}

/** What the parent hands the measuring child. */
export interface PlansInput {
  readonly threads: number;
  readonly plans: readonly ModelPlan[];
}

export const MODELS: Record<ModelPlan['model'], BenchModel> = { digits: DIGITS, mobilenet: MOBILENET };

export interface Variant<Id extends string> {
  readonly id: Id;
  readonly label: string;
  /** One call; throws unless the answer is a success. */
  readonly call: () => Promise<unknown>;
  /** The output logits this variant answers with, to check every variant computes the same thing. */
  readonly logits?: () => Promise<Float32Array>;
}

export interface VariantResult<Id extends string> {
  readonly id: Id;
  readonly label: string;
  readonly summary: Summary;
  /** The median of each round's block, in round order: how the variant moved while the machine's load did. */
  readonly roundP50Ms: readonly number[];
}

/** What every scenario reports of a model; each adds its own fields. */
export interface MeasuredModel<Id extends string> {
  readonly model: string;
  readonly path: string;
  readonly plan: ModelPlan;
  readonly seconds: number;
  readonly variants: readonly VariantResult<Id>[];
}

/**
 * The Lambda handler as `cdk synth` builds it: the esbuild bundle of the image's build context, configured by the
 * deployed env contract (read at import, so set just before). `bundle` is its path, to load modules from beside it.
 * `extraEnv` is set for this import only (the runtime reads it while the bundle's top-level await loads the model);
 * `instance` names a second, separate instance of the same bundle (its own runtime, session and settings).
 */
export async function importSynthesizedHandler(
  apiName: string,
  modelPath: string,
  threads: number,
  options: {
    readonly extraEnv?: Readonly<Record<string, string>>;
    readonly instance?: string;
    readonly bundle?: string;
  } = {},
): Promise<{ handler: LambdaHandler; bundle: string }> {
  const bundle =
    options.bundle ?? join(buildLambdaImageContext({ arch: process.arch === 'arm64' ? 'arm64' : 'x64' }), BUNDLE_FILE);
  Object.assign(process.env, {
    [ENV.apiName]: apiName,
    [ENV.modelUri]: resolve(modelPath),
    [ENV.intraOpThreads]: String(threads),
    [ENV.logLevel]: 'INFO',
    ...options.extraEnv,
  });
  const url = `${pathToFileURL(bundle).href}${options.instance ? `?instance=${options.instance}` : ''}`;
  try {
    const { handler } = (await import(url)) as { handler: LambdaHandler };
    return { handler, bundle };
  } finally {
    for (const name of Object.keys(options.extraEnv ?? {})) Reflect.deleteProperty(process.env, name);
  }
}

/** `handler` invoked with a Lambda context; rejects unless it answers 200. */
export function okInvoker(handler: LambdaHandler): (event: APIGatewayProxyEventV2) => Promise<LambdaResult> {
  const context = lambdaContext();
  return async (event) => {
    const result = await handler(event, context);
    if (result.statusCode !== 200) throw new Error(`handler answered ${result.statusCode}: ${result.body}`);
    return result;
  };
}

/** Float32 values of little-endian bytes, copied (the bytes may sit at an offset a Float32Array cannot view). */
export function float32s(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

/** The first output of a Lambda result carrying an OIP binary answer (base64, its JSON header's length in a header). */
export function lambdaBinaryLogits(result: LambdaResult): Float32Array {
  return binaryLogits(Buffer.from(result.body, 'base64'), result.headers?.[BINARY_HEADER]);
}

/** The first output of an OIP binary answer: the tensor bytes after the JSON header of `headerLength` bytes. */
export function binaryLogits(body: Buffer, headerLength: unknown): Float32Array {
  const length = Number(headerLength);
  if (!Number.isInteger(length)) throw new Error(`binary answer lacks ${BINARY_HEADER}`);
  return float32s(body.subarray(length));
}

/** Throws unless every variant that tells its logits answers what the first variant answers. */
export async function assertSameLogits<Id extends string>(variants: readonly Variant<Id>[]): Promise<void> {
  const reference = variants[0];
  if (!reference?.logits) throw new Error('the first variant must tell its logits: the others are checked against it');
  const expected = (await reference.logits()).slice();
  for (const variant of variants) {
    if (!variant.logits) continue;
    const diff = maxAbsDiff(expected, await variant.logits());
    if (!(diff <= 1e-4)) throw new Error(`${variant.id} answers other logits than ${reference.id} (max |Δ| ${diff})`);
  }
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

export interface Interleaved<Id extends string> {
  readonly warmupSeconds: number;
  /** The measured rounds alone. */
  readonly seconds: number;
  readonly variants: readonly VariantResult<Id>[];
}

/**
 * `plan.warmup` unmeasured calls per variant, taken in turns of `warmupTurn` calls, then `plan.rounds` rounds of one
 * block of `plan.block` timed calls per variant, the order rotating each round.
 */
export async function timeInterleaved<Id extends string>(
  name: string,
  variants: readonly Variant<Id>[],
  plan: ModelPlan,
  progress: (text: string) => void,
  warmupTurn = 1,
): Promise<Interleaved<Id>> {
  const turn = Math.max(1, warmupTurn);
  const warmupStarted = performance.now();
  progress(`${name}: warm-up (${plan.warmup} calls per variant)`);
  for (let done = 0; done < plan.warmup; done += turn) {
    for (const variant of variants) {
      for (let i = 0; i < Math.min(turn, plan.warmup - done); i++) await variant.call();
    }
  }

  const samples = new Map<Id, number[]>(variants.map((v) => [v.id, []]));
  const roundP50 = new Map<Id, number[]>(variants.map((v) => [v.id, []]));
  const started = performance.now();
  for (let round = 0; round < plan.rounds; round++) {
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(round + k) % variants.length]!;
      const block: number[] = [];
      for (let i = 0; i < plan.block; i++) {
        const t0 = performance.now();
        await variant.call();
        block.push(performance.now() - t0);
      }
      samples.get(variant.id)!.push(...block);
      roundP50.get(variant.id)!.push(median(block));
    }
    if ((round + 1) % Math.max(1, Math.round(plan.rounds / 10)) === 0 || round + 1 === plan.rounds) {
      progress(`${name}: round ${round + 1}/${plan.rounds}`);
    }
  }
  return {
    warmupSeconds: (started - warmupStarted) / 1000,
    seconds: (performance.now() - started) / 1000,
    variants: variants.map((v) => ({
      id: v.id,
      label: v.label,
      summary: summarize(samples.get(v.id)!),
      roundP50Ms: roundP50.get(v.id)!,
    })),
  };
}

/** The child's result, with the 1-minute load average just before and just after it ran. */
export interface ChildRun<O> {
  readonly result: O;
  readonly loadBefore: number;
  readonly loadAfter: number;
}

/** Runs the measuring child (see runInChild; `execPath`: the Node to run it in, default this one). */
export async function runMeasuringChild<I, O>(
  workerUrl: URL,
  input: I,
  progress: (text: string) => void,
  options: { readonly execPath?: string } = {},
): Promise<ChildRun<O>> {
  const loadBefore = loadavg()[0]!;
  const result = await runInChild<I, O>(workerUrl, input, progress, options);
  return { result, loadBefore, loadAfter: loadavg()[0]! };
}

export function findVariant<Id extends string>(model: MeasuredModel<Id>, id: Id): VariantResult<Id> {
  const found = model.variants.find((v) => v.id === id);
  if (!found) throw new Error(`no ${id} variant for ${model.model}`);
  return found;
}

export interface Comparison {
  readonly p50Ratio: number;
  readonly p50AddedMs: number;
  readonly p99Ratio: number;
  readonly meanRatio: number;
  /** Quartiles over rounds of (this variant's block p50 ÷ the baseline's block p50 in the same round). */
  readonly roundRatio: { q1: number; median: number; q3: number };
}

/** Variant `id` of `model` against its variant `baseId`. */
export function compare<Id extends string>(model: MeasuredModel<Id>, id: Id, baseId: Id): Comparison {
  const v = findVariant(model, id);
  const base = findVariant(model, baseId);
  return {
    p50Ratio: v.summary.p50Ms / base.summary.p50Ms,
    p50AddedMs: v.summary.p50Ms - base.summary.p50Ms,
    p99Ratio: v.summary.p99Ms / base.summary.p99Ms,
    meanRatio: v.summary.meanMs / base.summary.meanMs,
    roundRatio: quartiles(v.roundP50Ms.map((p50, i) => p50 / base.roundP50Ms[i]!)),
  };
}

/** The interquartile range of the per-round ratio, e.g. `1.012–1.048`. */
export function formatRoundRatio(c: Comparison): string {
  return `${c.roundRatio.q1.toFixed(3)}–${c.roundRatio.q3.toFixed(3)}`;
}

/** A target against the baseline variant: a p50 ratio, a p50 difference, or both. */
export interface Target {
  readonly maxRatio?: number;
  readonly maxAddedMs?: number;
}

/** Whether `c` meets `target`, and each figure held against its target as text (`ratioLabel` names the ratio). */
export function holdToTarget(c: Comparison, target: Target, ratioLabel: string): { pass: boolean; parts: string[] } {
  const parts: string[] = [];
  let pass = true;
  if (target.maxRatio !== undefined) {
    pass &&= c.p50Ratio <= target.maxRatio;
    parts.push(`${ratioLabel} ${formatRatio(c.p50Ratio)} (target ≤ ${formatRatio(target.maxRatio)})`);
  }
  if (target.maxAddedMs !== undefined) {
    pass &&= c.p50AddedMs <= target.maxAddedMs;
    parts.push(`p50 ${formatDeltaMs(c.p50AddedMs)} (target ≤ ${formatDeltaMs(target.maxAddedMs)})`);
  }
  return { pass, parts };
}

/** The columns every table starts with; `summaryCells` fills them. */
export const SUMMARY_COLUMNS: readonly string[] = ['variant', 'n', 'p50', 'p99', 'mean'];

export function summaryCells(v: VariantResult<string>): string[] {
  const s = v.summary;
  return [v.label, String(s.n), formatMs(s.p50Ms), formatMs(s.p99Ms), formatMs(s.meanMs)];
}

/** One panel per model: p50 bars with p99 ticks, the `baseline` variant marked. */
export function variantsChart<Id extends string>(
  models: readonly MeasuredModel<Id>[],
  baseline: Id,
  text: { readonly title: string; readonly subtitle: string },
): string {
  return barChart(
    models.map((m) => ({
      title: `${m.model} — ${m.path}`,
      bars: m.variants.map((v) => ({
        label: v.label,
        value: v.summary.p50Ms,
        whisker: v.summary.p99Ms,
        baseline: v.id === baseline,
      })),
    })),
    { ...text, format: formatMs },
  );
}
