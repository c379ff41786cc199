/**
 * The dashboard and default alarms of a RealtimeApi on each compute, synthesized for real. The runtime's side is read
 * by running it: the Telemetry class writes its EMF lines (every cold-start figure, every status class, every event),
 * and the names and units it wrote are compared with the catalog (lib/metric-catalog.ts) and with the metrics each
 * synthesized dashboard charts in the Arclight namespace. Alarms: which exist, their metric and threshold, the SNS
 * actions, and the props that change them.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as sns from 'aws-cdk-lib/aws-sns';
import { Compute, ModelSource, RealtimeApi } from '../../../lib/index.js';
import { METRICS, METRICS_NAMESPACE, allMetrics } from '../../../lib/metric-catalog.js';
import { Telemetry } from '../../../lib/runtime/telemetry/telemetry.js';
import { assertOneProblem, flatten, resourcesOf, tempApp, useScratchTmpdir } from '../../cdk-helpers.js';
import { DIGITS_ONNX } from '../../helpers.js';

useScratchTmpdir();

interface EmfLine {
  readonly _aws: {
    readonly CloudWatchMetrics: readonly { readonly Metrics: readonly { Name: string; Unit: string }[] }[];
  };
}

/** Runs the runtime's Telemetry through everything it can write; the EMF metric names with their units. */
function emittedByRuntime(): Map<string, string> {
  const lines: EmfLine[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: never[]) => {
    const text = typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    if (!text.includes('"_aws"')) return write(chunk, ...rest);
    for (const line of text.split('\n').filter(Boolean)) lines.push(JSON.parse(line) as EmfLine);
    return true;
  }) as typeof process.stdout.write;
  try {
    const telemetry = new Telemetry({ apiName: 'digits', mode: 'interval', flushIntervalMs: 60_000 });
    telemetry.coldStart({
      importMs: 1,
      fetchMs: 2,
      modelBytes: 3,
      mbPerS: 4,
      parts: 5,
      retries: 6,
      verifyMs: 7,
      sessionMs: 8,
      firstRunMs: 9,
      initMs: 10,
      totalMs: 11,
    });
    for (const status of [200, 302, 404, 500]) telemetry.request(1, status, 2);
    telemetry.event('Overloaded');
    telemetry.event('ExecutionProviderFallback');
    telemetry.event('ModelLoadFailure');
    for (const outcome of ['sent', 'dropped', 'failed'] as const) telemetry.shadow(outcome);
    telemetry.event('AsyncNotificationFailure');
    telemetry.close();
  } finally {
    process.stdout.write = write;
  }
  return new Map(lines.flatMap((l) => l._aws.CloudWatchMetrics.flatMap((d) => d.Metrics.map((m) => [m.Name, m.Unit]))));
}

interface DashboardMetric {
  readonly namespace: string;
  readonly name: string;
  readonly dimensions: Record<string, string>;
  readonly stat?: string;
}

/** A dashboard body as a string: joins joined, every other intrinsic a placeholder that keeps the JSON valid. */
function bodyText(value: unknown): string {
  if (typeof value === 'string') return value;
  const join = (value as Record<string, unknown>)['Fn::Join'] as [string, unknown[]] | undefined;
  if (join) return join[1].map(bodyText).join(join[0]);
  const ref = (value as Record<string, unknown>)['Ref'];
  return typeof ref === 'string' ? `{Ref:${ref}}` : '<token>';
}

/** Every metric the (only) dashboard of a template charts, parsed from its body. */
function dashboardMetrics(template: Template): DashboardMetric[] {
  const dashboards = resourcesOf(template, 'AWS::CloudWatch::Dashboard');
  assert.equal(dashboards.length, 1);
  const body = JSON.parse(bodyText(dashboards[0]![1]['DashboardBody'])) as {
    widgets: { properties: { metrics?: unknown[][] } }[];
  };
  return body.widgets.flatMap((w) =>
    (w.properties.metrics ?? []).flatMap((entry) => {
      const options = (typeof entry.at(-1) === 'object' ? entry.at(-1) : {}) as { stat?: string };
      const [namespace, name, ...rest] = entry.filter((e) => typeof e === 'string') as string[];
      if (namespace === undefined || name === undefined) return [];
      const dimensions: Record<string, string> = {};
      for (let i = 0; i + 1 < rest.length; i += 2) dimensions[rest[i]!] = rest[i + 1]!;
      return [{ namespace, name, dimensions, ...(options.stat ? { stat: options.stat } : {}) }];
    }),
  );
}

interface AlarmProps {
  readonly id: string;
  readonly props: Record<string, unknown>;
}

function alarms(template: Template): AlarmProps[] {
  return resourcesOf(template, 'AWS::CloudWatch::Alarm').map(([id, props]) => ({ id, props }));
}

/**
 * The (only) alarm whose logical id holds `idPart`, its metric's fields lifted to the top (`Namespace`, `MetricName`,
 * `Statistic`, `Dimensions`) whether CloudFormation has them there or in a labelled `Metrics` entry.
 */
