/**
 * RealtimeApi, synthesized for real: four stacks in one app (a model asset with the digits predictor; an object in an
 * imported bucket with every compute knob turned, IAM auth and a grantInvoke; an `s3://` URI with the OIP default
 * predictor; an object in a bucket of the same stack), then each template read back: the image function, the env
 * contract, the HTTP API and its stage, logs, IAM, warnings. Props that cannot be deployed fail at construction with
 * one error listing every problem.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Duration, Size, Stack, type App } from 'aws-cdk-lib';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import { Template } from 'aws-cdk-lib/assertions';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { ENV } from '../../lib/contract.js';
import { ApiAuth, Compute, ModelSource, Predictor, RealtimeApi } from '../../lib/index.js';
import { API_METADATA_KEY } from '../../lib/constructs/realtime-api.js';
import {
  assertNoBroadS3Grant,
  assertOneProblem,
  flatten,
  objectArnOf,
  onlyResource,
  policyStatements,
  resourcesOf,
  sha256,
  tempApp,
  thrownProblems,
  useScratchTmpdir,
} from '../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR } from '../helpers.js';

const scratch = useScratchTmpdir();

/** The HTTP contract of DESIGN.md as API Gateway route keys, plus the two OIP routes the runtime also serves. */
const ROUTE_KEYS = [
  'POST /',
  'GET /',
  'GET /v2',
  'GET /v2/health/live',
  'GET /v2/health/ready',
  'GET /v2/models/{name}',
  'GET /v2/models/{name}/ready',
  'POST /v2/models/{name}/infer',
  // The catch-all: unknown paths and wrong methods reach the function for the contract's JSON 404/405.
  '$default',
];
/** Access log variables HTTP APIs document (a subset; REST-only ones such as $context.resourcePath are absent). */
const HTTP_API_LOG_VARIABLES = [
  '$context.accountId',
  '$context.apiId',
  '$context.requestId',
  '$context.extendedRequestId',
  '$context.identity.sourceIp',
  '$context.identity.userAgent',
  '$context.identity.caller',
  '$context.identity.user',
  '$context.requestTime',
  '$context.requestTimeEpoch',
  '$context.httpMethod',
  '$context.routeKey',
  '$context.path',
  '$context.protocol',
  '$context.status',
  '$context.responseLength',
  '$context.stage',
  '$context.domainName',
  '$context.error.message',
];
const MB = 2 ** 20;
const TUNED_SHA = 'AB'.repeat(32);
const DIGITS_CONFIG = { labels: ['zero', 'one'], threshold: 0.25, nested: { on: true } };

interface Synthesized {
  readonly stack: Stack;
  readonly api: RealtimeApi;
  readonly template: Template;
  readonly warnings: string[];
}

let app: App;
let open: Synthesized;
let tuned: Synthesized & { readonly caller: iam.Role };
let uri: Synthesized;
let owned: Synthesized;

/** The stack's template and synth warnings, read from the one assembly the app synthesized. */
function synthesized(assembly: CloudAssembly, stack: Stack, api: RealtimeApi): Synthesized {
  const warnings = assembly
    .getStackArtifact(stack.artifactId)
    .messages.filter((m) => m.level === 'warning')
    .map((m) => String(m.entry.data));
  return { stack, api, template: Template.fromStack(stack), warnings };
}

