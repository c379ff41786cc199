/**
 * Rollouts, synthesized for real on each compute. Lambda: a published version behind the `live` alias that API
 * Gateway invokes, a new version when only the model object changes, a CodeDeploy deployment group shifting the alias
 * (canary by default, linear as asked) that rolls back on Arclight's alarms and the deployer's, with a role scoped to
 * the function and those alarms. SageMaker: the endpoint's DeploymentConfig (blue/green canary or linear with the bake
 * interval, rolling batches) rolling back on the alarms. ECS: circuit breaker, deployment alarms, room for new tasks.
 * Invalid shapes fail at synth.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import { Compute, ModelSource, RealtimeApi, Rollout } from '../../../lib/index.js';
import {
  assertOneProblem,
  flatten,
  onlyResource,
  policyStatements,
  resourcesOf,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';

useScratchTmpdir();

const SHA_A = 'a'.repeat(64);
const SHA_B = 'b'.repeat(64);

interface Built {
  readonly stack: Stack;
  readonly api: RealtimeApi;
  readonly template: Template;
}

function build(
  id: string,
  props: Partial<ConstructorParameters<typeof RealtimeApi>[2]> = {},
  extraAlarm = false,
): Built & { readonly extra?: cloudwatch.Alarm } {
  const stack = new Stack(tempApp(), id);
  const extra = extraAlarm
    ? new cloudwatch.Alarm(stack, 'BusinessAlarm', {
        metric: new cloudwatch.Metric({ namespace: 'Shop', metricName: 'Checkouts' }),
        threshold: 1,
        evaluationPeriods: 1,
      })
    : undefined;
  const api = new RealtimeApi(stack, 'digits', {
    model: ModelSource.fromS3Uri('s3://my-models/digits.onnx', { sha256: SHA_A }),
    ...props,
    ...(extra ? { rollout: Rollout.linear({ percent: 20, interval: Duration.minutes(2), alarms: [extra] }) } : {}),
  });
  return { stack, api, template: Template.fromStack(stack), ...(extra ? { extra } : {}) };
}

/** Logical ids of the alarms a template's RealtimeApi made (under its Monitoring construct). */
function defaultAlarmIds(template: Template): string[] {
  return resourcesOf(template, 'AWS::CloudWatch::Alarm')
    .map(([id]) => id)
    .filter((id) => id.includes('Monitoring'))
    .sort();
}

