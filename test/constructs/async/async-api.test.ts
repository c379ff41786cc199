/**
 * AsyncApi on the Lambda compute, by its synthesized template (SQS, DynamoDB and the event source mapping cannot run
 * here): the bucket, queue and dead-letter queue, table, worker and front, their exact grants, and cdk-nag's
 * AwsSolutions pack with no violation.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Size, Stack, Validations, type App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ASYNC_ENV, ENV } from '../../../lib/contract.js';
import { ApiAuth, AsyncApi, Compute, ModelSource, Predictor } from '../../../lib/index.js';
import {
  assertNoNagViolations,
  assertOneProblem,
  flatten,
  onlyResource,
  policyStatements,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../../helpers.js';

useScratchTmpdir();

let app: App;
let template: Template;

before(() => {
  app = tempApp();
  const stack = new Stack(app, 'AsyncTest');
  new AsyncApi(stack, 'digits-async', {
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.lambda({ memorySize: 1769 }),
    timeout: Duration.minutes(10),
    auth: ApiAuth.iam(),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  app.synth();
  template = Template.fromStack(stack);
});

function fn(descriptionPattern: RegExp): Record<string, unknown> {
  const found = Object.values(template.findResources('AWS::Lambda::Function')).filter((r) =>
    descriptionPattern.test(String((r as { Properties: { Description?: string } }).Properties.Description)),
  );
  assert.equal(found.length, 1);
  return (found[0] as { Properties: Record<string, unknown> }).Properties;
}

describe('AsyncApi on Lambda', () => {
  test('the queue: SQS-encrypted, TLS-only, visibility 6 × the job timeout, redriven to an encrypted DLQ after 3', () => {
    const queues = template.findResources('AWS::SQS::Queue');
    assert.equal(Object.keys(queues).length, 2);
    const [dlqId] = onlyResource(template, 'AWS::SQS::Queue', 'digitsasyncStorageDeadLetters');
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      VisibilityTimeout: 600 * 6,
      MessageRetentionPeriod: 14 * 86_400,
      RedrivePolicy: { deadLetterTargetArn: { 'Fn::GetAtt': [dlqId, 'Arn'] }, maxReceiveCount: 3 },
    });
    template.hasResourceProperties('AWS::SQS::Queue', {
      SqsManagedSseEnabled: true,
      MessageRetentionPeriod: 1_209_600,
    });
    for (const [, policy] of Object.entries(template.findResources('AWS::SQS::QueuePolicy'))) {
      assert.match(flatten(policy), /aws:SecureTransport.*false/);
    }
    assert.equal(Object.keys(template.findResources('AWS::SQS::QueuePolicy')).length, 2);
  });

  test('the worker: the image with CMD index.worker, 10 minutes, one job per invocation, partial batch failures', () => {
    const worker = fn(/the worker$/);
    assert.equal(worker['PackageType'], 'Image');
    assert.equal(worker['Timeout'], 600);
    assert.deepEqual(worker['ImageConfig'], { Command: ['index.worker'] });
    const env = (worker['Environment'] as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env[ENV.maxBodyBytes], String(100 * 2 ** 20));
    assert.equal(env[ENV.requestTimeoutMs], String(599_000));
    assert.ok(env[ASYNC_ENV.bucket] && env[ASYNC_ENV.table]);
    assert.equal(env[ASYNC_ENV.queueUrl], undefined, 'the worker never sends');
    template.hasResourceProperties('AWS::Lambda::EventSourceMapping', {
      BatchSize: 1,
      FunctionResponseTypes: ['ReportBatchItemFailures'],
      EventSourceArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^digitsasyncStorageQueue'), 'Arn'] },
    });
    const [, metadataHolder] = Object.entries(template.findResources('AWS::Lambda::Function')).find(
      ([, r]) => (r as { Metadata?: Record<string, unknown> }).Metadata?.['arclight:api'],
    )!;
    assert.deepEqual((metadataHolder as { Metadata: Record<string, unknown> }).Metadata['arclight:api'], {
      apiName: 'digits-async',
      compute: 'lambda',
      architecture: 'arm64',
      async: true,
    });
  });

  test('the bucket: private, encrypted, TLS-only, access-logged, every prefix expiring; the table: TTL, PITR', () => {
    template.hasResourceProperties('AWS::S3::Bucket', {
      PublicAccessBlockConfiguration: {
        BlockPublicAcls: true,
        BlockPublicPolicy: true,
        IgnorePublicAcls: true,
        RestrictPublicBuckets: true,
      },
      BucketEncryption: {
        ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
      },
      LoggingConfiguration: Match.objectLike({ DestinationBucketName: Match.anyValue() }),
      LifecycleConfiguration: {
        Rules: [
          { Id: 'expire-requests', Prefix: 'requests/', ExpirationInDays: 7, Status: 'Enabled' },
          { Id: 'expire-uploads', Prefix: 'uploads/', ExpirationInDays: 7, Status: 'Enabled' },
          { Id: 'expire-results', Prefix: 'results/', ExpirationInDays: 7, Status: 'Enabled' },
          {
            Id: 'abort-incomplete-uploads',
            AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 },
            Status: 'Enabled',
          },
        ],
      },
    });
    for (const [, policy] of Object.entries(template.findResources('AWS::S3::BucketPolicy'))) {
      assert.match(flatten(policy), /aws:SecureTransport.*false/);
    }
    template.hasResourceProperties('AWS::DynamoDB::Table', {
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      BillingMode: 'PAY_PER_REQUEST',
      TimeToLiveSpecification: { AttributeName: 'expiresAt', Enabled: true },
      PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true },
      SSESpecification: { SSEEnabled: true },
    });
  });

  test('least privilege: each role has exact actions on its own prefixes, table and queue; no * resource anywhere', () => {
    const statements = policyStatements(template).filter((s) => s.effect === 'Allow');
    for (const statement of statements) {
      assert.ok(!statement.resources.includes('*'), `${statement.holder}: ${statement.actions.join(',')} on *`);
      for (const action of statement.actions) assert.doesNotMatch(action, /\*/, statement.holder);
    }
    const grants = (holder: RegExp): string[] =>
      statements
        .filter((s) => holder.test(s.holder))
        .flatMap((s) => s.actions.map((a) => `${a} ${s.resources.join(' ')}`))
        .filter((line) => !/^logs:/.test(line) && !/cdk-hnb659fds-assets/.test(line))
        .map((line) => line.replace(/digitsasyncStorage(\w+?)[0-9A-F]{8}/g, '$1'))
        .sort();
    assert.deepEqual(
      grants(/^digitsasyncFrontRole/),
      [
        'dynamodb:GetItem {GetAtt:Jobs.Arn}',
        'dynamodb:PutItem {GetAtt:Jobs.Arn}',
        's3:GetObject {GetAtt:Bucket.Arn}/uploads/* {GetAtt:Bucket.Arn}/results/*',
        's3:PutObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        'sqs:SendMessage {GetAtt:Queue.Arn}',
      ].sort(),
    );
    const worker = grants(/^digitsasyncWorkerRole/);
    assert.deepEqual(
      worker.filter((line) => !line.startsWith('sqs:')),
      [
        'dynamodb:GetItem {GetAtt:Jobs.Arn}',
        'dynamodb:UpdateItem {GetAtt:Jobs.Arn}',
        's3:DeleteObject {GetAtt:Bucket.Arn}/results/*',
        's3:GetObject {GetAtt:Bucket.Arn}/requests/* {GetAtt:Bucket.Arn}/uploads/*',
        's3:PutObject {GetAtt:Bucket.Arn}/results/*',
      ].sort(),
    );
    // The event source mapping's consumer grant, on the one queue.
    assert.ok(worker.filter((line) => line.startsWith('sqs:')).every((line) => line.endsWith('{GetAtt:Queue.Arn}')));
    assert.ok(worker.some((line) => line.startsWith('sqs:ReceiveMessage')));
  });

  test('the front: a zip Node.js 24 function behind POST /async, POST /async/uploads, GET /async/{id} with IAM auth', () => {
    const front = fn(/submit, upload, status$/);
    assert.equal(front['Runtime'], 'nodejs24.x');
    assert.equal(front['Handler'], 'index.handler');
    const routes = Object.values(template.findResources('AWS::ApiGatewayV2::Route'))
      .map((r) => (r as { Properties: { RouteKey: string; AuthorizationType: string } }).Properties)
      .map((p) => `${p.RouteKey} ${p.AuthorizationType}`)
      .sort();
    assert.deepEqual(routes, ['GET /async/{id} AWS_IAM', 'POST /async AWS_IAM', 'POST /async/uploads AWS_IAM']);
  });

  test('passes cdk-nag AwsSolutions with no violation', () => {
    assertNoNagViolations(app.outdir);
  });
});