before(() => {
  app = tempApp();
  const openStack = new Stack(app, 'Open');
  const openApi = new RealtimeApi(openStack, 'digits', {
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.lambda({ architecture: lambda.Architecture.ARM_64, memorySize: 1769, reservedConcurrency: 10 }),
    config: DIGITS_CONFIG,
  });

  const tunedStack = new Stack(app, 'Tuned');
  const tunedApi = new RealtimeApi(tunedStack, 'tuned', {
    apiName: 'tuned-api',
    model: ModelSource.fromBucket(s3.Bucket.fromBucketName(tunedStack, 'Models', 'my-models'), 'prod/classifier.onnx', {
      sha256: TUNED_SHA,
      sizeBytes: 600 * MB,
    }),
    compute: Compute.lambda({
      architecture: lambda.Architecture.X86_64,
      memorySize: 3008,
      ephemeralStorageSize: Size.gibibytes(2),
      timeout: Duration.seconds(20),
      reservedConcurrency: 5,
      provisionedConcurrency: 2,
    }),
    auth: ApiAuth.iam(),
    throttle: { rateLimit: 5, burstLimit: 10 },
    logRetention: logs.RetentionDays.ONE_WEEK,
    docs: true,
  });
  const caller = new iam.Role(tunedStack, 'Caller', { assumedBy: new iam.AccountRootPrincipal() });
  tunedApi.grantInvoke(caller);

  const uriStack = new Stack(app, 'Uri');
  const uriApi = new RealtimeApi(uriStack, 'oip', {
    model: ModelSource.fromS3Uri('s3://shared.models-bucket/team/v3/model.onnx'),
  });

  const ownedStack = new Stack(app, 'Owned');
  const ownedApi = new RealtimeApi(ownedStack, 'owned', {
    model: ModelSource.fromBucket(new s3.Bucket(ownedStack, 'Models', { enforceSSL: true }), 'v1/model.onnx'),
  });

  const assembly = app.synth();
  open = synthesized(assembly, openStack, openApi);
  tuned = { ...synthesized(assembly, tunedStack, tunedApi), caller };
  uri = synthesized(assembly, uriStack, uriApi);
  owned = synthesized(assembly, ownedStack, ownedApi);
});

function functionOf(s: Synthesized): [string, Record<string, unknown>] {
  return onlyResource(s.template, 'AWS::Lambda::Function');
}

function envOf(s: Synthesized): Record<string, unknown> {
  return (functionOf(s)[1]['Environment'] as { Variables: Record<string, unknown> }).Variables;
}

function logicalIdOf(s: Synthesized, type: string): string {
  return onlyResource(s.template, type)[0];
}

