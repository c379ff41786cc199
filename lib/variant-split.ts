/**
 * How traffic is split between an API's variants, shared by the constructs (ALB weights at synth), the runtime (the
 * Lambda function's in-process split, the shadow copy's sampling) and `arclight dev` (its front's split). Imports
 * nothing, so the runtime bundle and the CLI take it alike.
 *
 * Weights are relative (the API's own model weighs 1) and read to 0.01; they become the smallest integers in the same
 * ratio, which is what an ALB's weighted forward takes (0-999) and what makes a split exact over a whole cycle.
 */

/** The name of the API's own variant (SageMaker's default production variant name, kept on every backend). */
export const PRIMARY_VARIANT = 'AllTraffic';

/** The largest integer weight an ALB forward action accepts per target group. */
export const MAX_INTEGER_WEIGHT = 999;

/** What a variant is, as the constructs record it in the template and the runtime and `arclight dev` read it. */
export interface VariantMetadata {
  readonly name: string;
  /** Relative weight (production) or the share of requests copied (shadow, 0-1]. */
  readonly weight: number;
  readonly shadow: boolean;
}

/** One weighted variant a Lambda function serves beside its own model (`ARCLIGHT_VARIANTS`, a JSON list of them). */
export interface LambdaVariantSpec {
  readonly name: string;
  readonly weight: number;
  /** The variant's own contract variables (model URI, sha256, format...), over the function's. */
  readonly env: Readonly<Record<string, string>>;
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/**
 * The relative weights as the smallest integers in the same ratio (1 and 0.25 → 4 and 1), read to 0.01; throws
 * when a weight is not a multiple of 0.01 or the ratio needs an integer above 999.
 */
export function integerWeights(weights: readonly number[]): number[] {
  const hundredths = weights.map((weight) => {
    const scaled = Math.round(weight * 100);
    if (!(scaled >= 1) || Math.abs(scaled - weight * 100) > 1e-6)
      throw new Error(`weight ${weight} is not a positive multiple of 0.01`);
    return scaled;
  });
  const divisor = hundredths.reduce(gcd);
  const integers = hundredths.map((h) => h / divisor);
  const largest = Math.max(...integers);
  if (largest > MAX_INTEGER_WEIGHT)
    throw new Error(
      `weights ${weights.join(', ')} need integer weights up to ${largest} (${integers.join(':')}); an ALB takes at most ${MAX_INTEGER_WEIGHT}`,
    );
  return integers;
}

/**
 * A deterministic weighted split (smooth weighted round robin, as nginx balances): over every cycle of
 * sum-of-weights picks, each item is picked exactly its integer weight times, interleaved rather than in runs.
 */
export class WeightedSplit<T> {
  private readonly items: readonly { readonly item: T; readonly weight: number }[];
  private readonly current: number[];
  private readonly total: number;

  constructor(entries: readonly { readonly item: T; readonly weight: number }[]) {
    if (entries.length === 0) throw new Error('a split needs at least one item');
    const weights = integerWeights(entries.map((e) => e.weight));
    this.items = entries.map((e, i) => ({ item: e.item, weight: weights[i]! }));
    this.current = entries.map(() => 0);
    this.total = weights.reduce((a, b) => a + b, 0);
  }

  /** The next item. */
  next(): T {
    let best = 0;
    for (let i = 0; i < this.items.length; i++) {
      this.current[i]! += this.items[i]!.weight;
      if (this.current[i]! > this.current[best]!) best = i;
    }
    this.current[best]! -= this.total;
    return this.items[best]!.item;
  }
}

/**
 * A deterministic share of events (a shadow's copies): event n is taken when floor(n × share) grows, so 50 % takes
 * every second one and any N events take floor(N × share) of them.
 */
export class DeterministicShare {
  private seen = 0;

  constructor(private readonly share: number) {}

  /** Whether this event is in the share. */
  take(): boolean {
    const before = Math.floor(this.seen * this.share + 1e-9);
    this.seen++;
    return Math.floor(this.seen * this.share + 1e-9) > before;
  }
}

/** The requests a shadow gets copies of: inference (`POST /`, `/invocations`, OIP infer), as the container copies them. */
export function isInferenceRequest(method: string | undefined, path: string): boolean {
  if (method !== 'POST') return false;
  const bare = path.split('?', 1)[0]!;
  return (
    bare === '/' ||
    bare === '/invocations' ||
    /^\/v2\/models\/[^/]+\/infer$/.test(bare) ||
    /^\/v2\/models\/[^/]+\/versions\/[^/]+\/infer$/.test(bare)
  );
}
