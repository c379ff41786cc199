/**
 * arclight.yaml's checks as a user meets them: every problem of a file at once, each at its file:line:column with
 * what was expected; unknown keys and mistyped values with a "did you mean"; the constructs' own checks (a compute's
 * problems(), missing files, a sha256 that differs) placed at the field they are about; JSON files alike; and the
 * JSON Schema shipped for editors accepting and refusing what the loader does.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, cpSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { parse } from 'yaml';
import { AppFileError, loadAppFile } from '../../lib/app-file/load.js';
import { APP_FILE_DEFAULTS, appFileJsonSchema } from '../../lib/app-file/schema.js';
import { didYouMean } from '../../lib/app-file/did-you-mean.js';
import { Compute } from '../../lib/constructs/compute.js';
import { DIGITS_CHECKPOINT, DIGITS_MODULE, DIGITS_ONNX, DIGITS_TORCHSCRIPT } from '../helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'arclight-yaml-'));
after(() => rmSync(dir, { recursive: true, force: true }));
mkdirSync(join(dir, 'models'));
cpSync(DIGITS_ONNX, join(dir, 'models', 'digits.onnx'));
cpSync(DIGITS_TORCHSCRIPT, join(dir, 'models', 'digits.pt'));
cpSync(DIGITS_CHECKPOINT, join(dir, 'models', 'digits.ckpt'));
cpSync(DIGITS_MODULE, join(dir, 'model.py'));
writeFileSync(join(dir, 'predictor.ts'), 'export default {};\n');

function write(name: string, text: string): string {
  const file = join(dir, name);
  writeFileSync(file, text);
  return file;
}

/** The problems loading `text` reports, as `line:column path: message` lines. */
function problemsOf(text: string, name = 'arclight.yaml'): string[] {
  const file = write(name, text);
  try {
    loadAppFile(file, name);
  } catch (error) {
    assert.ok(error instanceof AppFileError, String(error));
    return error.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
  }
  assert.fail('expected problems');
}