describe('RealtimeApi: the Lambda function', () => {
  test('is a container image function with the compute settings, reserved concurrency only when asked', () => {
    const cases = [
      [open, { arch: 'arm64', memory: 1769, ephemeral: 512, timeout: 29, reserved: 10 }],
      [tuned, { arch: 'x86_64', memory: 3008, ephemeral: 2048, timeout: 20, reserved: 5 }],
      [uri, { arch: 'arm64', memory: 2048, ephemeral: 512, timeout: 29, reserved: undefined }],
      [owned, { arch: 'arm64', memory: 2048, ephemeral: 512, timeout: 29, reserved: undefined }],
    ] as const;
    for (const [s, want] of cases) {
      const [, props] = functionOf(s);
      assert.equal(props['PackageType'], 'Image');
      assert.deepEqual(props['Architectures'], [want.arch]);
      assert.equal(props['MemorySize'], want.memory);
      assert.deepEqual(props['EphemeralStorage'], { Size: want.ephemeral });
      assert.equal(props['Timeout'], want.timeout);
      assert.ok((props['Timeout'] as number) <= 29, 'API Gateway gives up at 29 s');
      assert.equal(props['ReservedConcurrentExecutions'], want.reserved);
      assert.match(flatten((props['Code'] as { ImageUri: unknown }).ImageUri), /container-assets/);
      assert.equal(props['Handler'], undefined);
      assert.equal(props['Runtime'], undefined);
    }
  });

  test('its image is built from a generated context for the function architecture', () => {
    for (const [s, platform] of [
      [open, 'linux/arm64'],
      [tuned, 'linux/amd64'],
    ] as const) {
      const manifest = JSON.parse(readFileSync(join(app.outdir, `${s.stack.artifactId}.assets.json`), 'utf8')) as {
        dockerImages: Record<string, { source: { directory: string; platform: string } }>;
      };
      const images = Object.values(manifest.dockerImages);
      assert.equal(images.length, 1);
      assert.equal(images[0]!.source.platform, platform);
      const context = join(app.outdir, images[0]!.source.directory);
      assert.ok(existsSync(join(context, 'Dockerfile')) && existsSync(join(context, 'index.mjs')), context);
    }
  });

  test('leaves no generated context behind in the temp folder once it is staged into the assembly', () => {
    assert.deepEqual(
      readdirSync(scratch).filter((name) => name.startsWith('arclight-lambda-')),
      [],
    );
  });

  test('with asset staging disabled (as SAM synthesizes), the assembly points at the context, which is kept', () => {
    const unstaged = tempApp({ 'aws:cdk:disable-asset-staging': true });
    const stack = new Stack(unstaged, 'Unstaged');
    new RealtimeApi(stack, 'api', { model: ModelSource.fromS3Uri('s3://my-models/m.onnx') });
    unstaged.synth();
    const manifest = JSON.parse(readFileSync(join(unstaged.outdir, 'Unstaged.assets.json'), 'utf8')) as {
      dockerImages: Record<string, { source: { directory: string } }>;
    };
    const [image] = Object.values(manifest.dockerImages);
    assert.ok(image && existsSync(join(image.source.directory, 'Dockerfile')), JSON.stringify(image));
  });

  test('carries the arclight:api metadata that arclight dev finds APIs by', () => {
    const expected = [
      [open, { apiName: 'digits', compute: 'lambda', architecture: 'arm64' }],
      [tuned, { apiName: 'tuned-api', compute: 'lambda', architecture: 'x64' }],
      [uri, { apiName: 'oip', compute: 'lambda', architecture: 'arm64' }],
      [owned, { apiName: 'owned', compute: 'lambda', architecture: 'arm64' }],
    ] as const;
    for (const [s, metadata] of expected) {
      const fn = Object.values(s.template.findResources('AWS::Lambda::Function'))[0] as {
        Metadata: Record<string, unknown>;
      };
      assert.deepEqual(fn.Metadata[API_METADATA_KEY], metadata);
    }
  });

  test('gets the deployed contract as env vars, the model hash being the sha256 of the asset file', () => {
    const env = envOf(open);
    const modelUri = flatten(env[ENV.modelUri]);
    assert.match(modelUri, /^s3:\/\/cdk-hnb659fds-assets-\$\{AWS::AccountId\}-\$\{AWS::Region\}\/[0-9a-f]{64}\.onnx$/);
    assert.deepEqual(
      { ...env, [ENV.modelUri]: modelUri },
      {
        [ENV.apiName]: 'digits',
        [ENV.modelUri]: modelUri,
        [ENV.modelSha256]: sha256(DIGITS_ONNX),
        [ENV.modelFormat]: 'onnx',
        [ENV.config]: JSON.stringify(DIGITS_CONFIG),
        [ENV.executionProviders]: 'cpu',
        // Lambda's 6,291,456-byte event less 16 KiB for the rest of it: the largest body Lambda can deliver.
        [ENV.maxBodyBytes]: '6275072',
        [ENV.requestTimeoutMs]: '28000',
      },
    );
    assert.deepEqual(JSON.parse(env[ENV.config] as string), DIGITS_CONFIG);
    // What will be uploaded is the very file whose hash the runtime will check.
    const key = modelUri.split('/').pop()!;
    assert.equal(sha256(join(app.outdir, `asset.${key}`)), sha256(DIGITS_ONNX));

    const tunedEnv = envOf(tuned);
    assert.equal(tunedEnv[ENV.apiName], 'tuned-api');
    assert.equal(tunedEnv[ENV.modelUri], 's3://my-models/prod/classifier.onnx');
    assert.equal(tunedEnv[ENV.modelSha256], TUNED_SHA.toLowerCase());
    assert.equal(tunedEnv[ENV.config], '{}');
    assert.equal(tunedEnv[ENV.requestTimeoutMs], '19000', 'a second under the 20 s function timeout');
    assert.equal(tunedEnv[ENV.docs], 'on', 'docs: true turns the playground on; it is off (unset) by default');

    const ownedEnv = envOf(owned);
    assert.equal(flatten(ownedEnv[ENV.modelUri]), `s3://{Ref:${logicalIdOf(owned, 'AWS::S3::Bucket')}}/v1/model.onnx`);
    assert.ok(!(ENV.modelSha256 in ownedEnv), 'fromBucket without sha256 sets no hash');

    const uriEnv = envOf(uri);
    assert.equal(uriEnv[ENV.modelUri], 's3://shared.models-bucket/team/v3/model.onnx');
    assert.equal(uriEnv[ENV.apiName], 'oip', 'apiName defaults to the construct id');
    assert.ok(!(ENV.modelSha256 in uriEnv), 'no hash is invented for a model of unknown content');
  });

  test('writes its logs to its own log group, kept for the retention asked (a month by default)', () => {
    for (const [s, days] of [
      [open, 30],
      [tuned, 7],
      [uri, 30],
      [owned, 30],
    ] as const) {
      const groups = resourcesOf(s.template, 'AWS::Logs::LogGroup');
      assert.equal(groups.length, 2, 'one for the function, one for API access logs');
      for (const [, props] of groups) assert.equal(props['RetentionInDays'], days);
      const [, fn] = functionOf(s);
      const functionGroup = groups.find(([id]) => id.includes('FunctionLogs'))![0];
      assert.deepEqual((fn['LoggingConfig'] as { LogGroup: unknown }).LogGroup, { Ref: functionGroup });
    }
  });
});

