/**
 * A RealtimeApi's dashboard and default alarms. The runtime's metrics are read from lib/metric-catalog.ts, the one
 * definition the runtime emits from, so every chart names a metric that exists; each backend adds what its AWS
 * service reports (throttles, capacity, healthy targets, GPU). The alarms feed the rollout's automatic rollback and,
 * when given, an SNS topic.
 *
 * Built on aws-cloudwatch directly rather than cdk-monitoring-constructs: most of what is charted is Arclight's own
 * EMF namespace, which that library reaches only through its generic custom-metric monitoring, and the alarms must be
 * plain `IAlarm`s the rollouts (CodeDeploy, SageMaker, ECS) can name.
 */
import { Duration } from 'aws-cdk-lib';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import {
  API_NAME_DIMENSION,
  METRICS,
  METRICS_NAMESPACE,
  SHADOW_METRICS,
  STATUS_CLASS_METRICS,
  VARIANT_DIMENSION,
  allMetrics,
  type MetricDefinition,
  type MetricUnitName,
} from '../../metric-catalog.js';

/** Dashboard and alarms of a RealtimeApi. */
export interface MonitoringProps {
  /** Build the CloudWatch dashboard. @default true */
  readonly dashboard?: boolean;
  /** Build the default alarms (which the default rollout rolls back on). @default true */
  readonly alarms?: boolean;
  /** Where the alarms notify (on alarm and on recovery). @default no notification */
  readonly alarmTopic?: sns.ITopic;
  /** The 5xx share of requests (API Gateway's count) that raises the error alarm, in percent. @default 5 */
  readonly errorRatePercent?: number;
  /** The p99 of the runtime's request latency that raises the latency alarm. @default Duration.seconds(5) */
  readonly latencyP99Threshold?: Duration;
  /** Throttled or overloaded requests per minute that raise the throttling alarm. @default 1 */
  readonly throttlesPerMinute?: number;
}

/** What a backend's AWS service reports, for the dashboard and the alarms. */
export interface BackendMetrics {
  /** Requests refused for capacity per minute (Lambda throttles, the container server's 503 overloaded). */
  readonly throttles: cloudwatch.IMetric;
  /** What runs the API: concurrency, instances, tasks. */
  readonly capacity: readonly cloudwatch.IMetric[];
  /** A metric whose value below 1 (or absence) means nothing healthy serves; none on Lambda. */
  readonly healthy?: cloudwatch.IMetric;
  /** The service's own view of requests, errors and latency (SageMaker's invocations, the ALB's...). */
  readonly service: readonly cloudwatch.IMetric[];
  /** Utilisation (CPU, GPU) where the backend reports it. */
  readonly utilization: readonly cloudwatch.IMetric[];
}

/** The API Gateway metrics every backend's front door has (HTTP API or REST API). */
export interface ApiGatewayMetrics {
  /** Requests, Sum per minute. */
  readonly requests: cloudwatch.IMetric;
  /** 5xx answers, Average per minute: the share of requests (0..1). */
  readonly serverErrorRate: cloudwatch.IMetric;
  /** 4xx answers, Sum per minute (the stage's throttling answers 429, counted here). */
  readonly clientErrors: cloudwatch.IMetric;
  /** End-to-end latency. */
  readonly latency: cloudwatch.IMetric;
}

/** Everything the monitoring of one API is built from. */
export interface ApiMonitoringProps extends MonitoringProps {
  readonly apiName: string;
  readonly apiGateway: ApiGatewayMetrics;
  readonly backend: BackendMetrics;
  /** The variants whose runtimes write metrics under a `variant` dimension (Lambda, ECS), charted side by side. @default none */
  readonly variants?: readonly string[];
  /** Whether the API copies requests to a shadow (Lambda, ECS): its copies are charted. @default false */
  readonly shadow?: boolean;
}

/** Default thresholds. */
export const MONITORING_DEFAULTS = {
  errorRatePercent: 5,
  latencyP99Threshold: Duration.seconds(5),
  throttlesPerMinute: 1,
} as const;

const PERIOD = Duration.minutes(1);

/** A runtime metric of the catalog for one API, read the way CloudWatch stores what the runtime wrote. */
export function runtimeMetric(
  definition: MetricDefinition,
  apiName: string,
  options: { readonly statistic?: string; readonly label?: string; readonly variant?: string } = {},
): cloudwatch.Metric {
  return new cloudwatch.Metric({
    namespace: METRICS_NAMESPACE,
    metricName: definition.name,
    dimensionsMap: {
      [API_NAME_DIMENSION]: apiName,
      ...(options.variant === undefined ? {} : { [VARIANT_DIMENSION]: options.variant }),
    },
    statistic: options.statistic ?? defaultStatistic(definition),
    period: PERIOD,
    ...(options.label ? { label: options.label } : {}),
  });
}

