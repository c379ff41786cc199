/**
 * The example CDK app (bin/app.ts) synthesized as `cdk synth` would: stack ArclightExamples with the digits API
 * (digits predictor, arm64, 1769 MB) and the mobilenet API (OIP default predictor, x86_64, 3008 MB) on Lambda,
 * mobilenet-gpu on a SageMaker ml.g5.xlarge endpoint and digits-ecs on ECS g5.xlarge (both the CUDA image), and cdk-nag's
 * AwsSolutions pack passing with only reasoned acknowledgements. The same app plus one non-compliant bucket fails
 * synth naming the rule, so the check is live.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Stack, Validations, type App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { buildExampleApp } from '../../bin/app.js';
import { readAssembly, readContainerApis } from '../../lib/cli/deploy/assembly.js';
import { ENV } from '../../lib/contract.js';
import { API_METADATA_KEY, ApiAuth, ModelSource, RealtimeApi } from '../../lib/index.js';
import { flatten, resourcesOf, sha256, tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX, MOBILENET_ONNX } from '../helpers.js';

useScratchTmpdir();

interface ValidationReport {
  pluginReports: {
    pluginName: string;
    conclusion: string;
    violations: { ruleName: string; violatingConstructs: { constructPath: string }[] }[];
  }[];
}

let app: App;
let stack: Stack;
let template: Template;
let synthMs = 0;

before(() => {
  const started = performance.now();
  ({ app, stack } = buildExampleApp(tempApp()));
  app.synth();
  synthMs = performance.now() - started;
  template = Template.fromStack(stack);
});

function report(outdir: string): ValidationReport {
  return JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as ValidationReport;
}

/** Every validation acknowledgement recorded in the tree: rule id → reasons. */
function acknowledgements(root: IConstruct): Map<string, string[]> {
  const found = new Map<string, string[]>();
  for (const construct of root.node.findAll()) {
    for (const entry of construct.node.metadata) {
      if (entry.type !== Validations.ACKNOWLEDGED_RULES_METADATA_KEY) continue;
      for (const [id, reason] of Object.entries(entry.data as Record<string, string>)) {
        found.set(id, [...(found.get(id) ?? []), reason]);
      }
    }
  }
  return found;
}

