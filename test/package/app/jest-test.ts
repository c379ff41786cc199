/** The app's own jest test (copied into each app's test/): the stack synthesizes with its three APIs. */
import { App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ArclightStack } from '../lib/arclight-stack';

test('the three Arclight APIs synthesize', () => {
  const stack = new ArclightStack(new App(), 'Test');
  const template = Template.fromStack(stack);
  template.hasResourceProperties('AWS::Lambda::Function', { PackageType: 'Image' });
  template.resourceCountIs('AWS::SageMaker::Endpoint', 1);
  template.resourceCountIs('AWS::ECS::Service', 1);
  expect(stack.digits.apiName).toBe('digits');
});
