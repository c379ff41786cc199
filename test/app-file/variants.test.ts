/**
 * `variants` in arclight.yaml: a file's variants build the same templates as the same props written in TypeScript
 * (ECS weighted, Lambda shadow), the JSON Schema editors get documents them, and what the constructs would refuse is
 * reported at its line and column, every problem at once.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { buildAppFromFile } from '../../lib/app-file/build-app.js';
import { AppFileError, loadAppFile } from '../../lib/app-file/load.js';
import { appFileJsonSchema } from '../../lib/app-file/schema.js';
import { Compute, ModelSource, Predictor, RealtimeApi } from '../../lib/index.js';
import { tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../helpers.js';

const tmp = useScratchTmpdir();
const dir = join(tmp, 'variants-app');
mkdirSync(join(dir, 'models'), { recursive: true });
cpSync(DIGITS_ONNX, join(dir, 'models', 'digits.onnx'));
writeFileSync(join(dir, 'predictor.ts'), 'export default {};\n');

function write(name: string, lines: readonly string[]): string {
  const file = join(dir, name);
  writeFileSync(file, `${lines.join('\n')}\n`);
  return file;
}

function problemsOf(lines: readonly string[]): string[] {
  const file = write('bad.yaml', lines);
  try {
    loadAppFile(file, 'arclight.yaml');
  } catch (error) {
    assert.ok(error instanceof AppFileError, String(error));
    return error.problems.map((p) => `${p.line}:${p.column} ${p.path}: ${p.message}`);
  }
  assert.fail('expected problems');
}

describe('variants in arclight.yaml', () => {
  test('build the same templates as the same variants written in TypeScript', () => {
    const file = write('arclight.yaml', [
      'stackName: V',
      'apis:',
      '  - name: ecs',
      '    model: s3://my-models/digits-v1.onnx',
      '    compute: { kind: ecs, instanceType: c6i.xlarge }',
      '    variants:',
      '      - { name: v2, model: s3://my-models/digits-v2.onnx, weight: 0.25, instanceCount: 2 }',
      '  - name: fn',
      '    model: s3://my-models/digits-v1.onnx',
      '    variants:',
      '      - name: candidate',
      '        model: { path: s3://my-models/digits-v3.onnx }',
      `        predictor: ${join(process.cwd(), DIGITS_PREDICTOR)}`,
      '        shadow: true',
      '        weight: 0.5',
    ]);
    const fileStacks = buildAppFromFile(loadAppFile(file), tempApp());
    const codeApp = tempApp();
    const ecs = new Stack(codeApp, 'V-ecs');
    new RealtimeApi(ecs, 'ecs', {
      model: ModelSource.fromS3Uri('s3://my-models/digits-v1.onnx'),
      compute: Compute.ecs({ instanceType: 'c6i.xlarge' }),
      variants: [
        { name: 'v2', model: ModelSource.fromS3Uri('s3://my-models/digits-v2.onnx'), weight: 0.25, instanceCount: 2 },
      ],
    });
    const fn = new Stack(codeApp, 'V-fn');
    new RealtimeApi(fn, 'fn', {
      model: ModelSource.fromS3Uri('s3://my-models/digits-v1.onnx'),
      variants: [
        {
          name: 'candidate',
          model: ModelSource.fromS3Uri('s3://my-models/digits-v3.onnx'),
          predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
          shadow: true,
          weight: 0.5,
        },
      ],
    });
    for (const [name, stack] of [
      ['ecs', ecs],
      ['fn', fn],
    ] as const) {
      const fromFile = Template.fromStack(fileStacks.get(name)!).toJSON();
      assert.deepEqual(fromFile, Template.fromStack(stack).toJSON(), name);
    }
    const shadow = Template.fromStack(fileStacks.get('fn')!).findResources('AWS::Lambda::EventInvokeConfig');
    assert.equal(Object.keys(shadow).length, 1, 'the shadow function is there');
  });

  test('the JSON Schema documents them', () => {
    const schema = appFileJsonSchema() as { $defs?: unknown; properties: Record<string, unknown> };
    const text = JSON.stringify(schema);
    for (const key of ['"variants"', '"shadow"', '"instanceCount"', 'x-arclight-variant'])
      assert.ok(text.includes(key), key);
  });

  test('what the constructs would refuse, each at its line and column, all at once', () => {
    const problems = problemsOf([
      'apis:',
      '  - name: fn', // 2
      '    model: models/digits.onnx',
      '    variants:',
      '      - { name: AllTraffic, model: models/digits.onnx }', // 5
      '      - name: v2', // 6
      '        model: models/missing.onnx', // 7
      '        predictor: predictor.ts', // 8
      '        weight: 0.001', // 9
      '        instanceCount: 2', // 10
      '  - name: ecs', // 11
      '    model: models/digits.onnx',
      '    compute: { kind: ecs, instanceType: c6i.xlarge }',
      '    variants:',
      '      - { name: s1, model: models/digits.onnx, shadow: true, weight: 2 }', // 15
      '      - { name: s2, model: models/digits.onnx, shadow: true }', // 16
      '  - name: jobs', // 17
      '    model: models/digits.onnx',
      '    async: true',
      '    variants: [{ name: v2, model: models/digits.onnx }]', // 20
      '  - name: typo', // 21
      '    model: models/digits.onnx',
      '    variants: [{ name: v_2, model: models/digits.onnx, wieght: 1 }]', // 23
    ]);
    assert.deepEqual(
      problems.sort(),
      [
        "15:70 apis[1].variants[0].weight: a shadow's weight is the share of requests copied, at most 1",
        '16:56 apis[1].variants[1].shadow: at most one shadow variant',
        '20:15 apis[2].variants: applies to realtime APIs; async APIs do not have it yet',
        "23:56 apis[3].variants[0].wieght: unknown key 'wieght' (did you mean 'weight'?)",
        "23:24 apis[3].variants[0].name: 'v_2' must be letters, digits and '-', at most 63",
        "5:17 apis[0].variants[0].name: 'AllTraffic' is taken (the API's own is AllTraffic)",
        '7:16 apis[0].variants[1].model: model file models/missing.onnx does not exist (paths are relative to the app file)',
        "8:20 apis[0].variants[1].predictor: weighted variants on lambda run in the API's function, with its predictor (a shadow may have its own)",
        '9:17 apis[0].variants[1].weight: 0.001 is not a multiple of 0.01',
        '10:24 apis[0].variants[1].instanceCount: applies to sagemaker and ecs; lambda scales by itself',
      ].sort(),
    );
  });
});