function alarm(template: Template, idPart: string): Record<string, unknown> {
  const found = alarms(template).filter((a) => a.id.includes(idPart));
  assert.equal(found.length, 1, `one alarm ${idPart}: ${alarms(template).map((a) => a.id)}`);
  const props = found[0]!.props;
  const metrics = props['Metrics'] as Record<string, unknown>[] | undefined;
  if (!metrics || metrics.length !== 1) return props;
  const stat = metrics[0]!['MetricStat'] as {
    Metric: { Namespace: string; MetricName: string; Dimensions?: unknown };
    Stat: string;
  };
  const statistic = /^p\d/.test(stat.Stat) ? { ExtendedStatistic: stat.Stat } : { Statistic: stat.Stat };
  return { ...props, ...stat.Metric, ...statistic };
}

const stacks: Record<'lambda' | 'sagemaker' | 'ecs' | 'tuned', Template> = {} as never;
let topic: sns.Topic;
let tunedStack: Stack;

before(() => {
  const app = tempApp();
  const model = ModelSource.fromAsset(DIGITS_ONNX);
  const build = (
    name: keyof typeof stacks,
    compute: Compute,
    extra: Partial<ConstructorParameters<typeof RealtimeApi>[2]> = {},
  ): Stack => {
    const stack = new Stack(app, name);
    new RealtimeApi(stack, 'digits', { model, compute, ...extra });
    return stack;
  };
  const lambdaStack = build('lambda', Compute.lambda());
  const sageMakerStack = build('sagemaker', Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }));
  const ecsStack = build('ecs', Compute.ecs({ instanceType: 'g5.xlarge' }));
  tunedStack = new Stack(app, 'tuned');
  topic = new sns.Topic(tunedStack, 'Pager', { enforceSSL: true });
  new RealtimeApi(tunedStack, 'digits', {
    model,
    monitoring: {
      alarmTopic: topic,
      errorRatePercent: 1,
      latencyP99Threshold: Duration.millis(250),
      throttlesPerMinute: 20,
    },
  });
  stacks.lambda = Template.fromStack(lambdaStack);
  stacks.sagemaker = Template.fromStack(sageMakerStack);
  stacks.ecs = Template.fromStack(ecsStack);
  stacks.tuned = Template.fromStack(tunedStack);
});

describe('the metric catalog is what the runtime emits', () => {
  test('the runtime writes exactly the catalog: every name, with its unit', () => {
    const emitted = emittedByRuntime();
    assert.deepEqual(
      Object.fromEntries([...emitted].sort()),
      Object.fromEntries(
        allMetrics()
          .map((m) => [m.name, m.unit] as const)
          .sort(),
      ),
    );
  });
});

describe('the dashboard', () => {
  for (const compute of ['lambda', 'sagemaker', 'ecs'] as const) {
    test(`${compute}: charts exactly the metrics the runtime emits, in the Arclight namespace, for this API`, () => {
      const charted = dashboardMetrics(stacks[compute]).filter((m) => m.namespace === METRICS_NAMESPACE);
      // The shadow's copy counters are charted where the API has a shadow (test/constructs/backends/*-variants).
      const shadowOnly = new Set(
        allMetrics()
          .filter((m) => m.emission === 'shadow')
          .map((m) => m.name),
      );
      assert.deepEqual(
        [...new Set(charted.map((m) => m.name))].sort(),
        [...emittedByRuntime().keys()].filter((name) => !shadowOnly.has(name)).sort(),
      );
      for (const m of charted) assert.deepEqual(m.dimensions, { apiName: 'digits' }, m.name);
      const latencyStats = charted.filter((m) => m.name === METRICS.latency.name).map((m) => m.stat);
      for (const stat of ['p50', 'p90', 'p99', 'SampleCount']) assert.ok(latencyStats.includes(stat), stat);
    });
  }

  test("each backend adds its service's own view: Lambda concurrency, SageMaker instances and GPU, ECS tasks and targets", () => {
    const names = (compute: keyof typeof stacks): string[] =>
      dashboardMetrics(stacks[compute])
        .filter((m) => m.namespace !== METRICS_NAMESPACE)
        .map((m) => `${m.namespace}/${m.name}`);
    const lambda = names('lambda');
    for (const expected of ['AWS/Lambda/Throttles', 'AWS/Lambda/ConcurrentExecutions', 'AWS/ApiGateway/5xx'])
      assert.ok(lambda.includes(expected), expected);
    const sageMaker = names('sagemaker');
    for (const expected of [
      '/aws/sagemaker/Endpoints/CPUUtilization',
      '/aws/sagemaker/Endpoints/GPUUtilization',
      'AWS/SageMaker/ModelLatency',
      'AWS/ApiGateway/5XXError',
    ])
      assert.ok(sageMaker.includes(expected), expected);
    const ecs = names('ecs');
    for (const expected of ['ECS/ContainerInsights/RunningTaskCount', 'AWS/ApplicationELB/HealthyHostCount'])
      assert.ok(ecs.includes(expected), expected);
  });

  test('monitoring.dashboard: false builds none, the alarms stay', () => {
    const stack = new Stack(tempApp(), 'nodash');
    new RealtimeApi(stack, 'digits', { model: ModelSource.fromAsset(DIGITS_ONNX), monitoring: { dashboard: false } });
    const template = Template.fromStack(stack);
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    assert.equal(alarms(template).length, 4);
  });
});

