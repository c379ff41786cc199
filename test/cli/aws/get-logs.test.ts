/**
 * `arclight get`, `arclight logs` and `arclight predict <api>` as a user runs them (the built CLI, a child process)
 * against AWS API responses in their documented shapes, served over HTTP on loopback to the real AWS SDK clients
 * (AWS_ENDPOINT_URL, static test credentials): pagination followed, throttling retried, or reported in one line.
 * The app is a real synthesized assembly (one API per compute).
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import { readAppApis, type AppApi } from '../../../lib/cli/aws/app-apis.js';
import { formatEvent, parseSince } from '../../../lib/cli/aws/logs.js';
import { runCli, spawnCli, STACK_FRAME, stderrLines, type CliResult } from '../../helpers.js';
import { AwsFixtureServer, jsonError, queryError } from './aws-fixture-server.js';
import { expectedAuthorization, type ReceivedRequest } from './sigv4-verify.js';
import { synthTestApp, TEST_REGION, TEST_STACK } from './test-app.js';

const CREDENTIALS = { accessKeyId: 'AKIDFIXTURE', secretAccessKey: 'fixture-secret-key' };
const STACK_ID = `arn:aws:cloudformation:${TEST_REGION}:123456789012:stack/${TEST_STACK}/5f0ac3e0-0000-11f0-0000-000000000000`;
const PHYSICAL = {
  digitsApi: 'a1b2c3d4e5',
  digitsFunction: 'ArclightOpsTest-digitsFunctionFFEB5781-AbCdEf123456',
  digitsLogs: 'ArclightOpsTest-digitsFunctionLogs7C7FFC35-Zz9Yy8',
  gpuApi: 'r3st4p1id0',
  gpuEndpoint: 'arclightopstest-mobilenetgpu-722f35f1',
  ecsApi: 'h77p4p1id0',
  ecsService: 'arn:aws:ecs:eu-west-1:123456789012:service/ArclightOpsTest-Cluster/digits-ecs-Service-0Ab1',
  ecsCluster: 'ArclightOpsTest-digitsecsClusterD10F95FD-xYz',
};
const DEPLOYED_SHA = 'aa'.repeat(32);

let assembly: string;
let apis: AppApi[];
let aws: AwsFixtureServer;
const apiCalls: ReceivedRequest[] = [];

function api(name: string): AppApi {
  return apis.find((a) => a.apiName === name)!;
}

before(async () => {
  assembly = synthTestApp();
  apis = readAppApis(assembly);
  aws = await new AwsFixtureServer()
    .onPath('/digits-api/', ({ method, path, headers, body }) => {
      apiCalls.push({ method, target: path, headers, body });
      return { status: 200, body: '{"digit":7}' };
    })
    .onPath('/ecs-api/', ({ method, path, headers, body }) => {
      apiCalls.push({ method, target: path, headers, body });
      return { status: 200, body: '{"digit":3}' };
    })
    .start();
});

after(async () => {
  await aws?.close();
  if (assembly) rmSync(assembly, { recursive: true, force: true });
});

/** The recorded responses every test starts from: a deployed, healthy stack with some traffic. */
function healthyFixtures(): void {
  aws.calls.length = 0;
  const digits = api('digits');
  const gpu = api('mobilenet-gpu');
  const ecs = api('digits-ecs');
  const output = (key: string | undefined, url: string, name: string): string =>
    `<member><OutputKey>${key}</OutputKey><OutputValue>${url}</OutputValue><Description>URL of the ${name} API</Description></member>`;
  aws.on('DescribeStacks', {
    body: `<DescribeStacksResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><DescribeStacksResult><Stacks><member><StackName>${TEST_STACK}</StackName><StackId>${STACK_ID}</StackId><CreationTime>2026-12-01T10:00:00.000Z</CreationTime><StackStatus>UPDATE_COMPLETE</StackStatus><Outputs>${output(digits.urlOutputKey, `${aws.url}/digits-api/`, 'digits')}${output(gpu.urlOutputKey, `https://${PHYSICAL.gpuApi}.execute-api.${TEST_REGION}.amazonaws.com/api/`, 'mobilenet-gpu')}${output(ecs.urlOutputKey, `${aws.url}/ecs-api/`, 'digits-ecs')}</Outputs></member></Stacks></DescribeStacksResult><ResponseMetadata><RequestId>7d3f0c9e-0000-4000-8000-000000000001</RequestId></ResponseMetadata></DescribeStacksResponse>`,
  });
  const resource = (logicalId: string | undefined, physicalId: string, type: string): string =>
    `<member><LogicalResourceId>${logicalId}</LogicalResourceId><PhysicalResourceId>${physicalId}</PhysicalResourceId><ResourceType>${type}</ResourceType><LastUpdatedTimestamp>2026-12-01T10:05:00.000Z</LastUpdatedTimestamp><ResourceStatus>UPDATE_COMPLETE</ResourceStatus></member>`;
  const page = (members: string[], nextToken?: string): { body: string } => ({
    body: `<ListStackResourcesResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><ListStackResourcesResult><StackResourceSummaries>${members.join('')}</StackResourceSummaries>${nextToken ? `<NextToken>${nextToken}</NextToken>` : ''}</ListStackResourcesResult><ResponseMetadata><RequestId>7d3f0c9e-0000-4000-8000-000000000002</RequestId></ResponseMetadata></ListStackResourcesResponse>`,
  });
  // Two pages, the digits API's function and log group on the second: found only by following NextToken.
  aws.on(
    'ListStackResources',
    page(
      [
        resource(digits.ids.api, PHYSICAL.digitsApi, 'AWS::ApiGatewayV2::Api'),
        resource(gpu.ids.api, PHYSICAL.gpuApi, 'AWS::ApiGateway::RestApi'),
        resource(gpu.ids.endpoint, PHYSICAL.gpuEndpoint, 'AWS::SageMaker::Endpoint'),
        resource(ecs.ids.api, PHYSICAL.ecsApi, 'AWS::ApiGatewayV2::Api'),
        resource(ecs.ids.service, PHYSICAL.ecsService, 'AWS::ECS::Service'),
        resource(ecs.ids.cluster, PHYSICAL.ecsCluster, 'AWS::ECS::Cluster'),
      ],
      'resources-page-2',
    ),
    page([
      resource(digits.ids.function, PHYSICAL.digitsFunction, 'AWS::Lambda::Function'),
      resource(digits.ids.logGroup, PHYSICAL.digitsLogs, 'AWS::Logs::LogGroup'),
    ]),
  );
  aws.on('GetFunction', {
    body: {
      Configuration: {
        FunctionName: PHYSICAL.digitsFunction,
        FunctionArn: `arn:aws:lambda:${TEST_REGION}:123456789012:function:${PHYSICAL.digitsFunction}`,
        PackageType: 'Image',
        MemorySize: 1769,
        State: 'Active',
        LastUpdateStatus: 'Successful',
        Environment: {
          Variables: {
            ARCLIGHT_MODEL_URI: 's3://cdk-hnb659fds-assets-123456789012-eu-west-1/deadbeef0001.onnx',
            ARCLIGHT_MODEL_SHA256: DEPLOYED_SHA,
          },
        },
      },
      Code: { RepositoryType: 'ECR', ImageUri: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/repo:tag' },
    },
  });
  aws.on('DescribeEndpoint', {
    body: {
      EndpointName: PHYSICAL.gpuEndpoint,
      EndpointArn: `arn:aws:sagemaker:${TEST_REGION}:123456789012:endpoint/${PHYSICAL.gpuEndpoint}`,
      EndpointConfigName: 'cfg',
      EndpointStatus: 'InService',
      ProductionVariants: [{ VariantName: 'AllTraffic', CurrentInstanceCount: 2, DesiredInstanceCount: 2 }],
      CreationTime: 1764583200,
      LastModifiedTime: 1764583200,
    },
  });
  aws.on('DescribeServices', {
    body: {
      services: [
        {
          serviceArn: PHYSICAL.ecsService,
          serviceName: 'digits-ecs-Service-0Ab1',
          status: 'ACTIVE',
          runningCount: 1,
          desiredCount: 2,
          deployments: [{ id: 'ecs-svc/1', status: 'PRIMARY', rolloutState: 'IN_PROGRESS' }],
        },
      ],
      failures: [],
    },
  });
  // Two pages: the count and 4xx first, then (after NextToken) 5xx and p99, as GetMetricData may split them.
  aws.on(
    'GetMetricData',
    {
      body: {
        MetricDataResults: [
          { Id: 'requests', Label: 'Count', Timestamps: [1764658800], Values: [1200], StatusCode: 'Complete' },
          { Id: 'clienterrors', Label: '4xx', Timestamps: [1764658800], Values: [7], StatusCode: 'Complete' },
        ],
        NextToken: 'page-2',
      },
    },
    {
      body: {
        MetricDataResults: [
          { Id: 'servererrors', Label: '5xx', Timestamps: [1764658800], Values: [6], StatusCode: 'Complete' },
          { Id: 'p99', Label: 'Latency', Timestamps: [1764658800], Values: [182.4], StatusCode: 'Complete' },
        ],
      },
    },
    // Every later call (the other APIs): one page.
    {
      body: {
        MetricDataResults: [
          { Id: 'requests', Timestamps: [], Values: [], StatusCode: 'Complete' },
          { Id: 'servererrors', Timestamps: [], Values: [], StatusCode: 'Complete' },
        ],
      },
    },
  );
}

function awsEnv(extra: Record<string, string> = {}): Record<string, string> {
  return {
    AWS_ENDPOINT_URL: aws.url,
    AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
    AWS_SESSION_TOKEN: '',
    AWS_PROFILE: '',
    AWS_REGION: '',
    AWS_CONFIG_FILE: '/nonexistent/arclight-test-config',
    AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/arclight-test-credentials',
    AWS_EC2_METADATA_DISABLED: 'true',
    NO_COLOR: '',
    ...extra,
  };
}

function cli(args: string[], extra: Record<string, string> = {}): Promise<CliResult> {
  return runCli([...args, '--assembly', assembly], { env: awsEnv(extra), timeoutMs: 60_000 });
}

function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, `exit code ${result.code}; stderr:\n${result.stderr}`);
  const lines = stderrLines(result.stderr);
  assert.equal(lines.length, 1, `one line on stderr, got:\n${lines.join('\n')}`);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK_FRAME);
}

