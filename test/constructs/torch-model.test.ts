/**
 * Torch models through the constructs: `ModelSource.fromAsset` reads the format from the file, the model env reaches
 * all three computes, the image contexts carry Python, torch, the executor and the module file, synth knows torch's
 * memory needs, and the Lambda bundle synth built serves the digits checkpoint: run from its context with the
 * function's environment from the template and the model asset in s3rver, it reproduces the reference logits.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { readAssembly, type AssemblyApi } from '../../lib/cli/deploy/assembly.js';
import { startEmbeddedS3, type EmbeddedS3 } from '../../lib/cli/local/embedded-s3.js';
import {
  buildContainerImageContext,
  TORCH_GPU_BASE_IMAGE,
} from '../../lib/constructs/images/container-image-context.js';
import {
  EXECUTOR_PROGRAM,
  LAMBDA_MODULE_DIR,
  LAMBDA_PYTHON,
} from '../../lib/constructs/images/lambda-image-context.js';
import { ENV } from '../../lib/contract.js';
import { Compute, ModelSource, Predictor, RealtimeApi } from '../../lib/index.js';
import { assertOneProblem, resourcesOf, sha256, tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import {
  DIGITS_CHECKPOINT,
  DIGITS_CLASS,
  DIGITS_DECLARED,
  DIGITS_MODULE,
  DIGITS_PREDICTOR,
  DIGITS_TORCHSCRIPT,
  MIN_ACCURACY,
  accuracy,
  assertBatchLogits,
  greyLevels,
  httpApiV2Event,
  loadDigitsExpected,
} from '../helpers.js';

useScratchTmpdir();

const expected = loadDigitsExpected();
const checkpoint = (): ModelSource =>
  ModelSource.fromAsset(DIGITS_CHECKPOINT, { module: DIGITS_MODULE, className: DIGITS_CLASS, ...DIGITS_DECLARED });

/** The environment of the stack's one Lambda function, or of its SageMaker model / ECS container. */
function environmentOf(template: Template): Record<string, unknown> {
  // The API's function (an ECS stack also holds CDK's custom resource provider, which has no environment).
  const [, fn] = resourcesOf(template, 'AWS::Lambda::Function').find(([, f]) => f['Environment'] !== undefined) ?? [];
  if (fn) return (fn as { Environment: { Variables: Record<string, unknown> } }).Environment.Variables;
  const [, model] = resourcesOf(template, 'AWS::SageMaker::Model')[0] ?? [];
  if (model)
    return (model as { PrimaryContainer: { Environment: Record<string, unknown> } }).PrimaryContainer.Environment;
  const [, task] = resourcesOf(template, 'AWS::ECS::TaskDefinition')[0]!;
  const [container] = (task as { ContainerDefinitions: { Environment: { Name: string; Value: unknown }[] }[] })
    .ContainerDefinitions;
  return Object.fromEntries(container!.Environment.map((e) => [e.Name, e.Value]));
}

