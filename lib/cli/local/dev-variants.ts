/**
 * `arclight dev` serving an API's variants as the cloud does, deterministically. Each variant that runs apart in the
 * cloud (an ECS service, a SageMaker model, the Lambda shadow function) is a process of its own here; Lambda's
 * weighted variants run inside the function's own process, which splits as it does deployed.
 *
 * The front picks the production variant of each request as the ALB (or SageMaker) would, by weight, but with a
 * smooth weighted round robin, so N requests split exactly by the weights over each cycle; `x-arclight-variant` pins
 * one, and any name that is not a production variant (the shadow's included) is a 400, as the deployed ALB's rule
 * answers. Answers name their variant. The shadow gets a copy of the chosen share of inference requests after the
 * answer went out; its answer is logged (status and latency, never the body), never returned.
 */
import { ENV, VARIANT_HEADER } from '../../contract.js';
import {
  DeterministicShare,
  PRIMARY_VARIANT,
  WeightedSplit,
  isInferenceRequest,
  type VariantMetadata,
} from '../../variant-split.js';

/** One process of an API's variants. */
export interface DevVariantMember<P> {
  readonly name: string;
  readonly weight: number;
  readonly shadow: boolean;
  readonly process: P;
}

/** What the front does with one request of an API with variants. */
export type VariantPick<P> =
  | { readonly member: DevVariantMember<P>; readonly error?: undefined }
  | { readonly error: string; readonly member?: undefined };

export class DevVariantGroup<P> {
  readonly production: readonly DevVariantMember<P>[];
  readonly shadow: DevVariantMember<P> | undefined;
  private readonly split: WeightedSplit<DevVariantMember<P>>;
  private readonly copies: DeterministicShare | undefined;

  /** `members`: the API's own process first (weight 1), then its variants' (as the template records them). */
  constructor(
    readonly apiName: string,
    /** The API's own process splits between its weighted variants itself (a Lambda function): pins go to it. */
    private readonly splitsInProcess: boolean,
    members: readonly DevVariantMember<P>[],
  ) {
    this.production = members.filter((m) => !m.shadow);
    this.shadow = members.find((m) => m.shadow);
    this.split = new WeightedSplit(this.production.map((m) => ({ item: m, weight: m.weight })));
    this.copies = this.shadow ? new DeterministicShare(Math.min(1, this.shadow.weight)) : undefined;
  }

  /** The production variant that answers a request with this `x-arclight-variant` header (or none). */
  pick(pinned: string | undefined): VariantPick<P> {
    if (pinned === undefined || this.splitsInProcess) return { member: this.split.next() };
    const member = this.production.find((m) => m.name === pinned.trim());
    if (member) return { member };
    return {
      error: `${VARIANT_HEADER} '${pinned.slice(0, 100)}' names no variant of '${this.apiName}'; it serves ${this.production.map((m) => m.name).join(', ')}`,
    };
  }

  /** Whether this inference request is one the shadow gets a copy of. */
  takeCopy(): boolean {
    return this.copies?.take() ?? false;
  }
}

export { isInferenceRequest };

/** The variant record of one API's process: the template's, or the API's own (weight 1). */
export function memberOf(
  variant: VariantMetadata | undefined,
): Pick<DevVariantMember<unknown>, 'name' | 'weight' | 'shadow'> {
  return variant ?? { name: PRIMARY_VARIANT, weight: 1, shadow: false };
}

/**
 * The deployed environment less what reaches the shadow in the cloud (the ALB's shadow listener, the shadow function's
 * alias): locally the front sends the copies.
 */
export function withoutCloudShadow(environment: Readonly<Record<string, string>>): Record<string, string> {
  const cloudOnly = new Set<string>([ENV.shadowUrl, ENV.shadowFunction, ENV.shadowPercent]);
  return Object.fromEntries(Object.entries(environment).filter(([name]) => !cloudOnly.has(name)));
}
