/**
 * RealtimeApi on Compute.ecs, from its synthesized template: a VPC with flow logs (or the one given), a cluster with
 * Container Insights, an Auto Scaling group on the ECS-optimized GPU AMI (an SSM parameter, no lookup) as capacity
 * provider, an EC2 task definition reserving GPUs with the env contract, a service with a rolling-back circuit breaker
 * behind an internal ALB health-checking readiness, autoscaling on ALB requests per target, and an HTTP API reaching
 * the ALB listener through a VPC link. IAM: the task role reads exactly the model object. Then the props' problems.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import { ENV } from '../../../lib/contract.js';
import { Compute } from '../../../lib/constructs/compute.js';
import { API_METADATA_KEY, ModelSource, Predictor, RealtimeApi } from '../../../lib/index.js';
import {
  assertNoBroadS3Grant,
  flatten,
  objectArnOf,
  onlyResource,
  policyStatements,
  resourcesOf,
  sha256,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../../helpers.js';

useScratchTmpdir();

let stack: Stack;
let template: Template;

before(() => {
  stack = new Stack(tempApp(), 'S');
  new RealtimeApi(stack, 'ecs', {
    model: ModelSource.fromAsset(DIGITS_ONNX),
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    compute: Compute.ecs({ instanceType: 'g5.xlarge', minTasks: 2, maxTasks: 5 }),
  });
  template = Template.fromStack(stack);
});

function container(t: Template = template): Record<string, unknown> {
  const [, taskDefinition] = onlyResource(t, 'AWS::ECS::TaskDefinition');
  const definitions = taskDefinition['ContainerDefinitions'] as Record<string, unknown>[];
  assert.equal(definitions.length, 1);
  return definitions[0]!;
}

function env(t: Template = template): Record<string, string> {
  const pairs = container(t)['Environment'] as { Name: string; Value: unknown }[];
  return Object.fromEntries(pairs.map((p) => [p.Name, flatten(p.Value)]));
}

describe('capacity', () => {
  test('a VPC with flow logs, a cluster with Container Insights', () => {
    onlyResource(template, 'AWS::EC2::VPC');
    const [, flowLog] = onlyResource(template, 'AWS::EC2::FlowLog');
    assert.equal(flowLog['TrafficType'], 'ALL');
    const [, cluster] = onlyResource(template, 'AWS::ECS::Cluster');
    assert.deepEqual(cluster['ClusterSettings'], [{ Name: 'containerInsights', Value: 'enabled' }]);
  });

  test('an Auto Scaling group on the ECS-optimized AL2023 GPU AMI (SSM parameter) as the cluster’s capacity provider', () => {
    const [, launchTemplate] = onlyResource(template, 'AWS::EC2::LaunchTemplate');
    const data = launchTemplate['LaunchTemplateData'] as Record<string, unknown>;
    assert.equal(data['InstanceType'], 'g5.xlarge');
    const imageParameter = (data['ImageId'] as { Ref: string }).Ref;
    const parameters = template.toJSON()['Parameters'] as Record<string, { Default: string }>;
    assert.equal(
      parameters[imageParameter]!.Default,
      '/aws/service/ecs/optimized-ami/amazon-linux-2023/gpu/recommended/image_id',
      'Amazon Linux 2 reached end of life on 2026-06-30',
    );
    const userData = JSON.stringify(data['UserData']);
    assert.match(userData, /ECS_ENABLE_GPU_SUPPORT=true/);
    const [, provider] = onlyResource(template, 'AWS::ECS::CapacityProvider');
    const asgProvider = provider['AutoScalingGroupProvider'] as Record<string, unknown>;
    assert.equal((asgProvider['ManagedScaling'] as Record<string, unknown>)['Status'], 'ENABLED');
    assert.equal(asgProvider['ManagedTerminationProtection'], 'ENABLED');
    const [, group] = onlyResource(template, 'AWS::AutoScaling::AutoScalingGroup');
    assert.equal(group['NewInstancesProtectedFromScaleIn'], true);
  });

  test('containers cannot reach the instance metadata service (and with it the instance role)', () => {
    const [, launchTemplate] = onlyResource(template, 'AWS::EC2::LaunchTemplate');
    const data = launchTemplate['LaunchTemplateData'] as Record<string, unknown>;
    // IMDSv2 only, one hop: a container behind a bridge is a second hop, so its token request never comes back.
    assert.deepEqual(data['MetadataOptions'], { HttpPutResponseHopLimit: 1, HttpTokens: 'required' });
    // awsvpc tasks (this service's mode) get no route to 169.254.169.254 at all.
    const [, taskDefinition] = onlyResource(template, 'AWS::ECS::TaskDefinition');
    assert.equal(taskDefinition['NetworkMode'], 'awsvpc');
    assert.match(flatten(data['UserData']), /echo ECS_AWSVPC_BLOCK_IMDS=true >> \/etc\/ecs\/ecs\.config/);
  });

  test('the service is created after, and deleted before, the cluster’s capacity-provider association', () => {
    const [associationId, association] = onlyResource(template, 'AWS::ECS::ClusterCapacityProviderAssociations');
    const [, provider] = onlyResource(template, 'AWS::ECS::CapacityProvider');
    assert.ok(provider);
    assert.equal((association['CapacityProviders'] as unknown[]).length, 1);
    const service = Object.values(template.findResources('AWS::ECS::Service'))[0] as { DependsOn?: string[] };
    assert.ok(service.DependsOn?.includes(associationId), `${associationId} in ${service.DependsOn?.join()}`);
    // The execution role's policy (image pull, logs) is attached before the first task starts.
    const [executionPolicyId] = onlyResource(
      template,
      'AWS::IAM::Policy',
      'ecsTaskDefinitionExecutionRoleDefaultPolicy',
    );
    assert.ok(service.DependsOn?.includes(executionPolicyId), `${executionPolicyId} in ${service.DependsOn?.join()}`);
  });
});

describe("ECS's service-linked role in a fresh account", () => {
  test('a custom resource creates AWSServiceRoleForECS unless it exists, before the cluster; one per stack', () => {
    const other = new Stack(tempApp(), 'Two');
    for (const id of ['a', 'b']) {
      new RealtimeApi(other, id, {
        model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
        compute: Compute.ecs({ instanceType: 'c7i.large' }),
      });
    }
    const t = Template.fromStack(other);
    const custom = Object.entries(t.findResources('Custom::AWS'));
    assert.equal(custom.length, 1, 'one per stack, however many ECS APIs');
    const [customId, resource] = custom[0]! as [string, { Properties: Record<string, unknown> }];
    const call = JSON.parse(resource.Properties['Create'] as string) as Record<string, unknown>;
    assert.equal(call['service'], 'IAM');
    assert.equal(call['action'], 'createServiceLinkedRole');
    assert.deepEqual(call['parameters'], { AWSServiceName: 'ecs.amazonaws.com' });
    // IAM answers InvalidInput ("has been taken") when the role exists: that is success here.
    assert.ok(new RegExp(call['ignoreErrorCodesMatching'] as string).test('InvalidInputException'));
    assert.equal(resource.Properties['Delete'], undefined, 'deleting the stack leaves the role to other clusters');
    assert.equal(resource.Properties['InstallLatestAwsSdk'], false, 'no package download at deploy');
    const clusters = Object.values(t.findResources('AWS::ECS::Cluster')) as { DependsOn?: string[] }[];
    assert.equal(clusters.length, 2);
    for (const cluster of clusters) assert.ok(cluster.DependsOn?.includes(customId));
    const grants = policyStatements(t).filter((s) => s.actions.includes('iam:CreateServiceLinkedRole'));
    assert.equal(grants.length, 1);
    assert.deepEqual(grants[0]!.actions, ['iam:CreateServiceLinkedRole']);
    assert.deepEqual(grants[0]!.resources, [
      'arn:{Ref:AWS::Partition}:iam::{Ref:AWS::AccountId}:role/aws-service-role/ecs.amazonaws.com/AWSServiceRoleForECS',
    ]);
  });
});

describe('room to roll out', () => {
  /** The group's ceiling must hold every task a deployment at the service's largest size runs at once. */
  function assertRoomAtMaxScale(t: Template, maxTasks: number): void {
    const [, service] = onlyResource(t, 'AWS::ECS::Service');
    const deployment = service['DeploymentConfiguration'] as Record<string, number>;
    assert.equal(deployment['MinimumHealthyPercent'], 100, 'no task stops before its replacement is healthy');
    const tasksDuringRollout = Math.ceil((maxTasks * deployment['MaximumPercent']!) / 100);
    assert.ok(tasksDuringRollout > maxTasks, 'a replacement task can start beside every old one');
    const [, group] = onlyResource(t, 'AWS::AutoScaling::AutoScalingGroup');
    // One GPU task per g5.xlarge (1 GPU): one instance per task.
    assert.ok(
      Number(group['MaxSize']) >= tasksDuringRollout,
      `MaxSize ${String(group['MaxSize'])} holds the ${tasksDuringRollout} tasks of a rollout at ${maxTasks}`,
    );
    const [, scaling] = onlyResource(t, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(scaling['MaxCapacity'], maxTasks, 'the service itself still stops at maxTasks');
  }

  test('at maxTasks 5, the group can hold 10 tasks while a deployment replaces them', () => {
    assertRoomAtMaxScale(template, 5);
  });

  test('minTasks == maxTasks (a fixed-size service) still has room for its replacements', () => {
    const other = new Stack(tempApp(), 'Fixed');
    new RealtimeApi(other, 'fixed', {
      model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
      compute: Compute.ecs({ instanceType: 'g5.xlarge', minTasks: 3, maxTasks: 3 }),
    });
    assertRoomAtMaxScale(Template.fromStack(other), 3);
  });
});

