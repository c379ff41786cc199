/**
 * Reading a cloud assembly as `arclight dev` does (lib/cli/deploy/assembly.ts): CloudFormation intrinsics resolved against
 * local placeholders, Docker image and file assets mapped from the asset manifest, a clear error for what cannot be
 * known without deploying, and `synthesize` running an app command the way the CDK CLI does.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, test } from 'node:test';
import {
  AssemblyError,
  LOCAL_PSEUDO_PARAMETERS,
  SynthError,
  UnresolvableError,
  failureLine,
  readAssembly,
  resolveIntrinsic,
  synthesize,
} from '../../../lib/cli/deploy/assembly.js';

const dirs: string[] = [];
function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}
after(() => dirs.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

describe('resolveIntrinsic', () => {
  test('literals pass through; numbers and booleans become strings', () => {
    assert.equal(resolveIntrinsic('s3://bucket/key'), 's3://bucket/key');
    assert.equal(resolveIntrinsic(29), '29');
    assert.equal(resolveIntrinsic(true), 'true');
  });

  test('Fn::Join and Ref of the pseudo parameters resolve to the local placeholders', () => {
    const value = {
      'Fn::Join': [
        '',
        [
          's3://cdk-hnb659fds-assets-',
          { Ref: 'AWS::AccountId' },
          '-',
          { Ref: 'AWS::Region' },
          '/model.onnx (',
          { Ref: 'AWS::Partition' },
          ', ',
          { Ref: 'AWS::URLSuffix' },
          ')',
        ],
      ],
    };
    assert.equal(
      resolveIntrinsic(value),
      's3://cdk-hnb659fds-assets-000000000000-us-east-1/model.onnx (aws, amazonaws.com)',
    );
    assert.deepEqual(LOCAL_PSEUDO_PARAMETERS, {
      'AWS::AccountId': '000000000000',
      'AWS::Region': 'us-east-1',
      'AWS::Partition': 'aws',
      'AWS::URLSuffix': 'amazonaws.com',
    });
  });

  test('Fn::Sub: pseudo parameters, its own variables (intrinsics themselves), ${!Literal} escapes', () => {
    assert.equal(
      resolveIntrinsic({ 'Fn::Sub': '${AWS::AccountId}.dkr.ecr.${AWS::Region}.${AWS::URLSuffix}/repo:tag' }),
      '000000000000.dkr.ecr.us-east-1.amazonaws.com/repo:tag',
    );
    assert.equal(
      resolveIntrinsic({
        'Fn::Sub': [
          's3://${Bucket}/${Key} ${!NotAVariable}',
          { Bucket: { 'Fn::Join': ['-', ['b', { Ref: 'AWS::Region' }]] }, Key: 'k' },
        ],
      }),
      's3://b-us-east-1/k ${NotAVariable}',
    );
  });

  test('Fn::Select over Fn::Split, and Ref of a template parameter with a default', () => {
    assert.equal(resolveIntrinsic({ 'Fn::Select': [1, { 'Fn::Split': ['/', 'a/b/c'] }] }), 'b');
    assert.equal(resolveIntrinsic({ 'Fn::Select': ['0', ['x', 'y']] }), 'x');
    assert.equal(
      resolveIntrinsic({ Ref: 'ModelKey' }, { parameters: { ModelKey: { Type: 'String', Default: 'm.onnx' } } }),
      'm.onnx',
    );
  });

  test('other placeholder values can be given', () => {
    const pseudo = { ...LOCAL_PSEUDO_PARAMETERS, 'AWS::AccountId': '111122223333', 'AWS::Region': 'eu-west-1' };
    assert.equal(
      resolveIntrinsic({ 'Fn::Sub': '${AWS::AccountId}-${AWS::Region}' }, { pseudo }),
      '111122223333-eu-west-1',
    );
  });

  test('what only a deployment knows is a clear UnresolvableError naming the value, where it sits, and what resolves', () => {
    const cases: [unknown, RegExp][] = [
      [{ Ref: 'ModelBucket1234ABCD' }, /\{"Ref":"ModelBucket1234ABCD"\}/],
      [{ 'Fn::GetAtt': ['ModelBucket1234ABCD', 'Arn'] }, /Fn::GetAtt/],
      [{ 'Fn::Sub': 's3://${ModelBucket1234ABCD.Arn}/key' }, /\$\{ModelBucket1234ABCD\.Arn\}/],
      [{ 'Fn::ImportValue': 'SharedModelBucket' }, /Fn::ImportValue/],
      [{ Ref: 'Version' }, /\{"Ref":"Version"\}/],
      [{ 'Fn::Join': ['', [{ Ref: 'AWS::AccountId' }, { Ref: 'AWS::NotificationARNs' }]] }, /AWS::NotificationARNs/],
    ];
    for (const [value, names] of cases) {
      assert.throws(
        () =>
          resolveIntrinsic(value, {
            where: 'environment variable ARCLIGHT_MODEL_URI',
            parameters: { Version: { Type: 'AWS::SSM::Parameter::Value<String>', Default: '/some/parameter' } },
          }),
        (error: unknown) => {
          assert.ok(error instanceof UnresolvableError, String(error));
          assert.match(error.message, names);
          assert.match(error.message, /in environment variable ARCLIGHT_MODEL_URI without deploying/);
          assert.match(error.oneLine(), /resolves Fn::Join, Fn::Sub, .*Ref of AWS::AccountId, AWS::Region/);
          assert.doesNotMatch(error.oneLine(), /\n/);
          return true;
        },
        JSON.stringify(value),
      );
    }
  });
});

/** A cloud assembly written by hand, shaped as aws-cdk-lib writes one (default synthesizer, a Stage nested). */
function writeAssembly(options: { modelUri?: unknown; imageTag?: string } = {}): string {
  const root = tempDir('arclight-assembly-');
  const write = (path: string, content: unknown): void => {
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), typeof content === 'string' ? content : JSON.stringify(content));
  };
  const hash = 'a'.repeat(64);
  const modelHash = 'b'.repeat(64);
  write(`asset.${hash}/Dockerfile`, 'FROM public.ecr.aws/lambda/nodejs:22\nCMD ["app.main"]\n');
  write(`asset.${hash}/app.js`, 'export const main = async () => ({ statusCode: 200 });\n');
  write(`asset.${modelHash}.onnx`, 'model bytes');
  write('Stack.assets.json', {
    version: '55.0.0',
    files: {
      [modelHash]: {
        source: { path: `asset.${modelHash}.onnx`, packaging: 'file' },
        destinations: {
          'current_account-current_region': {
            bucketName: 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}',
            objectKey: `${modelHash}.onnx`,
          },
        },
      },
      ['c'.repeat(64)]: {
        source: { path: 'Stack.template.json', packaging: 'file' },
        destinations: {
          'current_account-current_region': {
            bucketName: 'cdk-hnb659fds-assets-${AWS::AccountId}-${AWS::Region}',
            objectKey: `${'c'.repeat(64)}.json`,
          },
        },
      },
    },
    dockerImages: {
      [hash]: {
        source: { directory: `asset.${hash}`, platform: 'linux/arm64' },
        destinations: {
          'current_account-current_region': {
            repositoryName: 'cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}',
            imageTag: hash,
          },
        },
      },
    },
  });
  const imageUri = {
    'Fn::Sub': `\${AWS::AccountId}.dkr.ecr.\${AWS::Region}.\${AWS::URLSuffix}/cdk-hnb659fds-container-assets-\${AWS::AccountId}-\${AWS::Region}:${options.imageTag ?? hash}`,
  };
  write('Stack.template.json', {
    Resources: {
      Fn: {
        Type: 'AWS::Lambda::Function',
        Properties: {
          Architectures: ['arm64'],
          Code: { ImageUri: imageUri },
          MemorySize: 1769,
          Timeout: 12,
          PackageType: 'Image',
          Environment: {
            Variables: {
              ARCLIGHT_API_NAME: 'digits',
              ARCLIGHT_MODEL_URI: options.modelUri ?? {
                'Fn::Join': [
                  '',
                  [
                    's3://cdk-hnb659fds-assets-',
                    { Ref: 'AWS::AccountId' },
                    '-',
                    { Ref: 'AWS::Region' },
                    `/${modelHash}.onnx`,
                  ],
                ],
              },
              ARCLIGHT_CONFIG: '{"labels":["a"]}',
            },
          },
        },
        Metadata: { 'arclight:api': { apiName: 'digits', compute: 'lambda', architecture: 'arm64' } },
      },
      Plain: {
        Type: 'AWS::Lambda::Function',
        Properties: { Code: { ImageUri: imageUri }, Environment: { Variables: { X: { Ref: 'Unresolvable' } } } },
      },
    },
  });
  write('assembly-Stage/Staged.template.json', {
    Resources: {
      StagedFn: {
        Type: 'AWS::Lambda::Function',
        Properties: { Code: { ImageUri: imageUri }, Environment: { Variables: { ARCLIGHT_API_NAME: 'staged' } } },
        Metadata: { 'arclight:api': { apiName: 'staged', compute: 'lambda', architecture: 'x64' } },
      },
    },
  });
  // A Stage's assets are staged in the top-level assembly; its own asset manifest points up to them.
  write('assembly-Stage/Staged.assets.json', {
    version: '55.0.0',
    files: {},
    dockerImages: {
      [hash]: {
        source: { directory: `../asset.${hash}` },
        destinations: {
          'current_account-current_region': {
            repositoryName: 'cdk-hnb659fds-container-assets-${AWS::AccountId}-${AWS::Region}',
            imageTag: hash,
          },
        },
      },
    },
  });
  write('assembly-Stage/manifest.json', {
    version: '55.0.0',
    artifacts: {
      'Stage-Staged': {
        type: 'aws:cloudformation:stack',
        properties: { templateFile: 'Staged.template.json', stackName: 'Stage-Staged' },
        displayName: 'Stage/Staged',
      },
      'Staged.assets': { type: 'cdk:asset-manifest', properties: { file: 'Staged.assets.json' } },
    },
  });
  write('manifest.json', {
    version: '55.0.0',
    artifacts: {
      'Stack.assets': { type: 'cdk:asset-manifest', properties: { file: 'Stack.assets.json' } },
      Stack: { type: 'aws:cloudformation:stack', properties: { templateFile: 'Stack.template.json' } },
      'assembly-Stage': { type: 'cdk:cloud-assembly', properties: { directoryName: 'assembly-Stage' } },
      Tree: { type: 'cdk:tree', properties: { file: 'tree.json' } },
    },
  });
  return root;
}

