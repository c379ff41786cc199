/**
 * The example CDK app (bin/app.ts) synthesized as `cdk synth` would: stack ArclightExamples with the digits API
 * (digits predictor, arm64, 1769 MB) and the mobilenet API (OIP default predictor, x86_64, 3008 MB), and cdk-nag's
 * AwsSolutions pack passing with only reasoned acknowledgements. The same app plus one non-compliant bucket fails
 * synth naming the rule, so the check is live.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Stack, Validations, type App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { IConstruct } from 'constructs';
import { buildExampleApp } from '../../bin/app.js';
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
  test('synthesizes stack ArclightExamples with the digits and mobilenet APIs', (t) => {
    t.diagnostic(`buildExampleApp + synth: ${synthMs.toFixed(0)} ms`);
    assert.equal(stack.stackName, 'ArclightExamples');
    assert.deepEqual(
      app.node.children.filter(Stack.isStack).map((c) => c.node.id),
      ['ArclightExamples'],
    );
    const functions = resourcesOf(template, 'AWS::Lambda::Function').map(([, props]) => ({
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
    const metadata = Object.values(template.findResources('AWS::Lambda::Function')).map(
      (r) => (r as { Metadata: Record<string, unknown> }).Metadata[API_METADATA_KEY],
    );
    assert.deepEqual(
      metadata.sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b))),
      [
        { apiName: 'digits', compute: 'lambda', architecture: 'arm64' },
        { apiName: 'mobilenet', compute: 'lambda', architecture: 'x64' },
      ],
    );
    assert.equal(resourcesOf(template, 'AWS::ApiGatewayV2::Api').length, 2);
    assert.equal(Object.keys(template.toJSON()['Outputs'] as object).filter((k) => /Url/.test(k)).length, 2);
  });

  test('builds one image per API: digits with its predictor for arm64, mobilenet with the default for amd64', () => {
    const manifest = JSON.parse(readFileSync(join(app.outdir, 'ArclightExamples.assets.json'), 'utf8')) as {
      dockerImages: Record<string, { source: { directory: string; platform: string } }>;
    };
    const platforms = Object.values(manifest.dockerImages)
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
    assert.deepEqual([...acks.keys()].sort(), ['Annotation::AwsSolutions-APIG4', 'Annotation::AwsSolutions-IAM5']);
    for (const [id, reasons] of acks) {
      assert.equal(reasons.length, 2, `${id}: once per API`);
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
