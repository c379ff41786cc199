/**
 * Variants on ECS, synthesized for real: a service per variant (its own task definition, task role reading only its
 * model object, image per predictor) behind the API's ALB, whose listener forwards with the ALB's native weights and
 * pins a variant by `x-arclight-variant`; a shadow's service behind a listener of its own that only the API's tasks
 * reach, the API's containers told where to copy; deployment alarms on every service; cdk-nag clean. What the ALB
 * does with them (weighted forward, header conditions, a 400 fixed response) is AWS's documented behaviour of these
 * properties; it has not run on AWS here.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ENV, VARIANT_HEADER } from '../../../lib/contract.js';
import { allMetrics } from '../../../lib/metric-catalog.js';
import { SHADOW_LISTENER_PORT } from '../../../lib/constructs/backends/ecs-backend.js';
import { Compute, ModelSource, Predictor, RealtimeApi } from '../../../lib/index.js';
import {
  flatten,
  objectArnOf,
  policyStatements,
  resourcesOf,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_PREDICTOR } from '../../helpers.js';

useScratchTmpdir();

const MAIN = 's3://my-models/digits-v1.onnx';
const NEXT = 's3://my-models/digits-v2.onnx';
const CANDIDATE = 's3://my-models/digits-v3.onnx';
const sha = (c: string): string => c.repeat(64);
const compute = (): Compute => Compute.ecs({ instanceType: 'g5.xlarge' });

let weighted: Template;
let shadowed: Template;

before(() => {
  const app = tempApp();
  const a = new Stack(app, 'weighted');
  new RealtimeApi(a, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    compute: compute(),
    variants: [
      { name: 'v2', model: ModelSource.fromS3Uri(NEXT, { sha256: sha('b') }), weight: 0.25, instanceCount: 2 },
    ],
  });
  const b = new Stack(app, 'shadowed');
  new RealtimeApi(b, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    compute: compute(),
    variants: [
      {
        name: 'candidate',
        model: ModelSource.fromS3Uri(CANDIDATE, { sha256: sha('c') }),
        predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
        shadow: true,
        weight: 0.5,
      },
    ],
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  // A cdk-nag violation fails synth.
  app.synth();
  weighted = Template.fromStack(a);
  shadowed = Template.fromStack(b);
});

/** Each task definition's server environment, by its variant metadata name (the API's own: AllTraffic). */
function taskEnvironments(
  template: Template,
): Map<string, { env: Record<string, string>; image: string; role: string }> {
  return new Map(
    resourcesOf(template, 'AWS::ECS::TaskDefinition').map(([, props]) => {
      const server = (props['ContainerDefinitions'] as Record<string, unknown>[])[0]!;
      const env = Object.fromEntries(
        (server['Environment'] as { Name: string; Value: unknown }[]).map((e) => [e.Name, flatten(e.Value)]),
      );
      return [env[ENV.variant]!, { env, image: flatten(server['Image']), role: flatten(props['TaskRoleArn']) }];
    }),
  );
}

function listeners(template: Template): Record<string, unknown>[] {
  return resourcesOf(template, 'AWS::ElasticLoadBalancingV2::Listener').map(([, props]) => props);
}