describe('Lambda', () => {
  let lambda: Built;
  let linear: Built & { readonly extra?: cloudwatch.Alarm };
  before(() => {
    lambda = build('lambda');
    linear = build('linear', {}, true);
  });

  test('API Gateway invokes the live alias of a published version, never $LATEST', () => {
    const [aliasId, alias] = onlyResource(lambda.template, 'AWS::Lambda::Alias');
    assert.equal(alias['Name'], 'live');
    const [versionId] = onlyResource(lambda.template, 'AWS::Lambda::Version');
    assert.equal(flatten(alias['FunctionVersion']), `{GetAtt:${versionId}.Version}`);
    const [, integration] = onlyResource(lambda.template, 'AWS::ApiGatewayV2::Integration');
    assert.equal(flatten(integration['IntegrationUri']), `{Ref:${aliasId}}`);
    assert.equal(lambda.api.function.functionArn.length > 0, true);
  });

  test('a change to the model alone (new sha256, same image) publishes a new version', () => {
    const version = (sha256: string): string => {
      const stack = new Stack(tempApp(), 'v');
      new RealtimeApi(stack, 'digits', { model: ModelSource.fromS3Uri('s3://my-models/digits.onnx', { sha256 }) });
      return onlyResource(Template.fromStack(stack), 'AWS::Lambda::Version')[0];
    };
    const a = version(SHA_A);
    assert.equal(version(SHA_A), a, 'the same deploy is the same version');
    assert.notEqual(version(SHA_B), a, 'another model object is another version');
  });

  test('the default rollout: CodeDeploy shifts 10% for 5 minutes, rolling back on the default alarms', () => {
    const { template } = lambda;
    const [, config] = onlyResource(template, 'AWS::CodeDeploy::DeploymentConfig');
    assert.deepEqual(config['TrafficRoutingConfig'], {
      Type: 'TimeBasedCanary',
      TimeBasedCanary: { CanaryPercentage: 10, CanaryInterval: 5 },
    });
    assert.equal(config['ComputePlatform'], 'Lambda');
    const [groupId, group] = onlyResource(template, 'AWS::CodeDeploy::DeploymentGroup');
    const alarmNames = (group['AlarmConfiguration'] as { Alarms: { Name: unknown }[]; Enabled: boolean }).Alarms.map(
      (a) => flatten(a.Name),
    );
    assert.deepEqual(
      alarmNames.sort(),
      defaultAlarmIds(template).map((id) => `{Ref:${id}}`),
    );
    assert.equal(alarmNames.length, 4);
    assert.deepEqual(group['AutoRollbackConfiguration'], {
      Enabled: true,
      Events: ['DEPLOYMENT_FAILURE', 'DEPLOYMENT_STOP_ON_ALARM'],
    });
    assert.deepEqual(group['DeploymentStyle'], {
      DeploymentType: 'BLUE_GREEN',
      DeploymentOption: 'WITH_TRAFFIC_CONTROL',
    });
    // CloudFormation hands the alias update to CodeDeploy.
    const aliasResource = Object.values(template.toJSON()['Resources'] as Record<string, Record<string, unknown>>).find(
      (r) => r['Type'] === 'AWS::Lambda::Alias',
    )!;
    const update = (aliasResource['UpdatePolicy'] as Record<string, Record<string, unknown>>)[
      'CodeDeployLambdaAliasUpdate'
    ]!;
    assert.equal(flatten(update['DeploymentGroupName']), `{Ref:${groupId}}`);
  });

  test("CodeDeploy's role: no managed policy; the alias's function and the rollback alarms only", () => {
    const { template } = lambda;
    const roles = resourcesOf(template, 'AWS::IAM::Role').filter(([, r]) =>
      JSON.stringify(r['AssumeRolePolicyDocument']).includes('codedeploy.amazonaws.com'),
    );
    assert.equal(roles.length, 1);
    const [roleId, role] = roles[0]!;
    assert.equal(role['ManagedPolicyArns'], undefined);
    const policies = resourcesOf(template, 'AWS::IAM::Policy')
      .filter(([, p]) => (p['Roles'] as unknown[]).map(flatten).includes(`{Ref:${roleId}}`))
      .map(([id]) => id);
    const statements = policyStatements(template).filter((s) => policies.includes(s.holder));
    const [fnId] = onlyResource(template, 'AWS::Lambda::Function');
    const [aliasId] = onlyResource(template, 'AWS::Lambda::Alias');
    assert.deepEqual(
      statements.map((s) => [s.actions.sort(), s.resources.sort()]),
      [
        [
          ['lambda:GetAlias', 'lambda:GetProvisionedConcurrencyConfig', 'lambda:UpdateAlias'],
          [`{GetAtt:${fnId}.Arn}`, `{Ref:${aliasId}}`].sort(),
        ],
        [['cloudwatch:DescribeAlarms'], defaultAlarmIds(template).map((id) => `{GetAtt:${id}.Arn}`)],
      ],
    );
  });

  test("linear with the deployer's alarm: 20% every 2 minutes, rolling back on Arclight's alarms and that one", () => {
    const { template } = linear;
    const [, config] = onlyResource(template, 'AWS::CodeDeploy::DeploymentConfig');
    assert.deepEqual(config['TrafficRoutingConfig'], {
      Type: 'TimeBasedLinear',
      TimeBasedLinear: { LinearPercentage: 20, LinearInterval: 2 },
    });
    const [, group] = onlyResource(template, 'AWS::CodeDeploy::DeploymentGroup');
    const names = (group['AlarmConfiguration'] as { Alarms: { Name: unknown }[] }).Alarms.map((a) => flatten(a.Name));
    const extraId = linear.stack.getLogicalId(linear.extra!.node.defaultChild as cloudwatch.CfnAlarm);
    assert.ok(names.includes(`{Ref:${extraId}}`));
    assert.equal(names.length, 5);
  });

  test('all at once: the alias moves with the stack, no CodeDeploy', () => {
    const { template } = build('once', { rollout: Rollout.allAtOnce() });
    template.resourceCountIs('AWS::CodeDeploy::DeploymentGroup', 0);
    template.resourceCountIs('AWS::Lambda::Alias', 1);
  });

  test('defaultAlarms: false and no alarms of its own: the canary still shifts, rolling back on failure only', () => {
    const { template } = build('quiet', { rollout: Rollout.canary({ defaultAlarms: false }) });
    const [, group] = onlyResource(template, 'AWS::CodeDeploy::DeploymentGroup');
    assert.deepEqual(group['AutoRollbackConfiguration'], { Enabled: true, Events: ['DEPLOYMENT_FAILURE'] });
  });
});

