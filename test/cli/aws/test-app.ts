/**
 * A CDK app with one API on each compute, each with a different auth, pinned to eu-west-1, synthesized in-process with
 * path metadata on (as the CDK CLI synthesizes): what `get`, `logs`, `predict <api>` and `plan` read.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { App, Stack } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { ApiAuth, Compute, ModelSource, Predictor, RealtimeApi } from '../../../lib/index.js';

export const TEST_STACK = 'ArclightOpsTest';
export const TEST_REGION = 'eu-west-1';

/** Synthesizes the app; returns the cloud assembly's folder. */
export function synthTestApp(): string {
  const outdir = mkdtempSync(join(tmpdir(), 'arclight-ops-app-'));
  const app = new App({ outdir, context: { 'aws:cdk:enable-path-metadata': true } });
  const stack = new Stack(app, TEST_STACK, { env: { region: TEST_REGION } });
  new RealtimeApi(stack, 'digits', {
    predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
    model: ModelSource.fromAsset('models/digits.onnx'),
    compute: Compute.lambda({ architecture: lambda.Architecture.ARM_64, memorySize: 1769 }),
    auth: ApiAuth.iam(),
  });
  new RealtimeApi(stack, 'mobilenet-gpu', {
    model: ModelSource.fromAsset('models/mobilenet_v3_small.onnx'),
    compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
    auth: ApiAuth.iam(),
  });
  new RealtimeApi(stack, 'digits-ecs', {
    predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
    model: ModelSource.fromAsset('models/digits.onnx'),
    compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
    auth: ApiAuth.jwt({ issuer: 'https://issuer.example.com/', audience: ['arclight'] }),
  });
  app.synth();
  return outdir;
}