interface Report {
  name: string;
  compute: string;
  auth: string;
  stack: string;
  region: string;
  stackStatus: string;
  url?: string;
  state?: string;
  model: { uri?: string; version?: string; sha256?: string; source: string };
  traffic?: { requests: number; clientErrors: number; serverErrors: number; errorRate: number; p99LatencyMs?: number };
  problems: string[];
}

describe('arclight get', { concurrency: false }, () => {
  beforeEach(healthyFixtures);

  test('every API: backend, URL, stack status, compute state, model, last hour from CloudWatch (both pages)', async () => {
    const result = await cli(['get', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const reports = JSON.parse(result.stdout) as Report[];
    assert.deepEqual(
      reports.map((r) => [r.name, r.compute, r.auth, r.region, r.stackStatus]),
      [
        ['digits', 'lambda', 'iam', TEST_REGION, 'UPDATE_COMPLETE'],
        ['mobilenet-gpu', 'sagemaker', 'iam', TEST_REGION, 'UPDATE_COMPLETE'],
        ['digits-ecs', 'ecs', 'jwt', TEST_REGION, 'UPDATE_COMPLETE'],
      ],
    );
    const [digits, gpu, ecs] = reports as [Report, Report, Report];
    assert.equal(digits.url, `${aws.url}/digits-api/`);
    assert.equal(digits.state, 'Active');
    // The deployed function's environment, not the synthesized template's.
    assert.deepEqual(digits.model, {
      uri: 's3://cdk-hnb659fds-assets-123456789012-eu-west-1/deadbeef0001.onnx',
      version: 'deadbeef0001',
      sha256: DEPLOYED_SHA,
      source: 'deployed function',
    });
    assert.deepEqual(digits.traffic, {
      requests: 1200,
      clientErrors: 7,
      serverErrors: 6,
      errorRate: 0.005,
      p99LatencyMs: 182.4,
    });
    assert.deepEqual(digits.problems, []);
    assert.equal(gpu.url, `https://${PHYSICAL.gpuApi}.execute-api.${TEST_REGION}.amazonaws.com/api/`);
    assert.equal(gpu.state, 'InService, 2 instance(s)');
    assert.equal(gpu.model.source, 'synthesized template');
    assert.equal(gpu.model.sha256, api('mobilenet-gpu').model.sha256);
    assert.match(gpu.model.sha256!, /^[0-9a-f]{64}$/);
    assert.deepEqual(gpu.traffic, { requests: 0, clientErrors: 0, serverErrors: 0, errorRate: 0 });
    assert.equal(ecs.state, 'ACTIVE, 1/2 tasks running, rollout IN_PROGRESS');

    // What was asked: the stack by name once each, the right physical ids, CloudWatch's dimensions per API flavour.
    assert.equal(aws.callsOf('DescribeStacks').length, 1);
    assert.equal(aws.callsOf('DescribeStacks')[0]!.params['StackName'], TEST_STACK);
    assert.deepEqual(
      aws.callsOf('ListStackResources').map((call) => call.params['NextToken']),
      [undefined, 'resources-page-2'],
    );
    assert.equal(aws.callsOf('GetFunction')[0]!.params['FunctionName'], PHYSICAL.digitsFunction);
    assert.equal(aws.callsOf('DescribeEndpoint')[0]!.params['EndpointName'], PHYSICAL.gpuEndpoint);
    assert.deepEqual(aws.callsOf('DescribeServices')[0]!.params, {
      cluster: PHYSICAL.ecsCluster,
      services: [PHYSICAL.ecsService],
    });
    const metricCalls = aws.callsOf('GetMetricData');
    assert.equal(metricCalls.length, 4, 'two pages for digits, one each for the others');
    assert.equal(metricCalls[0]!.params['NextToken'], undefined);
    assert.equal(metricCalls[1]!.params['NextToken'], 'page-2');
    type Query = { Id: string; MetricStat: { Metric: { MetricName: string; Dimensions: unknown }; Stat: string } };
    const queries = (i: number): Query[] => metricCalls[i]!.params['MetricDataQueries'] as Query[];
    assert.deepEqual(
      queries(0).map((q) => [q.Id, q.MetricStat.Metric.MetricName, q.MetricStat.Stat]),
      [
        ['requests', 'Count', 'Sum'],
        ['clienterrors', '4xx', 'Sum'],
        ['servererrors', '5xx', 'Sum'],
        ['p99', 'Latency', 'p99'],
      ],
    );
    assert.deepEqual(queries(0)[0]!.MetricStat.Metric.Dimensions, [
      { Name: 'ApiId', Value: PHYSICAL.digitsApi },
      { Name: 'Stage', Value: '$default' },
    ]);
    assert.deepEqual(queries(2)[1]!.MetricStat.Metric.MetricName, '4XXError');
    assert.deepEqual(queries(2)[0]!.MetricStat.Metric.Dimensions, [
      { Name: 'ApiName', Value: 'mobilenet-gpu' },
      { Name: 'Stage', Value: 'api' },
    ]);
    const start = Number(metricCalls[0]!.params['StartTime']);
    const end = Number(metricCalls[0]!.params['EndTime']);
    assert.equal(end - start, 3600, 'the last hour');
    // Signed with the static test credentials, for the stack's region.
    assert.match(
      String(aws.calls[0]!.headers['authorization']),
      new RegExp(`Credential=${CREDENTIALS.accessKeyId}/\\d{8}/${TEST_REGION}/cloudformation/aws4_request`),
    );
  });

  test('one API by name, as text', async () => {
    const result = await cli(['get', 'digits']);
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.trimEnd().split('\n');
    assert.equal(lines[0], 'digits');
    assert.ok(lines.includes('  backend    lambda, auth iam'));
    assert.ok(lines.includes(`  stack      ${TEST_STACK} (${TEST_REGION}): UPDATE_COMPLETE`));
    assert.ok(lines.includes(`  sha256     ${DEPLOYED_SHA} (deployed function)`));
    assert.ok(lines.includes('  last hour  1200 requests, 0.50% errors (6 5xx, 7 4xx), p99 182 ms'));
    assert.equal(aws.callsOf('DescribeEndpoint').length, 0, 'only the API asked for');
  });

  test('DescribeStacks throttled once: retried by the SDK, the answer complete', async () => {
    const ok = aws.callsOf('DescribeStacks');
    assert.equal(ok.length, 0);
    const queue = (aws as unknown as { queues: Map<string, unknown[]> }).queues;
    aws.on('DescribeStacks', queryError('Throttling', 'Rate exceeded'), queue.get('DescribeStacks')![0] as never);
    const result = await cli(['get', 'digits', '--json']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(aws.callsOf('DescribeStacks').length, 2);
    assert.equal((JSON.parse(result.stdout) as Report[])[0]!.stackStatus, 'UPDATE_COMPLETE');
  });

  test('CloudFormation throttling past every retry: one line naming the call and what to do', async () => {
    aws.on('DescribeStacks', queryError('Throttling', 'Rate exceeded'));
    const result = await cli(['get']);
    assertOneLineError(
      result,
      /^arclight: error: DescribeStacks ArclightOpsTest failed: Throttling: Rate exceeded\. AWS throttled the calls even after retries/,
    );
    assert.equal(aws.callsOf('DescribeStacks').length, 4, 'the SDK tried 4 times');
  });

  test('CloudWatch throttled past every retry: the rest of the report stands, the problem named', async () => {
    aws.on('GetMetricData', jsonError('Throttling', 'Rate exceeded'));
    const result = await cli(['get', 'digits', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const [digits] = JSON.parse(result.stdout) as Report[];
    assert.equal(digits!.state, 'Active');
    assert.equal(digits!.traffic, undefined);
    assert.deepEqual(digits!.problems, ["GetMetricData for API 'digits' failed: Throttling: Rate exceeded"]);
  });

  test("a stack that is not deployed: NOT_DEPLOYED, the template's model", async () => {
    aws.on('DescribeStacks', queryError('ValidationError', `Stack with id ${TEST_STACK} does not exist`));
    const result = await cli(['get', '--json']);
    assert.equal(result.code, 0, result.stderr);
    const reports = JSON.parse(result.stdout) as Report[];
    assert.deepEqual(
      reports.map((r) => r.stackStatus),
      ['NOT_DEPLOYED', 'NOT_DEPLOYED', 'NOT_DEPLOYED'],
    );
    assert.equal(reports[0]!.model.sha256, api('digits').model.sha256);
    assert.match(reports[0]!.problems[0]!, /stack ArclightOpsTest is not deployed in eu-west-1/);
  });

  test('an API the app does not have: one line listing those it has', async () => {
    assertOneLineError(
      await cli(['get', 'nope']),
      /the app has no API named 'nope'\. Its APIs: digits, mobilenet-gpu, digits-ecs$/,
    );
  });
});

describe('arclight predict <api>', { concurrency: false }, () => {
  beforeEach(healthyFixtures);

  test('the name resolves to the deployed URL; the API is IAM, so the request is SigV4-signed for its region', async () => {
    apiCalls.length = 0;
    const result = await cli(['predict', 'digits', '--data', '{"pixels":[0]}']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '{"digit":7}\n');
    assert.equal(apiCalls.length, 1);
    const call = apiCalls[0]!;
    assert.equal(call.target, '/digits-api/');
    assert.match(String(call.headers['authorization']), new RegExp(`/${TEST_REGION}/execute-api/aws4_request`));
    assert.equal(call.headers['authorization'], await expectedAuthorization(call, CREDENTIALS, TEST_REGION));
  });
});

describe('arclight predict <jwt api>', { concurrency: false }, () => {
  beforeEach(healthyFixtures);

  test('the template says JWT: the token goes as a bearer token, no SigV4; without one, one line and nothing sent', async () => {
    apiCalls.length = 0;
    const result = await cli(['predict', 'digits-ecs', '--token', 'header.payload.signature', '--data', '{}']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, '{"digit":3}\n');
    assert.equal(apiCalls.length, 1);
    assert.equal(apiCalls[0]!.headers['authorization'], 'Bearer header.payload.signature');
    assert.equal(apiCalls[0]!.headers['x-amz-date'], undefined);
    assertOneLineError(
      await cli(['predict', 'digits-ecs', '--data', '{}'], { ARCLIGHT_TOKEN: '' }),
      /the API takes a JWT and none was given\. Pass --token <jwt> or set ARCLIGHT_TOKEN$/,
    );
    assert.equal(apiCalls.length, 1);
  });
});

/** A FilterLogEvents event as the API reference shows one. */
function event(id: string, at: number, message: string): Record<string, unknown> {
  return {
    logStreamName: '2026/12/02/[$LATEST]0123456789abcdef',
    timestamp: at,
    message,
    ingestionTime: at + 50,
    eventId: id,
  };
}

describe('arclight logs', { concurrency: false }, () => {
  // A minute ago: inside the default --since window whenever the test runs.
  const t0 = Math.floor(Date.now() / 1000) * 1000 - 60_000;
  const iso = new Date(t0).toISOString();
  const record = (level: string, message: string, extra: Record<string, unknown> = {}): string =>
    JSON.stringify({ level, timestamp: new Date(t0).toISOString(), service: 'digits', message, ...extra });

  beforeEach(() => {
    healthyFixtures();
    aws.on(
      'FilterLogEvents',
      {
        body: {
          events: [
            event('e1', t0, 'START RequestId: 8f5d Version: $LATEST'),
            event('e2', t0 + 1, record('INFO', 'request', { requestId: 'req-1', status: 200, latencyMs: 12 })),
          ],
          nextToken: 'logs-page-2',
          searchedLogStreams: [],
        },
      },
      {
        body: {
          events: [event('e3', t0 + 2, record('ERROR', 'predictor failed', { requestId: 'req-2', status: 500 }))],
          searchedLogStreams: [],
        },
      },
    );
  });

  test('every page of the log group since --since, JSON lines pretty-printed, no colour off a terminal', async () => {
    const before = Date.now();
    const result = await cli(['logs', 'digits', '--since', '1h']);
    assert.equal(result.code, 0, result.stderr);
    assert.deepEqual(result.stdout.trimEnd().split('\n'), [
      `${iso} START RequestId: 8f5d Version: $LATEST`,
      `${iso} INFO  [req-1] request status=200 latencyMs=12`,
      `${iso} ERROR [req-2] predictor failed status=500`,
    ]);
    const calls = aws.callsOf('FilterLogEvents');
    assert.equal(calls.length, 2);
    assert.equal(calls[0]!.params['logGroupName'], PHYSICAL.digitsLogs);
    assert.equal(calls[1]!.params['nextToken'], 'logs-page-2');
    const startTime = Number(calls[0]!.params['startTime']);
    assert.ok(Math.abs(startTime - (before - 3_600_000)) < 30_000, `startTime ${startTime} is about an hour ago`);
    assert.equal(calls[0]!.params['filterPattern'], undefined);
  });

  test("--request-id filters on our JSON records' requestId", async () => {
    const result = await cli(['logs', 'digits', '--request-id', 'req-2']);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(aws.callsOf('FilterLogEvents')[0]!.params['filterPattern'], '{ $.requestId = "req-2" }');
  });

  test('FilterLogEvents throttled once: retried; throttled always: one line', async () => {
    const queue = (aws as unknown as { queues: Map<string, unknown[]> }).queues.get('FilterLogEvents')!;
    aws.on('FilterLogEvents', jsonError('ThrottlingException', 'Rate exceeded'), ...(queue as never[]));
    const retried = await cli(['logs', 'digits']);
    assert.equal(retried.code, 0, retried.stderr);
    assert.equal(retried.stdout.trimEnd().split('\n').length, 3);
    aws.on('FilterLogEvents', jsonError('ThrottlingException', 'Rate exceeded'));
    assertOneLineError(
      await cli(['logs', 'digits']),
      new RegExp(`FilterLogEvents ${PHYSICAL.digitsLogs} failed: ThrottlingException: Rate exceeded\\. AWS throttled`),
    );
  });

  test('--follow prints new events as they come, each once, until SIGINT', async () => {
    aws.on(
      'FilterLogEvents',
      { body: { events: [event('e1', t0, record('INFO', 'first', { requestId: 'a' }))] } },
      { body: { events: [event('e1', t0, record('INFO', 'first', { requestId: 'a' }))] } },
      {
        body: {
          events: [
            event('e1', t0, record('INFO', 'first', { requestId: 'a' })),
            event('e9', t0 + 5000, record('WARN', 'second', { requestId: 'b' })),
          ],
        },
      },
    );
    const child = spawnCli(['logs', 'digits', '--follow', '--assembly', assembly], { env: awsEnv() });
    let stdout = '';
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    const deadline = Date.now() + 45_000;
    while (!stdout.includes('second') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    child.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    assert.equal(code, 0);
    assert.deepEqual(stdout.trimEnd().split('\n'), [`${iso} INFO  [a] first`, `${iso} WARN  [b] second`]);
    const calls = aws.callsOf('FilterLogEvents');
    assert.ok(calls.length >= 3);
    // Later polls start at the last event seen (the first one asks from --since's default, 10 minutes back).
    assert.ok(Number(calls[0]!.params['startTime']) < t0);
    assert.equal(Number(calls[1]!.params['startTime']), t0);
  });

  test('a --since that is neither a duration nor a time: one line', async () => {
    assertOneLineError(await cli(['logs', 'digits', '--since', 'yesterday']), /--since 'yesterday' is neither/);
    assert.equal(aws.calls.length, 0);
  });
});

describe('log lines', () => {
  test("colour only when asked; an error's stack indented below its line", () => {
    const message = JSON.stringify({
      level: 'ERROR',
      timestamp: '2026-12-02T07:00:00.000Z',
      message: 'boom',
      requestId: 'r',
      error: { type: 'TypeError', message: 'x', stack: 'TypeError: x\n    at f (a.js:1:1)' },
    });
    const plain = formatEvent({ timestamp: 0, message }, false);
    assert.equal(
      plain,
      '2026-12-02T07:00:00.000Z ERROR [r] boom error={"type":"TypeError","message":"x","stack":"TypeError: x\\n    at f (a.js:1:1)"}\n    TypeError: x\n        at f (a.js:1:1)',
    );
    const coloured = formatEvent({ timestamp: 0, message }, true);
    const ESC = String.fromCharCode(27);
    assert.ok(coloured.includes(`${ESC}[31mERROR${ESC}[0m`), 'ERROR in red');
    assert.equal(coloured.replace(new RegExp(`${ESC}\\[\\d+m`, 'g'), ''), plain);
  });

  test('--since: durations and times', () => {
    const now = Date.parse('2026-12-02T07:00:00Z');
    assert.equal(parseSince('10m', now), now - 600_000);
    assert.equal(parseSince('1.5h', now), now - 5_400_000);
    assert.equal(parseSince('2026-12-01T00:00:00Z', now), Date.parse('2026-12-01T00:00:00Z'));
    assert.throws(() => parseSince('10 parsecs', now), /neither a duration nor a time/);
  });
});