describe('arclight.yaml problems', () => {
  test("the issue's example: a memorySize above Lambda's limit at its line and column", () => {
    const problems = problemsOf(
      [
        'apis:',
        '  - name: digits',
        '    model: models/digits.onnx',
        '    compute:',
        '      kind: lambda',
        '      memorySize: 20000',
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, ["6:19 apis[0].compute.memorySize: 20000 is above Lambda's 10240 MB"]);
    const file = write('arclight.yaml', readFileSync(join(dir, 'arclight.yaml'), 'utf8'));
    assert.throws(() => loadAppFile(file, 'arclight.yaml'), {
      message:
        "arclight.yaml has 1 problem:\n  arclight.yaml:6:19 apis[0].compute.memorySize: 20000 is above Lambda's 10240 MB",
    });
  });

  test('every problem at once, in file order, each where it is', () => {
    const problems = problemsOf(
      [
        'stackName: demo', // 1
        'regoin: us-east-1', // 2
        'apis:', // 3
        '  - name: digits', // 4
        '    model: models/digits.onnx', // 5
        '    compute:', // 6
        '      kind: lambda', // 7
        '      memSize: 3', // 8
        '      architecture: arm', // 9
        '      timeout: 60', // 10
        '  - name: bad name', // 11
        '    model: { path: s3://bucket/key, sha256: xyz, formt: onnx }', // 12
        '    compute: { kind: sagemkaer, instanceType: ml.g5.xlarge }', // 13
        '    auth: { kind: jwt, issuer: http://x }', // 14
        '  - name: third', // 15
        '    model: 3', // 16
        '    auth: iamm', // 17
        '    throttle: { rateLimit: -1 }', // 18
        '    logRetention: 31', // 19
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, [
      "2:1 regoin: unknown key 'regoin' (did you mean 'region'?)",
      "8:7 apis[0].compute.memSize: unknown key 'memSize' (did you mean 'memorySize'?)",
      "9:21 apis[0].compute.architecture: a string ('arm') is not one of arm64, x86_64 (did you mean 'arm64'?)",
      "10:16 apis[0].compute.timeout: 60 is above API Gateway's 29 s",
      "11:11 apis[1].name: 'bad name' is not URL-safe (letters, digits, _ . -, at most 128, starting with a letter or digit)",
      "12:45 apis[1].model.sha256: 'xyz' is not 64 hex digits",
      "12:50 apis[1].model.formt: unknown key 'formt' (did you mean 'format'?)",
      "13:22 apis[1].compute.kind: a string ('sagemkaer') is not one of lambda, sagemaker, ecs (did you mean 'sagemaker'?)",
      '14:11 apis[1].auth.audience: is required',
      "14:32 apis[1].auth.issuer: 'http://x' is not an https:// URL",
      '16:12 apis[2].model: expected a string or a map, got a number (3)',
      "17:11 apis[2].auth: a string ('iamm') is not one of none, iam (did you mean 'iam'?)",
      '18:28 apis[2].throttle.rateLimit: -1 must be above 0',
      '19:19 apis[2].logRetention: a number (31) is not one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653, 9999',
    ]);
  });

  test("the constructs' own checks, placed at the field: compute.problems(), files, sha256, names", () => {
    const problems = problemsOf(
      [
        'apis:',
        '  - name: digits',
        '    predictor: missing.ts',
        '    model: models/nope.onnx',
        '  - name: digits',
        '    model: { path: models/digits.onnx, sha256: "' + '0'.repeat(64) + '" }',
        '    compute: { kind: lambda, reservedConcurrency: 2, provisionedConcurrency: 5 }',
        '  - name: gpu',
        '    model: s3://models-bucket/mobilenet.onnx',
        '    compute: { kind: sagemaker, instanceType: ml.inf2.xlarge }',
        '    batching: { maxBatchSize: 8 }',
        '  - name: small',
        '    model: { path: s3://models-bucket/big.onnx, sizeBytes: 4000000000 }',
        '    compute: { kind: lambda, memorySize: 1024 }',
        '    batching: { maxBatchSize: 4 }',
        '',
      ].join('\n'),
    );
    const expected = [
      /^3:16 apis\[0\]\.predictor: predictor entry missing\.ts does not exist$/,
      /^4:12 apis\[0\]\.model: model file models\/nope\.onnx does not exist/,
      /^5:11 apis\[1\]\.name: 'digits' is also the name of apis\[0\]$/,
      /^6:48 apis\[1\]\.model\.sha256: models\/digits\.onnx has sha256 7153ffc6[0-9a-f]{56}, not this one$/,
      /^7:78 apis\[1\]\.compute\.provisionedConcurrency: provisionedConcurrency 5 exceeds reservedConcurrency 2$/,
      /^10:47 apis\[2\]\.compute\.instanceType: instanceType 'ml\.inf2\.xlarge' needs AWS Neuron/,
      /^14:14 apis\[3\]\.compute: the model \(3815 MB\) is larger than ephemeralStorageSize \(512 MB\)$/,
      /^14:42 apis\[3\]\.compute\.memorySize: the model \(3815 MB\) needs about 7790 MB of memory/,
      /^15:15 apis\[3\]\.batching: applies to the container computes/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    expected.forEach((pattern, i) => assert.match(problems[i]!, pattern));
  });

  test('async, rollout, monitoring and dataCapture: bad values, each where it is', () => {
    const problems = problemsOf(
      [
        'apis:', // 1
        '  - name: jobs', // 2
        '    model: models/digits.onnx', // 3
        '    async: { timeout: 4000, maxBodySize: 2000, urlExpiry: 30, maxRecieveCount: 2 }', // 4
        '  - name: shifted', // 5
        '    model: models/digits.onnx', // 6
        '    rollout: { kind: lineer, percent: 20 }', // 7
        '    monitoring: { alarmTopic: my-topic, errorRatePercent: 0, latencyP99Threshold: 0.5 }', // 8
        '  - name: rolled', // 9
        '    model: models/digits.onnx', // 10
        '    rollout: { kind: rolling, batchPercent: 80 }', // 11
        '  - name: fleet', // 12
        '    model: models/digits.onnx', // 13
        '    compute: { kind: sagemaker, instanceType: ml.c7i.xlarge }', // 14
        '    rollout: { kind: canary, percent: 60, defaultAlarm: false }', // 15
        '    dataCapture: { bucket: Captures, samplingPercentage: 101 }', // 16
        '    tracing: yes please', // 17
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, [
      "4:23 apis[0].async.timeout: 4000 is above SageMaker asynchronous inference's 3600 s",
      "4:42 apis[0].async.maxBodySize: 2000 is above the async API's 1024 MB",
      "4:59 apis[0].async.urlExpiry: 30 is below a presigned URL's 60 s",
      "4:63 apis[0].async.maxRecieveCount: unknown key 'maxRecieveCount' (did you mean 'maxReceiveCount'?)",
      "7:22 apis[1].rollout.kind: a string ('lineer') is not one of allAtOnce, canary, linear, rolling (did you mean 'linear'?)",
      "8:31 apis[1].monitoring.alarmTopic: 'my-topic' is not an SNS topic ARN (arn:aws:sns:region:account:name)",
      '8:59 apis[1].monitoring.errorRatePercent: 0 % must be above 0',
      "11:45 apis[2].rollout.batchPercent: 80 is above SageMaker's 50 %",
      "15:43 apis[3].rollout.defaultAlarm: unknown key 'defaultAlarm' (did you mean 'defaultAlarms'?)",
      "16:28 apis[3].dataCapture.bucket: 'Captures' is not an S3 bucket name",
      '16:58 apis[3].dataCapture.samplingPercentage: 101 % is above 100',
      "17:14 apis[3].tracing: expected true or false, got a string ('yes please')",
    ]);
  });

  test('what the constructs refuse of async, rollout and dataCapture, placed at the field', () => {
    const problems = problemsOf(
      [
        'apis:', // 1
        '  - name: jobs', // 2
        '    model: models/digits.onnx', // 3
        '    async: { timeout: 900 }', // 4
        '    tracing: true', // 5
        '    rollout: linear', // 6
        '  - name: jobs-gpu', // 7
        '    model: models/digits.onnx', // 8
        '    compute: { kind: ecs, instanceType: g5.xlarge, minTasks: 0 }', // 9 (async on ECS: accepted, from zero tasks)
        '    async: true', // 10
        '  - name: shifted', // 11
        '    model: models/digits.onnx', // 12
        '    rollout: { kind: linear, percent: 20, interval: 90 }', // 13
        '    dataCapture: { bucket: captures }', // 14
        '  - name: plain', // 15
        '    model: models/digits.onnx', // 16
        '    rollout: rolling', // 17
        '  - name: fleet', // 18
        '    model: models/digits.onnx', // 19
        '    compute: { kind: sagemaker, instanceType: ml.c7i.xlarge }', // 20
        '    rollout: { kind: canary, percent: 60, interval: 4000 }', // 21
        '  - name: big-jobs', // 22
        '    model: models/digits.onnx', // 23
        '    async: { maxBodySize: 1000 }', // 24
        '  - name: fleet-zero', // 25
        '    model: models/digits.onnx', // 26
        '    compute: { kind: ecs, instanceType: c6i.xlarge, minTasks: 0 }', // 27 (realtime: at least one task)
        '  - name: long-jobs', // 28
        '    model: models/digits.onnx', // 29
        '    async: { timeout: 1800, targetBacklogPerInstance: 2 }', // 30
        '  - name: long-jobs-gpu', // 31
        '    model: models/digits.onnx', // 32
        '    compute: { kind: sagemaker, instanceType: ml.g5.xlarge }', // 33
        '    async: { timeout: 3600, maxConcurrentInvocationsPerInstance: 2, minInstances: 1 }', // 34
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, [
      '5:14 apis[0].tracing: applies to realtime APIs; async APIs do not have it yet',
      '6:14 apis[0].rollout: applies to realtime APIs; async APIs do not have it yet',
      '13:53 apis[2].rollout.interval: rollout interval must be whole minutes on Lambda (CodeDeploy), got 90 s',
      '14:18 apis[2].dataCapture: runs on the container computes (sagemaker, ecs): a frozen Lambda sandbox cannot upload captures',
      '17:14 apis[3].rollout: Rollout.rolling() replaces instances; Lambda has none: use Rollout.canary() or Rollout.linear()',
      '21:39 apis[4].rollout.percent: a canary on SageMaker takes at most 50% of the fleet, got 60%',
      '21:53 apis[4].rollout.interval: rollout interval must be 0–3600 s on SageMaker, got 4000 s',
      '24:27 apis[5].async.maxBodySize: maxBodySize 1000 MiB needs about 4161 MB of memory with the model (a body is held about four times while a job runs); memorySize is 2048 MB',
      '27:63 apis[6].compute.minTasks: minTasks must be an integer of at least 1, got 0',
      "30:23 apis[7].async.timeout: 1800 is above Lambda's 900 s (sagemaker takes 3600)",
      '30:55 apis[7].async.targetBacklogPerInstance: applies to the sagemaker compute only',
    ]);
  });

  test('ortFormat where ModelSource cannot convert: an s3:// model, a torch model (the API’s or a variant’s)', () => {
    const problems = problemsOf(
      [
        'apis:', // 1
        '  - name: remote', // 2
        '    model: { path: s3://models-bucket/digits.onnx, ortFormat: true }', // 3
        '  - name: scripted', // 4
        '    model: { path: models/digits.pt, ortFormat: true }', // 5
        '  - name: checkpoint', // 6
        '    model: { path: models/digits.ckpt, module: model.py, className: Digits, ortFormat: true }', // 7
        '  - name: split', // 8
        '    model: { path: models/digits.onnx, ortFormat: true }', // 9 (accepted: a local ONNX file)
        '    compute: { kind: ecs, instanceType: c6i.xlarge }', // 10
        '    variants:', // 11
        '      - { name: v2, model: { path: s3://models-bucket/v2.onnx, ortFormat: true } }', // 12
        '      - { name: v3, model: { path: models/digits.pt, ortFormat: true } }', // 13
        '      - { name: v4, model: { path: s3://models-bucket/v4.onnx, ortFormat: false } }', // 14 (accepted)
        '  - name: typed', // 15
        '    model: { path: models/digits.onnx, ortFormat: yes }', // 16
        '',
      ].join('\n'),
    );
    assert.deepEqual(problems, [
      '3:63 apis[0].model.ortFormat: converts a local ONNX file at synth; an s3:// model is served as it is (upload the .ort file itself instead)',
      '5:49 apis[1].model.ortFormat: ortFormat converts ONNX models; this one is torchscript',
      '7:88 apis[2].model.ortFormat: ortFormat converts ONNX models; this one is lightning-checkpoint',
      '12:75 apis[3].variants[0].model.ortFormat: converts a local ONNX file at synth; an s3:// model is served as it is (upload the .ort file itself instead)',
      '13:65 apis[3].variants[1].model.ortFormat: ortFormat converts ONNX models; this one is torchscript',
      "16:51 apis[4].model.ortFormat: expected true or false, got a string ('yes')",
    ]);
  });

  test('YAML syntax errors and an empty file are positioned too', () => {
    assert.deepEqual(problemsOf('apis:\n  - name: a\n   model: x\n').length, 1);
    assert.match(problemsOf('apis:\n  - name: a\n   model: x\n')[0]!, /^3:\d+ : /);
    assert.deepEqual(problemsOf('apis:\n  - name: a\n    model: x\n    name: b\n').length, 1);
    assert.deepEqual(problemsOf('# nothing\n'), ['1:1 : the file is empty; it needs at least apis: with one API']);
    assert.deepEqual(problemsOf('apis: []\n'), ['1:7 apis: list at least one API']);
  });

  test('a JSON file is read the same way, with positions', () => {
    const problems = problemsOf(
      JSON.stringify(
        { apis: [{ name: 'a', model: 'models/digits.onnx', compute: { kind: 'ecs', instanceTyp: 'g5.xlarge' } }] },
        null,
        2,
      ),
      'arclight.json',
    );
    assert.deepEqual(problems, [
      '6:18 apis[0].compute.instanceType: is required',
      "8:9 apis[0].compute.instanceTyp: unknown key 'instanceTyp' (did you mean 'instanceType'?)",
    ]);
  });

  test('a valid file loads, leaving defaults to the constructs', () => {
    const file = write(
      'ok.yaml',
      'apis:\n  - name: digits\n    model: models/digits.onnx\n    predictor: predictor.ts\n',
    );
    const loaded = loadAppFile(file);
    assert.deepEqual(loaded.app.apis[0], { name: 'digits', model: 'models/digits.onnx', predictor: 'predictor.ts' });
    assert.equal(loaded.dir, dir);
  });
});

describe('the schema', () => {
  test("documents the constructs' defaults, read from them", () => {
    const lambda = Compute.lambda();
    assert.deepEqual(APP_FILE_DEFAULTS.lambda, {
      memorySize: lambda.memorySize,
      architecture: lambda.architecture.name,
      ephemeralStorageSize: 512,
      timeout: 29,
    });
    // Rollout.canary()'s 10% for 5 minutes, Rollout.rolling()'s 25% batches; the monitoring thresholds.
    assert.deepEqual(APP_FILE_DEFAULTS.rollout, { percent: 10, interval: 300, batchPercent: 25, defaultAlarms: true });
    assert.deepEqual(APP_FILE_DEFAULTS.monitoring, {
      errorRatePercent: 5,
      latencyP99Threshold: 5,
      throttlesPerMinute: 1,
    });
    const schema = JSON.stringify(appFileJsonSchema());
    assert.match(schema, /"default":2048/);
    assert.match(schema, /"maxBodySize":\{[^}]*"default":100/);
  });

  test('the JSON Schema for editors accepts the example app and refuses what the loader refuses', () => {
    const ajv = new Ajv2020({ allErrors: true, strict: false });
    const validate = ajv.compile(appFileJsonSchema());
    const example = parse(readFileSync('examples/arclight.yaml', 'utf8')) as unknown;
    assert.equal(validate(example), true, JSON.stringify(validate.errors));
    const bad = { apis: [{ name: 'a', model: 'm.onnx', compute: { kind: 'lambda', memorySize: 20000, memSize: 1 } }] };
    assert.equal(validate(bad), false);
    const messages = (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`);
    assert.ok(
      messages.some((m) => m.includes('/apis/0/compute/memorySize must be <= 10240')),
      messages.join('\n'),
    );
  });

  test('did-you-mean: close words only', () => {
    assert.equal(didYouMean('memSize', ['memorySize', 'timeout']), 'memorySize');
    assert.equal(didYouMean('regoin', ['region', 'apis']), 'region');
    assert.equal(didYouMean('colour', ['region', 'apis']), undefined);
  });
});

describe("README's arclight.yaml", () => {
  test('loads without a problem', () => {
    const readme = readFileSync('README.md', 'utf8');
    const section = readme.slice(readme.indexOf('## Without infra code'));
    const yaml = /```yaml\n([\s\S]+?)```/.exec(section)?.[1];
    assert.ok(yaml, 'no yaml block in "Without infra code"');
    mkdirSync(join(dir, 'functions'), { recursive: true });
    writeFileSync(join(dir, 'functions', 'predictor.ts'), 'export default {};\n');
    const loaded = loadAppFile(write('readme.yaml', yaml));
    // The async options it documents are AsyncApi's defaults, as the schema reads them.
    assert.deepEqual(loaded.app.apis[2]?.async, APP_FILE_DEFAULTS.async);
    assert.deepEqual(
      loaded.app.apis.map((api) => [api.name, api.compute?.kind]),
      [
        ['digits', 'lambda'],
        ['mobilenet-gpu', 'sagemaker'],
        ['digits-jobs', undefined],
      ],
    );
  });
});
