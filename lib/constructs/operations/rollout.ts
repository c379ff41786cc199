/**
 * How a new version of a RealtimeApi (new image, predictor, config or model object) takes traffic, and which alarms
 * stop it and roll it back: a CodeDeploy deployment of a Lambda alias, a SageMaker endpoint's DeploymentConfig
 * (blue/green with canary or linear shifting, or rolling batches), an ECS service's circuit breaker and deployment
 * alarms. Each backend asks the rollout for its own shape.
 */
import { Duration } from 'aws-cdk-lib';
import type * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import type * as codedeploy from 'aws-cdk-lib/aws-codedeploy';
import type * as sagemaker from 'aws-cdk-lib/aws-sagemaker';

/** Options every rollout that can roll back shares. */
export interface RolloutAlarmOptions {
  /** More alarms that stop the rollout and roll it back, beside Arclight's own. @default none */
  readonly alarms?: readonly cloudwatch.IAlarm[];
  /** Also roll back on Arclight's default alarms (5xx rate, p99 latency, throttles, model-load failures, no healthy capacity). @default true */
  readonly defaultAlarms?: boolean;
}

/** A traffic shift in steps. */
export interface StepRolloutProps extends RolloutAlarmOptions {
  /** Share of traffic (canary: the first step; linear: each step), in percent. @default 10 */
  readonly percent?: number;
  /** How long each step bakes, watched by the alarms, before the next (whole minutes). @default Duration.minutes(5) */
  readonly interval?: Duration;
}

/** Rolling batches of instances (SageMaker fleets too large to double; ECS's own way). */
export interface RollingRolloutProps extends RolloutAlarmOptions {
  /** Share of the fleet updated per batch, in percent. @default 25 */
  readonly batchPercent?: number;
  /** How long each batch bakes, watched by the alarms, before the next. @default Duration.minutes(5) */
  readonly interval?: Duration;
}

/** Which backend a rollout is checked against. */
export type RolloutCompute = 'lambda' | 'sagemaker' | 'ecs';

/** How a new version takes traffic; see the static factories. */
export abstract class Rollout {
  /** Every request goes to the new version at once; no automatic rollback. */
  static allAtOnce(): Rollout {
    return new AllAtOnceRollout();
  }

  /** `percent` of traffic for `interval`, then the rest; rolled back if an alarm fires. The default on Lambda and SageMaker. */
  static canary(props: StepRolloutProps = {}): Rollout {
    return new StepRollout('canary', props);
  }

  /** `percent` more of traffic every `interval` until all; rolled back if an alarm fires. */
  static linear(props: StepRolloutProps = {}): Rollout {
    return new StepRollout('linear', props);
  }

  /**
   * Instances replaced in batches of `batchPercent`, rolled back if an alarm fires: for SageMaker fleets that
   * blue/green would double. The default on ECS (a rolling deployment with its circuit breaker). Not for Lambda.
   */
  static rolling(props: RollingRolloutProps = {}): Rollout {
    return new RollingRollout(props);
  }

  /** What kind of shift this is. */
  abstract readonly kind: 'allAtOnce' | 'canary' | 'linear' | 'rolling';
  /** The alarms given beside Arclight's. */
  readonly alarms: readonly cloudwatch.IAlarm[];
  /** Whether Arclight's default alarms roll back too. */
  readonly defaultAlarms: boolean;

  protected constructor(options: RolloutAlarmOptions) {
    this.alarms = options.alarms ?? [];
    this.defaultAlarms = options.defaultAlarms ?? true;
  }

  /** Every problem with this rollout on `compute`. */
  abstract problems(compute: RolloutCompute): string[];

  /**
   * The CodeDeploy deployment config's traffic routing for a Lambda alias; undefined when the alias moves at once
   * with no CodeDeploy deployment.
   */
  abstract codeDeployTrafficRouting(): codedeploy.CfnDeploymentConfig.TrafficRoutingConfigProperty | undefined;

  /** The SageMaker endpoint's DeploymentConfig, rolling back on the alarms named; undefined for SageMaker's default. */
  abstract sageMakerDeploymentConfig(
    alarmNames: readonly string[],
  ): sagemaker.CfnEndpoint.DeploymentConfigProperty | undefined;

  /** Whether the ECS service rolls back on the alarms (its deployment alarms). */
  abstract readonly ecsRollsBack: boolean;

  /** The alarms that roll back, given Arclight's default alarms for the API. */
  rollbackAlarms(defaults: readonly cloudwatch.IAlarm[]): cloudwatch.IAlarm[] {
    return [...(this.defaultAlarms ? defaults : []), ...this.alarms];
  }
}

function autoRollback(alarmNames: readonly string[]): sagemaker.CfnEndpoint.AutoRollbackConfigProperty | undefined {
  return alarmNames.length > 0 ? { alarms: alarmNames.map((alarmName) => ({ alarmName })) } : undefined;
}