describe('SageMaker', () => {
  const endpoint = (template: Template): Record<string, unknown> =>
    onlyResource(template, 'AWS::SageMaker::Endpoint')[1];

  test('default: blue/green canary, 10% of capacity baking 5 minutes, auto-rollback on the default alarms', () => {
    const { template } = build('sm', { compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }) });
    const config = endpoint(template)['DeploymentConfig'] as Record<string, Record<string, unknown>>;
    assert.deepEqual(config['BlueGreenUpdatePolicy'], {
      TrafficRoutingConfiguration: {
        Type: 'CANARY',
        WaitIntervalInSeconds: 300,
        CanarySize: { Type: 'CAPACITY_PERCENT', Value: 10 },
      },
    });
    const alarms = (config['AutoRollbackConfiguration']!['Alarms'] as { AlarmName: unknown }[]).map((a) =>
      flatten(a.AlarmName),
    );
    assert.deepEqual(
      alarms.sort(),
      defaultAlarmIds(template).map((id) => `{Ref:${id}}`),
    );
    assert.equal(alarms.length, 5);
  });

  test('linear steps and rolling batches (for fleets blue/green would double)', () => {
    const linear = build('sml', {
      compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
      rollout: Rollout.linear({ percent: 25, interval: Duration.minutes(10) }),
    });
    const linearConfig = endpoint(linear.template)['DeploymentConfig'] as Record<string, Record<string, unknown>>;
    assert.deepEqual(linearConfig['BlueGreenUpdatePolicy']!['TrafficRoutingConfiguration'], {
      Type: 'LINEAR',
      WaitIntervalInSeconds: 600,
      LinearStepSize: { Type: 'CAPACITY_PERCENT', Value: 25 },
    });
    const rolling = build('smr', {
      compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge', minInstances: 8, maxInstances: 16 }),
      rollout: Rollout.rolling({ batchPercent: 20, interval: Duration.minutes(3) }),
    });
    const rollingConfig = endpoint(rolling.template)['DeploymentConfig'] as Record<string, Record<string, unknown>>;
    assert.equal(rollingConfig['BlueGreenUpdatePolicy'], undefined);
    assert.deepEqual(rollingConfig['RollingUpdatePolicy'], {
      MaximumBatchSize: { Type: 'CAPACITY_PERCENT', Value: 20 },
      RollbackMaximumBatchSize: { Type: 'CAPACITY_PERCENT', Value: 20 },
      WaitIntervalInSeconds: 180,
    });
    assert.equal((rollingConfig['AutoRollbackConfiguration']!['Alarms'] as unknown[]).length, 5);
  });

  test("SageMaker's limits: a canary of at most half the fleet, linear steps of 10–50%, a bake of at most an hour", () => {
    const sm = Compute.sageMaker({ instanceType: 'ml.g5.xlarge' });
    const problems = (rollout: Rollout): string[] =>
      thrownProblems(
        () =>
          new RealtimeApi(new Stack(tempApp(), 'x'), 'digits', {
            model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
            compute: sm,
            rollout,
          }),
      );
    assert.deepEqual(problems(Rollout.canary({ percent: 60 })), [
      'a canary on SageMaker takes at most 50% of the fleet, got 60%',
    ]);
    assert.deepEqual(problems(Rollout.linear({ percent: 5, interval: Duration.hours(2) })), [
      'linear steps on SageMaker are 10–50% of the fleet, got 5%',
      'rollout interval must be 0–3600 s on SageMaker, got 7200 s',
    ]);
  });
});

describe('ECS', () => {
  test('circuit breaker with rollback, the default alarms as deployment alarms, new tasks start beside the old', () => {
    const { template } = build('ecs', { compute: Compute.ecs({ instanceType: 'g5.xlarge' }) });
    const [, service] = onlyResource(template, 'AWS::ECS::Service');
    const deployment = service['DeploymentConfiguration'] as Record<string, unknown>;
    assert.deepEqual(deployment['DeploymentCircuitBreaker'], { Enable: true, Rollback: true });
    assert.equal(deployment['MinimumHealthyPercent'], 100);
    assert.equal(deployment['MaximumPercent'], 200);
    const alarms = deployment['Alarms'] as { AlarmNames: unknown[]; Enable: boolean; Rollback: boolean };
    assert.equal(alarms.Enable, true);
    assert.equal(alarms.Rollback, true);
    assert.deepEqual(
      alarms.AlarmNames.map(flatten).sort(),
      defaultAlarmIds(template).map((id) => `{Ref:${id}}`),
    );
  });

  test('a canary on ECS warns that ECS rolls tasks (arclight:ecsRolloutRolling)', () => {
    const { stack } = build('ecsc', {
      compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
      rollout: Rollout.canary(),
    });
    const warnings = Annotations.fromStack(stack).findWarning(
      '*',
      Match.stringLikeRegexp('arclight:ecsRolloutRolling'),
    );
    assert.equal(warnings.length, 1);
  });
});

describe('invalid rollouts fail at synth', () => {
  test('rolling on Lambda, percent out of range, an interval CodeDeploy cannot count', () => {
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad'), 'digits', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          rollout: Rollout.rolling({ batchPercent: 90, interval: Duration.seconds(30) }),
        }),
    );
    assert.deepEqual(problems, [
      'Rollout.rolling() replaces instances; Lambda has none: use Rollout.canary() or Rollout.linear()',
      "rollout batchPercent must be an integer from 5 to 50 (SageMaker's range), got 90",
      'rollout interval must be whole minutes on Lambda (CodeDeploy), got 30 s',
    ]);
    assertOneProblem(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad2'), 'digits', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          rollout: Rollout.canary({ percent: 100 }),
        }),
      /rollout percent must be an integer from 1 to 99, got 100/,
    );
  });
});
