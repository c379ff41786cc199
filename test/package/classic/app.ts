#!/usr/bin/env node
import 'source-map-support/register';
import * as cdk from 'aws-cdk-lib';
import { ArclightStack } from '../lib/arclight-stack';

const app = new cdk.App();
new ArclightStack(app, 'ArclightStack');
