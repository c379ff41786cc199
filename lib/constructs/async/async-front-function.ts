/**
 * The async API's front: a small Node.js function (no model, no image) behind an HTTP API with the three async routes,
 * its role allowed exactly what the front does: put requests, presign uploads and read them, read results, put and
 * read statuses, send to the one queue.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as apigwv2 from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ASYNC_ENV, ASYNC_ROUTES, ENV } from '../../contract.js';
import { packageModule } from '../../package-files.js';
import type { ApiAuth } from '../api-auth.js';
import {
  acknowledgeFinding,
  acknowledgeOpenApi,
  createHttpStage,
  type ThrottleProps,
} from '../backends/backend-common.js';
import { bundleForNode } from '../images/node-bundle.js';
import { ASYNC_PREFIXES, type AsyncStorage } from './async-storage.js';

export interface AsyncFrontFunctionProps {
  readonly apiName: string;
  readonly storage: AsyncStorage;
  /** The async settings both functions read (limits, URL lifetime, retention). */
  readonly environment: Record<string, string>;
  readonly auth: ApiAuth;
  readonly throttle?: ThrottleProps;
  readonly logRetention: logs.RetentionDays;
  /** SageMaker compute: the async endpoint submissions go to (InvokeEndpointAsync) instead of the queue. */
  readonly endpoint?: { readonly name: string; readonly arn: string; readonly timeoutSeconds: number };
}

export class AsyncFrontFunction extends Construct {
  readonly function: lambda.Function;
  readonly api: apigwv2.HttpApi;
  readonly stage: apigwv2.HttpStage;

  constructor(scope: Construct, id: string, props: AsyncFrontFunctionProps) {
    super(scope, id);
    const { storage } = props;
    const logGroup = new logs.LogGroup(this, 'Logs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.DESTROY,
    });
    const role = new iam.Role(this, 'Role', {
      assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
      description: `Front of the ${props.apiName} async API: stores requests, reads statuses and results, ${props.endpoint ? 'invokes its endpoint' : 'queues jobs'}`,
    });
    logGroup.grantWrite(role);
    const objects = (prefix: string): string => storage.bucket.arnForObjects(`${prefix}*`);
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['s3:PutObject'],
        resources: [objects(ASYNC_PREFIXES.requests), objects(ASYNC_PREFIXES.uploads)],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['s3:GetObject'],
        resources: [objects(ASYNC_PREFIXES.uploads), objects(ASYNC_PREFIXES.results)],
      }),
    );
    role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['dynamodb:GetItem', 'dynamodb:PutItem'],
        resources: [storage.table.tableArn],
      }),
    );
    if (storage.queue) {
      role.addToPolicy(new iam.PolicyStatement({ actions: ['sqs:SendMessage'], resources: [storage.queue.queueArn] }));
    }
    if (props.endpoint) {
      role.addToPolicy(
        new iam.PolicyStatement({ actions: ['sagemaker:InvokeEndpointAsync'], resources: [props.endpoint.arn] }),
      );
    }
    Validations.of(role).acknowledge({
      id: 'AwsSolutions-IAM5',
      reason: "Log stream ARNs under the front's own log group end in ':*'; nothing else is wildcarded.",
    });
    acknowledgePrefixGrants(role, storage, [ASYNC_PREFIXES.requests, ASYNC_PREFIXES.uploads, ASYNC_PREFIXES.results]);

    const code = mkdtempSync(join(tmpdir(), 'arclight-async-front-'));
    bundleForNode(code, 'index.mjs', { file: packageModule('runtime/async/lambda-front') });
    this.function = new lambda.Function(this, 'Function', {
      description: `Arclight async API ${props.apiName}: submit, upload, status`,
      runtime: latestNodeRuntime(),
      architecture: lambda.Architecture.ARM_64,
      handler: 'index.handler',
      code: lambda.Code.fromAsset(code),
      memorySize: 512,
      timeout: Duration.seconds(29),
      role,
      logGroup,
      environment: {
        [ENV.apiName]: props.apiName,
        [ASYNC_ENV.bucket]: storage.bucket.bucketName,
        [ASYNC_ENV.table]: storage.table.tableName,
        ...(storage.queue ? { [ASYNC_ENV.queueUrl]: storage.queue.queueUrl } : {}),
        ...(props.endpoint
          ? {
              [ASYNC_ENV.endpointName]: props.endpoint.name,
              [ASYNC_ENV.invocationTimeoutSeconds]: String(props.endpoint.timeoutSeconds),
            }
          : {}),
        ...props.environment,
      },
    });

    this.api = new apigwv2.HttpApi(this, 'Api', {
      apiName: props.apiName,
      description: `Arclight async API ${props.apiName}`,
      createDefaultStage: false,
    });
    const integration = new HttpLambdaIntegration('Integration', this.function);
    const authorizer = props.auth.bind();
    for (const [method, path] of [
      [apigwv2.HttpMethod.POST, ASYNC_ROUTES.submit],
      [apigwv2.HttpMethod.POST, ASYNC_ROUTES.uploads],
      [apigwv2.HttpMethod.GET, `${ASYNC_ROUTES.jobPrefix}{id}`],
    ] as const) {
      this.api.addRoutes({ path, methods: [method], integration, ...(authorizer ? { authorizer } : {}) });
    }
    this.stage = createHttpStage(this, this.api, props.throttle, props.logRetention);
    acknowledgeOpenApi(this.api, props.auth);
  }
}

/** Node.js 24 where this aws-cdk-lib knows it (the bundle targets Node.js 22, which 24 runs), else 22. */
export function latestNodeRuntime(): lambda.Runtime {
  return (lambda.Runtime as unknown as { NODEJS_24_X?: lambda.Runtime }).NODEJS_24_X ?? lambda.Runtime.NODEJS_22_X;
}

/** cdk-nag's wildcard finding on each `<bucket>/<prefix>*` grant: one prefix of the API's own bucket, by design. */
export function acknowledgePrefixGrants(role: iam.Role, storage: AsyncStorage, prefixes: readonly string[]): void {
  const stack = Stack.of(storage);
  const bucketId = stack.resolve(stack.getLogicalId(storage.bucket.node.defaultChild as s3.CfnBucket)) as string;
  for (const prefix of prefixes) {
    acknowledgeFinding(
      role,
      `AwsSolutions-IAM5[Resource::<${bucketId}.Arn>/${prefix}*]`,
      `Objects under ${prefix} of this async API's own bucket: job ids are made at run time, so the grant is the prefix, not an object.`,
    );
  }
}
