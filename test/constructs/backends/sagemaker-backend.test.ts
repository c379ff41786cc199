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
import { ENV } from '../../../lib/contract.js';
import { Compute, SAGEMAKER_LIMITS } from '../../../lib/constructs/compute.js';
import { VARIANT_NAME } from '../../../lib/constructs/backends/sagemaker-backend.js';
import { contractRoutes } from '../../../lib/constructs/backends/sagemaker-rest-api.js';
import {
  API_METADATA_KEY,
  ApiAuth,
  ModelSource,
  Predictor,
  RealtimeApi,
  RestApiAccessLogs,
} from '../../../lib/index.js';
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
} from '../../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../../helpers.js';
import { assertIntegrationResponsesSound, overrideStatuses, readmeInvokeTable, selects } from '../rest-api-checks.js';

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
    // SageMaker's default GPU host runs NVIDIA 470 (CUDA 11.4) on ml.g5; the CUDA 12 image needs the 550 host.
    assert.equal(variants[0]!['InferenceAmiVersion'], 'al2-ami-sagemaker-inference-gpu-3-1');
    assert.match(endpointName(), /^[a-z0-9-]{1,63}$/);
    // An update keeps the autoscaled instance count (and weight) instead of restarting at InitialInstanceCount.
    const [, endpoint] = onlyResource(template, 'AWS::SageMaker::Endpoint');
    assert.equal(endpoint['RetainAllVariantProperties'], true);
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
    const onStar = statements.filter((s) => s.resources.includes('*'));
    assert.deepEqual(
      onStar.map((s) => s.actions).sort(),
      [['cloudwatch:PutMetricData'], ['ecr:GetAuthorizationToken']],
      `only the calls with no resource-level permissions take * (${roleId})`,
    );
  });

  test("the execution role has what SageMaker's CreateModel docs list for a container: logs and metrics", () => {
    const statements = policyStatements(template).filter((s) => s.holder.startsWith('gpuExecutionRole'));
    const [, logGroup] = onlyResource(template, 'AWS::Logs::LogGroup', 'gpuEndpointLogs');
    assert.equal(logGroup['LogGroupName'], `/aws/sagemaker/Endpoints/${endpointName()}`);
    const onEndpointLogs = statements
      .filter((s) => s.resources.length === 1 && /^\{GetAtt:gpuEndpointLogs\w+\.Arn\}$/.test(s.resources[0]!))
      .flatMap((s) => s.actions)
      .sort();
    assert.deepEqual(onEndpointLogs, [
      'logs:CreateLogGroup',
      'logs:CreateLogStream',
      'logs:DescribeLogStreams',
      'logs:PutLogEvents',
    ]);
    const metrics = statements.filter((s) => s.actions.includes('cloudwatch:PutMetricData'));
    assert.equal(metrics.length, 1);
    assert.deepEqual(metrics[0]!.actions, ['cloudwatch:PutMetricData']);
    assert.deepEqual(metrics[0]!.conditions, { StringLike: { 'cloudwatch:namespace': '/aws/sagemaker/*' } });
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
    // The stage goes live only once that policy is attached.
    const [policyId] = onlyResource(template, 'AWS::IAM::Policy', 'gpuInvokeRole');
    const stage = Object.values(template.findResources('AWS::ApiGateway::Stage'))[0] as { DependsOn?: string[] };
    assert.ok(stage.DependsOn?.includes(policyId), `${policyId} in ${stage.DependsOn?.join()}`);
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
  'GET /v2/models/gpu/stats',
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

  test('one integration response per status, every status declared, patterns disjoint (every method)', () => {
    const { methods, responses } = assertIntegrationResponsesSound(template);
    // Each contract path also has an ANY method answering 405; another model's name two more answering 404.
    assert.equal(methods, ROUTES_OF_GPU.length + contractRoutes('gpu').length + 2);
    assert.ok(responses >= ROUTES_OF_GPU.length * 6, `${responses} integration responses checked`);
  });

  test("InvokeEndpoint's statuses map where the README's table says", () => {
    const rows = readmeInvokeTable();
    assert.equal(rows.length, 6, rows.map((r) => r.text).join(' / '));
    const covered = rows.flatMap((r) => r.statuses).sort((x, y) => x - y);
    assert.deepEqual(
      covered,
      Array.from({ length: 400 }, (_, i) => 200 + i),
      'the table covers 200–599 once each',
    );
    for (const route of ROUTES_OF_GPU) {
      const responses = integrationOf(methodsByRoute(template).get(route)!).IntegrationResponses;
      for (const row of rows) {
        for (const status of row.statuses) {
          const matching = responses.filter((r) => r.SelectionPattern && selects(r.SelectionPattern, status));
          const response = matching[0] ?? responses.find((r) => r.SelectionPattern === undefined)!;
          assert.equal(response.StatusCode, row.clientStatus, `${route}: InvokeEndpoint ${status} (${row.text})`);
          if (row.code) {
            const body = JSON.parse(response.ResponseTemplates!['application/json']!) as Record<string, string>;
            assert.deepEqual(Object.keys(body), ['error', 'code', 'requestId'], 'the contract error shape');
            assert.equal(body['code'], row.code, `${route}: InvokeEndpoint ${status}`);
            assert.equal(body['requestId'], '$context.requestId');
            assert.equal(response.ResponseParameters!['method.response.header.x-request-id'], 'context.requestId');
          }
        }
      }
    }
  });

  test('a container error keeps its status (contract statuses) and its body; a 503 keeps Retry-After', () => {
    const responses = integrationOf(methodsByRoute(template).get('POST /v2/models/gpu/infer')!).IntegrationResponses;
    const modelError = responses.find((r) => r.SelectionPattern === '424')!;
    assert.equal(modelError.StatusCode, '502', 'a status outside the contract stays 502');
    const vtl = modelError.ResponseTemplates!['application/json']!;
    assert.match(vtl, /\$util\.parseJson\(\$input\.body\)/);
    assert.deepEqual(overrideStatuses(vtl), ['400', '404', '405', '408', '413', '415', '500', '503', '504']);
    assert.equal(vtl.match(/responseOverride\.status/g)?.length, 1, 'an override may be applied only once');
    assert.match(
      vtl,
      /#if\("\$error\.OriginalStatusCode" == "503"\)\n#set\(\$context\.responseOverride\.header\.Retry-After = "1"\)/,
    );
    assert.match(vtl, /\n\$error\.OriginalMessage$/);
    const throttled = responses.find((r) => r.SelectionPattern === '429|503')!;
    assert.equal(throttled.ResponseParameters!['method.response.header.Retry-After'], "'1'");
    // Every status a method answers is declared on it.
    const declared = (methodsByRoute(template).get('GET /')!['MethodResponses'] as { StatusCode: string }[]).map(
      (r) => r.StatusCode,
    );
    for (const status of ['200', '400', '404', '405', '413', '415', '500', '502', '503', '504'])
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
      ['/v2/models/gpu/stats', 'GET'],
    ]) {
      const integration = integrationOf(methods.get(`ANY ${path}`)!);
      assert.equal(integration.Type, 'MOCK', path);
      const [response] = integration.IntegrationResponses;
      assert.equal(response!.StatusCode, '405');
      assert.equal(response!.ResponseParameters!['method.response.header.Allow'], `'${allow}'`);
      const body = JSON.parse(response!.ResponseTemplates!['application/json']!) as Record<string, string>;
      assert.deepEqual(body, {
        error: `$context.httpMethod is not allowed on ${path}; use ${allow}`,
        code: 'method_not_allowed',
        requestId: '$context.requestId',
      });
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
    const [, notFound] = onlyResource(template, 'AWS::ApiGateway::GatewayResponse', 'gpuApiNotFound');
    assert.equal(notFound['ResponseType'], 'MISSING_AUTHENTICATION_TOKEN');
    assert.equal(notFound['StatusCode'], '404');
    assert.match(
      (notFound['ResponseTemplates'] as Record<string, string>)['application/json']!,
      /^\{"error":"no route for \$context\.httpMethod \$context\.path","code":"not_found","requestId":"\$context\.requestId"\}$/,
    );
  });

  test("API Gateway's own timeout, size and 5xx answers use the contract's error shape", () => {
    const byType = new Map(
      resourcesOf(template, 'AWS::ApiGateway::GatewayResponse').map(([, r]) => [r['ResponseType'] as string, r]),
    );
    const expected: [string, string | undefined, string][] = [
      ['INTEGRATION_TIMEOUT', '504', 'predictor_timeout'],
      ['REQUEST_TOO_LARGE', '413', 'payload_too_large'],
      ['DEFAULT_5XX', undefined, 'internal_error'],
    ];
    for (const [type, status, code] of expected) {
      const response = byType.get(type);
      assert.ok(response, type);
      assert.equal(response['StatusCode'], status, type);
      const body = (response['ResponseTemplates'] as Record<string, string>)['application/json']!;
      // API Gateway substitutes the variables (messageString comes quoted); the rest must already be JSON.
      const substituted = body
        .replace('$context.error.messageString', '"Internal server error"')
        .replace('$context.requestId', 'req-1');
      const parsed = JSON.parse(substituted) as Record<string, string>;
      assert.deepEqual(Object.keys(parsed), ['error', 'code', 'requestId'], type);
      assert.equal(parsed['code'], code);
      assert.equal(parsed['requestId'], 'req-1');
    }
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
    // Each route's method, an ANY (405) per path, and the other-model catch-alls.
    const paths = new Set(ROUTES_OF_GPU.map((route) => route.split(' ')[1]));
    assert.equal(methods.length, ROUTES_OF_GPU.length + paths.size + 2);
    for (const [id, method] of methods) assert.equal(method['AuthorizationType'], 'AWS_IAM', id);
    // Unsigned requests get the same response type as unknown paths: under IAM it stays API Gateway's 403.
    const types = resourcesOf(t, 'AWS::ApiGateway::GatewayResponse').map(([, r]) => r['ResponseType']);
    assert.ok(!types.includes('MISSING_AUTHENTICATION_TOKEN'), types.join());
    const [, model] = onlyResource(t, 'AWS::SageMaker::Model');
    const env = (model['PrimaryContainer'] as { Environment: Record<string, string> }).Environment;
    assert.equal(env[ENV.executionProviders], 'cpu');
    assert.equal(env[ENV.maxBatchSize], undefined);
    const variant = (onlyResource(t, 'AWS::SageMaker::EndpointConfig')[1]['ProductionVariants'] as object[])[0];
    assert.equal((variant as Record<string, unknown>)['VolumeSizeInGB'], 30);
    assert.equal((variant as Record<string, unknown>)['InferenceAmiVersion'], undefined, 'a CPU host needs no driver');
    assertNoBroadS3Grant(t);
  });
});

