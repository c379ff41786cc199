/**
 * Variants on Lambda, synthesized for real: the weighted variants inside the API's one function (their models read by
 * its role, their contract in ARCLIGHT_VARIANTS, one `live` alias that CodeDeploy shifts as before, a warning on how
 * weights meet the rollout); the shadow as a function of its own, invoked asynchronously by the API's function with
 * lambda:InvokeFunction on exactly its alias, never retried; per-variant metrics on the dashboard; cdk-nag clean. How
 * Lambda runs an asynchronous Invoke is AWS's documented behaviour; it has not run on AWS here.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ENV } from '../../../lib/contract.js';
import { ModelSource, Predictor, RealtimeApi } from '../../../lib/index.js';
import { lambdaVariantsFromEnv } from '../../../lib/runtime/variants/lambda-variants.js';
import {
  flatten,
  objectArnOf,
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
const CANDIDATE = 's3://my-models/digits-v3.onnx';
const sha = (c: string): string => c.repeat(64);

let weighted: Template;
let weightedStack: Stack;
let shadowed: Template;

before(() => {
  const app = tempApp();
  weightedStack = new Stack(app, 'weighted');
  new RealtimeApi(weightedStack, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    variants: [{ name: 'v2', model: ModelSource.fromS3Uri(NEXT, { sha256: sha('b') }), weight: 0.25 }],
  });
  const b = new Stack(app, 'shadowed');
  new RealtimeApi(b, 'digits', {
    model: ModelSource.fromS3Uri(MAIN, { sha256: sha('a') }),
    variants: [
      {
        name: 'candidate',
        model: ModelSource.fromS3Uri(CANDIDATE, { sha256: sha('c') }),
        predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
        shadow: true,
        weight: 0.5,
      },
    ],
  });
  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  app.synth();
  weighted = Template.fromStack(weightedStack);
  shadowed = Template.fromStack(b);
});

function functions(template: Template): Map<string, { env: Record<string, string>; image: string; role: string }> {
  return new Map(
    resourcesOf(template, 'AWS::Lambda::Function')
      .filter(([, p]) => p['PackageType'] === 'Image')
      .map(([id, p]) => {
        const variables = (p['Environment'] as { Variables: Record<string, unknown> }).Variables;
        const env = Object.fromEntries(Object.entries(variables).map(([k, v]) => [k, flatten(v)]));
        return [id, { env, image: flatten((p['Code'] as { ImageUri: unknown }).ImageUri), role: flatten(p['Role']) }];
      }),
  );
}

describe('weighted variants on Lambda: one function, one alias', () => {
  test('the function serves both models: its own and the variant in ARCLIGHT_VARIANTS, split by weight', () => {
    const all = [...functions(weighted).values()];
    assert.equal(all.length, 1, 'no second function');
    const env = all[0]!.env;
    assert.equal(env[ENV.variant], 'AllTraffic');
    assert.equal(env[ENV.modelUri], MAIN);
    const variants = lambdaVariantsFromEnv({ [ENV.variants]: env[ENV.variants] });
    assert.deepEqual(
      variants.map((v) => [v.name, v.weight, v.env[ENV.modelUri], v.env[ENV.modelSha256], v.env[ENV.modelFormat]]),
      [['v2', 0.25, NEXT, sha('b'), 'onnx']],
    );
  });

  test('its role reads both model objects; CodeDeploy still shifts the one live alias', () => {
    const reads = policyStatements(weighted)
      .filter((s) => s.actions.includes('s3:GetObject'))
      .flatMap((s) => s.resources)
      .sort();
    assert.deepEqual(reads, [objectArnOf(MAIN), objectArnOf(NEXT)].sort());
    assert.equal(resourcesOf(weighted, 'AWS::Lambda::Alias').length, 1);
    const [[, alias]] = resourcesOf(weighted, 'AWS::Lambda::Alias') as [[string, Record<string, unknown>]];
    assert.equal(alias['Name'], 'live');
    assert.equal(resourcesOf(weighted, 'AWS::CodeDeploy::DeploymentGroup').length, 1);
  });

  test('synth warns how the weights meet the canary', () => {
    const warnings = Annotations.fromStack(weightedStack).findWarning(
      '*',
      Match.stringLikeRegexp('arclight:lambdaVariantsInProcess'),
    );
    assert.equal(warnings.length, 1);
    assert.match(String(warnings[0]!.entry.data), /loads 2 models/);
    assert.match(String(warnings[0]!.entry.data), /canary/);
  });

  test('the dashboard charts the runtime metrics per variant', () => {
    const [, dashboard] = resourcesOf(weighted, 'AWS::CloudWatch::Dashboard')[0]!;
    const body = flatten(dashboard['DashboardBody']);
    for (const variant of ['AllTraffic', 'v2'])
      assert.match(body, new RegExp(`"Arclight","Latency","apiName","digits","variant","${variant}"`));
  });
});

describe('a shadow variant on Lambda: a function of its own, invoked asynchronously', () => {
  test('the API function knows its alias and share; the shadow function its own model, predictor image and name', () => {
    const all = [...functions(shadowed).entries()];
    assert.equal(all.length, 2);
    const [, own] = all.find(([, f]) => f.env[ENV.variant] === 'AllTraffic')!;
    const [, shadow] = all.find(([, f]) => f.env[ENV.variant] === 'candidate')!;
    assert.match(own.env[ENV.shadowFunction]!, /^\{Ref:digitsVariantcandidateFunctionAliaslive\w+\}$/);
    assert.equal(own.env[ENV.shadowPercent], '50');
    assert.equal(own.env[ENV.variants], undefined);
    assert.equal(shadow.env[ENV.modelUri], CANDIDATE);
    assert.equal(shadow.env[ENV.shadowFunction], undefined);
    assert.notEqual(shadow.image, own.image, 'its own predictor: its own image');
    assert.notEqual(shadow.role, own.role, 'a role of its own');
  });

  test("lambda:InvokeFunction on exactly the shadow's alias, held by the API function's role alone", () => {
    const invokes = policyStatements(shadowed).filter((s) => s.actions.some((a) => a.startsWith('lambda:Invoke')));
    assert.equal(invokes.length, 1);
    assert.deepEqual(invokes[0]!.actions, ['lambda:InvokeFunction']);
    assert.equal(invokes[0]!.resources.length, 1);
    assert.match(invokes[0]!.resources[0]!, /^\{Ref:digitsVariantcandidateFunctionAliaslive\w+\}$/);
    assert.match(invokes[0]!.holder, /digitsFunctionRole/);
  });

  test('copies are never retried and kept a minute at most; the shadow reads only its model', () => {
    const [[, config]] = resourcesOf(shadowed, 'AWS::Lambda::EventInvokeConfig') as [[string, Record<string, unknown>]];
    assert.equal(config['MaximumRetryAttempts'], 0);
    assert.equal(config['MaximumEventAgeInSeconds'], 60);
    assert.match(flatten(config['Qualifier']), /digitsVariantcandidateFunctionAliaslive/);
    const reads = policyStatements(shadowed)
      .filter((s) => s.actions.includes('s3:GetObject'))
      .map((s) => [s.holder.includes('Variantcandidate') ? 'shadow' : 'api', s.resources.join()])
      .sort();
    assert.deepEqual(reads, [
      ['api', objectArnOf(MAIN)],
      ['shadow', objectArnOf(CANDIDATE)],
    ]);
  });
});

describe('Lambda variants that cannot be served fail at synth, in one error', () => {
  test('a weighted variant with its own predictor, an instance count', () => {
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'bad'), 'digits', {
          model: ModelSource.fromS3Uri(MAIN),
          variants: [
            {
              name: 'v2',
              model: ModelSource.fromS3Uri(NEXT),
              predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
              instanceCount: 2,
            },
          ],
        }),
    );
    assert.deepEqual(problems, [
      "variant 'v2': weighted variants on Lambda run in the API's function, with its predictor; a predictor of its own needs Compute.ecs() or Compute.sageMaker() (a shadow may have one)",
      "variant 'v2': instanceCount is for SageMaker and ECS; Lambda scales by itself",
    ]);
  });
});
