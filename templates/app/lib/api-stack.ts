/**
 * One inference API: the predictor in functions/, the model in models/, on an AWS Lambda container function behind an
 * HTTPS API. Swap `Compute.lambda()` for `Compute.sageMaker({ instanceType: 'ml.g5.xlarge' })` to serve on a GPU.
 */
import { Stack, type StackProps } from 'aws-cdk-lib';
import { Compute, ModelSource, Predictor, RealtimeApi } from 'arclight';
import type { Construct } from 'constructs';

export class ApiStack extends Stack {
  readonly api: RealtimeApi;

  constructor(scope: Construct, id: string, props?: StackProps) {
    super(scope, id, props);
    this.api = new RealtimeApi(this, 'digits', {
      predictor: Predictor.fromEntry('functions/predictor.ts'),
      model: ModelSource.fromAsset('models/MODEL_FILE'),
      compute: Compute.lambda(),
    });
  }
}
