/**
 * The consumer apps' stack (copied into each app as lib/arclight-stack.ts): one RealtimeApi with a custom
 * TypeScript predictor on Lambda, one with the default Open Inference Protocol
 * predictor on SageMaker, and the custom one again on ECS.
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { Compute, ModelSource, Predictor, RealtimeApi } from 'arclight';
import { Construct } from 'constructs';

export class ArclightStack extends Stack {
  readonly digits: RealtimeApi;
  readonly gpu: RealtimeApi;
  readonly ecs: RealtimeApi;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.digits = new RealtimeApi(this, 'digits', {
      predictor: Predictor.fromEntry('functions/digits.ts'),
      model: ModelSource.fromAsset('models/digits.onnx'),
      compute: Compute.lambda({ architecture: lambda.Architecture.X86_64, memorySize: 1024 }),
    });
    this.gpu = new RealtimeApi(this, 'digits-gpu', {
      model: ModelSource.fromAsset('models/digits.onnx'),
      compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
    });
    this.ecs = new RealtimeApi(this, 'digits-ecs', {
      predictor: Predictor.fromEntry('functions/digits.ts'),
      model: ModelSource.fromAsset('models/digits.onnx'),
      compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
    });
  }
}
