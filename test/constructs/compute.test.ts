/**
 * Compute.lambda: its defaults, each limit it checks (Lambda's, API Gateway's, and whether the model fits in /tmp and
 * in memory), first on the compute itself and then as a RealtimeApi reports it at synth. The model-too-large-for-/tmp
 * case uses a real 600 MB (sparse) model file deployed as an asset.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Duration, Size, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import {
  Compute,
  LAMBDA_LIMITS,
  estimatedColdStartSeconds,
  requiredMemoryMb,
  type LambdaComputeProps,
} from '../../lib/constructs/compute.js';
import { ModelSource, RealtimeApi } from '../../lib/index.js';
import { assertOneProblem, tempApp, thrownProblems, useScratchTmpdir } from '../cdk-helpers.js';

useScratchTmpdir();

const MB = 2 ** 20;

function problems(props: LambdaComputeProps, modelBytes?: number): string[] {
  return Compute.lambda(props).problems(modelBytes);
}

/** A RealtimeApi with this compute, over a model in S3 (of unknown size unless given). */
function api(props: LambdaComputeProps, model = ModelSource.fromS3Uri('s3://my-models/m.onnx')) {
  return () => new RealtimeApi(new Stack(tempApp(), 'S'), 'api', { model, compute: Compute.lambda(props) });
}

describe('Compute.lambda defaults', () => {
  test('2048 MB on arm64, 512 MB of /tmp, the 29 s API Gateway allows, no concurrency settings', () => {
    const compute = Compute.lambda();
    assert.equal(compute.kind, 'lambda');
    assert.equal(compute.memorySize, 2048);
    assert.equal(compute.architecture, lambda.Architecture.ARM_64);
    assert.equal(compute.ephemeralStorageSize.toMebibytes(), 512);
    assert.equal(compute.timeout.toSeconds(), 29);
    assert.equal(compute.reservedConcurrency, undefined);
    assert.equal(compute.provisionedConcurrency, undefined);
    assert.deepEqual(compute.problems(undefined), []);
  });

  test('the limits at their edges are accepted', () => {
    assert.deepEqual(problems({ memorySize: 128, ephemeralStorageSize: Size.mebibytes(512) }), []);
    assert.deepEqual(problems({ memorySize: 10240, ephemeralStorageSize: Size.gibibytes(10) }), []);
    assert.deepEqual(
      problems({ timeout: Duration.seconds(29), reservedConcurrency: 0, provisionedConcurrency: 0 }),
      [],
    );
    assert.deepEqual(problems({ reservedConcurrency: 3, provisionedConcurrency: 3 }), []);
  });
});

