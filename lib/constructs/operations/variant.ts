/**
 * More models (or predictors) behind one API beside its own: weighted production variants that share live traffic,
 * and a shadow variant that gets a copy of it, whose answers are logged and never returned.
 *
 * - SageMaker: the endpoint's ProductionVariants and ShadowProductionVariants, each on its own instances, with
 *   SageMaker's per-variant metrics (Invocations, ModelLatency, 4xx/5xx by VariantName).
 * - ECS: a service (task definition, model, image) per variant behind the API's ALB, whose listener forwards to their
 *   target groups with weights (`x-arclight-variant` pins one); the shadow's service sits behind a listener of its own
 *   that only the primary's tasks reach, and they copy inference requests to it after answering.
 * - Lambda: the weighted variants run inside the API's function (a runtime per variant, split by weight in each
 *   sandbox); the shadow is a function of its own, invoked asynchronously with a copy of each event.
 *
 * On Lambda and ECS the runtime writes its metrics per variant too (dimension `variant`), which the dashboard charts.
 */
import type { ModelSource } from '../model-source.js';
import type { Predictor } from '../predictor.js';
import { PRIMARY_VARIANT, integerWeights, type VariantMetadata } from '../../variant-split.js';

export { PRIMARY_VARIANT };

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
  /** Instances (SageMaker) or tasks (ECS, where it is the service's minimum) serving it. Not on Lambda. @default 1 */
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

/**
 * Problems of the weights where Arclight splits traffic itself (the ALB's integer weights, the Lambda function's
 * split): weights read to 0.01, in a ratio an ALB can hold; a shadow copies at most every request.
 */
export function splitProblems(variants: readonly VariantProps[]): string[] {
  const problems: string[] = [];
  const production = variants.filter((v) => !v.shadow);
  const weights = [1, ...production.map((v) => v.weight ?? 1)];
  if (weights.every((w) => w > 0 && Number.isFinite(w))) {
    try {
      integerWeights(weights);
    } catch (error) {
      problems.push(`variant weights (the API's own model weighs 1): ${(error as Error).message}`);
    }
  }
  for (const shadow of variants.filter((v) => v.shadow)) {
    const weight = shadow.weight ?? 1;
    if (weight > 1)
      problems.push(
        `shadow variant '${shadow.name}': its weight is the share of requests copied, at most 1, got ${weight}`,
      );
  }
  return problems;
}

/** What the template records about a variant (for `arclight dev`). */
export function variantMetadata(variant: VariantProps): VariantMetadata {
  return { name: variant.name, weight: variant.weight ?? 1, shadow: variant.shadow ?? false };
}

/** The share of requests copied to a shadow, in percent. */
export function shadowPercent(variant: VariantProps): number {
  return Math.round(Math.min(1, variant.weight ?? 1) * 10000) / 100;
}
