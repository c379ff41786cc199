/** Latency statistics over samples in milliseconds. */

export interface Summary {
  readonly n: number;
  readonly minMs: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
  readonly meanMs: number;
  readonly stdevMs: number;
}

/** The q-quantile (0..1) of ascending samples, interpolated linearly between neighbours. */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const pos = (sorted.length - 1) * Math.min(1, Math.max(0, q));
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

export function median(values: readonly number[]): number {
  return quantile(
    [...values].sort((a, b) => a - b),
    0.5,
  );
}

export function summarize(samples: readonly number[]): Summary {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  const mean = n === 0 ? Number.NaN : sorted.reduce((sum, v) => sum + v, 0) / n;
  const variance = n < 2 ? 0 : sorted.reduce((sum, v) => sum + (v - mean) ** 2, 0) / (n - 1);
  return {
    n,
    minMs: sorted[0] ?? Number.NaN,
    p50Ms: quantile(sorted, 0.5),
    p90Ms: quantile(sorted, 0.9),
    p99Ms: quantile(sorted, 0.99),
    maxMs: sorted[n - 1] ?? Number.NaN,
    meanMs: mean,
    stdevMs: Math.sqrt(variance),
  };
}

/** Quartiles of a set of values (e.g. per-round ratios), to show how much a figure moved during the run. */
export function quartiles(values: readonly number[]): { q1: number; median: number; q3: number } {
  const sorted = [...values].sort((a, b) => a - b);
  return { q1: quantile(sorted, 0.25), median: quantile(sorted, 0.5), q3: quantile(sorted, 0.75) };
}

/** A duration in ms as text, in µs below 1 ms. */
export function formatMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  if (Math.abs(ms) < 1) return `${(ms * 1000).toFixed(1)} µs`;
  if (Math.abs(ms) < 100) return `${ms.toFixed(3)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/** A signed duration difference in µs (or ms when large). */
export function formatDeltaMs(ms: number): string {
  if (!Number.isFinite(ms)) return '–';
  const sign = ms >= 0 ? '+' : '−';
  return `${sign}${formatMs(Math.abs(ms))}`;
}

export function formatRatio(ratio: number): string {
  return Number.isFinite(ratio) ? `${ratio.toFixed(3)}×` : '–';
}
