/**
 * `ModelSource.fromAsset(path, { ortFormat: true })`: the ONNX model is converted to ORT format at synth (with the
 * onnxruntime-node the runtime uses, in a child process), the .ort file is the asset the assembly uploads, its sha256
 * is the one the runtime verifies, and the runtime serves it from the bytes in place with the ONNX model's results.
 * The uploaded file goes through s3rver and the real model store, as on a cold start.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Stack } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import { startEmbeddedS3, type EmbeddedS3 } from '../../lib/cli/local/embedded-s3.js';
import { ModelSource, type ModelSourceConfig } from '../../lib/index.js';
import { isOrtFormat } from '../../lib/ort-conversion.js';
import { OnnxExecutor, importOnnxRuntime } from '../../lib/runtime/executors/onnx-executor.js';
import { loadModelBytes } from '../../lib/runtime/model-store/model-store.js';
import type { Tensor } from '../../lib/predictor.js';
import { flatten, sha256, tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX, MOBILENET_ONNX, loadDigitsExpected } from '../helpers.js';

const scratch = useScratchTmpdir();
const BUCKET = 'ort-assets';

interface Synthesized {
  readonly config: ModelSourceConfig;
  /** The object key the asset is uploaded under. */
  readonly key: string;
  /** The file the cloud assembly stages for upload. */
  readonly staged: string;
}

