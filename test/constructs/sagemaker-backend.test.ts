/**
 * RealtimeApi on Compute.sageMaker, from its synthesized template: the model whose container pulls the model from S3
 * (the Lambda function's env contract, CUDA first on GPU types), the endpoint config and endpoint, an execution role
 * scoped to the model object, its image and its logs (no managed policy), target tracking on invocations per instance,
 * and a REST API whose AWS integration calls InvokeEndpoint with a role allowed exactly that endpoint. Then the props'
 * defaults and every problem they can have, reported together in one error.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Duration, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { ENV } from '../../lib/contract.js';
import { Compute, SAGEMAKER_LIMITS } from '../../lib/constructs/compute.js';
import { VARIANT_NAME } from '../../lib/constructs/sagemaker-backend.js';
import { API_METADATA_KEY, ApiAuth, ModelSource, Predictor, RealtimeApi } from '../../lib/index.js';
import {
  assertNoBroadS3Grant,
  flatten,
  onlyResource,
  policyStatements,
  resourcesOf,
  sha256,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../helpers.js';

useScratchTmpdir();

let stack: Stack;
let api: RealtimeApi;
let template: Template;

before(() => {
  stack = new Stack(tempApp(), 'S');
  api = new RealtimeApi(stack, 'gpu', {
    model: ModelSource.fromAsset(DIGITS_ONNX),
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge', maxInstances: 4, targetInvocationsPerInstance: 900 }),
    throttle: { rateLimit: 50, burstLimit: 80 },
    batching: { maxBatchSize: 16, maxBatchDelay: Duration.millis(4) },
  });
  template = Template.fromStack(stack);
});

function endpointName(): string {
  const [, endpoint] = onlyResource(template, 'AWS::SageMaker::Endpoint');
  return endpoint['EndpointName'] as string;
}

describe('the SageMaker model, endpoint config and endpoint', () => {
  test('the model runs the image with the env contract: model URI and sha256, CUDA then CPU, limits, batching', () => {
    const [, model] = onlyResource(template, 'AWS::SageMaker::Model');
    const container = model['PrimaryContainer'] as { Image: unknown; Environment: Record<string, unknown> };
    assert.match(flatten(container.Image), /dkr\.ecr\..*container-assets/);
    const env = container.Environment;
    assert.equal(env[ENV.apiName], 'gpu');
    assert.match(flatten(env[ENV.modelUri]), /^s3:\/\/cdk-hnb659fds-assets-.*\.onnx$/);
    assert.equal(env[ENV.modelSha256], sha256(DIGITS_ONNX));
    assert.equal(env[ENV.modelFormat], 'onnx');
    assert.equal(env[ENV.config], '{}');
    assert.equal(env[ENV.executionProviders], 'cuda,cpu');
    assert.equal(env[ENV.maxBodyBytes], String(SAGEMAKER_LIMITS.maxPayloadBytes));
    assert.equal(env[ENV.requestTimeoutMs], '28000');
    assert.equal(env[ENV.maxBatchSize], '16');
    assert.equal(env[ENV.maxBatchDelayMs], '4');
    assert.equal(model['ModelDataUrl'], undefined, 'the container pulls the model itself');
  });

  test('the endpoint config has one variant on ml.g5.xlarge with the startup health check timeout', () => {
    const [, config] = onlyResource(template, 'AWS::SageMaker::EndpointConfig');
    const variants = config['ProductionVariants'] as Record<string, unknown>[];
    assert.equal(variants.length, 1);
    assert.equal(variants[0]!['VariantName'], VARIANT_NAME);
    assert.equal(variants[0]!['InstanceType'], 'ml.g5.xlarge');
    assert.equal(variants[0]!['InitialInstanceCount'], 1);
    assert.equal(variants[0]!['ContainerStartupHealthCheckTimeoutInSeconds'], 600);
    assert.equal(variants[0]!['VolumeSizeInGB'], undefined, 'g5 has NVMe instance storage');
    assert.match(endpointName(), /^[a-z0-9-]{1,63}$/);
  });

  test('records arclight:api metadata on the model (sagemaker, GPU)', () => {
    const model = Object.values(template.findResources('AWS::SageMaker::Model'))[0] as {
      Metadata: Record<string, unknown>;
    };
    assert.deepEqual(model.Metadata[API_METADATA_KEY], {
      apiName: 'gpu',
      compute: 'sagemaker',
      architecture: 'x64',
      gpu: true,
    });
    assert.throws(() => api.function, /runs on sagemaker, not on a Lambda function/);
  });
});

describe('IAM', () => {
  test('the execution role: trusted by SageMaker, no managed policy, S3 only on the model object', () => {
    const [roleId, role] = onlyResource(template, 'AWS::IAM::Role', 'gpuExecutionRole');
    assert.equal(role['ManagedPolicyArns'], undefined, 'not AmazonSageMakerFullAccess, nor any managed policy');
    assert.match(JSON.stringify(role['AssumeRolePolicyDocument']), /sagemaker\.amazonaws\.com/);
    assertNoBroadS3Grant(template);
    const statements = policyStatements(template).filter((s) => s.holder.startsWith('gpuExecutionRole'));
    const actions = statements.flatMap((s) => s.actions).sort();
    assert.ok(actions.includes('s3:GetObject'));
    assert.ok(actions.includes('ecr:BatchGetImage'));
    assert.ok(actions.includes('logs:PutLogEvents'));
    for (const statement of statements) {
      if (statement.resources.includes('*'))
        assert.deepEqual(statement.actions, ['ecr:GetAuthorizationToken'], `only the ECR token takes * (${roleId})`);
    }
  });

  test('no SageMaker action on *: the API role may InvokeEndpoint on exactly this endpoint', () => {
    const sageMaker = policyStatements(template).filter((s) => s.actions.some((a) => a.startsWith('sagemaker:')));
    assert.equal(sageMaker.length, 1);
    assert.deepEqual(sageMaker[0]!.actions, ['sagemaker:InvokeEndpoint']);
    assert.deepEqual(sageMaker[0]!.resources, [
      `arn:{Ref:AWS::Partition}:sagemaker:{Ref:AWS::Region}:{Ref:AWS::AccountId}:endpoint/${endpointName()}`,
    ]);
    assert.ok(sageMaker[0]!.holder.startsWith('gpuInvokeRole'));
    const invokeRole = policyStatements(template).filter((s) => s.holder.startsWith('gpuInvokeRole'));
    assert.equal(invokeRole.length, 1, 'the REST API role may do nothing else, whichever route it serves');
  });
});

describe('autoscaling', () => {
  test('target tracking on SageMakerVariantInvocationsPerInstance between min and max instances', () => {
    const [, target] = onlyResource(template, 'AWS::ApplicationAutoScaling::ScalableTarget');
    assert.equal(target['ServiceNamespace'], 'sagemaker');
    assert.equal(target['ScalableDimension'], 'sagemaker:variant:DesiredInstanceCount');
    assert.equal(target['MinCapacity'], 1);
    assert.equal(target['MaxCapacity'], 4);
    assert.match(
      flatten(target['ResourceId']),
      new RegExp(`^endpoint/\\{GetAtt:gpuEndpoint\\w+\\.EndpointName\\}/variant/${VARIANT_NAME}$`),
    );
    const [, policy] = onlyResource(template, 'AWS::ApplicationAutoScaling::ScalingPolicy');
    const config = policy['TargetTrackingScalingPolicyConfiguration'] as Record<string, unknown>;
    assert.deepEqual(config['PredefinedMetricSpecification'], {
      PredefinedMetricType: 'SageMakerVariantInvocationsPerInstance',
    });
    assert.equal(config['TargetValue'], 900);
  });
});

/** The API's methods by `METHOD /path`, the path rebuilt from the resources' parents and path parts. */
function methodsByRoute(t: Template): Map<string, Record<string, unknown>> {
  const resources = new Map(resourcesOf(t, 'AWS::ApiGateway::Resource'));
  const pathOf = (ref: unknown): string => {
    const id = (ref as { Ref?: string }).Ref;
    if (id === undefined) return ''; // the API's root resource (Fn::GetAtt RootResourceId)
    const resource = resources.get(id)!;
    return `${pathOf(resource['ParentId'])}/${String(resource['PathPart'])}`;
  };
  return new Map(
    resourcesOf(t, 'AWS::ApiGateway::Method').map(([, method]) => [
      `${String(method['HttpMethod'])} ${pathOf(method['ResourceId']) || '/'}`,
      method,
    ]),
  );
}

