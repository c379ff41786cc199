/**
 * arclight.yaml → app: the example app (bin/app.ts) written as examples/arclight.yaml synthesizes to the same
 * resources, compared resource by resource with asset hashes masked (the YAML app puts each API in a stack of its own,
 * so its four templates together are compared with bin/app.ts's one; logical ids match because the constructs' ids
 * do), cdk-nag's AwsSolutions pack passing as it does on bin/app.ts. A file setting every field maps onto the same RealtimeApi props written in TypeScript.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isDeepStrictEqual } from 'node:util';
import { Duration, Size, Stack, Validations, type App } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as logs from 'aws-cdk-lib/aws-logs';
import { buildExampleApp } from '../../bin/app.js';
import { buildAppFromFile } from '../../lib/app-file/build-app.js';
import { loadAppFile } from '../../lib/app-file/load.js';
import { APP_FILE_DEFAULTS } from '../../lib/app-file/schema.js';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import {
  ApiAuth,
  ASYNC_ENV,
  AsyncApi,
  Compute,
  ModelSource,
  Predictor,
  RealtimeApi,
  RestApiAccessLogs,
  Rollout,
} from '../../lib/index.js';
import { tempApp, sha256, useScratchTmpdir } from '../cdk-helpers.js';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isOrtFormat } from '../../lib/ort-conversion.js';
import { DIGITS_ONNX, MOBILENET_ONNX } from '../helpers.js';

const tmp = useScratchTmpdir();
const TOPIC = 'arn:aws:sns:eu-west-1:123456789012:ml-alarms';
/** The context bin/app.ts runs with (cdk.json). */
const CONTEXT = { '@aws-cdk/core:checkSecretUsage': true, '@aws-cdk/aws-iam:minimizePolicies': true };

type Resources = Record<string, { Type: string; Properties?: unknown }>;

/**
 * Every resource of the app's stacks by logical id, asset hashes masked. Two kinds of logical id hash what differs
 * between one stack and four: the ECS security-group rules name their peer by its path (which starts with the
 * stack's id), and a REST API deployment's id hashes its stack's API. Those are compared by their names without
 * the hash, everywhere they appear; physical names and Name tags made from the stack path likewise.
 */