describe('weighted variants on ECS', () => {
  test('a service per variant, each task told its variant and its own model', () => {
    const tasks = taskEnvironments(weighted);
    assert.deepEqual([...tasks.keys()].sort(), ['AllTraffic', 'v2']);
    assert.equal(tasks.get('AllTraffic')!.env[ENV.modelUri], MAIN);
    assert.equal(tasks.get('v2')!.env[ENV.modelUri], NEXT);
    assert.equal(tasks.get('v2')!.env[ENV.modelSha256], sha('b'));
    assert.equal(tasks.get('AllTraffic')!.image, tasks.get('v2')!.image, 'the same predictor: one image');
    assert.notEqual(tasks.get('AllTraffic')!.role, tasks.get('v2')!.role, 'a task role each');
    const services = resourcesOf(weighted, 'AWS::ECS::Service').map(([, p]) => p['DesiredCount']);
    assert.deepEqual(services.sort(), [1, 2]);
  });

  test("the listener's default action is the ALB's weighted forward, 1 : 0.25 as 4 : 1", () => {
    const [listener] = listeners(weighted);
    const [action] = listener!['DefaultActions'] as {
      Type: string;
      ForwardConfig: { TargetGroups: { TargetGroupArn: unknown; Weight: number }[] };
    }[];
    assert.equal(action!.Type, 'forward');
    const weights = action!.ForwardConfig.TargetGroups.map((g) => [flatten(g.TargetGroupArn), g.Weight]);
    assert.equal(weights.length, 2);
    assert.deepEqual(
      weights.map(([, w]) => w),
      [4, 1],
    );
    assert.match(String(weights[0]![0]), /ServiceTargets/);
    assert.match(String(weights[1]![0]), /Variantv2/);
  });

  test('x-arclight-variant pins a variant by listener rule; any other value is a 400', () => {
    const rules = resourcesOf(weighted, 'AWS::ElasticLoadBalancingV2::ListenerRule')
      .map(([, p]) => p)
      .sort((a, b) => Number(a['Priority']) - Number(b['Priority']));
    const headerValues = rules.map(
      (r) =>
        (r['Conditions'] as { Field: string; HttpHeaderConfig: { HttpHeaderName: string; Values: string[] } }[])[0]!,
    );
    for (const condition of headerValues) {
      assert.equal(condition.Field, 'http-header');
      assert.equal(condition.HttpHeaderConfig.HttpHeaderName, VARIANT_HEADER);
    }
    assert.deepEqual(
      headerValues.map((c) => c.HttpHeaderConfig.Values),
      [['AllTraffic'], ['v2'], ['*']],
    );
    const actions = rules.map((r) => (r['Actions'] as Record<string, unknown>[])[0]!);
    assert.match(flatten(actions[0]!['TargetGroupArn']), /ServiceTargets/);
    assert.match(flatten(actions[1]!['TargetGroupArn']), /Variantv2/);
    const fixed = actions[2]!['FixedResponseConfig'] as {
      StatusCode: string;
      ContentType: string;
      MessageBody: string;
    };
    assert.equal(fixed.StatusCode, '400');
    assert.equal(JSON.parse(fixed.MessageBody).code, 'invalid_input');
  });

  test('each role reads exactly its own model object', () => {
    const reads = policyStatements(weighted)
      .filter((s) => s.actions.includes('s3:GetObject'))
      .map((s) => s.resources.join(','))
      .sort();
    assert.deepEqual(reads, [objectArnOf(MAIN), objectArnOf(NEXT)].sort());
  });

  test('every service scales on its own target group and rolls back on the deployment alarms', () => {
    const services = resourcesOf(weighted, 'AWS::ECS::Service').map(([, p]) => p);
    for (const service of services) {
      const alarms = service['DeploymentConfiguration'] as {
        Alarms: { Enable: boolean; Rollback: boolean; AlarmNames: unknown[] };
      };
      assert.equal(alarms.Alarms.Enable, true);
      assert.equal(alarms.Alarms.Rollback, true);
      assert.ok(alarms.Alarms.AlarmNames.length >= 2);
    }
    const policies = resourcesOf(weighted, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    assert.equal(policies.length, 2);
  });

  test('the dashboard charts the runtime metrics per variant', () => {
    const [, dashboard] = resourcesOf(weighted, 'AWS::CloudWatch::Dashboard')[0]!;
    const body = flatten(dashboard['DashboardBody']);
    for (const variant of ['AllTraffic', 'v2'])
      for (const metric of ['Latency', 'Requests5xx'])
        assert.match(body, new RegExp(`"Arclight","${metric}","apiName","digits","variant","${variant}"`));
  });
});

describe('a shadow variant on ECS', () => {
  test("its service sits behind a listener of its own, reachable only from the API's own tasks", () => {
    const all = listeners(shadowed);
    assert.deepEqual(all.map((l) => l['Port']).sort(), [80, SHADOW_LISTENER_PORT]);
    const main = all.find((l) => l['Port'] === 80)!;
    const shadow = all.find((l) => l['Port'] === SHADOW_LISTENER_PORT)!;
    const forwardOf = (l: Record<string, unknown>): string[] => {
      const action = (
        l['DefaultActions'] as {
          ForwardConfig?: { TargetGroups: { TargetGroupArn: unknown }[] };
          TargetGroupArn?: unknown;
        }[]
      )[0]!;
      return action.ForwardConfig
        ? action.ForwardConfig.TargetGroups.map((g) => flatten(g.TargetGroupArn))
        : [flatten(action.TargetGroupArn)];
    };
    assert.deepEqual(forwardOf(shadow).length, 1);
    assert.match(forwardOf(shadow)[0]!, /Variantcandidate/);
    for (const arn of forwardOf(main)) assert.doesNotMatch(arn, /Variantcandidate/, 'port 80 never reaches the shadow');
    // The ALB's security group lets the VPC link in on 80 and the primary's tasks in on the shadow port, nothing else.
    const ingress = resourcesOf(shadowed, 'AWS::EC2::SecurityGroupIngress')
      .map(([, p]) => p)
      .filter((p) => flatten(p['GroupId']).includes('LoadBalancer'));
    const onShadowPort = ingress.filter((p) => p['FromPort'] === SHADOW_LISTENER_PORT);
    assert.equal(onShadowPort.length, 1);
    assert.match(flatten(onShadowPort[0]!['SourceSecurityGroupId']), /digitsServiceSecurityGroup/);
    assert.ok(ingress.every((p) => p['FromPort'] === 80 || p['FromPort'] === SHADOW_LISTENER_PORT));
  });

  test("the API's containers copy half their requests to it; the shadow runs its own predictor's image", () => {
    const tasks = taskEnvironments(shadowed);
    const own = tasks.get('AllTraffic')!.env;
    assert.match(
      own[ENV.shadowUrl]!,
      new RegExp(`^http://\\{GetAtt:digitsLoadBalancer\\w+\\.DNSName\\}:${SHADOW_LISTENER_PORT}$`),
    );
    assert.equal(own[ENV.shadowPercent], '50');
    const [, dashboard] = resourcesOf(shadowed, 'AWS::CloudWatch::Dashboard')[0]!;
    for (const metric of allMetrics().filter((m) => m.emission === 'shadow'))
      assert.match(
        flatten(dashboard['DashboardBody']),
        new RegExp(`"Arclight","${metric.name}","apiName","digits",\\{`),
      );
    const shadow = tasks.get('candidate')!;
    assert.equal(shadow.env[ENV.shadowUrl], undefined, 'the shadow copies nothing on');
    assert.equal(shadow.env[ENV.modelUri], CANDIDATE);
    assert.notEqual(shadow.image, tasks.get('AllTraffic')!.image);
  });
});

describe('ECS variants that cannot be served fail at synth, in one error', () => {
  test('weights an ALB cannot hold, a shadow weight above 1, a bad name', () => {
    const model = ModelSource.fromS3Uri(NEXT);
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad'), 'digits', {
          model: ModelSource.fromS3Uri(MAIN),
          compute: compute(),
          variants: [
            { name: 'tiny', model, weight: 0.001 },
            { name: 'bad_name', model, weight: 20 },
          ],
        }),
    );
    assert.deepEqual(problems, [
      "variant name 'bad_name' must be letters, digits and '-', at most 63",
      "variant weights (the API's own model weighs 1): weight 0.001 is not a positive multiple of 0.01",
    ]);
    const shadow = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad2'), 'digits', {
          model: ModelSource.fromS3Uri(MAIN),
          compute: compute(),
          variants: [{ name: 's', model, weight: 2, shadow: true }],
        }),
    );
    assert.deepEqual(shadow, ["shadow variant 's': its weight is the share of requests copied, at most 1, got 2"]);
  });
});