describe('torch models in RealtimeApi', () => {
  test('fromAsset reads the format from the file: a .pt is torchscript, nothing else needed', () => {
    const stack = new Stack(tempApp(), 'S');
    new RealtimeApi(stack, 'digits', { model: ModelSource.fromAsset(DIGITS_TORCHSCRIPT) });
    const env = environmentOf(Template.fromStack(stack));
    assert.equal(env[ENV.modelFormat], 'torchscript');
    assert.equal(env[ENV.modelModule], undefined);
  });

  for (const [kind, compute, moduleDir] of [
    ['lambda', () => Compute.lambda({ memorySize: 2048 }), LAMBDA_MODULE_DIR],
    ['sageMaker', () => Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }), '/opt/arclight/model'],
    ['ecs', () => Compute.ecs({ instanceType: 'g5.xlarge' }), '/opt/arclight/model'],
  ] as const) {
    test(`${kind}: the checkpoint's format, module (where the image keeps it), class and declarations reach the env`, () => {
      const stack = new Stack(tempApp(), 'S');
      new RealtimeApi(stack, 'digits', { model: checkpoint(), compute: compute() });
      const env = environmentOf(Template.fromStack(stack));
      assert.equal(env[ENV.modelFormat], 'lightning-checkpoint');
      assert.equal(env[ENV.modelModule], `${moduleDir}/model.py`);
      assert.equal(env[ENV.modelClass], DIGITS_CLASS);
      assert.deepEqual(JSON.parse(String(env[ENV.modelInputs])), DIGITS_DECLARED.inputs);
      assert.deepEqual(JSON.parse(String(env[ENV.modelOutputs])), DIGITS_DECLARED.outputs);
    });
  }

  test('synth refuses a checkpoint without its module and class, and torch options on an ONNX model', () => {
    assertOneProblem(
      () => new RealtimeApi(new Stack(tempApp(), 'S'), 'd', { model: ModelSource.fromAsset(DIGITS_CHECKPOINT) }),
      /a lightning-checkpoint model needs module \(the Python file\) and className/,
    );
    assertOneProblem(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'd', {
          model: ModelSource.fromAsset('models/digits.onnx', { className: 'Digits' }),
        }),
      /className apply to torch models, not to onnx/,
    );
  });

  test('synth refuses Lambda memory too small for Python with torch, naming what it needs', () => {
    assertOneProblem(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'd', {
          model: checkpoint(),
          compute: Compute.lambda({ memorySize: 512 }),
        }),
      /the lightning-checkpoint model \(0 MB\) needs about 561 MB of memory .*400 MB for Python with torch\); memorySize is 512 MB/,
    );
    // The same memory serves the ONNX export.
    new RealtimeApi(new Stack(tempApp(), 'S'), 'd', {
      model: ModelSource.fromAsset('models/digits.onnx'),
      compute: Compute.lambda({ memorySize: 512 }),
    });
  });

  test('a torch model on Lambda warns at synth about the larger image and the torch import', () => {
    const app = tempApp();
    const stack = new Stack(app, 'S');
    new RealtimeApi(stack, 'digits', { model: checkpoint() });
    const warnings = app
      .synth()
      .getStackArtifact(stack.artifactId)
      .messages.filter((m) => m.level === 'warning')
      .map((m) => String(m.entry.data));
    assert.ok(
      warnings.some((w) => /Python and CPU torch .* importing torch/.test(w)),
      warnings.join('\n'),
    );
  });
});

