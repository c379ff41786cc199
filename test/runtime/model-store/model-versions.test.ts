/**
 * Versioned models against s3rver (real AWS SDK) and a local folder: the highest numbered folder is chosen, a pinned
 * version is honoured, the sha256 sidecar is checked, and every malformed layout is one clear StartupError.
 * Then the runtime's reload on the same layout: swap, version header and OIP `model_version`, pinned-version routes,
 * a refused corrupt version.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { resolveModelVersion } from '../../../lib/runtime/model-store/model-versions.js';
import type { Runtime } from '../../../lib/runtime/runtime.js';
import { linearDigitsModel } from '../../fixtures/linear-digits.js';
import {
  DIGITS_ONNX,
  assertStartupError,
  contractError,
  digitsInferBody,
  loadDigitsExpected,
  startRuntime,
  startServer,
} from '../../helpers.js';

const BUCKET = 'versions';
let s3: EmbeddedS3;
let digits: Buffer;

const sha = (bytes: Uint8Array): string => createHash('sha256').update(bytes).digest('hex');

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  digits = await readFile(DIGITS_ONNX);
});

after(async () => {
  await s3?.close();
});

/** Uploads a version folder: the sidecar first (as the docs ask), then the model. */
async function putVersion(prefix: string, version: string, bytes: Uint8Array, sidecar?: string): Promise<void> {
  if (sidecar !== undefined) await s3.put(BUCKET, `${prefix}${version}/model.onnx.sha256`, Buffer.from(sidecar));
  await s3.put(BUCKET, `${prefix}${version}/model.onnx`, bytes);
}

describe('resolveModelVersion on S3', () => {
  test('the highest numbered folder with a model object, numerically (10 above 9), with its sidecar', async () => {
    const prefix = 'pick/';
    await putVersion(prefix, '2', digits);
    await putVersion(prefix, '9', digits, `${sha(digits)}  model.onnx\n`);
    await putVersion(prefix, '10', digits, sha(digits).toUpperCase());
    await s3.put(BUCKET, `${prefix}latest/model.onnx`, digits); // not a number: never a version
    await s3.put(BUCKET, `${prefix}11/model.onnx.sha256`, Buffer.from(sha(digits))); // sidecar only: not yet
    const found = await resolveModelVersion(`s3://${BUCKET}/${prefix}`, { env: s3.env });
    assert.equal(found.version, '10');
    assert.equal(found.uri, `s3://${BUCKET}/${prefix}10/model.onnx`);
    assert.equal(found.sha256, sha(digits));
    const pinned = await resolveModelVersion(`s3://${BUCKET}/${prefix}`, { env: s3.env, pinned: '2' });
    assert.equal(pinned.version, '2');
    assert.equal(pinned.sha256, undefined);
  });

  test('no version, a missing pinned version, two model objects, a bad sidecar: each a clear error', async () => {
    await assertStartupError(
      resolveModelVersion(`s3://${BUCKET}/empty/`, { env: s3.env }),
      /no model version under s3:\/\/versions\/empty\//,
    );
    await putVersion('odd/', '1', digits, 'not a hash');
    await assertStartupError(
      resolveModelVersion(`s3://${BUCKET}/odd/`, { env: s3.env }),
      /sha256 sidecar of .*odd\/1\/model.onnx does not hold a sha256/,
    );
    await assertStartupError(
      resolveModelVersion(`s3://${BUCKET}/odd/`, { env: s3.env, pinned: '4' }),
      /model version 4 under .* holds no model object/,
    );
    await s3.put(BUCKET, 'two/1/a.onnx', digits);
    await s3.put(BUCKET, 'two/1/b.onnx', digits);
    await assertStartupError(
      resolveModelVersion(`s3://${BUCKET}/two/`, { env: s3.env }),
      /holds 2 model objects \(a.onnx, b.onnx\)/,
    );
    await assertStartupError(
      resolveModelVersion(`s3://no-such-bucket/x/`, { env: s3.env }),
      /cannot list the model versions under s3:\/\/no-such-bucket\/x\/: NoSuchBucket/,
    );
  });
});