describe('Compute.lambda problems', () => {
  test('memory outside 128–10240 MB, or not whole', () => {
    assert.deepEqual(problems({ memorySize: 64 }), ["memorySize 64 MB is outside Lambda's 128–10240 MB"]);
    assert.deepEqual(problems({ memorySize: 20000 }), ["memorySize 20000 MB is outside Lambda's 128–10240 MB"]);
    assert.equal(problems({ memorySize: 1000.5 }).length, 1);
  });

  test('ephemeral storage outside 512–10240 MB, or not a whole number of MB', () => {
    assert.deepEqual(problems({ ephemeralStorageSize: Size.mebibytes(256) }), [
      "ephemeralStorageSize 256 MB is outside Lambda's 512–10240 MB",
    ]);
    assert.deepEqual(problems({ ephemeralStorageSize: Size.gibibytes(20) }), [
      "ephemeralStorageSize 20480 MB is outside Lambda's 512–10240 MB",
    ]);
    // 10240.5 MB must not be floored into range (Lambda takes whole MB).
    assert.deepEqual(problems({ ephemeralStorageSize: Size.kibibytes(10240 * 1024 + 512) }), [
      "ephemeralStorageSize 10240.5 MB is outside Lambda's 512–10240 MB",
    ]);
  });

  test('a timeout above API Gateway’s 29 s', () => {
    assert.deepEqual(problems({ timeout: Duration.seconds(60) }), [
      "timeout 60 s is above API Gateway's 29 s integration limit",
    ]);
    assert.equal(problems({ timeout: Duration.minutes(15) }).length, 1);
  });

  test('concurrency that is negative, fractional, or provisioned above the reservation', () => {
    assert.deepEqual(problems({ reservedConcurrency: -1 }), [
      'reservedConcurrency must be a non-negative integer, got -1',
    ]);
    assert.deepEqual(problems({ provisionedConcurrency: 1.5 }), [
      'provisionedConcurrency must be a non-negative integer, got 1.5',
    ]);
    assert.deepEqual(problems({ reservedConcurrency: 2, provisionedConcurrency: 3 }), [
      'provisionedConcurrency 3 exceeds reservedConcurrency 2',
    ]);
  });

  test('a model larger than /tmp, or than memory can hold next to the runtime', () => {
    assert.deepEqual(problems({}, 600 * MB), ['the model (600 MB) is larger than ephemeralStorageSize (512 MB)']);
    assert.deepEqual(problems({ ephemeralStorageSize: Size.mebibytes(700) }, 600 * MB), []);
    assert.deepEqual(problems({ memorySize: 1024 }, 1024 * MB), [
      'the model (1024 MB) is larger than ephemeralStorageSize (512 MB)',
      `the model (1024 MB) needs about 2208 MB of memory (its bytes, the onnxruntime session's copy and 160 MB of runtime); memorySize is 1024 MB`,
    ]);
  });

  test('memory need and cold start estimates', () => {
    assert.equal(requiredMemoryMb(0), LAMBDA_LIMITS.runtimeMb);
    assert.equal(requiredMemoryMb(1024 * MB), 160 + 2048);
    assert.equal(estimatedColdStartSeconds(0), 0.5);
    // The warning threshold (10 s) is crossed at 570 MB: 0.5 + 570/75 + 570/300 = 10.
    const at = (mb: number): number => estimatedColdStartSeconds(mb * MB);
    assert.ok(Math.abs(at(570) - LAMBDA_LIMITS.initWindowSeconds) < 1e-9, String(at(570)));
    assert.ok(at(560) < 10 && at(580) > 10, `${at(560)} ${at(580)}`);
  });
});

describe('RealtimeApi reports compute problems at synth', () => {
  test('memorySize 64 and 20000', () => {
    assertOneProblem(api({ memorySize: 64 }), /^memorySize 64 MB is outside Lambda's 128–10240 MB$/);
    assertOneProblem(api({ memorySize: 20000 }), /^memorySize 20000 MB is outside/);
  });

  test('ephemeralStorageSize 256 MB and 20 GB', () => {
    assertOneProblem(api({ ephemeralStorageSize: Size.mebibytes(256) }), /^ephemeralStorageSize 256 MB is outside/);
    assertOneProblem(api({ ephemeralStorageSize: Size.gibibytes(20) }), /^ephemeralStorageSize 20480 MB is outside/);
  });

  test('timeout 60 s', () => {
    assertOneProblem(api({ timeout: Duration.seconds(60) }), /^timeout 60 s is above API Gateway's 29 s/);
  });

  test('provisionedConcurrency above reservedConcurrency', () => {
    assertOneProblem(
      api({ reservedConcurrency: 1, provisionedConcurrency: 5 }),
      /^provisionedConcurrency 5 exceeds reservedConcurrency 1$/,
    );
  });

  test('a model (known by size) too big for memory', () => {
    assertOneProblem(
      api(
        { memorySize: 1024, ephemeralStorageSize: Size.gibibytes(2) },
        ModelSource.fromS3Uri('s3://b-1/m.onnx', {
          sizeBytes: 1024 * MB,
        }),
      ),
      /^the model \(1024 MB\) needs about 2208 MB of memory .*memorySize is 1024 MB$/,
    );
  });

  test('a 600 MB model asset larger than the default 512 MB of /tmp', (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'big-model-'));
    const path = join(dir, 'big.onnx');
    writeFileSync(path, '');
    truncateSync(path, 600 * MB); // sparse: no disk blocks, reads as zeros
    const app = tempApp();
    const started = performance.now();
    try {
      const found = thrownProblems(
        () => new RealtimeApi(new Stack(app, 'S'), 'api', { model: ModelSource.fromAsset(path) }),
      );
      t.diagnostic(`600 MB asset: stat, stage, hash and reject took ${(performance.now() - started).toFixed(0)} ms`);
      assert.deepEqual(found, ['the model (600 MB) is larger than ephemeralStorageSize (512 MB)']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
      rmSync(app.outdir, { recursive: true, force: true });
    }
  });
});
