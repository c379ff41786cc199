/**
 * BatchJob from its synthesized template (one app, cdk-nag's AwsSolutions pack on it: synth throws on a finding):
 * the Lambda compute's state machine (plan → a Distributed Map over the input prefix or over the failures manifest →
 * finish) with batching, concurrency, tolerated failures and a result writer; the bundled handler is the batch one;
 * IAM held to the exact prefixes; the output bucket private, encrypted and TLS-only; logging and tracing on. The
 * SageMaker compute's transform task. Every invalid prop in one error.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Size, Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ENV } from '../../../lib/contract.js';
import { BatchCompute, BatchJob, ModelSource, Predictor } from '../../../lib/index.js';
import {
  flatten,
  onlyResource,
  policyStatements,
  resourcesOf,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, MOBILENET_ONNX } from '../../helpers.js';

useScratchTmpdir();

/** Actions AWS grants on no narrower resource than '*'. */
const STAR_ONLY_ACTIONS =
  /^(xray:|logs:(Create|Get|Update|Delete|List)LogDelivery|logs:ListLogDeliveries|logs:PutResourcePolicy|logs:DescribeResourcePolicies|logs:DescribeLogGroups|ecr:GetAuthorizationToken|cloudwatch:PutMetricData|sagemaker:ListTags)/;

let template: Template;
let assemblyDir: string;

