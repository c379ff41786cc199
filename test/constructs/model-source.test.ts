/**
 * ModelSource: each factory bound to a real role in a real stack, the template read back. A bound source names one
 * S3 object (bucket, key, URI), grants s3:GetObject on exactly that object and nothing broader, and carries the
 * sha256 the runtime will verify. Bad sources become problems reported with the RealtimeApi's others.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { ModelSource, RealtimeApi, type ModelSourceConfig } from '../../lib/index.js';
import {
  assertNoBroadS3Grant,
  assertOneProblem,
  flatten,
  objectArnOf,
  policyStatements,
  sha256,
  tempApp,
  useScratchTmpdir,
} from '../cdk-helpers.js';
import { DIGITS_ONNX, MOBILENET_ONNX } from '../helpers.js';

useScratchTmpdir();

const SHA = '0123456789abcdef'.repeat(4);

interface Bound {
  readonly stack: Stack;
  readonly config: ModelSourceConfig;
  readonly template: Template;
}

/** Binds a source in a fresh stack to a Lambda role, as RealtimeApi does. */
function bind(source: (stack: Stack) => ModelSource): Bound {
  const stack = new Stack(tempApp(), 'S');
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const config = source(stack).bind(stack, role);
  return { stack, config, template: Template.fromStack(stack) };
}

/** The statements granting S3 actions, as plain data. */
function s3Grants(template: Template): { actions: string[]; resources: string[] }[] {
  return policyStatements(template)
    .filter((s) => s.actions.some((a) => /^s3:/i.test(a)))
    .map(({ actions, resources }) => ({ actions, resources }));
}

function tempFile(name: string, bytes: Uint8Array | string): string {
  const path = join(mkdtempSync(join(tmpdir(), 'model-')), name);
  writeFileSync(path, bytes);
  return path;
}

describe('ModelSource.fromAsset', () => {
  test('uploads the file as an asset, carries its sha256 and size, grants GetObject on that object only', () => {
    const { stack, config, template } = bind(() => ModelSource.fromAsset(MOBILENET_ONNX));
    assert.deepEqual(config.problems, []);
    assert.equal(config.sha256, sha256(MOBILENET_ONNX));
    assert.equal(config.sizeBytes, statSync(MOBILENET_ONNX).size);
    const uri = flatten(stack.resolve(config.uri));
    assert.match(uri, /^s3:\/\/cdk-hnb659fds-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}\/[0-9a-f]{64}\.onnx$/);
    assert.equal(flatten(stack.resolve(config.key)), uri.split('/').pop());
    assert.deepEqual(s3Grants(template), [{ actions: ['s3:GetObject'], resources: [objectArnOf(uri)] }]);
    assertNoBroadS3Grant(template);
  });

  test('reports a missing file, a directory and an empty file', () => {
    const missing = bind(() => ModelSource.fromAsset('models/nope.onnx')).config;
    assert.deepEqual(missing.problems, ['model file models/nope.onnx does not exist']);
    const dir = mkdtempSync(join(tmpdir(), 'model-dir-'));
    mkdirSync(join(dir, 'model.onnx'));
    assert.deepEqual(bind(() => ModelSource.fromAsset(join(dir, 'model.onnx'))).config.problems, [
      `model file ${join(dir, 'model.onnx')} does not exist`,
    ]);
    const empty = tempFile('empty.onnx', '');
    assert.deepEqual(bind(() => ModelSource.fromAsset(empty)).config.problems, [`model file ${empty} is empty`]);
  });

  test('a missing model file fails the RealtimeApi with that message', () => {
    assertOneProblem(
      () => new RealtimeApi(new Stack(tempApp(), 'S'), 'api', { model: ModelSource.fromAsset('models/nope.onnx') }),
      /^model file models\/nope\.onnx does not exist$/,
    );
  });

  test('the same file always gives the same object key and hash', () => {
    const a = bind(() => ModelSource.fromAsset(DIGITS_ONNX));
    const b = bind(() => ModelSource.fromAsset(tempFile('copy.onnx', new Uint8Array(statSync(DIGITS_ONNX).size))));
    const c = bind(() => ModelSource.fromAsset(DIGITS_ONNX));
    assert.equal(flatten(a.stack.resolve(a.config.key)), flatten(c.stack.resolve(c.config.key)));
    assert.equal(a.config.sha256, c.config.sha256);
    assert.notEqual(a.config.sha256, b.config.sha256);
  });
});