describe('RealtimeApi: the HTTP API', () => {
  test('has exactly the routes of the HTTP contract plus $default, all on one Lambda proxy integration', () => {
    for (const s of [open, tuned, uri, owned]) {
      const routes = resourcesOf(s.template, 'AWS::ApiGatewayV2::Route');
      assert.deepEqual(routes.map(([, props]) => props['RouteKey']).sort(), [...ROUTE_KEYS].sort());
      const [integrationId, integration] = onlyResource(s.template, 'AWS::ApiGatewayV2::Integration');
      assert.equal(integration['IntegrationType'], 'AWS_PROXY');
      assert.equal(integration['PayloadFormatVersion'], '2.0');
      for (const [, route] of routes) assert.equal(flatten(route['Target']), `integrations/{Ref:${integrationId}}`);
    }
    const api = onlyResource(open.template, 'AWS::ApiGatewayV2::Api')[1];
    assert.equal(api['Name'], 'digits');
    assert.equal(api['ProtocolType'], 'HTTP');
  });

  test("integrates the function's live alias (a published version), provisioned when provisionedConcurrency is set", () => {
    const [openAliasId, openAlias] = onlyResource(open.template, 'AWS::Lambda::Alias');
    assert.equal(openAlias['Name'], 'live');
    assert.equal(openAlias['ProvisionedConcurrencyConfig'], undefined);
    const [openIntegration] = resourcesOf(open.template, 'AWS::ApiGatewayV2::Integration');
    assert.equal(flatten(openIntegration![1]['IntegrationUri']), `{Ref:${openAliasId}}`);

    const [aliasId, alias] = onlyResource(tuned.template, 'AWS::Lambda::Alias');
    assert.equal(alias['Name'], 'live');
    assert.deepEqual(alias['ProvisionedConcurrencyConfig'], { ProvisionedConcurrentExecutions: 2 });
    assert.equal(flatten(alias['FunctionName']), `{Ref:${functionOf(tuned)[0]}}`);
    const [tunedIntegration] = resourcesOf(tuned.template, 'AWS::ApiGatewayV2::Integration');
    assert.equal(flatten(tunedIntegration![1]['IntegrationUri']), `{Ref:${aliasId}}`);
    const permissions = resourcesOf(tuned.template, 'AWS::Lambda::Permission');
    assert.equal(permissions.length, ROUTE_KEYS.length);
    for (const [, permission] of permissions) {
      assert.equal(flatten(permission['FunctionName']), `{Ref:${aliasId}}`);
      assert.equal(permission['Principal'], 'apigateway.amazonaws.com');
    }
    assert.deepEqual(tuned.stack.resolve(tuned.api.function.functionArn), { Ref: aliasId });
  });

  test('has a $default stage, throttled by default (100/s, burst 200) or as asked, with JSON access logs', () => {
    for (const [s, rate, burst] of [
      [open, 100, 200],
      [uri, 100, 200],
      [owned, 100, 200],
      [tuned, 5, 10],
    ] as const) {
      const [, stage] = onlyResource(s.template, 'AWS::ApiGatewayV2::Stage');
      assert.equal(stage['StageName'], '$default');
      assert.equal(stage['AutoDeploy'], true);
      assert.deepEqual(stage['DefaultRouteSettings'], { ThrottlingBurstLimit: burst, ThrottlingRateLimit: rate });
      const access = stage['AccessLogSettings'] as { DestinationArn: unknown; Format: string };
      const accessGroup = resourcesOf(s.template, 'AWS::Logs::LogGroup').find(([id]) => id.includes('AccessLogs'))!;
      assert.equal(flatten(access.DestinationArn), `{GetAtt:${accessGroup[0]}.Arn}`);
      const format = JSON.parse(access.Format) as Record<string, string>;
      assert.equal(format['requestId'], '$context.requestId');
      assert.equal(format['status'], '$context.status');
      assert.equal(format['routeKey'], '$context.routeKey');
      // HTTP APIs refuse REST-only variables such as $context.resourcePath.
      for (const variable of access.Format.match(/\$context\.[A-Za-z.]+/g) ?? []) {
        assert.ok(HTTP_API_LOG_VARIABLES.includes(variable), `${variable} is not an HTTP API access log variable`);
      }
    }
  });

  test('outputs its URL, the same value as api.url', () => {
    for (const s of [open, tuned, uri, owned]) {
      const outputs = Object.values(s.template.toJSON()['Outputs'] as Record<string, { Value: unknown }>);
      const apiId = logicalIdOf(s, 'AWS::ApiGatewayV2::Api');
      const url = `https://{Ref:${apiId}}.execute-api.{Ref:AWS::Region}.{Ref:AWS::URLSuffix}/`;
      assert.deepEqual(
        outputs.map((o) => flatten(o.Value)),
        [url],
      );
      assert.equal(flatten(s.stack.resolve(s.api.url)), url);
    }
  });
});