/** Counts add up; durations and sizes average. */
function defaultStatistic(definition: MetricDefinition): string {
  return definition.unit === 'Count' && definition !== METRICS.batchSize ? 'Sum' : 'Average';
}

/** Problems with the monitoring props. */
export function monitoringProblems(props: MonitoringProps | undefined): string[] {
  const problems: string[] = [];
  const rate = props?.errorRatePercent;
  if (rate !== undefined && !(rate > 0 && rate <= 100))
    problems.push(`monitoring.errorRatePercent must be in (0, 100], got ${rate}`);
  const p99 = props?.latencyP99Threshold?.toMilliseconds();
  if (p99 !== undefined && !(p99 > 0)) problems.push(`monitoring.latencyP99Threshold must be positive, got ${p99} ms`);
  const throttles = props?.throttlesPerMinute;
  if (throttles !== undefined && !(throttles > 0))
    problems.push(`monitoring.throttlesPerMinute must be positive, got ${throttles}`);
  return problems;
}

/** The dashboard and default alarms of one RealtimeApi. */
export class ApiMonitoring extends Construct {
  /** The default alarms (empty when `alarms: false`); the rollouts roll back on them. */
  readonly alarms: readonly cloudwatch.Alarm[];
  /** The 5xx-rate alarm. */
  readonly errorRateAlarm?: cloudwatch.Alarm;
  /** The p99-latency alarm. */
  readonly latencyAlarm?: cloudwatch.Alarm;
  /** The dashboard, unless `dashboard: false`. */
  readonly dashboard?: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: ApiMonitoringProps) {
    super(scope, id);
    if (props.alarms !== false) {
      this.errorRateAlarm = this.errorRate(props);
      this.latencyAlarm = this.latency(props);
      this.alarms = [
        this.errorRateAlarm,
        this.latencyAlarm,
        this.throttling(props),
        this.modelLoadFailures(props),
        ...(props.backend.healthy ? [this.noHealthy(props, props.backend.healthy)] : []),
      ];
      if (props.alarmTopic) {
        const action = new actions.SnsAction(props.alarmTopic);
        for (const alarm of this.alarms) {
          alarm.addAlarmAction(action);
          alarm.addOkAction(action);
        }
      }
    } else {
      this.alarms = [];
    }
    if (props.dashboard !== false) this.dashboard = this.buildDashboard(props);
  }

  private errorRate(props: ApiMonitoringProps): cloudwatch.Alarm {
    const percent = props.errorRatePercent ?? MONITORING_DEFAULTS.errorRatePercent;
    return new cloudwatch.Alarm(this, 'ErrorRate', {
      alarmDescription: `${props.apiName}: more than ${percent}% of requests answered 5xx (API Gateway), 2 of 3 minutes`,
      metric: new cloudwatch.MathExpression({
        expression: '100 * rate',
        usingMetrics: { rate: props.apiGateway.serverErrorRate },
        label: '5xx %',
        period: PERIOD,
      }),
      threshold: percent,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private latency(props: ApiMonitoringProps): cloudwatch.Alarm {
    const threshold = props.latencyP99Threshold ?? MONITORING_DEFAULTS.latencyP99Threshold;
    return new cloudwatch.Alarm(this, 'LatencyP99', {
      alarmDescription: `${props.apiName}: p99 request latency above ${threshold.toMilliseconds()} ms, 2 of 3 minutes`,
      metric: runtimeMetric(METRICS.latency, props.apiName, { statistic: 'p99' }),
      threshold: threshold.toMilliseconds(),
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private throttling(props: ApiMonitoringProps): cloudwatch.Alarm {
    const perMinute = props.throttlesPerMinute ?? MONITORING_DEFAULTS.throttlesPerMinute;
    return new cloudwatch.Alarm(this, 'Throttles', {
      alarmDescription: `${props.apiName}: ${perMinute} or more requests a minute refused for capacity, 2 of 3 minutes`,
      metric: props.backend.throttles,
      threshold: perMinute,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 3,
      datapointsToAlarm: 2,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private modelLoadFailures(props: ApiMonitoringProps): cloudwatch.Alarm {
    return new cloudwatch.Alarm(this, 'ModelLoadFailures', {
      alarmDescription: `${props.apiName}: the model failed to load (fetch, verify, session or init)`,
      metric: runtimeMetric(METRICS.modelLoadFailure, props.apiName),
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
      evaluationPeriods: 1,
      treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
    });
  }

  private noHealthy(props: ApiMonitoringProps, healthy: cloudwatch.IMetric): cloudwatch.Alarm {
    return new cloudwatch.Alarm(this, 'NoHealthyCapacity', {
      alarmDescription: `${props.apiName}: no healthy instance or task serves the API (or none reports), 3 minutes`,
      metric: healthy,
      threshold: 1,
      comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
      evaluationPeriods: 3,
      // Nothing reporting is nothing serving.
      treatMissingData: cloudwatch.TreatMissingData.BREACHING,
    });
  }

  private buildDashboard(props: ApiMonitoringProps): cloudwatch.Dashboard {
    const { apiName } = props;
    const metric = (definition: MetricDefinition, statistic?: string, label?: string): cloudwatch.Metric =>
      runtimeMetric(definition, apiName, { ...(statistic ? { statistic } : {}), ...(label ? { label } : {}) });
    const coldStart = (units: readonly MetricUnitName[]): cloudwatch.Metric[] =>
      allMetrics()
        .filter((m) => m.emission === 'coldStart' && m !== METRICS.coldStart && units.includes(m.unit))
        .map((m) => metric(m));
    const graph = (
      title: string,
      left: cloudwatch.IMetric[],
      right: cloudwatch.IMetric[] = [],
    ): cloudwatch.GraphWidget => new cloudwatch.GraphWidget({ title, left, right, width: 8, height: 6 });
    const dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(3),
    });
    dashboard.addWidgets(
      graph(
        'Requests',
        [props.apiGateway.requests, metric(METRICS.latency, 'SampleCount', 'Requests (runtime)')],
        [props.apiGateway.clientErrors],
      ),
      graph(
        'Answers by status class (runtime)',
        STATUS_CLASS_METRICS.map((m) => metric(m)),
      ),
      graph('5xx share (API Gateway)', [props.apiGateway.serverErrorRate]),
    );
    dashboard.addWidgets(
      graph('Latency (runtime)', [
        metric(METRICS.latency, 'p50'),
        metric(METRICS.latency, 'p90'),
        metric(METRICS.latency, 'p99'),
      ]),
      graph('Latency (API Gateway)', [props.apiGateway.latency]),
      graph('Batch size', [
        metric(METRICS.batchSize, 'Average'),
        metric(METRICS.batchSize, 'Maximum', 'BatchSize max'),
      ]),
    );
    dashboard.addWidgets(
      graph(
        'Cold starts',
        [metric(METRICS.coldStart)],
        [metric(METRICS.coldStartTime, 'Maximum', 'ColdStartTime max')],
      ),
      graph('Cold start phases (ms)', coldStart(['Milliseconds'])),
      graph('Model fetch', coldStart(['Bytes', 'Count']), coldStart(['Megabytes/Second'])),
    );
    dashboard.addWidgets(
      graph(
        'Failures and refusals',
        allMetrics()
          .filter((m) => m.emission === 'event')
          .map((m) => metric(m)),
        [props.backend.throttles],
      ),
      graph('Capacity', [...props.backend.capacity], props.backend.healthy ? [props.backend.healthy] : []),
      graph('Backend', [...props.backend.service]),
    );
    const variants = props.variants ?? [];
    if (variants.length > 0) {
      const perVariant = (definition: MetricDefinition, statistic: string, what: string): cloudwatch.Metric[] =>
        variants.map((variant) =>
          runtimeMetric(definition, apiName, { statistic, variant, label: `${variant}: ${what}` }),
        );
      dashboard.addWidgets(
        graph('Requests per variant (runtime)', perVariant(METRICS.latency, 'SampleCount', 'requests')),
        graph('5xx per variant (runtime)', perVariant(METRICS.requests5xx, 'Sum', '5xx')),
        graph('Latency p99 per variant (runtime)', perVariant(METRICS.latency, 'p99', 'p99')),
      );
    }
    const bottom: cloudwatch.IWidget[] = [];
    if (props.shadow)
      bottom.push(
        graph(
          'Shadow copies',
          Object.values(SHADOW_METRICS).map((m) => metric(m)),
        ),
      );
    if (props.backend.utilization.length > 0) bottom.push(graph('Utilization (%)', [...props.backend.utilization]));
    if (this.alarms.length > 0)
      bottom.push(new cloudwatch.AlarmStatusWidget({ title: 'Alarms', alarms: [...this.alarms], width: 8, height: 6 }));
    if (bottom.length > 0) dashboard.addWidgets(...bottom);
    return dashboard;
  }
}