/** Problems of a bake interval: SageMaker and CodeDeploy count whole minutes (SageMaker up to an hour). */
function intervalProblems(interval: Duration, compute: RolloutCompute): string[] {
  const seconds = interval.toSeconds();
  if (compute === 'lambda' && (seconds < 60 || seconds % 60 !== 0))
    return [`rollout interval must be whole minutes on Lambda (CodeDeploy), got ${seconds} s`];
  if (compute === 'sagemaker' && (seconds < 0 || seconds > 3600))
    return [`rollout interval must be 0–3600 s on SageMaker, got ${seconds} s`];
  return [];
}

class AllAtOnceRollout extends Rollout {
  readonly kind = 'allAtOnce' as const;
  readonly ecsRollsBack = false;

  constructor() {
    super({ defaultAlarms: false });
  }

  problems(): string[] {
    return [];
  }

  codeDeployTrafficRouting(): undefined {
    return undefined;
  }

  sageMakerDeploymentConfig(): sagemaker.CfnEndpoint.DeploymentConfigProperty {
    return {
      blueGreenUpdatePolicy: { trafficRoutingConfiguration: { type: 'ALL_AT_ONCE', waitIntervalInSeconds: 0 } },
    };
  }
}

class StepRollout extends Rollout {
  readonly ecsRollsBack = true;
  readonly percent: number;
  readonly interval: Duration;

  constructor(
    readonly kind: 'canary' | 'linear',
    props: StepRolloutProps,
  ) {
    super(props);
    this.percent = props.percent ?? 10;
    this.interval = props.interval ?? Duration.minutes(5);
  }

  problems(compute: RolloutCompute): string[] {
    const problems: string[] = [];
    if (!Number.isInteger(this.percent) || this.percent < 1 || this.percent > 99)
      problems.push(`rollout percent must be an integer from 1 to 99, got ${this.percent}`);
    // SageMaker's limits: a canary of at most half the fleet, linear steps of 10–50%.
    else if (compute === 'sagemaker' && this.kind === 'canary' && this.percent > 50)
      problems.push(`a canary on SageMaker takes at most 50% of the fleet, got ${this.percent}%`);
    else if (compute === 'sagemaker' && this.kind === 'linear' && (this.percent < 10 || this.percent > 50))
      problems.push(`linear steps on SageMaker are 10–50% of the fleet, got ${this.percent}%`);
    problems.push(...intervalProblems(this.interval, compute));
    return problems;
  }

  codeDeployTrafficRouting(): codedeploy.CfnDeploymentConfig.TrafficRoutingConfigProperty {
    const minutes = this.interval.toMinutes();
    return this.kind === 'canary'
      ? { type: 'TimeBasedCanary', timeBasedCanary: { canaryPercentage: this.percent, canaryInterval: minutes } }
      : { type: 'TimeBasedLinear', timeBasedLinear: { linearPercentage: this.percent, linearInterval: minutes } };
  }

  sageMakerDeploymentConfig(alarmNames: readonly string[]): sagemaker.CfnEndpoint.DeploymentConfigProperty {
    const step = { type: 'CAPACITY_PERCENT', value: this.percent };
    const rollback = autoRollback(alarmNames);
    return {
      blueGreenUpdatePolicy: {
        trafficRoutingConfiguration: {
          type: this.kind === 'canary' ? 'CANARY' : 'LINEAR',
          waitIntervalInSeconds: this.interval.toSeconds(),
          ...(this.kind === 'canary' ? { canarySize: step } : { linearStepSize: step }),
        },
      },
      ...(rollback ? { autoRollbackConfiguration: rollback } : {}),
    };
  }
}

class RollingRollout extends Rollout {
  readonly kind = 'rolling' as const;
  readonly ecsRollsBack = true;
  readonly batchPercent: number;
  readonly interval: Duration;

  constructor(props: RollingRolloutProps) {
    super(props);
    this.batchPercent = props.batchPercent ?? 25;
    this.interval = props.interval ?? Duration.minutes(5);
  }

  problems(compute: RolloutCompute): string[] {
    const problems: string[] = [];
    if (compute === 'lambda')
      problems.push('Rollout.rolling() replaces instances; Lambda has none: use Rollout.canary() or Rollout.linear()');
    if (!Number.isInteger(this.batchPercent) || this.batchPercent < 5 || this.batchPercent > 50)
      problems.push(
        `rollout batchPercent must be an integer from 5 to 50 (SageMaker's range), got ${this.batchPercent}`,
      );
    problems.push(...intervalProblems(this.interval, compute));
    return problems;
  }

  codeDeployTrafficRouting(): undefined {
    return undefined;
  }

  sageMakerDeploymentConfig(alarmNames: readonly string[]): sagemaker.CfnEndpoint.DeploymentConfigProperty {
    const batch = { type: 'CAPACITY_PERCENT', value: this.batchPercent };
    const rollback = autoRollback(alarmNames);
    return {
      rollingUpdatePolicy: {
        maximumBatchSize: batch,
        rollbackMaximumBatchSize: batch,
        waitIntervalInSeconds: this.interval.toSeconds(),
      },
      ...(rollback ? { autoRollbackConfiguration: rollback } : {}),
    };
  }
}