describe('the task and the service', () => {
  test('an EC2 task definition reserving one GPU, port 8080, logs, the env contract with CUDA first', () => {
    const [, taskDefinition] = onlyResource(template, 'AWS::ECS::TaskDefinition');
    assert.deepEqual(taskDefinition['RequiresCompatibilities'], ['EC2']);
    assert.equal(taskDefinition['NetworkMode'], 'awsvpc');
    const c = container();
    assert.deepEqual(c['ResourceRequirements'], [{ Type: 'GPU', Value: '1' }]);
    assert.deepEqual(c['PortMappings'], [{ ContainerPort: 8080, Protocol: 'tcp' }]);
    assert.equal((c['LogConfiguration'] as Record<string, unknown>)['LogDriver'], 'awslogs');
    const e = env();
    assert.equal(e[ENV.apiName], 'ecs');
    assert.match(e[ENV.modelUri]!, /^s3:\/\/cdk-hnb659fds-assets-.*\.onnx$/);
    assert.equal(e[ENV.modelSha256], sha256(DIGITS_ONNX));
    assert.equal(e[ENV.executionProviders], 'cuda,cpu');
    assert.equal(e[ENV.requestTimeoutMs], '28000');
    const metadata = (
      Object.values(template.findResources('AWS::ECS::TaskDefinition'))[0] as {
        Metadata: Record<string, unknown>;
      }
    ).Metadata[API_METADATA_KEY];
    assert.deepEqual(metadata, { apiName: 'ecs', compute: 'ecs', architecture: 'x64', gpu: true });
  });

  test('the service: capacity provider, circuit breaker with rollback, behind the ALB with a grace period', () => {
    const [, service] = onlyResource(template, 'AWS::ECS::Service');
    assert.equal(service['DesiredCount'], 2);
    const deployment = service['DeploymentConfiguration'] as Record<string, unknown>;
    assert.deepEqual(deployment['DeploymentCircuitBreaker'], { Enable: true, Rollback: true });
    assert.equal(service['HealthCheckGracePeriodSeconds'], 300);
    assert.equal((service['CapacityProviderStrategy'] as unknown[]).length, 1);
    assert.equal((service['LoadBalancers'] as { ContainerPort: number }[])[0]!.ContainerPort, 8080);
  });

  test('an internal ALB health-checking /v2/health/ready; autoscaling on ALB requests per target', () => {
    const [, alb] = onlyResource(template, 'AWS::ElasticLoadBalancingV2::LoadBalancer');
    assert.equal(alb['Scheme'], 'internal');
    const [, targetGroup] = onlyResource(template, 'AWS::ElasticLoadBalancingV2::TargetGroup');
    assert.equal(targetGroup['HealthCheckPath'], '/v2/health/ready');
    assert.equal(targetGroup['TargetType'], 'ip');
    const [, target] = onlyResource(template, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(target['MinCapacity'], 2);
    assert.equal(target['MaxCapacity'], 5);
    const [, policy] = onlyResource(template, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    const config = policy['TargetTrackingScalingPolicyConfiguration'] as Record<string, unknown>;
    const metric = config['PredefinedMetricSpecification'] as Record<string, unknown>;
    assert.equal(metric['PredefinedMetricType'], 'ALBRequestCountPerTarget');
    assert.equal(config['TargetValue'], 600);
  });

  test('the ALB accepts only the VPC link’s security group', () => {
    const ingress = resourcesOf(template, 'AWS::EC2::SecurityGroupIngress').filter(([id]) =>
      id.startsWith('ecsLoadBalancerSecurityGroup'),
    );
    assert.equal(ingress.length, 1);
    assert.match(flatten(ingress[0]![1]['SourceSecurityGroupId']), /ecsVpcLinkSecurityGroup/);
    const [, albGroup] = onlyResource(template, 'AWS::EC2::SecurityGroup', 'ecsLoadBalancerSecurityGroup');
    assert.equal(albGroup['SecurityGroupIngress'], undefined, 'no 0.0.0.0/0 rule');
  });
});

describe('the HTTP API', () => {
  test('every route goes through the VPC link to the ALB listener; the stage is throttled', () => {
    const [, integration] = onlyResource(template, 'AWS::ApiGatewayV2::Integration');
    assert.equal(integration['IntegrationType'], 'HTTP_PROXY');
    assert.equal(integration['ConnectionType'], 'VPC_LINK');
    assert.match(flatten(integration['ConnectionId']), /^\{Ref:ecsVpcLink\w+\}$/);
    assert.match(flatten(integration['IntegrationUri']), /^\{Ref:ecsLoadBalancerListener\w+\}$/);
    const routes = resourcesOf(template, 'AWS::ApiGatewayV2::Route').map(([, r]) => r['RouteKey']);
    assert.equal(routes.length, 9);
    assert.ok(routes.includes('$default') && routes.includes('POST /v2/models/{name}/infer'));
    const [, stage] = onlyResource(template, 'AWS::ApiGatewayV2::Stage');
    assert.deepEqual(stage['DefaultRouteSettings'], { ThrottlingBurstLimit: 200, ThrottlingRateLimit: 100 });
  });
});

describe('IAM', () => {
  test('the task role reads exactly the model object; no S3 grant is broader', () => {
    assertNoBroadS3Grant(template);
    const s3 = policyStatements(template).filter((s) => s.actions.some((a) => a.startsWith('s3:')));
    assert.equal(s3.length, 1);
    assert.ok(s3[0]!.holder.startsWith('ecsTaskRole'));
    assert.deepEqual(s3[0]!.actions, ['s3:GetObject']);
    const e = env();
    assert.deepEqual(s3[0]!.resources, [objectArnOf(e[ENV.modelUri]!)]);
    const [, taskRole] = onlyResource(template, 'AWS::IAM::Role', 'ecsTaskRole');
    assert.equal(taskRole['ManagedPolicyArns'], undefined);
  });

  test("the instance role writes logs only to the service's log group; no logs action on *", () => {
    const instance = policyStatements(template).filter((s) => s.holder.startsWith('ecsInstanceRole'));
    assert.ok(instance.length > 0);
    const logs = instance.filter((s) => s.actions.some((a) => a.startsWith('logs:')));
    assert.equal(logs.length, 1);
    assert.deepEqual(logs[0]!.actions.sort(), ['logs:CreateLogStream', 'logs:PutLogEvents']);
    assert.equal(logs[0]!.resources.length, 1);
    assert.match(logs[0]!.resources[0]!, /^\{GetAtt:ecsContainerLogs\w+\.Arn\}$/);
    for (const statement of policyStatements(template)) {
      if (statement.resources.includes('*'))
        assert.ok(
          !statement.actions.some((a) => a.startsWith('logs:')),
          `${statement.holder}: ${statement.actions.join()} on *`,
        );
    }
    // The agent keeps what it needs: registration on the cluster, the token for image pulls.
    const actions = instance.flatMap((s) => s.actions);
    for (const action of ['ecs:RegisterContainerInstance', 'ecs:DiscoverPollEndpoint', 'ecr:GetAuthorizationToken'])
      assert.ok(actions.includes(action), action);
  });
});

describe('Compute.ecs props', () => {
  test('defaults; a given VPC is used as is; gpuCount 0 runs the CPU image on the standard AMI', () => {
    const compute = Compute.ecs({ instanceType: 'g5.xlarge' });
    assert.equal(compute.kind, 'ecs');
    assert.equal(compute.gpuCount, 1);
    assert.equal(compute.minTasks, 1);
    assert.equal(compute.maxTasks, 2);
    assert.equal(Compute.ecs({ instanceType: 'c7i.large' }).gpuCount, 0);

    const other = new Stack(tempApp(), 'T');
    const vpc = new ec2.Vpc(other, 'Mine', { natGateways: 1 });
    new RealtimeApi(other, 'cpu', {
      model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
      compute: Compute.ecs({ instanceType: 'c7i.xlarge', vpc }),
    });
    const t = Template.fromStack(other);
    assert.equal(resourcesOf(t, 'AWS::EC2::VPC').length, 1, 'no VPC besides the given one');
    assert.equal(container(t)['ResourceRequirements'], undefined);
    assert.equal(env(t)[ENV.executionProviders], 'cpu');
    const parameters = t.toJSON()['Parameters'] as Record<string, { Default: string }>;
    assert.ok(
      Object.values(parameters).some(
        (p) => p.Default === '/aws/service/ecs/optimized-ami/amazon-linux-2023/recommended/image_id',
      ),
    );
  });

  test('every problem is reported in one error', () => {
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'bad', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          compute: Compute.ecs({ instanceType: 'ml.g5.xlarge', gpuCount: -1, minTasks: 0, maxTasks: 1.5 }),
        }),
    );
    assert.deepEqual(problems, [
      "instanceType 'ml.g5.xlarge' is not an EC2 instance type (<family>.<size>, e.g. g5.xlarge)",
      'gpuCount must be a non-negative integer, got -1',
      'minTasks must be an integer of at least 1, got 0',
      'maxTasks must be an integer of at least 1, got 1.5',
    ]);
    assert.deepEqual(Compute.ecs({ instanceType: 'g5.xlarge', gpuCount: 4 }).problems(), [
      'gpuCount 4 is more than the 1 GPU(s) of g5.xlarge',
    ]);
    assert.deepEqual(Compute.ecs({ instanceType: 'c7i.large', gpuCount: 1 }).problems(), [
      'gpuCount 1 needs a GPU instance type; c7i.large has no GPU',
    ]);
    assert.deepEqual(Compute.ecs({ instanceType: 'g5.xlarge', minTasks: 3, maxTasks: 2 }).problems(), [
      'maxTasks 2 is less than minTasks 3',
    ]);
  });
});