describe('REST API access logs in a fresh account', () => {
  test('by default the stack sets the account-level CloudWatch Logs role once, retained, before any stage logs', () => {
    const app = tempApp();
    const other = new Stack(app, 'Fresh');
    for (const id of ['one', 'two']) {
      new RealtimeApi(other, id, {
        model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
        compute: Compute.sageMaker({ instanceType: 'ml.m5.large' }),
        auth: ApiAuth.iam(),
      });
    }
    const t = Template.fromStack(other);
    const accounts = Object.entries(t.findResources('AWS::ApiGateway::Account'));
    assert.equal(accounts.length, 1, 'one account setting per stack, however many REST APIs');
    const [accountId, account] = accounts[0]! as [string, Record<string, unknown>];
    assert.equal(account['DeletionPolicy'], 'Retain');
    const roleRef = flatten((account['Properties'] as Record<string, unknown>)['CloudWatchRoleArn']);
    const roleId = /^\{GetAtt:(\w+)\.Arn\}$/.exec(roleRef)![1]!;
    const role = t.toJSON()['Resources'][roleId] as Record<string, unknown>;
    assert.equal(role['DeletionPolicy'], 'Retain', 'other REST APIs of the region may log through it by then');
    const props = role['Properties'] as Record<string, unknown>;
    assert.match(JSON.stringify(props['AssumeRolePolicyDocument']), /apigateway\.amazonaws\.com/);
    assert.match(flatten(props['ManagedPolicyArns']), /service-role\/AmazonAPIGatewayPushToCloudWatchLogs/);
    const stages = Object.values(t.findResources('AWS::ApiGateway::Stage')) as {
      DependsOn?: string[];
      Properties: Record<string, unknown>;
    }[];
    assert.equal(stages.length, 2);
    for (const stage of stages) {
      assert.ok(stage.Properties['AccessLogSetting']);
      assert.ok(stage.DependsOn?.includes(accountId), 'the stage is created once the account setting exists');
    }
  });

  test('EXISTING_ACCOUNT_ROLE logs without touching the account; OFF neither logs nor touches it', () => {
    const other = new Stack(tempApp(), 'Modes');
    new RealtimeApi(other, 'existing', {
      model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
      compute: Compute.sageMaker({ instanceType: 'ml.m5.large', accessLogs: RestApiAccessLogs.EXISTING_ACCOUNT_ROLE }),
    });
    new RealtimeApi(other, 'off', {
      model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
      compute: Compute.sageMaker({ instanceType: 'ml.m5.large', accessLogs: RestApiAccessLogs.OFF }),
    });
    const t = Template.fromStack(other);
    assert.equal(resourcesOf(t, 'AWS::ApiGateway::Account').length, 0);
    const [, existing] = onlyResource(t, 'AWS::ApiGateway::Stage', 'existingApi');
    assert.ok(existing['AccessLogSetting']);
    const [, off] = onlyResource(t, 'AWS::ApiGateway::Stage', 'offApi');
    assert.equal(off['AccessLogSetting'], undefined);
    assert.equal(resourcesOf(t, 'AWS::Logs::LogGroup', 'offAccessLogs').length, 0);
    assertIntegrationResponsesSound(t);
  });

  test('inferenceAmiVersion: given wins; a GPU host image on a CPU type, or a malformed one, is refused', () => {
    const given = Compute.sageMaker({
      instanceType: 'ml.g6.xlarge',
      inferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-2',
    });
    assert.equal(given.inferenceAmiVersion, 'al2-ami-sagemaker-inference-gpu-2');
    assert.deepEqual(
      Compute.sageMaker({
        instanceType: 'ml.m5.large',
        inferenceAmiVersion: 'al2-ami-sagemaker-inference-gpu-3-1',
      }).problems(undefined),
      ["inferenceAmiVersion 'al2-ami-sagemaker-inference-gpu-3-1' is a GPU host image; ml.m5.large has no GPU"],
    );
    assert.deepEqual(
      Compute.sageMaker({ instanceType: 'ml.g5.xlarge', inferenceAmiVersion: 'AL2 gpu' }).problems(undefined),
      ["inferenceAmiVersion 'AL2 gpu' is not a SageMaker inference AMI version"],
    );
  });

  test('an accessLogs value that is not one of RestApiAccessLogs is refused at synth', () => {
    const compute = Compute.sageMaker({
      instanceType: 'ml.m5.large',
      accessLogs: 'sometimes' as unknown as RestApiAccessLogs,
    });
    assert.deepEqual(compute.problems(undefined), [
      "accessLogs 'sometimes' is not one of RestApiAccessLogs: create-account-role, existing-account-role, off",
    ]);
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
