/**
 * Variants on SageMaker, synthesized for real: a weighted production variant beside the API's own model (its own
 * SageMaker model on the same image, its object readable by the role, its weight), a shadow variant with a predictor
 * of its own (its own image, under ShadowProductionVariants), SageMaker's per-variant metrics on the dashboard, and
 * the shapes that cannot be served failing at synth in one error.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ENV } from '../../../lib/contract.js';
import { Compute, ModelSource, Predictor, RealtimeApi } from '../../../lib/index.js';
import {
  flatten,
  objectArnOf,
  onlyResource,
  policyStatements,
  resourcesOf,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../../cdk-helpers.js';
import { DIGITS_PREDICTOR } from '../../helpers.js';

useScratchTmpdir();

const MAIN = 's3://my-models/digits-v1.onnx';
const NEXT = 's3://my-models/digits-v2.onnx';
const sha = (c: string): string => c.repeat(64);
const compute = (): Compute => Compute.sageMaker({ instanceType: 'ml.g5.xlarge' });

let weighted: Template;
let shadowed: Template;

before(() => {
  const app = tempApp();
  const a = new Stack(app, 'weighted');
  new RealtimeApi(a, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    compute: compute(),
    variants: [
      { name: 'v2', model: ModelSource.fromS3Uri(NEXT, { sha256: sha('b') }), weight: 0.25, instanceCount: 2 },
    ],
  });
  const b = new Stack(app, 'shadowed');
  new RealtimeApi(b, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    compute: compute(),
    variants: [
      {
        name: 'candidate',
        model: ModelSource.fromS3Uri(NEXT, { sha256: sha('b') }),
        predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
        shadow: true,
        weight: 0.5,
      },
    ],
  });
  weighted = Template.fromStack(a);
  shadowed = Template.fromStack(b);
});

/** SageMaker models by logical id, with their env. */
function models(template: Template): Map<string, { image: string; env: Record<string, string> }> {
  return new Map(
    resourcesOf(template, 'AWS::SageMaker::Model').map(([id, props]) => {
      const container = props['PrimaryContainer'] as { Image: unknown; Environment: Record<string, unknown> };
      const env = Object.fromEntries(Object.entries(container.Environment).map(([k, v]) => [k, flatten(v)]));
      return [id, { image: flatten(container.Image), env }];
    }),
  );
}

describe('weighted production variants', () => {
  test("the API's model weighs 1, the variant its weight, each on its own SageMaker model and instances", () => {
    const [, config] = onlyResource(weighted, 'AWS::SageMaker::EndpointConfig');
    const variants = config['ProductionVariants'] as Record<string, unknown>[];
    assert.deepEqual(
      variants.map((v) => [v['VariantName'], v['InitialVariantWeight'], v['InitialInstanceCount'], v['InstanceType']]),
      [
        ['AllTraffic', 1, 1, 'ml.g5.xlarge'],
        ['v2', 0.25, 2, 'ml.g5.xlarge'],
      ],
    );
    assert.equal(config['ShadowProductionVariants'], undefined);
    const byId = models(weighted);
    const uriOf = (variant: Record<string, unknown>): string =>
      byId.get(/\{GetAtt:(\w+)\.ModelName\}/.exec(flatten(variant['ModelName']))![1]!)!.env[ENV.modelUri]!;
    assert.deepEqual(variants.map(uriOf), [MAIN, NEXT]);
    const images = [...byId.values()].map((m) => m.image);
    assert.equal(new Set(images).size, 1, 'the same predictor: one image');
    const v2 = [...byId.values()].find((m) => m.env[ENV.modelUri] === NEXT);
    assert.equal(v2!.env[ENV.modelSha256], sha('b'));
    assert.equal(v2!.env[ENV.apiName], 'digits');
  });

  test('the role reads exactly the two model objects', () => {
    const reads = policyStatements(weighted)
      .filter((s) => s.actions.includes('s3:GetObject'))
      .flatMap((s) => s.resources)
      .sort();
    assert.deepEqual(reads, [objectArnOf(MAIN), objectArnOf(NEXT)].sort());
  });

  test('the dashboard charts invocations, 5xx and model latency per variant', () => {
    const [, dashboard] = onlyResource(weighted, 'AWS::CloudWatch::Dashboard');
    const body = flatten(dashboard['DashboardBody']);
    for (const variant of ['AllTraffic', 'v2'])
      for (const metric of ['Invocations', 'Invocation5XXErrors', 'ModelLatency'])
        assert.match(body, new RegExp(`"AWS/SageMaker","${metric}","EndpointName","[^"]+","VariantName","${variant}"`));
  });
});

describe('a shadow variant', () => {
  test('gets a copy of live traffic (its weight: the share copied), on an image with its own predictor', () => {
    const [, config] = onlyResource(shadowed, 'AWS::SageMaker::EndpointConfig');
    const production = config['ProductionVariants'] as Record<string, unknown>[];
    assert.deepEqual(
      production.map((v) => v['VariantName']),
      ['AllTraffic'],
    );
    const shadows = config['ShadowProductionVariants'] as Record<string, unknown>[];
    assert.deepEqual(
      shadows.map((v) => [v['VariantName'], v['InitialVariantWeight'], v['InitialInstanceCount']]),
      [['candidate', 0.5, 1]],
    );
    const images = [...models(shadowed).values()].map((m) => m.image);
    assert.equal(new Set(images).size, 2, 'its predictor is built into an image of its own');
    assert.equal(resourcesOf(shadowed, 'AWS::SageMaker::Model').length, 2);
  });
});

describe('variants that cannot be served fail at synth, in one error', () => {
  test('two shadows, a shadow beside a weighted variant, a name taken twice, a non-positive weight', () => {
    const model = ModelSource.fromS3Uri(NEXT);
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad'), 'digits', {
          model: ModelSource.fromS3Uri(MAIN),
          compute: compute(),
          variants: [
            { name: 's1', model, shadow: true },
            { name: 's2', model, shadow: true },
            { name: 'AllTraffic', model, weight: 0 },
          ],
        }),
    );
    assert.deepEqual(problems, [
      "variant name 'AllTraffic' is used twice",
      "variant 'AllTraffic': weight must be a positive number, got 0",
      'at most one shadow variant, got 2',
      'a shadow variant copies the traffic of one production variant: no weighted variants beside it',
    ]);
  });

  test('Lambda and ECS check the same rules (Lambda and ECS serve variants too: see test/constructs/backends)', () => {
    const model = ModelSource.fromS3Uri(NEXT);
    for (const compute of [Compute.lambda(), Compute.ecs({ instanceType: 'g5.xlarge' })]) {
      const problems = thrownProblems(
        () =>
          new RealtimeApi(new Stack(tempApp(), 'other'), 'digits', {
            model: ModelSource.fromS3Uri(MAIN),
            compute,
            variants: [
              { name: 's1', model, shadow: true },
              { name: 's2', model, shadow: true },
            ],
          }),
      );
      assert.deepEqual(problems, ['at most one shadow variant, got 2'], compute.kind);
    }
  });
});