describe('resolveModelVersion on a local folder', () => {
  test('numbered sub-folders, the highest wins', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'arclight-versions-'));
    try {
      for (const v of ['1', '3']) {
        await mkdir(join(dir, v));
        await writeFile(join(dir, v, 'model.onnx'), digits);
      }
      await writeFile(join(dir, '3', 'model.onnx.sha256'), sha(digits));
      const found = await resolveModelVersion(`${dir}/`);
      assert.deepEqual([found.version, found.uri, found.sha256], ['3', join(dir, '3', 'model.onnx'), sha(digits)]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('Runtime on a versioned prefix', () => {
  const expected = loadDigitsExpected();
  const image = expected.images[0]!;
  const v2 = linearDigitsModel();
  let runtime: Runtime;
  let url: string;
  let close: () => Promise<void>;

  before(async () => {
    await putVersion('live/', '1', digits, sha(digits));
    Object.assign(process.env, s3.env);
    runtime = await startRuntime({ modelUri: `s3://${BUCKET}/live/`, env: { ...process.env, ...s3.env } });
    const server = await startServer(runtime);
    url = server.url;
    close = server.close;
  });

  after(async () => {
    await close?.();
    await runtime?.close();
  });

  const infer = (path = '/v2/models/digits/infer'): Promise<Response> =>
    fetch(`${url}${path}`, { method: 'POST', body: digitsInferBody([image]) });

  test('serves version 1: header, model_version, metadata', async () => {
    const response = await infer();
    assert.equal(response.status, 200);
    assert.equal(response.headers.get('x-model-version'), '1');
    const body = (await response.json()) as { model_version: string; outputs: { data: number[] }[] };
    assert.equal(body.model_version, '1');
    const meta = (await (await fetch(`${url}/v2/models/digits`)).json()) as { versions: string[] };
    assert.deepEqual(meta.versions, ['1']);
    assert.equal(((await (await fetch(`${url}/`)).json()) as { version: string }).version, '1');
  });

  test('a reload with nothing new changes nothing', async () => {
    assert.deepEqual(await runtime.reload(), { kind: 'unchanged', version: '1' });
  });

  test('version 2 is swapped in: its outputs, its version; version 1 released and its pinned route a 404', async () => {
    await putVersion('live/', '2', v2.bytes, sha(v2.bytes));
    const outcome = await runtime.reload();
    assert.equal(outcome.kind, 'swapped');
    const response = await infer();
    assert.equal(response.headers.get('x-model-version'), '2');
    const body = (await response.json()) as { model_version: string; outputs: { data: number[] }[] };
    assert.equal(body.model_version, '2');
    const want = v2.logits(image);
    body.outputs[0]!.data.forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < 1e-4, `logit ${i}: ${x} vs ${want[i]}`));
    assert.deepEqual(runtime.versions, ['2']);
    const pinned = await infer('/v2/models/digits/versions/2/infer');
    assert.equal(pinned.status, 200);
    assert.equal(pinned.headers.get('x-model-version'), '2');
    const gone = await infer('/v2/models/digits/versions/1/infer');
    assert.equal(gone.status, 404);
    const error = contractError(await gone.json());
    assert.equal(error.code, 'model_not_found');
    assert.match(error.message, /version '1' is not loaded; loaded: 2/);
  });

  test('a version whose sha256 sidecar does not match is refused, counted once, and version 2 keeps serving', async () => {
    await putVersion('live/', '3', digits, sha(v2.bytes));
    const outcome = await runtime.reload();
    assert.equal(outcome.kind, 'refused');
    assert.match(outcome.kind === 'refused' ? outcome.error.message : '', /failed its integrity check/);
    // The same broken objects are not fetched again on every poll.
    assert.deepEqual(await runtime.reload(), { kind: 'unchanged', version: '2' });
    assert.equal((await infer()).headers.get('x-model-version'), '2');
    // Fixed (a new sidecar): tried again, and taken.
    await s3.put(BUCKET, 'live/3/model.onnx.sha256', Buffer.from(sha(digits)));
    assert.equal((await runtime.reload()).kind, 'swapped');
    assert.equal((await infer()).headers.get('x-model-version'), '3');
  });
});