describe('the default alarms', () => {
  test('Lambda: 5xx rate, p99 latency, throttles, model-load failures (no instances to be unhealthy)', () => {
    const template = stacks.lambda;
    assert.equal(alarms(template).length, 4);
    const errorRate = alarm(template, 'ErrorRate');
    assert.equal(errorRate['Threshold'], 5);
    assert.equal(errorRate['ComparisonOperator'], 'GreaterThanThreshold');
    const [expression, rate] = errorRate['Metrics'] as Record<string, unknown>[];
    assert.equal(expression!['Expression'], '100 * rate');
    const stat = rate!['MetricStat'] as { Metric: { MetricName: string; Namespace: string }; Stat: string };
    assert.deepEqual([stat.Metric.Namespace, stat.Metric.MetricName, stat.Stat], ['AWS/ApiGateway', '5xx', 'Average']);

    const latency = alarm(template, 'LatencyP99');
    assert.deepEqual(
      [latency['Namespace'], latency['MetricName'], latency['ExtendedStatistic'], latency['Threshold']],
      [METRICS_NAMESPACE, METRICS.latency.name, 'p99', 5000],
    );
    assert.deepEqual(latency['Dimensions'], [{ Name: 'apiName', Value: 'digits' }]);

    const throttles = alarm(template, 'Throttles');
    assert.deepEqual(
      [throttles['Namespace'], throttles['MetricName'], throttles['Threshold']],
      ['AWS/Lambda', 'Throttles', 1],
    );

    const loads = alarm(template, 'ModelLoadFailures');
    assert.deepEqual(
      [loads['Namespace'], loads['MetricName'], loads['Statistic'], loads['Threshold'], loads['EvaluationPeriods']],
      [METRICS_NAMESPACE, METRICS.modelLoadFailure.name, 'Sum', 1, 1],
    );
    for (const { props } of alarms(template)) assert.equal(props['AlarmActions'], undefined, 'no topic, no action');
  });

  test('SageMaker: no healthy capacity is no instance reporting, missing data breaching; throttles are 503 overloaded', () => {
    const template = stacks.sagemaker;
    assert.equal(alarms(template).length, 5);
    const healthy = alarm(template, 'NoHealthyCapacity');
    assert.deepEqual(
      [
        healthy['Namespace'],
        healthy['MetricName'],
        healthy['Statistic'],
        healthy['Threshold'],
        healthy['ComparisonOperator'],
        healthy['TreatMissingData'],
      ],
      ['/aws/sagemaker/Endpoints', 'CPUUtilization', 'SampleCount', 1, 'LessThanThreshold', 'breaching'],
    );
    const throttles = alarm(template, 'Throttles');
    assert.deepEqual([throttles['Namespace'], throttles['MetricName']], [METRICS_NAMESPACE, METRICS.overloaded.name]);
    assert.equal(alarm(template, 'ErrorRate')['Metrics'] !== undefined, true);
  });

  test("ECS: no healthy capacity is the target group's minimum healthy hosts below 1", () => {
    const template = stacks.ecs;
    assert.equal(alarms(template).length, 5);
    const healthy = alarm(template, 'NoHealthyCapacity');
    assert.deepEqual(
      [healthy['Namespace'], healthy['MetricName'], healthy['Statistic'], healthy['TreatMissingData']],
      ['AWS/ApplicationELB', 'HealthyHostCount', 'Minimum', 'breaching'],
    );
  });

  test('thresholds follow the props, and every alarm notifies the SNS topic on alarm and on recovery', () => {
    const template = stacks.tuned;
    assert.equal(alarm(template, 'ErrorRate')['Threshold'], 1);
    assert.equal(alarm(template, 'LatencyP99')['Threshold'], 250);
    assert.equal(alarm(template, 'Throttles')['Threshold'], 20);
    const topicRef = flatten({ Ref: tunedStack.getLogicalId(topic.node.defaultChild as sns.CfnTopic) });
    for (const { id, props } of alarms(template)) {
      assert.deepEqual((props['AlarmActions'] as unknown[]).map(flatten), [topicRef], id);
      assert.deepEqual((props['OKActions'] as unknown[]).map(flatten), [topicRef], id);
    }
  });

  test('invalid thresholds fail at synth', () => {
    assertOneProblem(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad'), 'digits', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          monitoring: { errorRatePercent: 0 },
        }),
      /monitoring\.errorRatePercent must be in \(0, 100\], got 0/,
    );
  });
});