describe('readAssembly', () => {
  test('finds each API by its metadata, with its build context, handler, resolved env and the model asset', () => {
    const root = writeAssembly();
    const apis = readAssembly(root);
    assert.deepEqual(
      apis.map((api) => api.apiName),
      ['digits', 'staged'],
      'the plain function (no arclight:api metadata) is not an API, and its env is never resolved',
    );
    const digits = apis[0]!;
    const bucket = 'cdk-hnb659fds-assets-000000000000-us-east-1';
    assert.deepEqual(digits, {
      apiName: 'digits',
      async: false,
      architecture: 'arm64',
      lambdaArchitecture: 'arm64',
      stackName: 'Stack',
      logicalId: 'Fn',
      contextDir: join(root, `asset.${'a'.repeat(64)}`),
      handlerFile: 'app.js',
      handlerExport: 'main',
      environment: {
        ARCLIGHT_API_NAME: 'digits',
        ARCLIGHT_MODEL_URI: `s3://${bucket}/${'b'.repeat(64)}.onnx`,
        ARCLIGHT_CONFIG: '{"labels":["a"]}',
      },
      timeoutSeconds: 12,
      memorySize: 1769,
      assets: [
        {
          path: join(root, `asset.${'b'.repeat(64)}.onnx`),
          bucket,
          key: `${'b'.repeat(64)}.onnx`,
          uri: `s3://${bucket}/${'b'.repeat(64)}.onnx`,
        },
      ],
    });
    assert.equal(readFileSync(digits.assets[0]!.path, 'utf8'), 'model bytes');
    const staged = apis[1]!;
    assert.equal(staged.stackName, 'Stage-Staged');
    assert.equal(staged.architecture, 'x64');
    assert.equal(staged.lambdaArchitecture, 'x86_64', "Lambda's default architecture");
    assert.equal(staged.contextDir, digits.contextDir, "the nested manifest's ../asset.<hash>, resolved");
    assert.deepEqual(staged.assets, [], 'an env that names no asset has none');
    assert.equal(staged.timeoutSeconds, 3, "Lambda's default timeout");
  });

  test('the placeholders resolve the asset manifest and the template alike, so env and S3 keys agree', () => {
    const pseudo = { ...LOCAL_PSEUDO_PARAMETERS, 'AWS::AccountId': '111122223333', 'AWS::Region': 'eu-west-1' };
    const [digits] = readAssembly(writeAssembly(), pseudo);
    assert.equal(digits!.assets.length, 1);
    assert.equal(digits!.assets[0]!.bucket, 'cdk-hnb659fds-assets-111122223333-eu-west-1');
    assert.equal(digits!.environment['ARCLIGHT_MODEL_URI'], digits!.assets[0]!.uri);
  });

  test('a model URI the app does not deploy is kept as it is, with no asset', () => {
    const [digits] = readAssembly(writeAssembly({ modelUri: 's3://my-models/digits.onnx' }));
    assert.equal(digits!.environment['ARCLIGHT_MODEL_URI'], 's3://my-models/digits.onnx');
    assert.deepEqual(digits!.assets, []);
  });

  test('an env var referring to a resource is a clear error naming the API, stack, function and variable', () => {
    const root = writeAssembly({
      modelUri: { 'Fn::Join': ['', ['s3://', { Ref: 'ModelBucketF00D' }, '/digits.onnx']] },
    });
    assert.throws(
      () => readAssembly(root),
      (error: unknown) => {
        assert.ok(error instanceof UnresolvableError);
        assert.match(
          error.message,
          /^cannot resolve \{"Ref":"ModelBucketF00D"\} in environment variable ARCLIGHT_MODEL_URI of the function of API 'digits' \(Stack\/Fn\) without deploying$/,
        );
        return true;
      },
    );
  });

  test('an image that is not an asset of the assembly, and a directory that is no assembly, are AssemblyErrors', () => {
    assert.throws(
      () => readAssembly(writeAssembly({ imageTag: 'f'.repeat(64) })),
      (error: unknown) => {
        assert.ok(error instanceof AssemblyError);
        assert.match(error.message, /the image .*:f{64} of API 'digits' \(Stack\) is not a Docker image asset/);
        return true;
      },
    );
    assert.throws(
      () => readAssembly(tempDir('arclight-empty-')),
      (error: unknown) => {
        assert.ok(error instanceof AssemblyError);
        assert.match(error.oneLine(), /is not a cloud assembly \(no manifest\.json\)\. Pass the output directory/);
        return true;
      },
    );
  });
});