describe('RealtimeApi: IAM', () => {
  test('the function role reads exactly the model object, for an asset, a bucket and an s3:// URI', () => {
    const expectedObjects = [
      [open, objectArnOf(flatten(envOf(open)[ENV.modelUri]))],
      [tuned, 'arn:{Ref:AWS::Partition}:s3:::my-models/prod/classifier.onnx'],
      [uri, 'arn:{Ref:AWS::Partition}:s3:::shared.models-bucket/team/v3/model.onnx'],
      [owned, `{GetAtt:${logicalIdOf(owned, 'AWS::S3::Bucket')}.Arn}/v1/model.onnx`],
    ] as const;
    for (const [s, objectArn] of expectedObjects) {
      // Allow statements only: the owned bucket's SSL-only policy denies s3:* on the bucket and bucket/*.
      const s3Statements = policyStatements(s.template).filter(
        (st) => st.effect === 'Allow' && st.actions.some((a) => /^s3:/i.test(a)),
      );
      assert.deepEqual(
        s3Statements.map(({ effect, actions, resources }) => ({ effect, actions, resources })),
        [{ effect: 'Allow', actions: ['s3:GetObject'], resources: [objectArn] }],
      );
      assertNoBroadS3Grant(s.template);
    }
  });

  test('the function role is assumed by Lambda, has no AWS managed policies, and writes only its own logs', () => {
    for (const s of [open, tuned, uri, owned]) {
      const [roleId, role] = resourcesOf(s.template, 'AWS::IAM::Role').find(([id]) => id.includes('FunctionRole'))!;
      assert.equal(role['ManagedPolicyArns'], undefined);
      assert.equal(role['Policies'], undefined);
      assert.deepEqual(role['AssumeRolePolicyDocument'], {
        Statement: [{ Action: 'sts:AssumeRole', Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' } }],
        Version: '2012-10-17',
      });
      assert.equal(flatten(functionOf(s)[1]['Role']), `{GetAtt:${roleId}.Arn}`);
      const functionGroup = resourcesOf(s.template, 'AWS::Logs::LogGroup').find(([id]) => id.includes('FunctionLogs'))!;
      const logStatements = policyStatements(s.template).filter((st) => st.actions.some((a) => a.startsWith('logs:')));
      assert.deepEqual(
        logStatements.map(({ actions, resources }) => ({ actions: actions.sort(), resources })),
        [{ actions: ['logs:CreateLogStream', 'logs:PutLogEvents'], resources: [`{GetAtt:${functionGroup[0]}.Arn}`] }],
      );
    }
  });

  test('grantInvoke allows execute-api:Invoke on this API only', () => {
    const apiId = logicalIdOf(tuned, 'AWS::ApiGatewayV2::Api');
    const callerId = tuned.stack.getLogicalId(tuned.caller.node.defaultChild as iam.CfnRole);
    const granted = policyStatements(tuned.template).filter((st) =>
      st.actions.some((a) => a.startsWith('execute-api:')),
    );
    assert.equal(granted.length, 1);
    assert.deepEqual(granted[0]!.actions, ['execute-api:Invoke']);
    assert.deepEqual(granted[0]!.resources, [
      `arn:{Ref:AWS::Partition}:execute-api:{Ref:AWS::Region}:{Ref:AWS::AccountId}:{Ref:${apiId}}/$default/*/*`,
    ]);
    const policy = tuned.template.findResources('AWS::IAM::Policy', {
      Properties: { Roles: [{ Ref: callerId }] },
    });
    assert.equal(Object.keys(policy).length, 1, 'the grant lands on the caller role');
  });
});

describe('RealtimeApi: synth warnings', () => {
  /** The ids of the arclight warnings on a stack, sorted. */
  const ids = (s: Synthesized): string[] =>
    s.warnings.flatMap((w) => /\[ack: (arclight:\w+)\]/.exec(w)?.[1] ?? []).sort();
  const warning = (s: Synthesized, id: string): string => s.warnings.find((w) => w.includes(`[ack: ${id}]`)) ?? '';

  test('an API open to anyone is flagged (arclight:openApi); one behind IAM is not', () => {
    assert.ok(ids(open).includes('arclight:openApi'), ids(open).join());
    assert.ok(ids(uri).includes('arclight:openApi'), ids(uri).join());
    assert.ok(!ids(tuned).includes('arclight:openApi'), ids(tuned).join());
    assert.match(warning(open, 'arclight:openApi'), /^RealtimeApi 'digits' accepts .*ApiAuth\.iam\(\) or ApiAuth\.jwt/);
  });

  test('a model too big to fetch and load within the 10 s init window is flagged (arclight:slowColdStart)', () => {
    assert.deepEqual(ids(tuned), ['arclight:slowColdStart']);
    assert.match(
      warning(tuned, 'arclight:slowColdStart'),
      /600 MB model likely takes ~11 s, past Lambda.s 10 s init window.*provisionedConcurrency/,
    );
    assert.deepEqual(ids(open), ['arclight:openApi'], 'a 40 KB model is not slow');
  });

  test('a model of unknown hash is flagged (arclight:noModelHash); an asset or a given sha256 is not', () => {
    assert.deepEqual(ids(uri), ['arclight:noModelHash', 'arclight:openApi']);
    assert.deepEqual(ids(owned), ['arclight:noModelHash', 'arclight:openApi'], 'fromBucket without sha256');
    assert.match(
      warning(uri, 'arclight:noModelHash'),
      /^RealtimeApi 'oip': the model has no sha256.*Pass \{ sha256 \}/,
    );
  });
});

describe('RealtimeApi: invalid props fail at synth', () => {
  const model = (): ModelSource => ModelSource.fromS3Uri('s3://my-models/model.onnx');
  const construct =
    (props: Partial<ConstructorParameters<typeof RealtimeApi>[2]>, id = 'api') =>
    (): RealtimeApi =>
      new RealtimeApi(new Stack(tempApp(), 'S'), id, { model: model(), ...props });

  test('a predictor entry that does not exist', () => {
    assertOneProblem(
      construct({ predictor: Predictor.fromEntry('functions/nope/predictor.ts') }),
      /^predictor entry functions\/nope\/predictor\.ts does not exist$/,
    );
  });

  test('an apiName that is not URL-safe, given or taken from the construct id', () => {
    assertOneProblem(construct({ apiName: 'bad name/x' }), /^apiName 'bad name\/x' is not URL-safe/);
    assertOneProblem(construct({}, 'has space'), /^apiName 'has space' is not URL-safe/);
    assertOneProblem(construct({ apiName: 'x'.repeat(129) }), /is not URL-safe/);
    assert.doesNotThrow(() => construct({ apiName: 'Digits_v2.1-a' })());
  });

  test('throttle limits that are not positive', () => {
    const problems = thrownProblems(construct({ throttle: { rateLimit: 0, burstLimit: -1 } }));
    assert.deepEqual(problems, [
      'throttle.rateLimit must be a positive number, got 0',
      'throttle.burstLimit must be a positive number, got -1',
    ]);
  });

  test('a config too large for the Lambda environment', () => {
    assertOneProblem(construct({ config: { blob: 'x'.repeat(4000) } }), /^config is \d+ bytes of JSON/);
  });

  test('several problems are reported together, in one error, before anything is built', () => {
    const stack = new Stack(tempApp(), 'S');
    let message = '';
    assert.throws(
      () =>
        new RealtimeApi(stack, 'api', {
          apiName: 'bad name/x',
          predictor: Predictor.fromEntry('missing.ts'),
          model: ModelSource.fromS3Uri('https://example.com/model.onnx'),
          compute: Compute.lambda({ memorySize: 64, timeout: Duration.seconds(60) }),
          auth: ApiAuth.jwt({ issuer: 'http://idp.example.com', audience: [] }),
        }),
      (error: Error) => {
        message = error.message;
        return true;
      },
    );
    assert.match(message, /^RealtimeApi 'S\/api' has invalid props:\n/);
    const problems = thrownProblems(() => {
      throw new Error(message);
    });
    const expected = [
      /^apiName 'bad name\/x' is not URL-safe/,
      /^predictor entry missing\.ts does not exist$/,
      /^model URI 'https:\/\/example\.com\/model\.onnx' is not a valid S3 URI/,
      /^memorySize 64 MB is outside Lambda's 128–10240 MB$/,
      /^timeout 60 s is above API Gateway's 29 s integration limit$/,
      /^jwt issuer 'http:\/\/idp\.example\.com' must be an https:\/\/ URL$/,
      /^jwt audience must name at least one audience$/,
    ];
    assert.equal(problems.length, expected.length, problems.join('\n'));
    expected.forEach((pattern, i) => assert.match(problems[i]!, pattern));
    assert.equal(stack.node.tryFindChild('api')?.node.tryFindChild('Function'), undefined, 'no function was built');
  });
});
