/**
 * `tracing: true`, synthesized for real on each compute, with cdk-nag's AwsSolutions pack on the app: the Lambda
 * function traces actively and its runtime is told to (ARCLIGHT_TRACING), SageMaker's REST API stage traces, an ECS
 * task gets the X-Ray daemon beside the server and the right to put segments. Off (the default): none of it.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack, Validations } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ENV } from '../../../lib/contract.js';
import { XRAY_DAEMON_IMAGE } from '../../../lib/constructs/backends/ecs-backend.js';
import { Compute, ModelSource, RealtimeApi } from '../../../lib/index.js';
import { onlyResource, policyStatements, tempApp, useScratchTmpdir } from '../../cdk-helpers.js';

useScratchTmpdir();

const templates: Record<'lambda' | 'off' | 'sagemaker' | 'ecs', Template> = {} as never;

before(() => {
  const app = tempApp();
  const model = ModelSource.fromS3Uri('s3://my-models/digits.onnx', { sha256: 'a'.repeat(64) });
  const stacks = {
    lambda: Compute.lambda(),
    off: undefined,
    sagemaker: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
    ecs: Compute.ecs({ instanceType: 'g5.xlarge' }),
  };
  const built: [keyof typeof templates, Stack][] = Object.entries(stacks).map(([name, compute]) => {
    const stack = new Stack(app, name);
    new RealtimeApi(stack, 'digits', {
      model,
      ...(compute ? { compute, tracing: true } : { compute: Compute.lambda() }),
    });
    return [name as keyof typeof templates, stack];
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  // A cdk-nag violation fails synth.
  app.synth();
  for (const [name, stack] of built) templates[name] = Template.fromStack(stack);
});

describe('tracing: true', () => {
  test('Lambda: active tracing, the runtime told to trace; off by default', () => {
    const [, fn] = onlyResource(templates.lambda, 'AWS::Lambda::Function');
    assert.deepEqual(fn['TracingConfig'], { Mode: 'Active' });
    const env = (fn['Environment'] as { Variables: Record<string, string> }).Variables;
    assert.equal(env[ENV.tracing], 'on');
    const [, off] = onlyResource(templates.off, 'AWS::Lambda::Function');
    assert.equal(off['TracingConfig'], undefined);
    assert.equal((off['Environment'] as { Variables: Record<string, string> }).Variables[ENV.tracing], undefined);
    assert.ok(
      !policyStatements(templates.off).some((s) => s.actions.some((a) => a.startsWith('xray:'))),
      'no X-Ray grant when off',
    );
  });

  test("SageMaker: the REST API's stage traces", () => {
    const [, stage] = onlyResource(templates.sagemaker, 'AWS::ApiGateway::Stage');
    assert.equal(stage['TracingEnabled'], true);
  });

  test('ECS: the X-Ray daemon beside the server on loopback, the task role may put segments', () => {
    const [, taskDefinition] = onlyResource(templates.ecs, 'AWS::ECS::TaskDefinition');
    const containers = taskDefinition['ContainerDefinitions'] as Record<string, unknown>[];
    const daemon = containers.find((c) => c['Image'] === XRAY_DAEMON_IMAGE);
    assert.ok(daemon);
    assert.equal(daemon['Essential'], false);
    assert.deepEqual(daemon['PortMappings'], [{ ContainerPort: 2000, Protocol: 'udp' }]);
    const server = containers.find((c) => c !== daemon)!;
    const env = Object.fromEntries(
      (server['Environment'] as { Name: string; Value: string }[]).map((e) => [e.Name, e.Value]),
    );
    assert.equal(env[ENV.tracing], 'on');
    assert.equal(env['AWS_XRAY_DAEMON_ADDRESS'], '127.0.0.1:2000');
    const xray = policyStatements(templates.ecs).filter((s) => s.actions.some((a) => a.startsWith('xray:')));
    assert.equal(xray.length, 1);
    assert.deepEqual(xray[0]!.actions.sort(), [
      'xray:GetSamplingRules',
      'xray:GetSamplingTargets',
      'xray:PutTelemetryRecords',
      'xray:PutTraceSegments',
    ]);
  });
});
