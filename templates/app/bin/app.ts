/**
 * The CDK app: `npx cdk synth` needs no AWS account; `npx cdk deploy` deploys the API with one.
 */
import { App } from 'aws-cdk-lib';
import { ApiStack } from '../lib/api-stack.js';

const app = new App();
new ApiStack(app, 'ApiStack');