/** Binds the source to a role in a fresh app, synthesizes it, and finds the staged model file in the assembly. */
function synthesize(source: ModelSource): Synthesized {
  const app = tempApp();
  const stack = new Stack(app, 'S');
  const role = new iam.Role(stack, 'Role', { assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com') });
  const config = source.bind(stack, role);
  const key = flatten(stack.resolve(config.key));
  const assembly = app.synth();
  const staged = readdirSync(assembly.directory).find(
    (name) => name.startsWith('asset.') && key.endsWith(name.slice(6)),
  );
  assert.ok(staged, `the assembly stages the asset ${key}: ${readdirSync(assembly.directory).join(', ')}`);
  return { config, key, staged: join(assembly.directory, staged) };
}

function tempFile(name: string, bytes: Uint8Array): string {
  const path = join(mkdtempSync(join(tmpdir(), 'model-')), name);
  writeFileSync(path, bytes);
  return path;
}

const expected = loadDigitsExpected();
const digitsFeeds = (): Record<string, Tensor> => ({
  image: { type: 'float32', data: Float32Array.from(expected.images.flat()), dims: [expected.images.length, 1, 8, 8] },
});
function mobilenetFeeds(seed: number): Record<string, Tensor> {
  const data = new Float32Array(3 * 224 * 224);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.001 * seed) * 2;
  return { input: { type: 'float32', data, dims: [1, 3, 224, 224] } };
}

/** Outputs of the model at `uri` loaded the way a cold start loads it (model store, sha256 checked, executor). */
async function serve(
  uri: string,
  sha: string,
  env: NodeJS.ProcessEnv,
  feeds: Record<string, Tensor>,
): Promise<{ inPlace: boolean; output: number[] }> {
  const fetched = await loadModelBytes(uri, { expectedSha256: sha, env });
  const executor = await OnnxExecutor.load(fetched.bytes, uri);
  try {
    const out = await executor.run(feeds);
    return { inPlace: executor.bytesInPlace, output: Array.from(out[executor.outputs[0]!.name]!.data as Float32Array) };
  } finally {
    await executor.release();
  }
}

/** Outputs of the ONNX model with `extended` graph optimizations: what the ORT file holds, made at synth. */
async function onnxAtExtended(path: string, feeds: Record<string, Tensor>): Promise<number[]> {
  const { ort } = await importOnnxRuntime();
  const session = await ort.InferenceSession.create(path, {
    graphOptimizationLevel: 'extended',
    executionMode: 'sequential',
    interOpNumThreads: 1,
  });
  try {
    const out = await session.run(
      Object.fromEntries(
        Object.entries(feeds).map(([name, t]) => [name, new ort.Tensor(t.type, t.data as Float32Array, t.dims)]),
      ),
    );
    return Array.from(out[session.outputNames[0]!]!.data as Float32Array);
  } finally {
    await session.release();
  }
}

describe('ModelSource.fromAsset with ortFormat', () => {
  let s3: EmbeddedS3;
  before(async () => {
    s3 = await startEmbeddedS3([BUCKET]);
  });
  after(async () => {
    await s3?.close();
  });

  for (const [name, path, feeds] of [
    ['digits (all 397 images)', DIGITS_ONNX, digitsFeeds()],
    ['MobileNetV3-small', MOBILENET_ONNX, mobilenetFeeds(1)],
  ] as const) {
    test(`${name}: the .ort is uploaded, its sha256 is verified, results those of the ONNX model`, async () => {
      const { config, key, staged } = synthesize(ModelSource.fromAsset(path, { ortFormat: true }));
      assert.deepEqual(config.problems, []);
      assert.match(key, /^[0-9a-f]{64}\.ort$/, 'the object is the ORT file');
      assert.ok(isOrtFormat(readFileSync(staged)), 'the staged file is ORT format');
      assert.equal(config.sha256, sha256(staged), 'the sha256 handed to the runtime is the uploaded file’s');
      assert.equal(config.sizeBytes, statSync(staged).size);
      assert.equal(config.format, 'onnx', 'served by the onnx executor');

      const ort = await s3.put(BUCKET, key, readFileSync(staged));
      const onnx = await s3.put(BUCKET, `plain/${name}.onnx`, readFileSync(path));
      const fromOrt = await serve(ort.uri, config.sha256!, s3.env, feeds);
      const fromOnnx = await serve(onnx.uri, sha256(path), s3.env, feeds);
      assert.ok(fromOrt.inPlace, 'the session runs on the fetched bytes in place');
      assert.ok(!fromOnnx.inPlace);
      // Bit for bit the ONNX model at `extended` optimizations (what the conversion saves, portable across CPUs).
      assert.deepEqual(fromOrt.output, await onnxAtExtended(path, feeds), 'bit for bit at extended');
      // The runtime's ONNX path adds onnxruntime's CPU-specific layout transforms (`all`), which an ORT-format model
      // cannot carry portably: the same answers to float rounding.
      assert.equal(fromOrt.output.length, fromOnnx.output.length);
      const worst = fromOrt.output.reduce((m, v, i) => Math.max(m, Math.abs(v - fromOnnx.output[i]!)), 0);
      assert.ok(worst < 1e-4, `max |Δ| to the ONNX path ${worst}`);
      const argmax = (row: number[]): number => row.indexOf(Math.max(...row));
      const width = fromOrt.output.length / (name.startsWith('digits') ? expected.images.length : 1);
      for (let i = 0; i < fromOrt.output.length; i += width) {
        const at = (o: number[]): number[] => o.slice(i, i + width);
        assert.equal(argmax(at(fromOrt.output)), argmax(at(fromOnnx.output)), `row ${i / width}: same class`);
      }
    });
  }

  test('a re-synth gives the same object (the conversion is cached and deterministic)', () => {
    const a = synthesize(ModelSource.fromAsset(DIGITS_ONNX, { ortFormat: true }));
    const b = synthesize(ModelSource.fromAsset(DIGITS_ONNX, { ortFormat: true }));
    assert.equal(a.key, b.key);
    assert.equal(a.config.sha256, b.config.sha256);
    const cached = readdirSync(join(scratch, 'arclight-ort-cache'));
    assert.ok(
      cached.some((f) => f.startsWith(`${sha256(DIGITS_ONNX)}-onnxruntime-`) && f.endsWith('.ort')),
      cached.join(),
    );
    assert.ok(!cached.some((f) => f.includes('.part')), 'no partial file left');
  });

  test('a model already in ORT format is deployed as it is', () => {
    const converted = synthesize(ModelSource.fromAsset(DIGITS_ONNX, { ortFormat: true })).staged;
    const ortFile = tempFile('digits.ort', readFileSync(converted));
    const { config, staged } = synthesize(ModelSource.fromAsset(ortFile, { ortFormat: true }));
    assert.deepEqual(config.problems, []);
    assert.equal(config.sha256, sha256(ortFile));
    assert.equal(sha256(staged), sha256(ortFile));
  });

  test('a file onnxruntime cannot read is a synth problem naming the file and onnxruntime’s reason', () => {
    const garbage = tempFile('broken.onnx', Buffer.from('this is not an ONNX model at all'));
    const { config } = synthesize(ModelSource.fromAsset(garbage, { ortFormat: true }));
    assert.equal(config.problems.length, 1, config.problems.join('\n'));
    assert.match(
      config.problems[0]!,
      new RegExp(
        `^converting ${garbage.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} to ORT format with onnxruntime-node \\d+\\.\\d+\\.\\d+ failed: .+`,
      ),
    );
    assert.ok(!readdirSync(join(scratch, 'arclight-ort-cache')).some((f) => f.includes('.part')), 'no partial file');
  });

  test('ortFormat on a torch model is a synth problem', () => {
    const { config } = synthesize(ModelSource.fromAsset('models/digits.torchscript.pt', { ortFormat: true }));
    assert.deepEqual(config.problems, ['ortFormat converts ONNX models; this one is torchscript']);
  });
});