before(() => {
  const app = tempApp();
  const stack = new Stack(app, 'Batch');
  const input = new s3.Bucket(stack, 'Input', { enforceSSL: true, serverAccessLogsPrefix: 'access/' });
  new BatchJob(stack, 'digits-nightly', {
    model: ModelSource.fromAsset(DIGITS_ONNX),
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    inputBucket: input,
    inputPrefix: 'requests/',
    compute: BatchCompute.lambda({
      objectsPerBatch: 5,
      maxConcurrency: 50,
      toleratedFailurePercentage: 2,
      itemConcurrency: 8,
    }),
  });
  new BatchJob(stack, 'images-gpu', {
    model: ModelSource.fromAsset(MOBILENET_ONNX),
    inputBucket: input,
    inputPrefix: 'images/',
    compute: BatchCompute.sageMaker({
      inputFormat: 'objects',
      instanceType: 'ml.g5.2xlarge',
      maxPayload: Size.mebibytes(20),
    }),
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  const assembly = app.synth(); // throws on any cdk-nag finding left unacknowledged
  assemblyDir = assembly.directory;
  template = Template.fromStack(stack);
});

/** The state machine's definition with CloudFormation references flattened to `<Id>` strings, parsed. */
function definition(prefix: string): { States: Record<string, Record<string, unknown>> } {
  const [, machine] = onlyResource(template, 'AWS::StepFunctions::StateMachine', prefix);
  const text = flatten(machine['DefinitionString']);
  return JSON.parse(text) as { States: Record<string, Record<string, unknown>> };
}

describe('BatchJob on Lambda: a Distributed Map over the Lambda image', () => {
  test('plan, then a Map over the input prefix or over the failures manifest, then finish', () => {
    const states = definition('digitsnightly').States;
    assert.deepEqual(Object.keys(states).sort(), [
      'DidTheMapFail',
      'Done',
      'Finish',
      'MapFailed',
      'NewRun',
      'NothingFailed',
      'OverFailures',
      'OverInputs',
      'Plan',
      'RecordFailedBatches',
      'RerunFailures',
      'RerunOrNew',
      'WhichItems',
    ]);
    const overInputs = states['OverInputs']!;
    assert.equal(overInputs['Type'], 'Map');
    assert.deepEqual((overInputs['ItemProcessor'] as Record<string, unknown>)['ProcessorConfig'], {
      Mode: 'DISTRIBUTED',
      ExecutionType: 'STANDARD',
    });
    const reader = overInputs['ItemReader'] as Record<string, unknown>;
    assert.match(reader['Resource'] as string, /:states:::s3:listObjectsV2$/);
    const readerParameters = reader['Parameters'] as { Bucket: string; Prefix: string };
    assert.equal(readerParameters.Prefix, 'requests/');
    assert.match(readerParameters.Bucket, /^\{Ref:Input[0-9A-F]+\}$/);
    assert.deepEqual(overInputs['ItemBatcher'], {
      MaxItemsPerBatch: 5,
      BatchInput: { 'input.$': '$.plan.input', 'output.$': '$.plan.output', 'attempt.$': '$.plan.attempt' },
    });
    assert.equal(overInputs['MaxConcurrency'], 50);
    assert.equal(overInputs['ToleratedFailurePercentage'], 2);
    const writer = overInputs['ResultWriter'] as { Parameters: { Prefix: string } };
    assert.equal(writer.Parameters.Prefix, 'digits-nightly/_stepfunctions/');
    assert.equal(overInputs['Next'], 'RecordFailedBatches');

    const overFailures = states['OverFailures']!;
    const failuresReader = overFailures['ItemReader'] as Record<string, unknown>;
    assert.match(failuresReader['Resource'] as string, /:states:::s3:getObject$/);
    assert.deepEqual(failuresReader['ReaderConfig'], { InputType: 'JSONL' });
    assert.equal((failuresReader['Parameters'] as Record<string, string>)['Key.$'], '$.plan.failuresKey');
    assert.equal(overFailures['Next'], 'RecordFailedBatches');
    // A Map that fails (more whole batches failed than tolerated) still records them and finishes, then fails.
    for (const map of [overInputs, overFailures]) {
      assert.deepEqual(map['Catch'], [
        { ErrorEquals: ['States.ALL'], ResultPath: '$.mapError', Next: 'RecordFailedBatches' },
      ]);
    }
    const record = states['RecordFailedBatches']!;
    assert.equal(record['Next'], 'Finish');
    assert.equal(record['ResultPath'], '$.failedBatches');
    const recordParameters = record['Parameters'] as Record<string, unknown>;
    assert.equal(recordParameters['action'], 'failedBatches');
    assert.match(
      recordParameters['mapResults'] as string,
      /^s3:\/\/\{Ref:digitsnightlyOutput[0-9A-F]+\}\/digits-nightly\/_stepfunctions\/$/,
      'the prefix the ResultWriter exports to',
    );
    assert.equal(recordParameters['attempt.$'], '$.plan.attempt');
    assert.equal(states['Finish']!['Next'], 'DidTheMapFail');
    assert.deepEqual(states['DidTheMapFail']!['Choices'], [
      { Variable: '$.mapError', IsPresent: true, Next: 'MapFailed' },
    ]);
    assert.deepEqual(states['MapFailed'], {
      Type: 'Fail',
      ErrorPath: '$.mapError.Error',
      CausePath: '$.mapError.Cause',
    });

    const plan = states['Plan']!['Parameters'] as Record<string, string>;
    assert.equal(plan['action'], 'plan');
    assert.match(plan['input']!, /^s3:\/\/\{Ref:Input[0-9A-F]+\}\/requests\/$/);
    assert.match(
      plan['output.$']!,
      /^States\.Format\('s3:\/\/\{Ref:digitsnightlyOutput[0-9A-F]+\}\/digits-nightly\/\{\}\/', \$\.run\)$/,
    );
    assert.deepEqual(states['RerunOrNew']!['Choices'], [
      { Variable: '$.rerun', IsPresent: true, Next: 'RerunFailures' },
    ]);
    assert.deepEqual(states['WhichItems']!['Choices'], [
      {
        And: [
          { Variable: '$.plan.rerun', BooleanEquals: true },
          { Variable: '$.plan.failures', NumericEquals: 0 },
        ],
        Next: 'NothingFailed',
      },
      { Variable: '$.plan.rerun', BooleanEquals: true, Next: 'OverFailures' },
    ]);
    assert.equal((states['Finish']!['Parameters'] as Record<string, string>)['action'], 'finish');
  });

  test('a batch that fails as a whole is retried; the state machine logs everything and is traced', () => {
    const states = definition('digitsnightly').States;
    const batch = (states['OverInputs']!['ItemProcessor'] as { States: Record<string, Record<string, unknown>> })
      .States['OverInputsBatch']!;
    assert.ok((batch['Retry'] as { ErrorEquals: string[] }[]).some((r) => r.ErrorEquals.includes('States.TaskFailed')));
    const [, machine] = onlyResource(template, 'AWS::StepFunctions::StateMachine', 'digitsnightly');
    const logging = machine['LoggingConfiguration'] as Record<string, unknown>;
    assert.equal(logging['Level'], 'ALL');
    assert.equal(logging['IncludeExecutionData'], false);
    assert.deepEqual(machine['TracingConfiguration'], { Enabled: true });
  });

  test('the function runs the batch handler bundle with the contract env, 15 minutes, WARN logs', () => {
    const [, fn] = onlyResource(template, 'AWS::Lambda::Function', 'digitsnightly');
    assert.equal(fn['Timeout'], 900);
    assert.equal(fn['MemorySize'], 2048);
    assert.deepEqual(fn['Architectures'], ['arm64']);
    const env = (fn['Environment'] as { Variables: Record<string, unknown> }).Variables;
    assert.equal(env[ENV.apiName], 'digits-nightly');
    assert.match(flatten(env[ENV.modelUri]), /\.onnx$/);
    assert.equal(env[ENV.batchConcurrency], '8');
    assert.equal(env[ENV.requestTimeoutMs], String(870_000));
    assert.equal(env[ENV.logLevel], 'WARN');
    // The staged image context: its bundle exports the batch handler, not the API's.
    const assets = JSON.parse(readFileSync(join(assemblyDir, 'Batch.assets.json'), 'utf8')) as {
      dockerImages: Record<string, { source: { directory: string } }>;
    };
    const bundles = Object.values(assets.dockerImages)
      .map((image) => join(assemblyDir, image.source.directory, 'index.mjs'))
      .filter((file) => existsSync(file))
      .map((file) => readFileSync(file, 'utf8'));
    assert.equal(bundles.length, 1, 'one Lambda image (the GPU job has a container image)');
    assert.match(bundles[0]!, /batchHandlerFromEnv/);
    assert.doesNotMatch(bundles[0]!, /lambdaEntryFromEnv\(/);
  });

  test('the function reads only the input prefix, writes only the output prefix, lists only under it', () => {
    const statements = policyStatements(template).filter((s) => s.holder.startsWith('digitsnightlyFunctionRole'));
    const s3Statements = statements.filter((s) => s.actions.some((a) => a.startsWith('s3:')));
    const resources = s3Statements.flatMap((s) => s.resources);
    const input = /^\{GetAtt:Input[0-9A-F]+\.Arn\}\/requests\/\*$/;
    const output = /^\{GetAtt:digitsnightlyOutput[0-9A-F]+\.Arn\}\/digits-nightly\/\*$/;
    const readsInput = s3Statements.find((s) => s.resources.some((r) => input.test(r)))!;
    assert.deepEqual(readsInput.actions, ['s3:GetObject']);
    const writesOutput = s3Statements.find((s) => s.resources.some((r) => output.test(r)))!;
    assert.deepEqual(writesOutput.actions, ['s3:GetObject', 's3:PutObject', 's3:DeleteObject']);
    for (const resource of resources) {
      assert.match(
        resource,
        /(\/requests\/\*|\/digits-nightly\/\*|\.onnx|^\{GetAtt:digitsnightlyOutput[0-9A-F]+\.Arn\})$/,
      );
    }
    const list = s3Statements.find((s) => s.actions.includes('s3:ListBucket'))!;
    assert.deepEqual(list.conditions, { StringLike: { 's3:prefix': ['digits-nightly/*'] } });
  });

  test("the state machine's bucket access is denied outside the job's prefixes", () => {
    const [, policy] = onlyResource(template, 'AWS::IAM::Policy', 'digitsnightlyStateMachineRoleDefaultPolicy');
    const statements = (policy['PolicyDocument'] as { Statement: Record<string, unknown>[] }).Statement;
    const denials = statements.filter((s) => s['Effect'] === 'Deny');
    assert.equal(denials.length, 2);
    const objects = denials.find((s) => JSON.stringify(s['Action']).includes('s3:PutObject'))!;
    assert.match(flatten(objects['NotResource']), /^\{GetAtt:digitsnightlyOutput[0-9A-F]+\.Arn\}\/digits-nightly\/\*$/);
    const listing = denials.find((s) => s['Action'] === 's3:ListBucket')!;
    assert.deepEqual(listing['Condition'], { StringNotLike: { 's3:prefix': ['requests/*'] } });
  });

  test('the output bucket is private, encrypted and TLS-only', () => {
    const [, bucket] = onlyResource(template, 'AWS::S3::Bucket', 'digitsnightlyOutput');
    assert.deepEqual(bucket['PublicAccessBlockConfiguration'], {
      BlockPublicAcls: true,
      BlockPublicPolicy: true,
      IgnorePublicAcls: true,
      RestrictPublicBuckets: true,
    });
    assert.deepEqual(bucket['BucketEncryption'], {
      ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }],
    });
    const tlsDenial = policyStatements(template).find(
      (s) =>
        s.holder.startsWith('digitsnightlyOutputPolicy') &&
        s.effect === 'Deny' &&
        JSON.stringify(s.conditions).includes('aws:SecureTransport'),
    );
    assert.ok(tlsDenial, 'a bucket policy denies requests without TLS');
  });
});

describe('BatchJob on SageMaker: a batch transform of the container image', () => {
  test('plan, the transform of the attempt (.sync), then the split into results and failures.jsonl', () => {
    const states = definition('imagesgpu').States;
    assert.deepEqual(Object.keys(states).sort(), [
      'AnythingToRun',
      'DidTheTransformFail',
      'Done',
      'NewRun',
      'NothingFailed',
      'Plan',
      'RerunFailures',
      'RerunOrNew',
      'Split',
      'Transform',
      'TransformFailed',
    ]);
    const transform = states['Transform']!;
    assert.match(transform['Resource'] as string, /:states:::sagemaker:createTransformJob\.sync$/);
    const parameters = transform['Parameters'] as Record<string, unknown>;
    assert.equal(parameters['BatchStrategy'], 'SingleRecord');
    assert.equal(parameters['MaxPayloadInMB'], 20);
    assert.equal(parameters['TransformJobName.$'], "States.Format('{}-{}', $.run, $.plan.attempt)");
    assert.deepEqual(parameters['TransformResources'], { InstanceCount: 1, InstanceType: 'ml.g5.2xlarge' });
    const input = parameters['TransformInput'] as Record<string, unknown>;
    assert.equal(input['SplitType'], undefined, 'objects: one request each');
    assert.match(JSON.stringify(input), /"S3Uri.\$":"\$\.plan\.transformInput","S3DataType":"S3Prefix"/);
    assert.equal(
      (parameters['TransformOutput'] as Record<string, unknown>)['S3OutputPath.$'],
      '$.plan.transformOutput',
    );
    // A failed transform job is caught: what it wrote is split, the rest of its items fail with its error.
    assert.deepEqual(transform['Catch'], [
      { ErrorEquals: ['States.ALL'], ResultPath: '$.transformError', Next: 'Split' },
    ]);
    assert.equal(transform['Next'], 'Split');
    const split = states['Split']!['Parameters'] as Record<string, unknown>;
    assert.equal(split['action'], 'split');
    assert.equal(split['transformError.$'], '$.transformError');
    assert.equal(split['attempt.$'], '$.plan.attempt');
    const plan = states['Plan']!['Parameters'] as Record<string, unknown>;
    assert.equal(plan['action'], 'plan');
    assert.equal(plan['rerun.$'], '$.rerunning');
    assert.deepEqual(states['DidTheTransformFail']!['Choices'], [
      { Variable: '$.transformError', IsNull: false, Next: 'TransformFailed' },
    ]);
  });

  test('the plan-and-split function: a zip bundle whose role reads the input prefix and writes the output prefix only', () => {
    const steps = resourcesOf(template, 'AWS::Lambda::Function', 'imagesgpuSteps').filter(
      ([id]) => !id.includes('Role'),
    );
    assert.equal(steps.length, 1);
    assert.equal(steps[0]![1]['Handler'], 'index.handler');
    const grants = policyStatements(template)
      .filter((s) => s.effect === 'Allow' && s.holder.startsWith('imagesgpuStepsRole'))
      .flatMap((s) => s.actions.map((a) => `${a} ${s.resources.join(' ')}`))
      .filter((line) => !line.startsWith('logs:'))
      .map((line) => line.replace(/[0-9A-F]{8}\b/g, ''))
      .sort();
    assert.deepEqual(grants, [
      's3:DeleteObject {GetAtt:imagesgpuOutput.Arn}/images-gpu/*',
      's3:GetObject {GetAtt:Input.Arn}/images/*',
      's3:GetObject {GetAtt:imagesgpuOutput.Arn}/images-gpu/*',
      's3:ListBucket {GetAtt:imagesgpuOutput.Arn}',
      's3:PutObject {GetAtt:imagesgpuOutput.Arn}/images-gpu/*',
    ]);
  });

  test('the model runs the GPU image with CUDA first and the payload limit', () => {
    const [, model] = onlyResource(template, 'AWS::SageMaker::Model', 'imagesgpu');
    const env = (model['PrimaryContainer'] as { Environment: Record<string, unknown> }).Environment;
    assert.equal(env[ENV.executionProviders], 'cuda,cpu');
    assert.equal(env[ENV.maxBodyBytes], String(20 * 1024 * 1024));
    assert.equal(env[ENV.transformRecords], 'on', 'every record answered with its outcome: no error stops the job');
  });
});

test('no policy grants a bare * except the actions AWS offers on no narrower resource', () => {
  for (const statement of policyStatements(template)) {
    if (statement.effect !== 'Allow' || !statement.resources.includes('*')) continue;
    for (const action of statement.actions) assert.match(action, STAR_ONLY_ACTIONS, statement.holder);
  }
  assert.ok(resourcesOf(template, 'AWS::StepFunctions::StateMachine').length === 2);
});

test('every invalid prop is reported in one error', () => {
  const stack = new Stack(tempApp(), 'Bad');
  const bucket = new s3.Bucket(stack, 'B');
  const problems = thrownProblems(
    () =>
      new BatchJob(stack, 'bad name!', {
        model: ModelSource.fromAsset(DIGITS_ONNX),
        predictor: Predictor.fromEntry('functions/missing.ts'),
        inputBucket: bucket,
        inputPrefix: 'in',
        outputBucket: bucket,
        outputPrefix: 'in/out/',
        compute: BatchCompute.lambda({ memorySize: 64, maxConcurrency: 20_000, toleratedFailurePercentage: 120 }),
      }),
  );
  const expected = [
    /jobName 'bad name!'/,
    /inputPrefix 'in' must end in '\/'/,
    /overlap in one bucket/,
    /predictor entry functions\/missing\.ts does not exist/,
    /memorySize 64/,
    /maxConcurrency 20000/,
    /toleratedFailurePercentage 120/,
  ];
  assert.equal(problems.length, expected.length, problems.join('\n'));
  for (const pattern of expected)
    assert.ok(
      problems.some((p) => pattern.test(p)),
      `${pattern}: ${problems.join('\n')}`,
    );
});