describe('AsyncApi props', () => {
  test('every invalid prop in one error', () => {
    const stack = new Stack(tempApp(), 'Bad');
    const problems = thrownProblems(
      () =>
        new AsyncApi(stack, 'bad', {
          model: ModelSource.fromAsset(DIGITS_ONNX),
          timeout: Duration.minutes(20),
          maxBodySize: Size.gibibytes(2),
          maxReceiveCount: 0,
          urlExpiry: Duration.seconds(10),
        }),
    );
    assert.equal(problems.length, 5, problems.join('\n'));
    assert.match(problems.join('\n'), /maxBodySize 2048 MiB needs about \d+ MB of memory/);
    assert.match(problems.join('\n'), /timeout 1200 s is outside Lambda's 1–900 s/);
    assert.match(problems.join('\n'), /maxBodySize .* is outside/);
    assert.match(problems.join('\n'), /maxReceiveCount must be an integer from 1 to 1000/);
    assert.match(problems.join('\n'), /urlExpiry 10 s/);
  });

  test('a body size the function memory cannot hold is refused, naming memorySize', () => {
    const stack = new Stack(tempApp(), 'Small');
    assertOneProblem(
      () =>
        new AsyncApi(stack, 'small', {
          model: ModelSource.fromAsset(DIGITS_ONNX),
          compute: Compute.lambda({ memorySize: 512 }),
          maxBodySize: Size.mebibytes(200),
        }),
      /maxBodySize 200 MiB needs about \d+ MB of memory .* memorySize is 512 MB/,
    );
  });
});
