/**
 * arclight.yaml's async options on SageMaker, by the synthesized template: a job timeout above Lambda's 15 minutes
 * (InvocationTimeoutSeconds is what the front sends; the container's request timeout follows), SageMaker's ClientConfig
 * and backlog target, and the compute's minInstances kept as the scaling floor instead of being dropped.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { asyncApiProps, buildAppFromFile } from '../../lib/app-file/build-app.js';
import { loadAppFile } from '../../lib/app-file/load.js';
import { ASYNC_ENV, AsyncApi, Compute, ModelSource } from '../../lib/index.js';
import { tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX } from '../helpers.js';

const tmp = useScratchTmpdir();

function writeFile(name: string, lines: string[]): string {
  const path = join(tmp, name);
  writeFileSync(path, [...lines, ''].join('\n'));
  return path;
}

describe('arclight.yaml async on SageMaker', () => {
  test('timeout 3600, ClientConfig, backlog target and minInstances reach the endpoint and its scaling', () => {
    const file = writeFile('sm-async.yaml', [
      'apis:',
      '  - name: long-jobs',
      `    model: ${join(process.cwd(), DIGITS_ONNX)}`,
      '    compute: { kind: sagemaker, instanceType: ml.c7i.xlarge, minInstances: 1, maxInstances: 3 }',
      '    async: { timeout: 3600, maxConcurrentInvocationsPerInstance: 2, targetBacklogPerInstance: 8 }',
    ]);
    const loaded = loadAppFile(file);
    const api = loaded.app.apis[0]!;
    const props = asyncApiProps(api, api.async as Exclude<typeof api.async, boolean | undefined>, loaded.dir);
    assert.equal(props.timeout?.toSeconds(), 3600);
    assert.equal(props.minInstances, 1, "the compute's minInstances, written in the file, is kept");
    const stacks = buildAppFromFile(loaded, tempApp());
    const template = Template.fromStack(stacks.get('long-jobs')!);
    const config = Object.values(template.findResources('AWS::SageMaker::EndpointConfig'))[0] as {
      Properties: { AsyncInferenceConfig: { ClientConfig: unknown } };
    };
    assert.deepEqual(config.Properties.AsyncInferenceConfig.ClientConfig, { MaxConcurrentInvocationsPerInstance: 2 });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 1, MaxCapacity: 3 });
    template.hasResourceProperties('AWS::ApplicationAutoScaling::ScalingPolicy', {
      TargetTrackingScalingPolicyConfiguration: { TargetValue: 8 },
    });
    const front = Object.values(template.findResources('AWS::Lambda::Function'))
      .map((r) => (r as { Properties: { Environment?: { Variables?: Record<string, unknown> } } }).Properties)
      .find((p) => p.Environment?.Variables?.[ASYNC_ENV.invocationTimeoutSeconds] !== undefined);
    assert.equal(front?.Environment?.Variables?.[ASYNC_ENV.invocationTimeoutSeconds], '3600');
  });

  test('without minInstances anywhere, an async endpoint scales to zero', () => {
    const file = writeFile('sm-async-zero.yaml', [
      'apis:',
      '  - name: idle-jobs',
      `    model: ${join(process.cwd(), DIGITS_ONNX)}`,
      '    compute: { kind: sagemaker, instanceType: ml.c7i.xlarge }',
      '    async: true',
    ]);
    const loaded = loadAppFile(file);
    const api = loaded.app.apis[0]!;
    assert.equal(asyncApiProps(api, {}, loaded.dir).minInstances, undefined);
    const stacks = buildAppFromFile(loaded, tempApp());
    Template.fromStack(stacks.get('idle-jobs')!).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', {
      MinCapacity: 0,
    });
  });

  test("in code: AsyncApi.minInstances is the floor; the compute's minInstances warns arclight:asyncMinInstances", () => {
    const app = tempApp();
    const warned = new Stack(app, 'Warned');
    new AsyncApi(warned, 'jobs', {
      model: ModelSource.fromAsset(DIGITS_ONNX),
      compute: Compute.sageMaker({ instanceType: 'ml.c7i.xlarge', minInstances: 2, maxInstances: 3 }),
    });
    const kept = new Stack(app, 'Kept');
    new AsyncApi(kept, 'jobs', {
      model: ModelSource.fromAsset(DIGITS_ONNX),
      compute: Compute.sageMaker({ instanceType: 'ml.c7i.xlarge', maxInstances: 3 }),
      minInstances: 2,
    });
    Annotations.fromStack(warned).hasWarning('*', Match.stringLikeRegexp('arclight:asyncMinInstances'));
    Template.fromStack(warned).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 0 });
    assert.equal(Annotations.fromStack(kept).findWarning('*', Match.stringLikeRegexp('asyncMinInstances')).length, 0);
    Template.fromStack(kept).hasResourceProperties('AWS::ApplicationAutoScaling::ScalableTarget', { MinCapacity: 2 });
  });
});