function resourcesOfApp(app: App): Resources {
  const assembly = app.synth();
  const all: Resources = {};
  for (const stack of assembly.stacks) {
    const resources = (stack.template as { Resources: Resources }).Resources;
    // Physical names made from the stack's and construct's path (SageMaker's endpoint and its log group).
    let text = JSON.stringify(resources)
      .replace(/[0-9a-f]{64}/g, '<hash>')
      .replace(/arclight(async)?examples[a-z0-9-]*-[0-9a-f]{8}/g, '<name from the stack path>');
    for (const id of Object.keys(resources)) {
      const masked = maskedId(id);
      if (masked !== id) text = text.replaceAll(`"${id}"`, `"${masked}"`);
    }
    text = text
      .replace(/Arclight(Async)?Examples[A-Za-z0-9-]*[0-9A-F]{8}(?![A-Za-z0-9])/g, '<name from the stack path>')
      // Construct paths, quoted or in a description ("Shifts the ArclightExamples/digits/Function live alias ...").
      .replace(/(["\s])Arclight(Async)?Examples(-[a-z-]+)?\//g, '$1<stack>/');
    for (const [id, resource] of Object.entries(JSON.parse(text) as Resources)) {
      assert.ok(!(id in all), `logical id ${id} in two stacks`);
      all[id] = resource;
    }
  }
  return all;
}

function maskedId(id: string): string {
  // The worker's SQS event source is named after the queue's path, which starts with the stack's id.
  if (/SqsEventSourceArclight(Async)?Examples/.test(id)) {
    return id.replace(/SqsEventSource\w+$/, 'SqsEventSource<stack><hash>');
  }
  if (/SecurityGroup(from|to)ArclightExamples/.test(id)) {
    return id.replace(/ArclightExamples(digits|mobilenet)?/g, '<stack>').replace(/[0-9A-F]{8}\d*[0-9A-F]*$/, '<hash>');
  }
  return id.replace(/^(\w+ApiDeployment[0-9A-F]{8})[0-9a-f]{32}$/, '$1<hash>');
}

describe('arclight.yaml → app', () => {
  test('examples/arclight.yaml synthesizes to the same resources as bin/app.ts', (t) => {
    const started = performance.now();
    const fromCode = resourcesOfApp(buildExampleApp(tempApp(CONTEXT)).app);
    const app = tempApp(CONTEXT);
    const stacks = buildAppFromFile(loadAppFile('examples/arclight.yaml'), app);
    // cdk-nag's AwsSolutions pack, as bin/app.ts runs it: synth fails on any finding not acknowledged with a reason.
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    const fromFile = resourcesOfApp(app);
    t.diagnostic(`both apps synthesized in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.deepEqual(
      [...stacks.values()].map((stack) => stack.stackName),
      [
        'ArclightExamples-digits',
        'ArclightExamples-mobilenet',
        'ArclightExamples-mobilenet-gpu',
        'ArclightExamples-digits-ecs',
        'ArclightExamples-digits-async',
        'ArclightExamples-mobilenet-async',
      ],
    );
    assert.ok(Object.keys(fromCode).length > 100, `only ${Object.keys(fromCode).length} resources`);
    // The custom resource provider CDK adds once per stack (ECS's) is in the ECS API's stack only, as in bin/app.ts.
    assert.deepEqual(Object.keys(fromFile).sort(), Object.keys(fromCode).sort());
    // The defaults the schema documents (and editors show) are what the constructs applied.
    const stage = Object.values(fromFile).find((r) => r.Type === 'AWS::ApiGatewayV2::Stage')!;
    assert.deepEqual((stage.Properties as { DefaultRouteSettings: unknown }).DefaultRouteSettings, {
      ThrottlingRateLimit: APP_FILE_DEFAULTS.throttle.rateLimit,
      ThrottlingBurstLimit: APP_FILE_DEFAULTS.throttle.burstLimit,
    });
    const retention = Object.values(fromFile)
      .filter((r) => r.Type === 'AWS::Logs::LogGroup')
      .map((r) => (r.Properties as { RetentionInDays?: number }).RetentionInDays);
    assert.ok(
      retention.length > 0 && retention.every((days) => days === APP_FILE_DEFAULTS.logRetention),
      `${retention}`,
    );
    const differing = Object.keys(fromCode).filter((id) => !isDeepStrictEqual(fromFile[id], fromCode[id]));
    for (const id of differing)
      assert.deepEqual(fromFile[id], fromCode[id], `resource ${id} (of ${differing.join(', ')})`);
  });

  test('a file setting every field builds the RealtimeApis and AsyncApis the same props written in TypeScript build', () => {
    const issuer = 'https://issuer.example.com/';
    const model = join(process.cwd(), DIGITS_ONNX);
    writeFileSync(
      join(tmp, 'full.yaml'),
      [
        'stackName: Full',
        'region: eu-west-1',
        'tags: { team: ml }',
        'apis:',
        '  - name: digits',
        `    model: { path: ${model}, format: onnx }`,
        `    predictor: ${join(process.cwd(), 'functions/digits/predictor.ts')}`,
        '    config: { labels: [zero, one], threshold: 0.5 }',
        '    compute: { kind: lambda, memorySize: 1024, architecture: x86_64, ephemeralStorageSize: 1024, timeout: 20, reservedConcurrency: 5, provisionedConcurrency: 1 }',
        `    auth: { kind: jwt, issuer: '${issuer}', audience: [api] }`,
        '    throttle: { rateLimit: 10, burstLimit: 20 }',
        '    logRetention: 90',
        '    docs: true',
        '    rollout: { kind: linear, percent: 20, interval: 120, defaultAlarms: false }',
        `    monitoring: { dashboard: false, alarmTopic: '${TOPIC}', errorRatePercent: 2, latencyP99Threshold: 1.5, throttlesPerMinute: 10 }`,
        '    tracing: true',
        '  - name: gpu',
        `    model: ${model}`,
        '    compute: { kind: sagemaker, instanceType: ml.c7i.xlarge, minInstances: 2, maxInstances: 4, targetInvocationsPerInstance: 300, containerStartupHealthCheckTimeout: 900, accessLogs: "off" }',
        '    auth: iam',
        '    batching: { maxBatchSize: 8, maxBatchDelay: 5 }',
        '    rollout: { kind: rolling, batchPercent: 50, interval: 600 }',
        '    dataCapture: { bucket: my-captures, prefix: captures/gpu, samplingPercentage: 25 }',
        '  - name: jobs',
        `    model: ${model}`,
        '    compute: { kind: lambda, memorySize: 3008 }',
        '    auth: iam',
        '    logRetention: 7',
        '    async: { timeout: 600, maxBodySize: 200, inlineResultSize: 512, urlExpiry: 3600, retention: 3, maxReceiveCount: 5 }',
        '',
      ].join('\n'),
    );
    const app = tempApp(CONTEXT);
    const fileStacks = buildAppFromFile(loadAppFile(join(tmp, 'full.yaml')), app);
    const codeApp = tempApp(CONTEXT);
    const env = { region: 'eu-west-1' };
    const digits = new Stack(codeApp, 'Full-digits', { env });
    new RealtimeApi(digits, 'digits', {
      model: ModelSource.fromAsset(DIGITS_ONNX, { format: 'onnx' }),
      predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
      config: { labels: ['zero', 'one'], threshold: 0.5 },
      compute: Compute.lambda({
        memorySize: 1024,
        architecture: lambda.Architecture.X86_64,
        ephemeralStorageSize: Size.mebibytes(1024),
        timeout: Duration.seconds(20),
        reservedConcurrency: 5,
        provisionedConcurrency: 1,
      }),
      auth: ApiAuth.jwt({ issuer, audience: ['api'] }),
      throttle: { rateLimit: 10, burstLimit: 20 },
      logRetention: logs.RetentionDays.THREE_MONTHS,
      docs: true,
      rollout: Rollout.linear({ percent: 20, interval: Duration.minutes(2), defaultAlarms: false }),
      monitoring: {
        dashboard: false,
        alarmTopic: sns.Topic.fromTopicArn(digits, 'Topic', TOPIC),
        errorRatePercent: 2,
        latencyP99Threshold: Duration.millis(1500),
        throttlesPerMinute: 10,
      },
      tracing: true,
    });
    const gpu = new Stack(codeApp, 'Full-gpu', { env });
    new RealtimeApi(gpu, 'gpu', {
      model: ModelSource.fromAsset(DIGITS_ONNX),
      compute: Compute.sageMaker({
        instanceType: 'ml.c7i.xlarge',
        minInstances: 2,
        maxInstances: 4,
        targetInvocationsPerInstance: 300,
        containerStartupHealthCheckTimeout: Duration.minutes(15),
        accessLogs: RestApiAccessLogs.OFF,
      }),
      auth: ApiAuth.iam(),
      batching: { maxBatchSize: 8, maxBatchDelay: Duration.millis(5) },
      rollout: Rollout.rolling({ batchPercent: 50, interval: Duration.minutes(10) }),
      dataCapture: {
        bucket: s3.Bucket.fromBucketName(gpu, 'Captures', 'my-captures'),
        prefix: 'captures/gpu',
        samplingPercentage: 25,
      },
    });
    const jobs = new Stack(codeApp, 'Full-jobs', { env });
    new AsyncApi(jobs, 'jobs', {
      model: ModelSource.fromAsset(DIGITS_ONNX),
      compute: Compute.lambda({ memorySize: 3008 }),
      auth: ApiAuth.iam(),
      logRetention: logs.RetentionDays.ONE_WEEK,
      timeout: Duration.minutes(10),
      maxBodySize: Size.mebibytes(200),
      inlineResultSize: Size.kibibytes(512),
      urlExpiry: Duration.hours(1),
      retention: Duration.days(3),
      maxReceiveCount: 5,
    });
    for (const [name, codeStack] of [
      ['digits', digits],
      ['gpu', gpu],
      ['jobs', jobs],
    ] as const) {
      const fromFile = Template.fromStack(fileStacks.get(name)!).toJSON() as { Resources: Resources };
      const fromCode = Template.fromStack(codeStack).toJSON() as { Resources: Resources };
      // Tags are the one addition: the file's stacks tag every taggable resource team=ml.
      const fileText = JSON.stringify(fromFile.Resources);
      const tagged = fileText.match(/"Key":"team","Value":"ml"/g) ?? [];
      assert.ok(tagged.length > 3, `team=ml on ${tagged.length} resources of ${name}`);
      const file = mask(fileText.replace(/\{"Key":"team","Value":"ml"\},?|,\{"Key":"team","Value":"ml"\}/g, ''));
      const code = mask(JSON.stringify(fromCode.Resources));
      assert.deepEqual(Object.keys(file).sort(), Object.keys(code).sort(), name);
      for (const id of Object.keys(code)) {
        assert.deepEqual(withoutEmptyTags(file[id]), withoutEmptyTags(code[id]), `${name}: resource ${id}`);
      }
    }
    // What the options became, read where AWS reads them: CodeDeploy's linear shift of 20% every 2 minutes, SageMaker's
    // rolling batches and data capture, the alarms' topic, X-Ray, and the async worker's limits.
    const digitsTemplate = Template.fromStack(fileStacks.get('digits')!);
    digitsTemplate.hasResourceProperties('AWS::CodeDeploy::DeploymentConfig', {
      TrafficRoutingConfig: { Type: 'TimeBasedLinear', TimeBasedLinear: { LinearPercentage: 20, LinearInterval: 2 } },
    });
    digitsTemplate.hasResourceProperties('AWS::CloudWatch::Alarm', { AlarmActions: [TOPIC], OKActions: [TOPIC] });
    digitsTemplate.hasResourceProperties('AWS::Lambda::Function', { TracingConfig: { Mode: 'Active' } });
    digitsTemplate.resourceCountIs('AWS::CloudWatch::Dashboard', 0);
    const gpuTemplate = Template.fromStack(fileStacks.get('gpu')!);
    gpuTemplate.hasResourceProperties('AWS::SageMaker::EndpointConfig', {
      DataCaptureConfig: Match.objectLike({
        InitialSamplingPercentage: 25,
        DestinationS3Uri: 's3://my-captures/captures/gpu/',
      }),
    });
    gpuTemplate.hasResourceProperties('AWS::SageMaker::Endpoint', {
      DeploymentConfig: Match.objectLike({
        RollingUpdatePolicy: Match.objectLike({
          MaximumBatchSize: { Type: 'CAPACITY_PERCENT', Value: 50 },
          WaitIntervalInSeconds: 600,
        }),
      }),
    });
    Template.fromStack(fileStacks.get('jobs')!).hasResourceProperties('AWS::Lambda::Function', {
      Timeout: 600,
      Environment: {
        Variables: Match.objectLike({
          [ASYNC_ENV.maxBodyBytes]: String(200 * 2 ** 20),
          [ASYNC_ENV.inlineResultBytes]: String(512 * 1024),
          [ASYNC_ENV.urlTtlSeconds]: '3600',
          [ASYNC_ENV.retentionDays]: '3',
          [ASYNC_ENV.maxReceives]: '5',
        }),
      },
    });
  });
});

describe('ortFormat in arclight.yaml', () => {
  test('deploys the API’s and a variant’s ONNX models converted to ORT format, each with its .ort’s sha256', () => {
    writeFileSync(
      join(tmp, 'ort.yaml'),
      [
        'stackName: Ort',
        'apis:',
        '  - name: digits',
        `    model: { path: ${join(process.cwd(), DIGITS_ONNX)}, ortFormat: true }`,
        '    variants:',
        `      - { name: mobilenet, model: { path: ${join(process.cwd(), MOBILENET_ONNX)}, ortFormat: true } }`,
        '',
      ].join('\n'),
    );
    const app = tempApp();
    buildAppFromFile(loadAppFile(join(tmp, 'ort.yaml')), app);
    const assembly = app.synth();
    const template = JSON.stringify(assembly.getStackByName('Ort-digits').template);
    const staged = readdirSync(assembly.directory).filter((name) => /^asset\.[0-9a-f]{64}\.(ort|onnx)$/.test(name));
    assert.equal(staged.length, 2, `one .ort per model, no .onnx: ${staged.join(', ')}`);
    for (const name of staged) {
      const file = join(assembly.directory, name);
      assert.match(name, /\.ort$/);
      assert.ok(isOrtFormat(readFileSync(file)), `${name} is ORT format`);
      assert.ok(template.includes(name.slice('asset.'.length)), `the template deploys ${name}`);
      // The sha256 the runtime verifies (ARCLIGHT_MODEL_SHA256, the variant's in ARCLIGHT_VARIANTS) is the .ort's.
      assert.ok(template.includes(sha256(file)), `the template carries ${name}'s sha256`);
    }
    for (const onnx of [DIGITS_ONNX, MOBILENET_ONNX]) assert.ok(!template.includes(sha256(onnx)), onnx);
  });
});

/** Asset hashes and the REST API deployment's content hash (it hashes the API's tags too) masked. */
function mask(text: string): Resources {
  return JSON.parse(
    text.replace(/[0-9a-f]{64}/g, '<hash>').replace(/(ApiDeployment[0-9A-F]{8})[0-9a-f]{32}/g, '$1<hash>'),
  ) as Resources;
}

/** The team=ml tag taken out of a tag map (HTTP APIs tag with a map); an emptied Tags is the same as none. */
function withoutEmptyTags(resource: unknown): unknown {
  return JSON.parse(JSON.stringify(resource), (key, value: unknown) => {
    if (key !== 'Tags' && key !== 'tags') return value;
    if (Array.isArray(value)) return value.length === 0 ? undefined : value;
    if (value !== null && typeof value === 'object') {
      const rest = Object.fromEntries(Object.entries(value).filter(([tag]) => tag !== 'team'));
      return Object.keys(rest).length === 0 ? undefined : rest;
    }
    return value;
  }) as unknown;
}