describe('synthesize', () => {
  /** A project folder with cdk.json and cdk.context.json, as the CDK CLI reads them. */
  function project(): string {
    const dir = tempDir('arclight-project-');
    writeFileSync(join(dir, 'cdk.json'), JSON.stringify({ app: 'unused', context: { 'my:flag': 42 } }));
    writeFileSync(join(dir, 'cdk.context.json'), JSON.stringify({ 'availability-zones:123:us-east-1': ['a'] }));
    return dir;
  }

  test('runs the app through a shell in the project, with CDK_OUTDIR and the context in CDK_CONTEXT_JSON', async () => {
    const cwd = project();
    const script = [
      "const fs = require('node:fs');",
      "fs.writeFileSync(process.env.CDK_OUTDIR + '/manifest.json', '{}');",
      "fs.writeFileSync(process.env.CDK_OUTDIR + '/seen.json', JSON.stringify({ cwd: process.cwd(), context: JSON.parse(process.env.CDK_CONTEXT_JSON) }));",
    ].join(' ');
    const out = await synthesize(`node -e "${script}"`, 'out', { cwd });
    assert.equal(out, join(cwd, 'out'));
    const seen = JSON.parse(readFileSync(join(out, 'seen.json'), 'utf8')) as {
      cwd: string;
      context: Record<string, unknown>;
    };
    assert.equal(seen.cwd, cwd);
    assert.equal(seen.context['my:flag'], 42, "cdk.json's context");
    assert.deepEqual(seen.context['availability-zones:123:us-east-1'], ['a'], "cdk.context.json's context");
    assert.equal(seen.context['aws:cdk:enable-asset-metadata'], true, "the CLI's own context");
  });

  test('an app that fails is a one-line SynthError carrying its error message', async () => {
    const cwd = project();
    const app = `node -e "console.log('synthesizing'); throw new Error('RealtimeApi digits has invalid props')"`;
    await assert.rejects(synthesize(app, 'out', { cwd }), (error: unknown) => {
      assert.ok(error instanceof SynthError);
      assert.match(
        error.message,
        /^the CDK app 'node -e .*' exited with code 1: Error: RealtimeApi digits has invalid props$/,
      );
      assert.match(error.oneLine(), /Run with --verbose for its output$/);
      assert.doesNotMatch(error.oneLine(), /\n/);
      return true;
    });
  });

  test('an app that writes no assembly (or only the old one) is a SynthError', async () => {
    const cwd = project();
    mkdirSync(join(cwd, 'out'));
    writeFileSync(join(cwd, 'out', 'manifest.json'), '{}');
    await assert.rejects(synthesize('node -e ""', 'out', { cwd }), /the CDK app 'node -e ""' wrote no cloud assembly/);
  });

  test("failureLine: the error's message block on one line, without its stack; else the last line", () => {
    const output = [
      '/work/app/bin/app.ts:12',
      '    throw new Error(...)',
      '',
      "Error: RealtimeApi 'ArclightExamples/digits' has invalid props:",
      '  - memorySize 64 MB is outside 128–10240 MB',
      '  - timeout 40 s is above API Gateway’s 29 s',
      '    at new RealtimeApi (/work/lib/constructs/realtime-api.ts:99:13)',
      '    at buildExampleApp (/work/bin/app.ts:12:3)',
      '',
      'Node.js v20.20.2',
    ].join('\n');
    assert.equal(
      failureLine(output),
      "Error: RealtimeApi 'ArclightExamples/digits' has invalid props: - memorySize 64 MB is outside 128–10240 MB - timeout 40 s is above API Gateway’s 29 s",
    );
    assert.equal(
      failureLine('ValidationError: Cannot find asset at /x\n    at y'),
      'ValidationError: Cannot find asset at /x',
    );
    assert.equal(failureLine('something went wrong\nreally\n\nNode.js v20.20.2\n'), 'really');
    const nag = [
      'lib/constructs/realtime-api.ts:174:5',
      'ERROR The API does not implement authorization. (AwsSolutions)',
      '   ArclightExamples/digits/DefaultRoute/Resource aws-cdk-lib.aws_apigatewayv2.CfnRoute',
      "   Acknowledge with 'AwsSolutions::AwsSolutions-APIG4'",
      '',
      'ERROR The API does not implement authorization. (AwsSolutions)',
      '   ArclightExamples/mobilenet/DefaultRoute/Resource aws-cdk-lib.aws_apigatewayv2.CfnRoute',
      'node:internal/modules/run_main:123',
      '    triggerUncaughtException(',
      '    ^',
      '',
      '«ValidationFailed» Validation failed. A copy of this report can be found in: /tmp/out/validation-report.json',
      '    ...App.synth in aws-cdk-lib...',
      '    at <anonymous> (/work/main/bin/app.ts:31:25)',
      '',
      'Node.js v20.20.2',
    ].join('\n');
    assert.equal(
      failureLine(nag),
      '«ValidationFailed» Validation failed. A copy of this report can be found in: /tmp/out/validation-report.json (2 error annotations; the first: The API does not implement authorization. (AwsSolutions) at ArclightExamples/digits/DefaultRoute/Resource)',
    );
    assert.equal(failureLine(''), 'it printed nothing');
  });
});