describe('the example app', () => {
  test('synthesizes stack ArclightExamples with the digits and mobilenet APIs on Lambda', (t) => {
    t.diagnostic(`buildExampleApp + synth: ${synthMs.toFixed(0)} ms`);
    assert.equal(stack.stackName, 'ArclightExamples');
    assert.deepEqual(
      app.node.children.filter(Stack.isStack).map((c) => c.node.id),
      ['ArclightExamples', 'ArclightAsyncExamples'],
    );
    // The APIs' functions; CDK's custom resource provider (ECS's service-linked role) is not one of them.
    const functions = resourcesOf(template, 'AWS::Lambda::Function')
      .filter(([id]) => !id.startsWith('AWS679f53fac002430cb0da5b7982bd2287'))
      .map(([, props]) => ({
        props,
        env: (props['Environment'] as { Variables: Record<string, unknown> }).Variables,
      }));
    const want = [
      { name: 'digits', arch: 'arm64', memory: 1769, model: DIGITS_ONNX },
      { name: 'mobilenet', arch: 'x86_64', memory: 3008, model: MOBILENET_ONNX },
    ];
    assert.deepEqual(
      functions.map((f) => f.env[ENV.apiName]).sort(),
      want.map((w) => w.name),
    );
    for (const { name, arch, memory, model } of want) {
      const { props, env } = functions.find((f) => f.env[ENV.apiName] === name)!;
      assert.equal(props['PackageType'], 'Image', name);
      assert.deepEqual(props['Architectures'], [arch], name);
      assert.equal(props['MemorySize'], memory, name);
      assert.equal(env[ENV.modelSha256], sha256(model), name);
      assert.match(flatten(env[ENV.modelUri]), /^s3:\/\/cdk-hnb659fds-assets-.*\.onnx$/, name);
    }
    const metadata = Object.values(template.findResources('AWS::Lambda::Function')).flatMap(
      (r) => (r as { Metadata?: Record<string, unknown> }).Metadata?.[API_METADATA_KEY] ?? [],
    );
    assert.deepEqual(
      metadata.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { apiName: 'digits', compute: 'lambda', architecture: 'arm64' },
        { apiName: 'mobilenet', compute: 'lambda', architecture: 'x64' },
      ],
    );
    assert.equal(resourcesOf(template, 'AWS::ApiGatewayV2::Api').length, 3, 'digits, mobilenet, digits-ecs');
    assert.equal(resourcesOf(template, 'AWS::ApiGateway::RestApi').length, 1, 'mobilenet-gpu');
    assert.deepEqual(
      Object.keys(template.toJSON()['Outputs'] as object)
        .filter((k) => /Url/.test(k))
        .map((k) => k.replace(/Url.*$/, ''))
        .sort(),
      ['digits', 'digitsecs', 'mobilenet', 'mobilenetgpu'],
    );
  });

  test('mobilenet-gpu: a SageMaker ml.g5.xlarge endpoint serving MobileNet with CUDA first', () => {
    const [, model] = resourcesOf(template, 'AWS::SageMaker::Model', 'mobilenetgpu')[0]!;
    const env = (model['PrimaryContainer'] as { Environment: Record<string, unknown> }).Environment;
    assert.equal(env[ENV.apiName], 'mobilenet-gpu');
    assert.equal(env[ENV.modelSha256], sha256(MOBILENET_ONNX));
    assert.equal(env[ENV.executionProviders], 'cuda,cpu');
    const [, config] = resourcesOf(template, 'AWS::SageMaker::EndpointConfig', 'mobilenetgpu')[0]!;
    assert.equal((config['ProductionVariants'] as { InstanceType: string }[])[0]!.InstanceType, 'ml.g5.xlarge');
    assert.equal(resourcesOf(template, 'AWS::SageMaker::Endpoint', 'mobilenetgpu').length, 1);
    const metadata = Object.values(template.findResources('AWS::SageMaker::Model')).map(
      (r) => (r as { Metadata: Record<string, unknown> }).Metadata[API_METADATA_KEY],
    );
    assert.deepEqual(metadata, [{ apiName: 'mobilenet-gpu', compute: 'sagemaker', architecture: 'x64', gpu: true }]);
  });

  test('digits-ecs: the digits predictor on ECS g5.xlarge, one GPU per task', () => {
    const [, launchTemplate] = resourcesOf(template, 'AWS::EC2::LaunchTemplate', 'digitsecs')[0]!;
    assert.equal((launchTemplate['LaunchTemplateData'] as { InstanceType: string }).InstanceType, 'g5.xlarge');
    const [, taskDefinition] = resourcesOf(template, 'AWS::ECS::TaskDefinition', 'digitsecs')[0]!;
    const container = (taskDefinition['ContainerDefinitions'] as Record<string, unknown>[])[0]!;
    assert.deepEqual(container['ResourceRequirements'], [{ Type: 'GPU', Value: '1' }]);
    const env = Object.fromEntries(
      (container['Environment'] as { Name: string; Value: unknown }[]).map((p) => [p.Name, flatten(p.Value)]),
    );
    assert.equal(env[ENV.apiName], 'digits-ecs');
    assert.equal(env[ENV.modelSha256], sha256(DIGITS_ONNX));
    const metadata = Object.values(template.findResources('AWS::ECS::TaskDefinition')).map(
      (r) => (r as { Metadata: Record<string, unknown> }).Metadata[API_METADATA_KEY],
    );
    assert.deepEqual(metadata, [{ apiName: 'digits-ecs', compute: 'ecs', architecture: 'x64', gpu: true }]);
  });

  test('arclight dev finds the Lambda-backed APIs, and the container ones with what their images run', () => {
    assert.deepEqual(
      readAssembly(app.outdir)
        .map((api) => api.apiName)
        .sort(),
      ['digits', 'digits-async', 'mobilenet'],
    );
    assert.deepEqual(
      readAssembly(app.outdir)
        .filter((api) => api.async)
        .map((api) => [api.apiName, api.stackName, api.handlerExport]),
      [['digits-async', 'ArclightAsyncExamples', 'handler']],
    );
    const containers = readContainerApis(app.outdir).sort((a, b) => a.apiName.localeCompare(b.apiName));
    assert.deepEqual(
      containers.map(({ apiName, compute, gpu, stackName, serverFile, imageDir }) => ({
        apiName,
        compute,
        gpu,
        stackName,
        serverFile,
        imageDir,
      })),
      [
        {
          apiName: 'digits-ecs',
          compute: 'ecs',
          gpu: true,
          stackName: 'ArclightExamples',
          serverFile: 'server.mjs',
          imageDir: '/opt/arclight',
        },
        {
          apiName: 'mobilenet-async',
          compute: 'sagemaker',
          gpu: true,
          stackName: 'ArclightAsyncExamples',
          serverFile: 'server.mjs',
          imageDir: '/opt/arclight',
        },
        {
          apiName: 'mobilenet-gpu',
          compute: 'sagemaker',
          gpu: true,
          stackName: 'ArclightExamples',
          serverFile: 'server.mjs',
          imageDir: '/opt/arclight',
        },
      ],
    );
    const [digitsEcs, mobilenetAsync, mobilenetGpu] = containers;
    // The SageMaker async API: dev serves its async routes only, with the async settings it was synthesized with.
    assert.deepEqual(
      containers.filter((api) => api.async).map((api) => api.apiName),
      ['mobilenet-async'],
    );
    assert.equal(mobilenetAsync!.environment['ARCLIGHT_ASYNC_MAX_BODY_BYTES'], String(2 ** 30));
    // The image's ENV (the predictor named by its path in the image), then the template's (intrinsics resolved).
    assert.equal(digitsEcs!.imageEnvironment['ARCLIGHT_PREDICTOR'], '/opt/arclight/predictor.mjs');
    assert.equal(mobilenetGpu!.imageEnvironment['ARCLIGHT_PREDICTOR'], undefined);
    assert.equal(digitsEcs!.environment['AWS_REGION'], 'us-east-1');
    assert.equal(mobilenetGpu!.environment['ARCLIGHT_EXECUTION_PROVIDERS'], 'cuda,cpu');
    for (const api of containers) {
      assert.equal(api.assets.length, 1, api.apiName);
      assert.equal(api.environment['ARCLIGHT_MODEL_URI'], api.assets[0]!.uri);
      assert.match(api.assets[0]!.uri, /^s3:\/\/cdk-hnb659fds-assets-000000000000-us-east-1\/[0-9a-f]{64}\.onnx$/);
    }
  });

  test('builds one image per API: digits with its predictor for arm64, mobilenet with the default for amd64', () => {
    const manifest = JSON.parse(readFileSync(join(app.outdir, 'ArclightExamples.assets.json'), 'utf8')) as {
      dockerImages: Record<string, { source: { directory: string; platform: string } }>;
    };
    const images = Object.values(manifest.dockerImages);
    const isLambda = (image: (typeof images)[number]) =>
      existsSync(join(app.outdir, image.source.directory, 'index.mjs.map'));
    // The container images: the CUDA one for both GPU APIs, digits-ecs with its predictor bundled beside the server.
    const containers = images
      .filter((image) => !isLambda(image))
      .map((image) => {
        const dir = join(app.outdir, image.source.directory);
        const dockerfile = readFileSync(join(dir, 'Dockerfile'), 'utf8');
        assert.match(dockerfile, /FROM nvidia\/cuda:12[^\n]*cudnn-runtime/);
        assert.match(dockerfile, /ONNXRUNTIME_NODE_INSTALL=cuda12/);
        return `${image.source.platform} ${existsSync(join(dir, 'predictor.mjs'))}`;
      })
      .sort();
    assert.deepEqual(containers, ['linux/amd64 false', 'linux/amd64 true']);
    const platforms = images
      .filter(isLambda)
      .map((image) => {
        const map = JSON.parse(readFileSync(join(app.outdir, image.source.directory, 'index.mjs.map'), 'utf8')) as {
          sources: string[];
        };
        return `${image.source.platform} ${map.sources.some((s) => s.endsWith('functions/digits/predictor.ts'))}`;
      })
      .sort();
    assert.deepEqual(platforms, ['linux/amd64 false', 'linux/arm64 true']);
  });

  test('passes cdk-nag AwsSolutions: synth did not throw and the report has no violation', () => {
    const { pluginReports } = report(app.outdir);
    for (const plugin of pluginReports) {
      assert.deepEqual(
        plugin.violations.map((v) => v.ruleName),
        [],
        `${plugin.pluginName} reported violations`,
      );
    }
  });

  test('acknowledges only the findings the design explains, each with its reason', () => {
    const acks = acknowledgements(app);
    // Ours: the AwsSolutions ones (aws-cdk-lib acknowledges CloudFormation-Validate findings of its own, e.g. on flow logs).
    const ours = [...acks].filter(([id]) => id.startsWith('Annotation::AwsSolutions-'));
    const counts = Object.fromEntries(
      ours.map(([id, reasons]) => [id.replace(/^Annotation::AwsSolutions-/, ''), reasons.length]),
    );
    assert.deepEqual(counts, {
      // Every API is public in the example (ApiAuth.none()): one per API.
      APIG4: 6,
      // The Lambda functions' roles (log stream ARNs): digits, mobilenet, digits-async's front and worker,
      // mobilenet-async's front.
      IAM5: 5,
      // digits-async: its roles' grants on one prefix each of its own bucket (front and worker), the access log
      // bucket (not logged into itself) and the dead-letter queue (none of its own).
      ...Object.fromEntries(
        ['requests', 'uploads', 'results'].map((prefix) => [
          `IAM5[Resource::<digitsasyncStorageBucket1D6459C1.Arn>/${prefix}/*]`,
          2,
        ]),
      ),
      // mobilenet-async: the front's and the endpoint role's grants on the prefixes of its own bucket (the endpoint
      // reads requests and uploads, writes its output and failure prefixes; the front reads results).
      ...Object.fromEntries(
        [
          ['requests', 2],
          ['uploads', 2],
          ['results', 1],
          ['results/sagemaker/output', 1],
          ['results/sagemaker/failures', 1],
        ].map(([prefix, count]) => [`IAM5[Resource::<mobilenetasyncStorageBucketAA29F1B6.Arn>/${prefix}/*]`, count]),
      ),
      // The access log buckets of the two async APIs (not logged into themselves).
      S1: 2,
      SQS3: 1,
      // ecr:GetAuthorizationToken (the SageMaker execution roles of mobilenet-gpu and mobilenet-async, ECS execution
      // role) and the ECS agent's calls (instance role).
      'IAM5[Resource::*]': 4,
      'IAM5[Action::ecs:Submit*]': 1,
      // The AWS-managed policies AWS documents for API Gateway's account-wide logging role (mobilenet-gpu's REST API)
      // and CDK's AwsCustomResource provider (digits-ecs: ECS's service-linked role); each on its one role.
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]': 1,
      'IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]': 1,
      // mobilenet-gpu's REST API: WAF, execution logging, Cognito.
      APIG3: 1,
      APIG6: 1,
      COG4: 1,
      // digits-ecs: capacity provider notifications, env vars of the contract, the internal ALB's access logs.
      AS3: 1,
      ECS2: 1,
      ELB2: 1,
    });
    for (const [id, reasons] of ours) {
      for (const reason of reasons) assert.ok(reason.length >= 40, `${id} has a real reason: '${reason}'`);
    }
  });
});