type Integration = {
  Type: string;
  IntegrationHttpMethod?: string;
  Uri?: unknown;
  Credentials?: unknown;
  ContentHandling?: string;
  PassthroughBehavior?: string;
  RequestParameters?: Record<string, string>;
  RequestTemplates?: Record<string, string>;
  IntegrationResponses: {
    SelectionPattern?: string;
    StatusCode: string;
    ResponseTemplates?: Record<string, string>;
    ResponseParameters?: Record<string, string>;
  }[];
};

const integrationOf = (method: Record<string, unknown>): Integration => method['Integration'] as Integration;

/** The contract's routes; the one model is the API's. */
const ROUTES_OF_GPU = [
  'GET /',
  'POST /',
  'GET /v2',
  'GET /v2/health/live',
  'GET /v2/health/ready',
  'GET /v2/models/gpu',
  'GET /v2/models/gpu/ready',
  'POST /v2/models/gpu/infer',
  'GET /openapi.json',
];

describe('the REST API', () => {
  test('every contract route is an AWS integration to InvokeEndpoint, with its own role, naming the route', () => {
    const methods = methodsByRoute(template);
    for (const route of ROUTES_OF_GPU) {
      const method = methods.get(route);
      assert.ok(method, `${route} in ${[...methods.keys()].join(', ')}`);
      assert.equal(method['AuthorizationType'], 'NONE');
      const integration = integrationOf(method);
      assert.equal(integration.Type, 'AWS', route);
      assert.equal(integration.IntegrationHttpMethod, 'POST');
      assert.match(
        flatten(integration.Uri),
        new RegExp(
          `:apigateway:\\{Ref:AWS::Region\\}:runtime\\.sagemaker:path/endpoints/${endpointName()}/invocations$`,
        ),
      );
      assert.match(flatten(integration.Credentials), /^\{GetAtt:gpuInvokeRole\w+\.Arn\}$/);
      const parameters = integration.RequestParameters!;
      // A static value: API Gateway cannot concatenate, and the model's name in the path is the API's, known at synth.
      assert.equal(
        parameters['integration.request.header.X-Amzn-SageMaker-Custom-Attributes'],
        `'arclight-route=${route}'`,
      );
      assert.equal(parameters['integration.request.header.Accept'], 'method.request.header.Accept');
      // Bodies pass as they came: text as text, binary media types (the OIP binary extension) as bytes.
      assert.equal(integration.ContentHandling, undefined, `${route}: CONVERT_TO_BINARY would base64-decode JSON`);
      if (route.startsWith('POST')) {
        assert.equal(parameters['integration.request.header.Content-Type'], 'method.request.header.Content-Type');
        assert.equal(integration.PassthroughBehavior, 'WHEN_NO_TEMPLATES');
        assert.equal(integration.RequestTemplates, undefined);
      } else {
        assert.equal(parameters['integration.request.header.Content-Type'], "'application/json'");
        assert.deepEqual(integration.RequestTemplates, { 'application/json': '{}' }, 'InvokeEndpoint needs a body');
      }
    }
    const invoking = [...methods].filter(([, m]) => integrationOf(m).Type === 'AWS').map(([route]) => route);
    assert.deepEqual(invoking.sort(), [...ROUTES_OF_GPU].sort(), 'only the contract routes reach the endpoint');
    const [, restApi] = onlyResource(template, 'AWS::ApiGateway::RestApi');
    assert.deepEqual(restApi['BinaryMediaTypes'], ['application/octet-stream', 'image/*']);
  });

  test("container errors keep their status and JSON body; InvokeEndpoint's own errors become contract errors", () => {
    const responses = integrationOf(methodsByRoute(template).get('POST /v2/models/gpu/infer')!).IntegrationResponses;
    const patterns = responses.filter((r) => r.SelectionPattern !== undefined);
    // Disjoint: each InvokeEndpoint status selects at most one response (API Gateway leaves overlaps undefined).
    const selected = (status: number): (typeof responses)[number] | undefined => {
      const matching = patterns.filter((r) => new RegExp(`^(?:${r.SelectionPattern!})$`).test(String(status)));
      assert.ok(matching.length <= 1, `${status} selects ${matching.length} responses`);
      return matching[0];
    };
    for (let status = 200; status < 600; status++) {
      const response = selected(status);
      if (status < 400) assert.equal(response, undefined, `${status} is the default (200) response`);
      else assert.ok(response, `${status} selects a response`);
    }
    const success = responses.find((r) => r.SelectionPattern === undefined)!;
    assert.equal(success.StatusCode, '200');
    assert.equal(
      success.ResponseParameters?.['method.response.header.Content-Type'],
      'integration.response.header.Content-Type',
    );

    // ModelError (424): the container's status (contract statuses as they are, others 502) and its body.
    const modelError = selected(424)!.ResponseTemplates!['application/json']!;
    assert.match(modelError, /\$util\.parseJson\(\$input\.body\)/);
    assert.match(modelError, /\.matches\('400\|404\|405\|408\|413\|415\|500\|503\|504'\)\)/);
    assert.match(modelError, /#set\(\$status = \$error\.OriginalStatusCode\)/);
    assert.match(modelError, /#set\(\$status = 502\)/);
    assert.equal(modelError.match(/responseOverride\.status/g)?.length, 1, 'an override may be applied only once');
    assert.match(modelError, /\n\$error\.OriginalMessage$/);

    const contractError = (status: number): { statusCode: string; code: string; retryAfter?: string } => {
      const response = selected(status)!;
      const body = JSON.parse(response.ResponseTemplates!['application/json']!) as {
        error: { code: string; requestId: string };
      };
      assert.equal(body.error.requestId, '$context.requestId');
      assert.equal(response.ResponseParameters!['method.response.header.x-request-id'], 'context.requestId');
      const retryAfter = response.ResponseParameters!['method.response.header.Retry-After'];
      return { statusCode: response.StatusCode, code: body.error.code, ...(retryAfter ? { retryAfter } : {}) };
    };
    assert.deepEqual(contractError(429), { statusCode: '503', code: 'not_ready', retryAfter: "'1'" });
    assert.deepEqual(contractError(400), { statusCode: '400', code: 'invalid_input' });
    assert.deepEqual(contractError(413), { statusCode: '400', code: 'invalid_input' });
    assert.deepEqual(contractError(503), { statusCode: '503', code: 'overloaded', retryAfter: "'1'" });
    assert.deepEqual(contractError(500), { statusCode: '502', code: 'internal_error' });
    assert.deepEqual(contractError(530), { statusCode: '502', code: 'internal_error' });
    // Every status a method answers is declared on it.
    const declared = (methodsByRoute(template).get('GET /')!['MethodResponses'] as { StatusCode: string }[]).map(
      (r) => r.StatusCode,
    );
    for (const status of ['200', '400', '404', '405', '413', '415', '502', '503', '504'])
      assert.ok(declared.includes(status), status);
  });

  test("API Gateway answers a wrong method, another model's name and an unknown path in the contract's format", () => {
    const methods = methodsByRoute(template);
    for (const [path, allow] of [
      ['/', 'GET, POST'],
      ['/v2', 'GET'],
      ['/v2/health/live', 'GET'],
      ['/v2/health/ready', 'GET'],
      ['/v2/models/gpu', 'GET'],
      ['/v2/models/gpu/ready', 'GET'],
      ['/v2/models/gpu/infer', 'POST'],
    ]) {
      const integration = integrationOf(methods.get(`ANY ${path}`)!);
      assert.equal(integration.Type, 'MOCK', path);
      const [response] = integration.IntegrationResponses;
      assert.equal(response!.StatusCode, '405');
      assert.equal(response!.ResponseParameters!['method.response.header.Allow'], `'${allow}'`);
      const body = JSON.parse(response!.ResponseTemplates!['application/json']!) as {
        error: { code: string; message: string };
      };
      assert.equal(body.error.code, 'method_not_allowed');
      assert.equal(body.error.message, `$context.httpMethod is not allowed on ${path}; use ${allow}`);
    }
    for (const route of ['ANY /v2/models/{name}', 'ANY /v2/models/{name}/{proxy+}']) {
      const integration = integrationOf(methods.get(route)!);
      assert.equal(integration.Type, 'MOCK', route);
      const template = integration.IntegrationResponses[0]!.ResponseTemplates!['application/json']!;
      assert.equal(integration.IntegrationResponses[0]!.StatusCode, '404');
      assert.match(template, /"code":"model_not_found"/);
      assert.match(
        template,
        /no model named '\$util\.escapeJavaScript\(\$input\.params\('name'\)\).*'; this API serves 'gpu'/,
      );
    }
    const [, notFound] = onlyResource(template, 'AWS::ApiGateway::GatewayResponse');
    assert.equal(notFound['ResponseType'], 'MISSING_AUTHENTICATION_TOKEN');
    assert.equal(notFound['StatusCode'], '404');
    assert.match(
      (notFound['ResponseTemplates'] as Record<string, string>)['application/json']!,
      /^\{"error":\{"code":"not_found","message":"no route for \$context\.httpMethod \$context\.path"/,
    );
  });

  test('the stage is throttled and writes access logs; the URL is an output', () => {
    const [, stage] = onlyResource(template, 'AWS::ApiGateway::Stage');
    const settings = (stage['MethodSettings'] as Record<string, unknown>[])[0]!;
    assert.equal(settings['ThrottlingRateLimit'], 50);
    assert.equal(settings['ThrottlingBurstLimit'], 80);
    assert.ok(stage['AccessLogSetting']);
    const outputs = Object.keys(template.toJSON()['Outputs'] as object);
    assert.ok(
      outputs.some((o) => /^gpuUrl/.test(o)),
      outputs.join(),
    );
    assert.match(flatten(stack.resolve(api.url)), /^https:\/\/\{Ref:gpuApi\w+\}\.execute-api\./);
  });

  test('ApiAuth.iam() signs the method with AWS_IAM; a CPU instance type runs the CPU image', () => {
    const other = new Stack(tempApp(), 'T');
    new RealtimeApi(other, 'cpu', {
      model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
      compute: Compute.sageMaker({ instanceType: 'ml.c7i.xlarge', volumeSize: 30 }),
      auth: ApiAuth.iam(),
    });
    const t = Template.fromStack(other);
    const methods = resourcesOf(t, 'AWS::ApiGateway::Method');
    assert.equal(methods.length, ROUTES_OF_GPU.length + 8 + 2);
    for (const [id, method] of methods) assert.equal(method['AuthorizationType'], 'AWS_IAM', id);
    // Unsigned requests get the same response type as unknown paths: under IAM it stays API Gateway's 403.
    assert.equal(resourcesOf(t, 'AWS::ApiGateway::GatewayResponse').length, 0);
    const [, model] = onlyResource(t, 'AWS::SageMaker::Model');
    const env = (model['PrimaryContainer'] as { Environment: Record<string, string> }).Environment;
    assert.equal(env[ENV.executionProviders], 'cpu');
    assert.equal(env[ENV.maxBatchSize], undefined);
    const variant = (onlyResource(t, 'AWS::SageMaker::EndpointConfig')[1]['ProductionVariants'] as object[])[0];
    assert.equal((variant as Record<string, unknown>)['VolumeSizeInGB'], 30);
    assertNoBroadS3Grant(t);
  });
});

describe('Compute.sageMaker props', () => {
  test('defaults: 1 instance, scaling 1–2 at 600 invocations/instance/minute, 10 min startup, GPU by type', () => {
    const compute = Compute.sageMaker({ instanceType: 'ml.g5.xlarge' });
    assert.equal(compute.kind, 'sagemaker');
    assert.equal(compute.initialInstanceCount, 1);
    assert.equal(compute.minInstances, 1);
    assert.equal(compute.maxInstances, 2);
    assert.equal(compute.targetInvocationsPerInstance, 600);
    assert.equal(compute.containerStartupHealthCheckTimeout.toSeconds(), 600);
    assert.equal(compute.volumeSize, undefined);
    assert.equal(compute.gpu, true);
    assert.equal(Compute.sageMaker({ instanceType: 'ml.m5.large' }).gpu, false);
    assert.deepEqual(compute.problems(undefined), []);
    assert.equal(Compute.sageMaker({ instanceType: 'ml.g5.xlarge', minInstances: 3 }).maxInstances, 3);
  });

  test('every problem is reported in one error, beside the common ones', () => {
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'bad', {
          apiName: 'no spaces',
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          compute: Compute.sageMaker({
            instanceType: 'g5.xlarge',
            minInstances: 3,
            maxInstances: 2,
            initialInstanceCount: 0,
            targetInvocationsPerInstance: 0,
            containerStartupHealthCheckTimeout: Duration.seconds(30),
            volumeSize: 1000,
          }),
          auth: ApiAuth.jwt({ issuer: 'https://issuer.example.com', audience: ['a'] }),
          batching: { maxBatchSize: 0, maxBatchDelay: Duration.seconds(2) },
          docs: true,
        }),
    );
    const expected = [
      /docs: the playground is not served through SageMaker's REST API/,
      /apiName 'no spaces' is not URL-safe/,
      /instanceType 'g5\.xlarge' is not a SageMaker instance type \(ml\.<family>\.<size>/,
      /maxInstances 2 is less than minInstances 3/,
      /initialInstanceCount must be an integer of at least 1, got 0/,
      /targetInvocationsPerInstance must be a positive number/,
      /containerStartupHealthCheckTimeout 30 s is outside SageMaker's 60–3600 s/,
      /volumeSize 1000 GB is outside SageMaker's 1–512 GB/,
      /batching\.maxBatchSize must be an integer from 1 to 1024, got 0/,
      /batching\.maxBatchDelay 2000 ms is above 1000 ms/,
      /ApiAuth\.jwt\(\) needs an HTTP API; Compute\.sageMaker sits behind a REST API/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    for (const pattern of expected)
      assert.ok(
        problems.some((p) => pattern.test(p)),
        `${pattern} in\n${problems.join('\n')}`,
      );
  });

  test('NVMe types refuse volumeSize; Neuron types are refused; initial count outside min–max', () => {
    assert.deepEqual(Compute.sageMaker({ instanceType: 'ml.g5.2xlarge', volumeSize: 50 }).problems(undefined), [
      'volumeSize cannot be set for ml.g5.2xlarge: it has local NVMe instance storage, and SageMaker refuses VolumeSizeInGB for such types',
    ]);
    assert.match(Compute.sageMaker({ instanceType: 'ml.inf2.xlarge' }).problems(undefined)[0]!, /needs AWS Neuron/);
    assert.deepEqual(
      Compute.sageMaker({ instanceType: 'ml.g5.xlarge', maxInstances: 3, initialInstanceCount: 5 }).problems(undefined),
      ['initialInstanceCount 5 is outside minInstances–maxInstances (1–3)'],
    );
    assert.deepEqual(Compute.sageMaker({ instanceType: 'ml.m5.large', volumeSize: 1 }).problems(3 * 2 ** 30), [
      'the model (3.0 GB) does not fit in volumeSize (1 GB)',
    ]);
  });

  test('batching is refused on Lambda, which serves one request at a time', () => {
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'lambda', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          batching: { maxBatchSize: 8 },
        }),
    );
    assert.deepEqual(problems, [
      'batching applies to the container computes (SageMaker, ECS); Lambda serves one request at a time',
    ]);
  });
});
