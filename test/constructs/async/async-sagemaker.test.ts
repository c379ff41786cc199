/**
 * AsyncApi on the SageMaker compute, by its synthesized template (SageMaker cannot run here): the endpoint config's
 * AsyncInferenceConfig (S3 output and failure paths under the API's bucket, SNS topics encrypted and TLS-only,
 * ClientConfig), the RealtimeApi's container model, scaling down to zero on the backlog with the step policy that
 * leaves zero, every role's exact grants, the front in its SageMaker mode, and cdk-nag's AwsSolutions pack clean.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Size, Stack, Validations, type App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ASYNC_ENV, ENV } from '../../../lib/contract.js';
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
import { MOBILENET_ONNX } from '../../helpers.js';

useScratchTmpdir();

let app: App;
let stack: Stack;
let template: Template;
let api: AsyncApi;

before(() => {
  app = tempApp();
  stack = new Stack(app, 'AsyncSageMakerTest');
  api = new AsyncApi(stack, 'mobilenet-async', {
    model: ModelSource.fromAsset(MOBILENET_ONNX),
    compute: Compute.sageMaker({ instanceType: 'ml.m5.xlarge', maxInstances: 3 }),
    timeout: Duration.minutes(45),
    maxBodySize: Size.mebibytes(512),
    maxConcurrentInvocationsPerInstance: 2,
    auth: ApiAuth.iam(),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  app.synth();
  template = Template.fromStack(stack);
});

const bucketArn = (): string => {
  const [bucketId] = onlyResource(template, 'AWS::S3::Bucket', 'mobilenetasyncStorageBucket');
  return bucketId;
};

describe('AsyncApi on SageMaker', () => {
  test('AsyncInferenceConfig: output and failure paths under the bucket, both SNS topics, ClientConfig', () => {
    const [, props] = onlyResource(template, 'AWS::SageMaker::EndpointConfig');
    const asyncConfig = props['AsyncInferenceConfig'] as {
      OutputConfig: { S3OutputPath: unknown; S3FailurePath: unknown; NotificationConfig: Record<string, unknown> };
      ClientConfig: Record<string, unknown>;
    };
    const bucket = bucketArn();
    assert.equal(flatten(asyncConfig.OutputConfig.S3OutputPath), `s3://{Ref:${bucket}}/results/sagemaker/output/`);
    assert.equal(flatten(asyncConfig.OutputConfig.S3FailurePath), `s3://{Ref:${bucket}}/results/sagemaker/failures/`);
    const [successId] = onlyResource(template, 'AWS::SNS::Topic', 'mobilenetasyncEndpointSuccessTopic');
    const [errorId] = onlyResource(template, 'AWS::SNS::Topic', 'mobilenetasyncEndpointErrorTopic');
    assert.deepEqual(asyncConfig.OutputConfig.NotificationConfig, {
      SuccessTopic: { Ref: successId },
      ErrorTopic: { Ref: errorId },
    });
    assert.deepEqual(asyncConfig.ClientConfig, { MaxConcurrentInvocationsPerInstance: 2 });
    const [variant] = props['ProductionVariants'] as Record<string, unknown>[];
    assert.equal(variant!['InstanceType'], 'ml.m5.xlarge');
    assert.equal(variant!['InitialInstanceCount'], 1);
  });

  test("the SNS topics: KMS-encrypted with a rotating key, TLS-only; the endpoint's role may publish to each", () => {
    const [keyId] = onlyResource(template, 'AWS::KMS::Key');
    template.hasResourceProperties('AWS::KMS::Key', { EnableKeyRotation: true });
    const topics = template.findResources('AWS::SNS::Topic');
    assert.equal(Object.keys(topics).length, 2);
    for (const topic of Object.values(topics)) {
      assert.deepEqual((topic as { Properties: { KmsMasterKeyId: unknown } }).Properties.KmsMasterKeyId, {
        'Fn::GetAtt': [keyId, 'Arn'],
      });
    }
    const policies = Object.values(template.findResources('AWS::SNS::TopicPolicy'));
    assert.equal(policies.length, 2);
    for (const policy of policies) {
      assert.match(flatten(policy), /"Action":"sns:Publish".*aws:SecureTransport":"false".*"Effect":"Deny"/);
    }
  });

  test("the model: the realtime SageMaker backend's container image, env contract with the job's limits", () => {
    const [modelId, model] = onlyResource(template, 'AWS::SageMaker::Model');
    const container = model['PrimaryContainer'] as Record<string, unknown>;
    assert.match(flatten(container['Image']), /container-assets/);
    const env = container['Environment'] as Record<string, string>;
    assert.equal(env[ENV.apiName], 'mobilenet-async');
    assert.equal(env[ENV.maxBodyBytes], String(512 * 2 ** 20));
    assert.equal(env[ENV.requestTimeoutMs], String(45 * 60_000 - 1000));
    assert.equal(env[ENV.executionProviders], 'cpu');
    const metadata = (template.findResources('AWS::SageMaker::Model')[modelId] as { Metadata: unknown }).Metadata;
    assert.match(JSON.stringify(metadata), /"compute":"sagemaker".*"async":true/);
  });

  test('scaling: 0 to maxInstances, target tracking on ApproximateBacklogSizePerInstance, step scaling out of zero', () => {
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
      MaxCapacity: 3,
      ScalableDimension: 'sagemaker:variant:DesiredInstanceCount',
      ServiceNamespace: 'sagemaker',
    });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'TargetTrackingScaling',
      TargetTrackingScalingPolicyConfiguration: Match.objectLike({
        TargetValue: 5,
        CustomizedMetricSpecification: Match.objectLike({
          MetricName: 'ApproximateBacklogSizePerInstance',
          Namespace: 'AWS/SageMaker',
          Statistic: 'Average',
        }),
      }),
    });
    const [stepId] = onlyResource(
      template,
      'AWS::ApplicationAutoScaling::ScalingPolicy',
      'mobilenetasyncEndpointScaleOutFromZero',
    );
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      PolicyType: 'StepScaling',
      StepScalingPolicyConfiguration: Match.objectLike({
        AdjustmentType: 'ChangeInCapacity',
        StepAdjustments: [{ MetricIntervalLowerBound: 0, ScalingAdjustment: 1 }],
      }),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'HasBacklogWithoutCapacity',
      Namespace: 'AWS/SageMaker',
      ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      Threshold: 1,
      EvaluationPeriods: 2,
      AlarmActions: [{ Ref: stepId }],
    });
  });

  test('no queue, no worker: SageMaker queues the jobs', () => {
    assert.equal(Object.keys(template.findResources('AWS::SQS::Queue')).length, 0);
    assert.equal(api.worker, undefined);
    assert.equal(Object.keys(template.findResources('AWS::Lambda::EventSourceMapping')).length, 0);
  });

  test('the front: the SageMaker mode (endpoint name and timeout), no queue URL', () => {
    const functions = Object.values(template.findResources('AWS::Lambda::Function')).map(
      (r) => (r as { Properties: Record<string, unknown> }).Properties,
    );
    const front = functions.find((f) => /submit, upload, status$/.test(String(f['Description'])))!;
    const env = (front['Environment'] as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env[ASYNC_ENV.endpointName], api.endpoint!.endpointName);
    assert.equal(env[ASYNC_ENV.invocationTimeoutSeconds], String(45 * 60));
    assert.equal(env[ASYNC_ENV.queueUrl], undefined);
  });

  test('least privilege: exact actions on exact prefixes, topics and the one endpoint; no * resource but the documented two', () => {
    const statements = policyStatements(template).filter((s) => s.effect === 'Allow');
    for (const statement of statements) {
      for (const action of statement.actions) assert.doesNotMatch(action, /\*/, statement.holder);
      if (statement.resources.includes('*')) {
        // ecr:GetAuthorizationToken and cloudwatch:PutMetricData take no resource (PutMetricData held by condition).
        assert.ok(
          statement.actions.every((a) => a === 'ecr:GetAuthorizationToken' || a === 'cloudwatch:PutMetricData'),
          `${statement.holder}: ${statement.actions.join(',')} on *`,
        );
      }
    }
    const grants = (holder: RegExp): string[] =>
      statements
        .filter((s) => holder.test(s.holder))
        .flatMap((s) => s.actions.map((a) => `${a} ${s.resources.join(' ')}`))
        .filter((line) => !/^(logs|ecr|cloudwatch):/.test(line) && !/cdk-hnb659fds-assets/.test(line))
        .map((line) => line.replace(/mobilenetasync(Storage|Endpoint)(\w+?)[0-9A-F]{8}/g, '$2'))
        .sort();
    const endpointName = api.endpoint!.endpointName;
    assert.deepEqual(
      grants(/^mobilenetasyncFrontRole/),
      [
        'dynamodb:GetItem {GetAtt:Jobs.Arn}',
        'dynamodb:PutItem {GetAtt:Jobs.Arn}',
        's3:GetObject {GetAtt:Bucket.Arn}/uploads/* {GetAtt:Bucket.Arn}/results/*',
        's3:PutObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        `sagemaker:InvokeEndpointAsync arn:{Ref:AWS::Partition}:sagemaker:{Ref:AWS::Region}:{Ref:AWS::AccountId}:endpoint/${endpointName}`,
      ].sort(),
    );
    const endpointRole = grants(/^mobilenetasyncEndpointExecutionRole/).filter((l) => !l.startsWith('s3:GetObject*'));
    assert.deepEqual(
      endpointRole.filter((line) => /Bucket\.Arn|Topic|TopicKey/.test(line)),
      [
        'kms:Decrypt {GetAtt:TopicKey.Arn}',
        'kms:GenerateDataKey {GetAtt:TopicKey.Arn}',
        's3:AbortMultipartUpload {GetAtt:Bucket.Arn}/results/sagemaker/output/* {GetAtt:Bucket.Arn}/results/sagemaker/failures/*',
        's3:GetObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        's3:PutObject {GetAtt:Bucket.Arn}/results/sagemaker/output/* {GetAtt:Bucket.Arn}/results/sagemaker/failures/*',
        'sns:Publish {Ref:SuccessTopic} {Ref:ErrorTopic}',
      ].sort(),
    );
  });

  test('passes cdk-nag AwsSolutions with no violation', () => {
    assertNoNagViolations(app.outdir);
  });
});

describe('AsyncApi on SageMaker: props', () => {
  test("every invalid prop in one error, with SageMaker's limits", () => {
    const bad = new Stack(tempApp(), 'Bad');
    const problems = thrownProblems(
      () =>
        new AsyncApi(bad, 'bad', {
          model: ModelSource.fromAsset(MOBILENET_ONNX),
          compute: Compute.sageMaker({ instanceType: 'ml.m5.xlarge' }),
          timeout: Duration.minutes(61),
          maxBodySize: Size.gibibytes(2),
          maxConcurrentInvocationsPerInstance: 0,
          targetBacklogPerInstance: -1,
        }),
    );
    const text = problems.join('\n');
    assert.equal(problems.length, 4, text);
    assert.match(text, /timeout 3660 s is outside SageMaker asynchronous inference's 1–3600 s/);
    assert.match(text, /maxBodySize .* is outside 1 byte–1 GiB/);
    assert.match(text, /maxConcurrentInvocationsPerInstance must be an integer from 1 to 1000/);
    assert.match(text, /targetBacklogPerInstance must be a positive number/);
  });

  test('an hour and 1 GiB (the defaults on SageMaker: 1 GiB) synthesize', () => {
    const ok = new Stack(tempApp(), 'Hour');
    const hour = new AsyncApi(ok, 'hour', {
      model: ModelSource.fromAsset(MOBILENET_ONNX),
      compute: Compute.sageMaker({ instanceType: 'ml.m5.xlarge' }),
      timeout: Duration.hours(1),
    });
    const [, model] = onlyResource(Template.fromStack(ok), 'AWS::SageMaker::Model');
    const env = (model['PrimaryContainer'] as { Environment: Record<string, string> }).Environment;
    assert.equal(env[ENV.maxBodyBytes], String(2 ** 30));
    assert.ok(hour.endpoint);
  });
});