describe('the cdk-nag check is live', () => {
  test('the example app plus a bucket without SSL enforcement fails synth naming the AwsSolutions rules', () => {
    const { app: failing, stack: examples } = buildExampleApp(tempApp());
    new s3.Bucket(examples, 'Unsafe');
    // An API behind IAM needs no authorizer acknowledgement: it must not show up among the violations.
    new RealtimeApi(examples, 'signed', { model: ModelSource.fromAsset(DIGITS_ONNX), auth: ApiAuth.iam() });
    // Synth prints the report (one block per rule) before throwing; keep it out of the test output, but read it.
    const printed: string[] = [];
    const original = console.error;
    console.error = (...args: unknown[]) => void printed.push(args.map(String).join(' '));
    try {
      assert.throws(() => failing.synth(), /Validation failed/);
    } finally {
      console.error = original;
    }
    assert.match(printed.join('\n'), /ArclightExamples\/Unsafe\/Resource[\s\S]*AwsSolutions-S10/);
    const { pluginReports } = report(failing.outdir);
    const nag = pluginReports.find((p) => p.pluginName === 'AwsSolutions');
    assert.ok(nag, `plugins: ${pluginReports.map((p) => p.pluginName).join()}`);
    assert.equal(nag.conclusion, 'failure');
    const rules = nag.violations.map((v) => v.ruleName).sort();
    assert.ok(rules.includes('AwsSolutions-S10'), `rules: ${rules.join()}`);
    const paths = nag.violations.flatMap((v) => v.violatingConstructs.map((c) => c.constructPath));
    assert.deepEqual([...new Set(paths)], ['ArclightExamples/Unsafe/Resource'], 'only the bucket is at fault');
  });
});
