/**
 * AsyncApi on the ECS compute, by its synthesized template (ECS, SQS and Application Auto Scaling cannot run here):
 * the queue (visibility fitted to the worker's heartbeat, DLQ, encryption), an ECS service with no load balancer whose
 * container runs the queue worker (ARCLIGHT_ASYNC_QUEUE_URL and the job store's names), the container health check on
 * /ping and the stopTimeout SIGTERM drains within, step scaling on the queue metrics (out from zero while jobs wait,
 * back to minTasks when idle), every role's exact grants, the same front, and cdk-nag's AwsSolutions pack clean.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Duration, Stack, Validations, type App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildAppFromFile } from '../../../lib/app-file/build-app.js';
import { loadAppFile } from '../../../lib/app-file/load.js';
import { AwsSolutionsChecks } from 'cdk-nag';
import { API_METADATA_KEY, ASYNC_ENV, ENV } from '../../../lib/contract.js';
import {
  ECS_ASYNC_DRAIN,
  ECS_ASYNC_STOP_TIMEOUT,
  ECS_ASYNC_VISIBILITY,
} from '../../../lib/constructs/async/async-ecs-worker.js';
import { ApiAuth, AsyncApi, Compute, ModelSource } from '../../../lib/index.js';
import {
  assertNoNagViolations,
  flatten,
  onlyResource,
  policyStatements,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, REPO_ROOT } from '../../helpers.js';

const tmp = useScratchTmpdir();

let app: App;
let stack: Stack;
let template: Template;
let api: AsyncApi;

before(() => {
  app = tempApp();
  stack = new Stack(app, 'AsyncEcsTest');
  api = new AsyncApi(stack, 'digits-async', {
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.ecs({ instanceType: 'g5.xlarge', minTasks: 0, maxTasks: 4 }),
    timeout: Duration.hours(2),
    auth: ApiAuth.iam(),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  app.synth();
  template = Template.fromStack(stack);
});

type Resources = Record<
  string,
  { Type: string; Properties?: Record<string, unknown>; Metadata?: Record<string, unknown> }
>;
const resources = (): Resources => template.toJSON()['Resources'] as Resources;

function containerOf(): { Environment: { Name: string; Value: unknown }[]; [key: string]: unknown } {
  const [, props] = onlyResource(template, 'AWS::ECS::TaskDefinition');
  const [container] = props['ContainerDefinitions'] as { Environment: { Name: string; Value: unknown }[] }[];
  return container as ReturnType<typeof containerOf>;
}

function environment(): Record<string, string> {
  return Object.fromEntries(containerOf().Environment.map((v) => [v.Name, flatten(v.Value)]));
}

describe('AsyncApi on ECS', () => {
  test("the queue: encrypted, TLS-only, a dead-letter queue after 3 receives, visibility the heartbeat's", () => {
    const queues = Object.entries(resources()).filter(([, r]) => r.Type === 'AWS::SQS::Queue');
    assert.equal(queues.length, 2);
    const [dlqId] = queues.find(([id]) => id.includes('DeadLetters'))!;
    const [, queue] = queues.find(([id]) => id.includes('StorageQueue'))!;
    assert.deepEqual(queue.Properties, {
      SqsManagedSseEnabled: true,
      VisibilityTimeout: ECS_ASYNC_VISIBILITY.toSeconds(),
      MessageRetentionPeriod: 14 * 24 * 3600,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 3 },
    });
    const policies = Object.values(resources()).filter((r) => r.Type === 'AWS::SQS::QueuePolicy');
    assert.equal(policies.length, 2);
    for (const policy of policies) {
      assert.match(JSON.stringify(policy.Properties), /"aws:SecureTransport":"false"/);
    }
  });

  test('an ECS service with no load balancer, from zero tasks, on the GPU capacity provider', () => {
    const [, service] = onlyResource(template, 'AWS::ECS::Service');
    assert.equal(service['DesiredCount'], 0);
    assert.equal(service['LoadBalancers'], undefined);
    assert.equal(service['HealthCheckGracePeriodSeconds'], undefined);
    const deployment = service['DeploymentConfiguration'] as Record<string, unknown>;
    assert.deepEqual(deployment['DeploymentCircuitBreaker'], { Enable: true, Rollback: true });
    assert.equal(deployment['MinimumHealthyPercent'], 100);
    assert.equal(deployment['MaximumPercent'], 200);
    assert.equal((service['CapacityProviderStrategy'] as unknown[]).length, 1);
    assert.equal(Object.values(resources()).filter((r) => r.Type.startsWith('AWS::ElasticLoadBalancingV2')).length, 0);
    const [, launchTemplate] = onlyResource(template, 'AWS::EC2::LaunchTemplate');
    assert.equal((launchTemplate['LaunchTemplateData'] as Record<string, unknown>)['InstanceType'], 'g5.xlarge');
  });

  test('the container is the queue worker: queue, bucket and table names, the job timeout, a GPU, SIGTERM drain', () => {
    const env = environment();
    const [queueId] = onlyResource(template, 'AWS::SQS::Queue', 'digitsasyncStorageQueue');
    assert.equal(env[ASYNC_ENV.queueUrl], `{Ref:${queueId}}`);
    assert.match(env[ASYNC_ENV.bucket]!, /^\{Ref:digitsasyncStorageBucket/);
    assert.match(env[ASYNC_ENV.table]!, /^\{Ref:digitsasyncStorageJobs/);
    assert.equal(env[ENV.requestTimeoutMs], String(2 * 3600 * 1000));
    assert.equal(env['AWS_REGION'], '{Ref:AWS::Region}');
    assert.equal(env[ENV.executionProviders], 'cuda,cpu');
    assert.equal(env['ARCLIGHT_ASYNC_VISIBILITY_SECONDS'], String(ECS_ASYNC_VISIBILITY.toSeconds()));
    assert.equal(env['ARCLIGHT_ASYNC_DRAIN_SECONDS'], String(ECS_ASYNC_DRAIN.toSeconds()));
    assert.ok(ECS_ASYNC_DRAIN.toSeconds() < ECS_ASYNC_STOP_TIMEOUT.toSeconds());
    const container = containerOf();
    assert.equal(container['StopTimeout'], ECS_ASYNC_STOP_TIMEOUT.toSeconds());
    assert.deepEqual(container['ResourceRequirements'], [{ Type: 'GPU', Value: '1' }]);
    assert.equal(container['PortMappings'], undefined);
    const health = container['HealthCheck'] as { Command: string[]; StartPeriod: number };
    assert.equal(health.Command[0], 'CMD');
    assert.match(health.Command.join(' '), /fetch\('http:\/\/127\.0\.0\.1:8080\/ping'\)/);
    assert.equal(health.StartPeriod, 300);
    const [, taskDefinition] = Object.entries(resources()).find(([, r]) => r.Type === 'AWS::ECS::TaskDefinition')!;
    assert.deepEqual(taskDefinition.Metadata?.[API_METADATA_KEY], {
      apiName: 'digits-async',
      compute: 'ecs',
      architecture: 'x64',
      gpu: true,
      async: true,
    });
  });

  test('scaling: 0–4 tasks; out by 1/3/10 while 1/10/50 jobs wait; to minTasks after 5 idle minutes', () => {
    const [, target] = onlyResource(template, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(target['MinCapacity'], 0);
    assert.equal(target['MaxCapacity'], 4);
    assert.equal(target['ScalableDimension'], 'ecs:service:DesiredCount');
    assert.equal(target['ServiceNamespace'], 'ecs');
    assert.match(flatten(target['RoleARN']), /AWSServiceRoleForApplicationAutoScaling_ECSService$/);
    const policies = Object.entries(resources()).filter(
      ([, r]) => r.Type === 'AWS::ApplicationAutoScaling::ScalingPolicy',
    );
    assert.equal(policies.length, 2);
    const policy = (name: string): Record<string, unknown> =>
      policies.find(([id]) => id.includes(name))![1].Properties!['StepScalingPolicyConfiguration'] as Record<
        string,
        unknown
      >;
    assert.deepEqual(policy('ScaleOutOnWaitingJobs'), {
      AdjustmentType: 'ChangeInCapacity',
      Cooldown: 120,
      MetricAggregationType: 'Maximum',
      StepAdjustments: [
        { MetricIntervalLowerBound: 0, MetricIntervalUpperBound: 9, ScalingAdjustment: 1 },
        { MetricIntervalLowerBound: 9, MetricIntervalUpperBound: 49, ScalingAdjustment: 3 },
        { MetricIntervalLowerBound: 49, ScalingAdjustment: 10 },
      ],
    });
    assert.deepEqual(policy('ScaleInWhenIdle'), {
      AdjustmentType: 'ExactCapacity',
      Cooldown: 300,
      MetricAggregationType: 'Maximum',
      StepAdjustments: [{ MetricIntervalUpperBound: 0, ScalingAdjustment: 0 }],
    });
    const alarms = Object.entries(resources()).filter(([, r]) => r.Type === 'AWS::CloudWatch::Alarm');
    const [queueId] = onlyResource(template, 'AWS::SQS::Queue', 'digitsasyncStorageQueue');
    const queueName = { 'Fn::GetAtt': [queueId, 'QueueName'] };
    const waiting = alarms.find(([id]) => id.includes('JobsWaiting'))![1].Properties!;
    assert.equal(waiting['MetricName'], 'ApproximateNumberOfMessagesVisible');
    assert.equal(waiting['Namespace'], 'AWS/SQS');
    assert.deepEqual(waiting['Dimensions'], [{ Name: 'QueueName', Value: queueName }]);
    assert.equal(waiting['ComparisonOperator'], 'GreaterThanOrEqualToThreshold');
    assert.equal(waiting['Threshold'], 1);
    assert.equal(waiting['EvaluationPeriods'], 1);
    assert.equal(waiting['Statistic'], 'Maximum');
    assert.equal(waiting['Period'], 60);
    assert.equal(waiting['TreatMissingData'], 'notBreaching');
    const [scaleOutId] = policies.find(([id]) => id.includes('ScaleOutOnWaitingJobs'))!;
    assert.deepEqual(waiting['AlarmActions'], [{ Ref: scaleOutId }]);
    const idle = alarms.find(([id]) => id.includes('QueueIdle'))![1].Properties!;
    assert.equal(idle['ComparisonOperator'], 'LessThanOrEqualToThreshold');
    assert.equal(idle['Threshold'], 0);
    assert.equal(idle['EvaluationPeriods'], 5);
    assert.equal(idle['TreatMissingData'], 'breaching');
    const metrics = idle['Metrics'] as { Id: string; Expression?: string; MetricStat?: Record<string, unknown> }[];
    assert.equal(metrics.find((m) => m.Expression)?.Expression, 'waiting + running');
    assert.deepEqual(
      metrics
        .filter((m) => m.MetricStat)
        .map((m) => [m.Id, (m.MetricStat!['Metric'] as Record<string, unknown>)['MetricName'], m.MetricStat!['Stat']])
        .sort(),
      [
        ['running', 'ApproximateNumberOfMessagesNotVisible', 'Maximum'],
        ['waiting', 'ApproximateNumberOfMessagesVisible', 'Maximum'],
      ],
    );
    const [scaleInId] = policies.find(([id]) => id.includes('ScaleInWhenIdle'))!;
    assert.deepEqual(idle['AlarmActions'], [{ Ref: scaleInId }]);
  });

  test("least privilege: the task role's exact grants on its prefixes, table and queue; the front's unchanged", () => {
    const statements = policyStatements(template).filter((s) => s.effect === 'Allow');
    for (const statement of statements) {
      if (statement.resources.includes('*')) {
        // ecr:GetAuthorizationToken has no resource-level permissions; the ECS agent's own calls are scoped by condition.
        assert.ok(!/TaskRole/.test(statement.holder), `${statement.holder}: ${statement.actions.join(',')} on *`);
      }
    }
    const grants = (holder: RegExp): string[] =>
      statements
        .filter((s) => holder.test(s.holder))
        .flatMap((s) => s.actions.map((a) => `${a} ${s.resources.join(' ')}`))
        .map((line) => line.replace(/digitsasync(Storage|Worker)(\w+?)[0-9A-F]{8}/g, '$2'))
        .sort();
    const taskRole = grants(/^digitsasyncWorkerTaskRole/);
    const model = taskRole.filter((line) => line.startsWith('s3:GetObject') && /cdk-hnb659fds-assets/.test(line));
    assert.equal(model.length, 1, 'the model object, read');
    assert.deepEqual(
      taskRole.filter((line) => !model.includes(line)),
      [
        'dynamodb:GetItem {GetAtt:Jobs.Arn}',
        'dynamodb:UpdateItem {GetAtt:Jobs.Arn}',
        's3:DeleteObject {GetAtt:Bucket.Arn}/results/*',
        's3:GetObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        's3:PutObject {GetAtt:Bucket.Arn}/results/*',
        'sqs:ChangeMessageVisibility {GetAtt:Queue.Arn}',
        'sqs:DeleteMessage {GetAtt:Queue.Arn}',
        'sqs:ReceiveMessage {GetAtt:Queue.Arn}',
      ].sort(),
    );
    assert.deepEqual(
      grants(/^digitsasyncFrontRole/).filter((line) => !/^logs:/.test(line)),
      [
        'dynamodb:GetItem {GetAtt:Jobs.Arn}',
        'dynamodb:PutItem {GetAtt:Jobs.Arn}',
        's3:GetObject {GetAtt:Bucket.Arn}/uploads/* {GetAtt:Bucket.Arn}/results/*',
        's3:PutObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        'sqs:SendMessage {GetAtt:Queue.Arn}',
      ].sort(),
    );
  });

  test('the same front and routes as on Lambda: POST /async, POST /async/uploads, GET /async/{id}', () => {
    const routes = Object.values(resources())
      .filter((r) => r.Type === 'AWS::ApiGatewayV2::Route')
      .map((r) => r.Properties!['RouteKey'])
      .sort();
    assert.deepEqual(routes, ['GET /async/{id}', 'POST /async', 'POST /async/uploads']);
    assert.equal(Object.values(resources()).filter((r) => r.Type === 'AWS::Lambda::EventSourceMapping').length, 0);
    assert.match(api.url, /./);
    assert.equal(api.worker, undefined);
    assert.ok(api.ecsWorker);
  });

  test("the image's bundled entry becomes the queue worker when the queue's URL is set", () => {
    const servers = readdirSync(app.outdir)
      .map((entry) => join(app.outdir, entry, 'server.mjs'))
      .filter((file) => existsSync(file));
    assert.equal(servers.length, 1);
    const bundle = readFileSync(servers[0]!, 'utf8');
    assert.match(bundle, /ARCLIGHT_ASYNC_QUEUE_URL/);
    assert.match(bundle, /async worker polling its queue/);
    assert.match(bundle, /ChangeMessageVisibility/);
  });

  test('passes cdk-nag AwsSolutions with no violation', () => {
    assertNoNagViolations(app.outdir);
  });
});

describe('AsyncApi on ECS: props', () => {
  test('every invalid prop in one error: the 11 h timeout, a negative minTasks, the instance type, notifications', () => {
    const problems = thrownProblems(
      () =>
        new AsyncApi(new Stack(tempApp(), 'Bad'), 'bad', {
          model: ModelSource.fromAsset(DIGITS_ONNX),
          compute: Compute.ecs({ instanceType: 'nope', minTasks: -1, maxTasks: 2 }),
          timeout: Duration.hours(12),
          notifications: { topic: true },
        }),
    );
    const text = problems.join('\n');
    assert.equal(problems.length, 4, text);
    assert.match(text, /notifications: not built for ECS queue workers yet/);
    assert.match(text, /timeout 43200 s is outside the ECS worker's .* 1–39600 s/);
    assert.match(text, /minTasks must be an integer of at least 0, got -1/);
    assert.match(text, /instanceType 'nope' is not an EC2 instance type/);
  });

  test('minTasks 0 is allowed on a queue (it is refused for a RealtimeApi on ECS)', () => {
    assert.doesNotThrow(
      () =>
        new AsyncApi(new Stack(tempApp(), 'Zero'), 'zero', {
          model: ModelSource.fromAsset(DIGITS_ONNX),
          compute: Compute.ecs({ instanceType: 'c6i.xlarge', minTasks: 0 }),
        }),
    );
  });
});

describe('AsyncApi on ECS from arclight.yaml', () => {
  test("async + compute ecs builds the queue workers with the file's limits, from zero tasks", () => {
    const file = join(tmp, 'ecs-async.yaml');
    writeFileSync(
      file,
      [
        'apis:',
        '  - name: jobs',
        `    model: ${join(REPO_ROOT, DIGITS_ONNX)}`,
        '    compute: { kind: ecs, instanceType: c6i.xlarge, minTasks: 0, maxTasks: 5 }',
        '    async: { timeout: 600, maxReceiveCount: 4 }',
        '',
      ].join('\n'),
    );
    const stacks = buildAppFromFile(loadAppFile(file), tempApp());
    const built = Template.fromStack(stacks.get('jobs')!);
    const [, service] = onlyResource(built, 'AWS::ECS::Service');
    assert.equal(service['DesiredCount'], 0);
    const [, target] = onlyResource(built, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.deepEqual([target['MinCapacity'], target['MaxCapacity']], [0, 5]);
    const [, queue] = onlyResource(built, 'AWS::SQS::Queue', 'jobsStorageQueue');
    assert.equal((queue['RedrivePolicy'] as { maxReceiveCount: number }).maxReceiveCount, 4);
    const [, taskDefinition] = onlyResource(built, 'AWS::ECS::TaskDefinition');
    const [container] = taskDefinition['ContainerDefinitions'] as { Environment: { Name: string; Value: unknown }[] }[];
    const env = Object.fromEntries(container!.Environment.map((v) => [v.Name, flatten(v.Value)]));
    assert.equal(env[ENV.requestTimeoutMs], '600000');
    assert.equal(env[ENV.executionProviders], 'cpu');
    assert.equal(env[ASYNC_ENV.maxReceives], '4');
  });
});
