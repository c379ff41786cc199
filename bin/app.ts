/**
 * The example CDK app: `npx cdk synth` (no AWS account needed), `npx cdk deploy` with one.
 * cdk-nag's AwsSolutions pack checks everything it synthesizes.
 */
import { App, Stack, Validations } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { AwsSolutionsChecks } from 'cdk-nag';
import { AsyncApi, Compute, ModelSource, Predictor, RealtimeApi } from '../lib/index.js';

export function buildExampleApp(app: App = new App()): { app: App; stack: Stack; asyncStack: Stack } {
  const stack = new Stack(app, 'ArclightExamples', {
    description:
      'Arclight examples: handwritten digits and MobileNetV3-small as HTTPS inference APIs, on Lambda, SageMaker (GPU) and ECS (GPU)',
  });

  new RealtimeApi(stack, 'digits', {
    predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
    model: ModelSource.fromAsset('models/digits.onnx'),
    compute: Compute.lambda({ architecture: lambda.Architecture.ARM_64, memorySize: 1769 }),
  });

  new RealtimeApi(stack, 'mobilenet', {
    model: ModelSource.fromAsset('models/mobilenet_v3_small.onnx'),
    compute: Compute.lambda({ architecture: lambda.Architecture.X86_64, memorySize: 3008 }),
  });

  // The same MobileNet on a GPU SageMaker endpoint (CUDA image, autoscaled on invocations per instance).
  new RealtimeApi(stack, 'mobilenet-gpu', {
    model: ModelSource.fromAsset('models/mobilenet_v3_small.onnx'),
    compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
  });

  // The digits predictor, unchanged, on an ECS service on g5.xlarge GPU instances behind an internal ALB.
  new RealtimeApi(stack, 'digits-ecs', {
    predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
    model: ModelSource.fromAsset('models/digits.onnx'),
    compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
  });

  // The async APIs in a stack of their own: they bring a bucket, a queue and a table, which the realtime ones never do.
  const asyncStack = new Stack(app, 'ArclightAsyncExamples', {
    description:
      'Arclight async examples: the digits predictor as an async API on Lambda (S3, SQS, DynamoDB; up to 15 minutes per job), MobileNetV3-small on SageMaker asynchronous inference (scale to zero)',
  });
  // The digits predictor, unchanged, as jobs: POST /async, GET /async/{id}; bodies above 6 MB through POST /async/uploads.
  new AsyncApi(asyncStack, 'digits-async', {
    predictor: Predictor.fromEntry('functions/digits/predictor.ts'),
    model: ModelSource.fromAsset('models/digits.onnx'),
    compute: Compute.lambda({ architecture: lambda.Architecture.ARM_64, memorySize: 1769 }),
  });
  // MobileNet as jobs on SageMaker asynchronous inference: GPU instances, scaled on the backlog down to zero when idle.
  new AsyncApi(asyncStack, 'mobilenet-async', {
    model: ModelSource.fromAsset('models/mobilenet_v3_small.onnx'),
    compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
  });

  Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
  return { app, stack, asyncStack };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  buildExampleApp().app.synth();
}
