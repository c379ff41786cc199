/**
 * ModelSource.fromBucket(bucket, { prefix, version?, pollInterval? }) bound in real stacks: IAM lists and reads that
 * prefix only (or only the pinned version's folder), the containers' env carries the prefix URI and the poll interval
 * or the pinned version, Lambda refuses an unpinned prefix, every bad prop is one synth problem, and cdk-nag's
 * AwsSolutions pack finds nothing on a SageMaker API serving a versioned prefix.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Duration, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ENV } from '../../lib/contract.js';
import { Compute, ModelSource, RealtimeApi } from '../../lib/index.js';
import { onlyResource, policyStatements, tempApp, thrownProblems, useScratchTmpdir } from '../cdk-helpers.js';

useScratchTmpdir();

const BUCKET_ARN = 'arn:{Ref:AWS::Partition}:s3:::models-bucket';

function bindVersioned(options: Parameters<typeof ModelSource.fromBucket>[1]): {
  template: Template;
  config: ReturnType<ModelSource['bind']>;
} {
  const stack = new Stack(tempApp(), 'S');
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('sagemaker.amazonaws.com') });
  const bucket = s3.Bucket.fromBucketName(stack, 'B', 'models-bucket');
  const config = ModelSource.fromBucket(bucket, options as never).bind(stack, role);
  return { template: Template.fromStack(stack), config };
}

function s3Grants(template: Template): { actions: string[]; resources: string[]; conditions?: unknown }[] {
  return policyStatements(template)
    .filter((s) => s.actions.some((a) => a.startsWith('s3:')))
    .map(({ actions, resources, conditions }) => ({ actions, resources, ...(conditions ? { conditions } : {}) }));
}

describe('ModelSource.fromBucket with a prefix', () => {
  test('lists and reads the prefix only; the URI is the prefix; polls every minute by default', () => {
    const { template, config } = bindVersioned({ prefix: 'models/digits' });
    assert.equal(config.uri, 's3://models-bucket/models/digits/');
    assert.deepEqual(config.versions, { pollSeconds: 60 });
    assert.deepEqual(config.problems, []);
    assert.deepEqual(s3Grants(template), [
      { actions: ['s3:GetObject'], resources: [`${BUCKET_ARN}/models/digits/*`] },
      {
        actions: ['s3:ListBucket'],
        resources: [BUCKET_ARN],
        conditions: { StringLike: { 's3:prefix': ['models/digits/', 'models/digits/*'] } },
      },
    ]);
  });

  test('a pinned version: only its folder, with its sha256; no polling', () => {
    const sha = 'ab'.repeat(32);
    const { template, config } = bindVersioned({ prefix: 'models/digits/', version: 3, sha256: sha.toUpperCase() });
    assert.deepEqual(config.versions, { version: 3 });
    assert.equal(config.sha256, sha);
    assert.deepEqual(
      s3Grants(template).map((g) => g.resources[0]),
      [`${BUCKET_ARN}/models/digits/3/*`, BUCKET_ARN],
    );
    assert.deepEqual(s3Grants(template)[1]!.conditions, {
      StringLike: { 's3:prefix': ['models/digits/3/', 'models/digits/3/*'] },
    });
  });

  test('every bad prop is a problem, and nothing is granted then', () => {
    const { template, config } = bindVersioned({
      prefix: 'models/*/',
      version: 2.5,
      pollInterval: Duration.millis(100),
      sha256: 'nope',
    });
    assert.deepEqual(config.problems, [
      "prefix 'models/*/' holds an IAM wildcard (* or ?)",
      'version 2.5 must be a folder number (a non-negative integer)',
      'pollInterval watches for new versions; a pinned version never changes: drop one of them',
      'pollInterval must be from 1 second to 1 day, got 0.1 s',
      "sha256 'nope' is not 64 hex digits",
    ]);
    assert.deepEqual(s3Grants(template), []);
    assert.deepEqual(bindVersioned({ prefix: 'm/', sha256: 'ab'.repeat(32) }).config.problems, [
      'sha256 names one object: pin a version with it, or give each version a .sha256 sidecar',
    ]);
  });
});

