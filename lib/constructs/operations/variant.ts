/**
 * More models (or predictors) behind one API beside its own: weighted production variants that share live traffic,
 * and a shadow variant that gets a copy of it, whose answers are logged and never returned. SageMaker serves them
 * as the endpoint's ProductionVariants and ShadowProductionVariants, each on its own instances, each with SageMaker's
 * per-variant metrics (Invocations, ModelLatency, 4xx/5xx by VariantName), which the dashboard charts side by side.
 */
import type { ModelSource } from '../model-source.js';
import type { Predictor } from '../predictor.js';

/** One more variant of a RealtimeApi. */
export interface VariantProps {
  /** The variant's name, as SageMaker's metrics and the `x-amzn-invoked-production-variant` header name it. */
  readonly name: string;
  /** The model it serves. */
  readonly model: ModelSource;
  /** The code behind `POST /`. @default the API's predictor */
  readonly predictor?: Predictor;
  /**
   * Its share of live traffic relative to the API's own model, which weighs 1 (0.25 beside it: a fifth of requests);
   * for a shadow, the share of requests copied to it. @default 1
   */
  readonly weight?: number;
  /** A shadow: receives a copy of live requests; its answers are never returned. @default false */
  readonly shadow?: boolean;
  /** Instances serving it (of the compute's instance type). @default 1 */
  readonly instanceCount?: number;
}

/** Names SageMaker accepts for a variant (and the API's own, `AllTraffic`, is taken). */
const VARIANT_NAME = /^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$/;

/** Every problem with the variants, given the API's own variant name. */
export function variantProblems(variants: readonly VariantProps[], primaryName: string): string[] {
  const problems: string[] = [];
  const seen = new Set([primaryName]);
  for (const variant of variants) {
    if (!VARIANT_NAME.test(variant.name))
      problems.push(`variant name '${variant.name}' must be letters, digits and '-', at most 63`);
    else if (seen.has(variant.name)) problems.push(`variant name '${variant.name}' is used twice`);
    seen.add(variant.name);
    const weight = variant.weight ?? 1;
    if (!(weight > 0) || !Number.isFinite(weight))
      problems.push(`variant '${variant.name}': weight must be a positive number, got ${weight}`);
    const count = variant.instanceCount ?? 1;
    if (!Number.isInteger(count) || count < 1)
      problems.push(`variant '${variant.name}': instanceCount must be an integer of at least 1, got ${count}`);
  }
  const shadows = variants.filter((v) => v.shadow);
  if (shadows.length > 1) problems.push(`at most one shadow variant, got ${shadows.length}`);
  if (shadows.length > 0 && shadows.length < variants.length)
    problems.push('a shadow variant copies the traffic of one production variant: no weighted variants beside it');
  return problems;
}
