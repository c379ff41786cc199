/**
 * The stack as CloudFormation will get it: `npm test` synthesizes it (no AWS account, no Docker) and checks the API.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { App } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { ApiStack } from '../lib/api-stack.js';

test('the predictor runs in a container-image Lambda function behind an HTTPS API', () => {
  const stack = new ApiStack(new App(), 'Test');
  const template = Template.fromStack(stack);
  template.hasResourceProperties('AWS::Lambda::Function', { PackageType: 'Image' });
  template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
  template.hasResourceProperties('AWS::ApiGatewayV2::Route', { RouteKey: Match.stringLikeRegexp('^POST ') });
  assert.match(stack.api.apiName, /digits/);
});