describe('container image contexts for torch models', () => {
  test('GPU: PyTorch CUDA runtime base, Node.js beside it, the executor and module copied, ARCLIGHT_PYTHON set', () => {
    const dir = buildContainerImageContext({ gpu: true, torch: { module: DIGITS_MODULE } });
    const dockerfile = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, new RegExp(`^FROM ${TORCH_GPU_BASE_IMAGE.replace(/[.]/g, '\\.')}$`, 'm'));
    assert.match(TORCH_GPU_BASE_IMAGE, /^pytorch\/pytorch:[\d.]+-cuda12\.\d+-cudnn9-runtime$/);
    assert.match(dockerfile, /COPY --from=node \/usr\/local\/bin\/node/);
    assert.match(dockerfile, /ARCLIGHT_EXECUTION_PROVIDERS=cuda,cpu/);
    assert.match(dockerfile, /ARCLIGHT_PYTHON=\/opt\/conda\/bin\/python/);
    assert.match(dockerfile, /COPY python\/ \/opt\/arclight\/python\//);
    assert.match(dockerfile, /COPY model\/ \/opt\/arclight\/model\//);
    assert.equal(sha256(join(dir, 'python', 'arclight_executor.py')), sha256(EXECUTOR_PROGRAM));
    assert.equal(sha256(join(dir, 'model', 'model.py')), sha256(DIGITS_MODULE));
  });

  test("CPU: Node.js's Debian image with Debian's python3-torch", () => {
    const dir = buildContainerImageContext({ gpu: false, torch: {} });
    const dockerfile = readFileSync(join(dir, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM node:22-bookworm-slim$/m);
    assert.match(dockerfile, /apt-get install -y --no-install-recommends python3-torch/);
    assert.match(dockerfile, /ARCLIGHT_PYTHON=\/usr\/bin\/python3/);
    assert.doesNotMatch(dockerfile, /COPY model\//, 'no module for a TorchScript model');
  });
});

describe('the Lambda bundle synth built for the digits checkpoint', () => {
  let api: AssemblyApi;
  let s3: EmbeddedS3;

  before(async () => {
    const app = tempApp();
    const stack = new Stack(app, 'TorchDigits');
    new RealtimeApi(stack, 'digits', {
      model: checkpoint(),
      predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
      compute: Compute.lambda({ architecture: lambda.Architecture.X86_64, memorySize: 2048 }),
    });
    const outdir = app.synth().directory;
    api = readAssembly(outdir)[0]!;
    s3 = await startEmbeddedS3([...new Set(api.assets.map((a) => a.bucket))]);
    for (const asset of api.assets) await s3.put(asset.bucket, asset.key, readFileSync(asset.path));
  });
  after(() => s3?.close());

  test('its context holds the executor, the module, and a Dockerfile installing Python and CPU torch', () => {
    const dockerfile = readFileSync(join(api.contextDir, 'Dockerfile'), 'utf8');
    assert.match(dockerfile, /^FROM public\.ecr\.aws\/lambda\/nodejs:22$/m);
    assert.match(dockerfile, /dnf install -y python3\.12 python3\.12-pip/);
    assert.match(dockerfile, /-m pip install --no-cache-dir .*torch==\d+\.\d+\.\d+/);
    assert.match(dockerfile, new RegExp(`ENV .*ARCLIGHT_PYTHON=${LAMBDA_PYTHON}`));
    assert.match(dockerfile, /COPY python\/ \$\{LAMBDA_TASK_ROOT\}\/python\//);
    assert.match(dockerfile, /COPY model\/ \$\{LAMBDA_TASK_ROOT\}\/model\//);
    assert.equal(sha256(join(api.contextDir, 'python', 'arclight_executor.py')), sha256(EXECUTOR_PROGRAM));
    assert.equal(sha256(join(api.contextDir, 'model', 'model.py')), sha256(DIGITS_MODULE));
  });

  test('run with the template env and the asset from s3rver: reference logits and ≥ 98% accuracy', async (t) => {
    const images = expected.images;
    const events = [
      httpApiV2Event({ method: 'GET', path: '/' }),
      httpApiV2Event({
        path: '/v2/models/digits/infer',
        body: JSON.stringify({
          inputs: [{ name: 'image', datatype: 'FP32', shape: [images.length, 1, 8, 8], data: images.flat() }],
        }),
      }),
      httpApiV2Event({ path: '/', body: JSON.stringify({ images: images.map(greyLevels) }) }),
    ];
    const script = `
      import { readFileSync } from 'node:fs';
      const events = JSON.parse(readFileSync(0, 'utf8'));
      const { handler } = await import(${JSON.stringify(join(api.contextDir, api.handlerFile))});
      const results = [];
      for (const event of events) results.push(await handler(event, { awsRequestId: 'torch-test' }));
      process.stdout.write('\\nRESULT ' + JSON.stringify(results) + '\\n');
      process.exit(0);
    `;
    // The module lies where the image would put it, here inside the context; Python comes from this machine.
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '/usr/bin:/bin',
      ...(process.env['ARCLIGHT_PYTHON'] ? { ARCLIGHT_PYTHON: process.env['ARCLIGHT_PYTHON'] } : {}),
      ...api.environment,
      ...s3.env,
      [ENV.modelModule]: api.environment[ENV.modelModule]!.replace(LAMBDA_MODULE_DIR, join(api.contextDir, 'model')),
      [ENV.logLevel]: 'ERROR',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    };
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: api.contextDir, env });
    child.stdin.end(JSON.stringify(events));
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const started = performance.now();
    const code = await new Promise<number | null>((done) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
      child.on('close', (c) => {
        clearTimeout(timer);
        done(c);
      });
    });
    t.diagnostic(`cold start + 3 invocations in ${(performance.now() - started).toFixed(0)} ms`);
    assert.equal(code, 0, stderr);
    const line = stdout.split('\n').find((l) => l.startsWith('RESULT '));
    assert.ok(line, `no result; stdout:\n${stdout}\nstderr:\n${stderr}`);
    const [meta, infer, predict] = JSON.parse(line.slice(7)) as { statusCode: number; body: string }[];
    assert.equal(meta!.statusCode, 200, meta!.body);
    assert.equal((JSON.parse(meta!.body) as { format: string }).format, 'lightning-checkpoint');
    assert.equal(infer!.statusCode, 200, infer!.body);
    const { outputs } = JSON.parse(infer!.body) as { outputs: { name: string; data: number[] }[] };
    assert.equal(outputs[0]!.name, 'logits');
    assertBatchLogits(outputs[0]!.data, images.length, expected.logits);
    assert.equal(predict!.statusCode, 200, predict!.body);
    const digits = (JSON.parse(predict!.body) as { digit: number }[]).map((p) => p.digit);
    const found = accuracy(digits, expected.labels);
    assert.ok(found >= MIN_ACCURACY, `accuracy ${found}`);
  });
});