describe('ModelSource.fromBucket', () => {
  test('an imported bucket: the URI names the object, GetObject on exactly it, the hash lower-cased', () => {
    const { stack, config, template } = bind((s) =>
      ModelSource.fromBucket(s3.Bucket.fromBucketName(s, 'Models', 'my-models'), 'team/a/model v1.onnx', {
        sha256: SHA.toUpperCase(),
        sizeBytes: 1234,
      }),
    );
    assert.deepEqual(config.problems, []);
    assert.equal(stack.resolve(config.uri), 's3://my-models/team/a/model v1.onnx');
    assert.equal(config.key, 'team/a/model v1.onnx');
    assert.equal(config.sha256, SHA);
    assert.equal(config.sizeBytes, 1234);
    assert.deepEqual(s3Grants(template), [
      { actions: ['s3:GetObject'], resources: ['arn:{Ref:AWS::Partition}:s3:::my-models/team/a/model v1.onnx'] },
    ]);
    assertNoBroadS3Grant(template);
  });

  test('a bucket defined in the same stack: GetObject on its ARN plus the key, not bucket/*', () => {
    const { stack, config, template } = bind((s) =>
      ModelSource.fromBucket(new s3.Bucket(s, 'Models', { enforceSSL: true }), 'model.onnx'),
    );
    const bucketId = Object.keys(template.findResources('AWS::S3::Bucket'))[0]!;
    assert.equal(flatten(stack.resolve(config.uri)), `s3://{Ref:${bucketId}}/model.onnx`);
    assert.equal(config.sha256, undefined);
    assert.deepEqual(
      s3Grants(template).find((g) => g.actions.includes('s3:GetObject')),
      {
        actions: ['s3:GetObject'],
        resources: [`{GetAtt:${bucketId}.Arn}/model.onnx`],
      },
    );
    // The bucket's own SSL-only policy denies on bucket/*; only Allow statements are grants.
    const allows = policyStatements(template).filter(
      (s) => s.effect === 'Allow' && s.actions.some((a) => /^s3:/.test(a)),
    );
    assert.equal(allows.length, 1);
  });

  test('reports a sha256 that is not 64 hex digits', () => {
    const { config } = bind((s) =>
      ModelSource.fromBucket(s3.Bucket.fromBucketName(s, 'M', 'my-models'), 'm.onnx', { sha256: 'abc123' }),
    );
    assert.deepEqual(config.problems, ["sha256 'abc123' is not 64 hex digits"]);
  });

  test('reports a key that is an IAM wildcard pattern rather than one object', () => {
    for (const key of ['models/*', '*', 'model-?.onnx']) {
      const { config } = bind((s) => ModelSource.fromBucket(s3.Bucket.fromBucketName(s, 'M', 'my-models'), key));
      assert.equal(config.problems.length, 1, key);
      assert.match(config.problems[0]!, /wildcard/, key);
    }
  });
});

describe('ModelSource.fromS3Uri', () => {
  test('a well-formed URI: the bucket and key it names, GetObject on exactly that object', () => {
    const { stack, config, template } = bind(() =>
      ModelSource.fromS3Uri('s3://my.models-2024/a/b/c.onnx', { sha256: SHA, sizeBytes: 42 }),
    );
    assert.deepEqual(config.problems, []);
    assert.equal(stack.resolve(config.uri), 's3://my.models-2024/a/b/c.onnx');
    assert.equal(stack.resolve(config.bucket.bucketName), 'my.models-2024');
    assert.equal(config.key, 'a/b/c.onnx');
    assert.equal(config.sha256, SHA);
    assert.deepEqual(s3Grants(template), [
      { actions: ['s3:GetObject'], resources: ['arn:{Ref:AWS::Partition}:s3:::my.models-2024/a/b/c.onnx'] },
    ]);
  });

  test('a malformed URI is reported, and nothing is granted', () => {
    for (const bad of [
      'https://my-models.s3.amazonaws.com/model.onnx',
      's3://my-models',
      's3://my-models/',
      's3:///model.onnx',
      's3://My_Models/model.onnx',
      's3://ab/model.onnx',
      'my-models/model.onnx',
    ]) {
      const { config, template } = bind(() => ModelSource.fromS3Uri(bad));
      assert.deepEqual(config.problems, [`model URI '${bad}' is not a valid S3 URI (s3://bucket/key)`], bad);
      assert.deepEqual(s3Grants(template), [], bad);
    }
  });

  test('a malformed URI fails the RealtimeApi with that message', () => {
    assertOneProblem(
      () => new RealtimeApi(new Stack(tempApp(), 'S'), 'api', { model: ModelSource.fromS3Uri('s3:/x/y') }),
      /^model URI 's3:\/x\/y' is not a valid S3 URI \(s3:\/\/bucket\/key\)$/,
    );
  });

  test('a wildcard key is reported (it would grant every matching object)', () => {
    const { config } = bind(() => ModelSource.fromS3Uri('s3://my-models/*'));
    assert.equal(config.problems.length, 1);
    assert.match(config.problems[0]!, /wildcard/);
  });
});

describe('the broad-grant check itself', () => {
  test('catches bucket-wide and wildcard grants (so its silence above means something)', () => {
    for (const grant of [
      (b: s3.IBucket, r: iam.IGrantable) => b.grantRead(r),
      (b: s3.IBucket, r: iam.IGrantable) => b.grantRead(r, 'models/*'),
      (_: s3.IBucket, r: iam.IGrantable) =>
        r.grantPrincipal.addToPrincipalPolicy(new iam.PolicyStatement({ actions: ['s3:*'], resources: ['*'] })),
    ]) {
      const stack = new Stack(tempApp(), 'S');
      const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
      grant(s3.Bucket.fromBucketName(stack, 'B', 'my-models'), role);
      assert.throws(() => assertNoBroadS3Grant(Template.fromStack(stack)), assert.AssertionError);
    }
  });
});