describe('a versioned model behind each compute', () => {
  test('SageMaker: the container env carries the prefix and the poll interval; cdk-nag AwsSolutions is clean', () => {
    const app = tempApp();
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    const stack = new Stack(app, 'S');
    const bucket = new s3.Bucket(stack, 'Models', {
      enforceSSL: true,
      serverAccessLogsPrefix: 'access/',
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    });
    new RealtimeApi(stack, 'digits', {
      model: ModelSource.fromBucket(bucket, { prefix: 'digits/', pollInterval: Duration.seconds(30) }),
      compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
    });
    // A violation of the pack makes synth throw.
    app.synth();
    const template = Template.fromStack(stack);
    const [, model] = onlyResource(template, 'AWS::SageMaker::Model');
    const env = (model['PrimaryContainer'] as { Environment: Record<string, unknown> }).Environment;
    assert.equal(env[ENV.modelPollSeconds], '30');
    assert.equal(env[ENV.modelVersion], undefined);
    assert.match(JSON.stringify(env[ENV.modelUri]), /digits\/"?\]?/);
  });

  test('ECS: a pinned version travels as ARCLIGHT_MODEL_VERSION', () => {
    const stack = new Stack(tempApp(), 'S');
    const bucket = s3.Bucket.fromBucketName(stack, 'B', 'models-bucket');
    new RealtimeApi(stack, 'digits', {
      model: ModelSource.fromBucket(bucket, { prefix: 'digits/', version: 7 }),
      compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
    });
    const [, task] = onlyResource(Template.fromStack(stack), 'AWS::ECS::TaskDefinition');
    const container = (task['ContainerDefinitions'] as { Environment: { Name: string; Value: unknown }[] }[])[0]!;
    const env = Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]));
    assert.equal(env[ENV.modelUri], 's3://models-bucket/digits/');
    assert.equal(env[ENV.modelVersion], '7');
    assert.equal(env[ENV.modelPollSeconds], undefined);
  });

  test('Lambda: an unpinned prefix is refused at synth (sandboxes load the pinned version)', () => {
    const stack = new Stack(tempApp(), 'S');
    const bucket = s3.Bucket.fromBucketName(stack, 'B', 'models-bucket');
    const problems = thrownProblems(
      () => new RealtimeApi(stack, 'digits', { model: ModelSource.fromBucket(bucket, { prefix: 'digits/' }) }),
    );
    assert.ok(
      problems.some((p) => /versioned model on Lambda needs a pinned version/.test(p)),
      problems.join('\n'),
    );
  });
});

describe('dataCapture', () => {
  function captureBucket(stack: Stack): s3.Bucket {
    return new s3.Bucket(stack, 'Captures', {
      enforceSSL: true,
      serverAccessLogsPrefix: 'access/',
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
    });
  }

  test("SageMaker: the endpoint's DataCaptureConfig, PutObject under the prefix only; cdk-nag clean", () => {
    const app = tempApp();
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    const stack = new Stack(app, 'S');
    const bucket = captureBucket(stack);
    new RealtimeApi(stack, 'digits', {
      model: ModelSource.fromBucket(s3.Bucket.fromBucketName(stack, 'M', 'models-bucket'), 'digits.onnx', {
        sha256: 'ab'.repeat(32),
      }),
      compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
      dataCapture: { bucket, samplingPercentage: 20 },
    });
    app.synth();
    const template = Template.fromStack(stack);
    const [, config] = onlyResource(template, 'AWS::SageMaker::EndpointConfig');
    const capture = config['DataCaptureConfig'] as Record<string, unknown>;
    assert.equal(capture['EnableCapture'], true);
    assert.equal(capture['InitialSamplingPercentage'], 20);
    assert.deepEqual(capture['CaptureOptions'], [{ CaptureMode: 'Input' }, { CaptureMode: 'Output' }]);
    assert.match(JSON.stringify(capture['DestinationS3Uri']), /data-capture\/digits\//);
    const puts = policyStatements(template).filter((s) => s.actions.includes('s3:PutObject'));
    assert.equal(puts.length, 1);
    assert.match(puts[0]!.resources.join(), /Captures.*\/data-capture\/digits\/\*$/);
  });

  test('ECS: the container server captures (env); Lambda refuses; bad props are problems', () => {
    const stack = new Stack(tempApp(), 'S');
    const bucket = s3.Bucket.fromBucketName(stack, 'C', 'captures');
    const model = ModelSource.fromBucket(s3.Bucket.fromBucketName(stack, 'M', 'models-bucket'), 'digits.onnx');
    new RealtimeApi(stack, 'digits', {
      model,
      compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
      dataCapture: { bucket, prefix: 'dc', samplingPercentage: 5 },
    });
    const [, task] = onlyResource(Template.fromStack(stack), 'AWS::ECS::TaskDefinition');
    const container = (task['ContainerDefinitions'] as { Environment: { Name: string; Value: unknown }[] }[])[0]!;
    const env = Object.fromEntries(container.Environment.map((e) => [e.Name, e.Value]));
    assert.equal(env[ENV.dataCaptureUri], 's3://captures/dc/');
    assert.equal(env[ENV.dataCapturePercent], '5');
    const lambdaStack = new Stack(tempApp(), 'L');
    const problems = thrownProblems(
      () =>
        new RealtimeApi(lambdaStack, 'digits', {
          model: ModelSource.fromBucket(s3.Bucket.fromBucketName(lambdaStack, 'M', 'models-bucket'), 'digits.onnx'),
          dataCapture: {
            bucket: s3.Bucket.fromBucketName(lambdaStack, 'C', 'captures'),
            samplingPercentage: 0,
            prefix: 'a*',
          },
        }),
    );
    assert.deepEqual(
      problems.filter((p) => /dataCapture/.test(p)),
      [
        'dataCapture runs on the container computes (SageMaker, ECS): a frozen Lambda sandbox cannot upload captures',
        'dataCapture.samplingPercentage must be above 0 and at most 100, got 0',
        "dataCapture.prefix 'a*' must be a folder without a leading / or IAM wildcards (* ?)",
      ],
    );
  });
});
