/**
 * Security pass over the deployed shape: the example app (bin/app.ts: Lambda, SageMaker and ECS APIs, all
 * ApiAuth.none()) plus one stack with the authenticated modes (IAM on Lambda and SageMaker, JWT on ECS), synthesized
 * once as `cdk synth` would. Each point the threat model (SECURITY.md) claims is checked on the template and the
 * synthesized image contexts.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import { Stack, type App } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import type { CloudAssembly } from 'aws-cdk-lib/cx-api';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { buildExampleApp } from '../../bin/app.js';
import { ApiAuth, Compute, ModelSource, Predictor, RealtimeApi, RestApiAccessLogs } from '../../lib/index.js';
import { assertIntegrationResponsesSound } from '../constructs/rest-api-checks.js';
import {
  assertNoNagViolations,
  flatten,
  policyStatements,
  resourcesOf,
  tempApp,
  useScratchTmpdir,
} from '../cdk-helpers.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, MOBILENET_ONNX } from '../helpers.js';

useScratchTmpdir();

const JWT = { issuer: 'https://issuer.example.com/', audience: ['inference'] };

let assembly: CloudAssembly;
let examples: Template;
let authModes: Template;
let templates: [string, Template][];

before(() => {
  const app: App = tempApp();
  const { stack } = buildExampleApp(app);
  const auth = new Stack(app, 'AuthModes');
  new RealtimeApi(auth, 'digits-iam', {
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.lambda({ architecture: lambda.Architecture.ARM_64 }),
    auth: ApiAuth.iam(),
  });
  new RealtimeApi(auth, 'digits-jwt', {
    predictor: Predictor.fromEntry(DIGITS_PREDICTOR),
    model: ModelSource.fromAsset(DIGITS_ONNX),
    compute: Compute.ecs({ instanceType: 'g5.xlarge' }),
    auth: ApiAuth.jwt(JWT),
  });
  new RealtimeApi(auth, 'mobilenet-iam', {
    model: ModelSource.fromAsset(MOBILENET_ONNX),
    compute: Compute.sageMaker({ instanceType: 'ml.g5.xlarge' }),
    auth: ApiAuth.iam(),
  });
  // A REST API that writes no access logs and so needs no account-wide API Gateway role.
  new RealtimeApi(auth, 'nolog', {
    model: ModelSource.fromS3Uri('s3://my-models/m.onnx', { sha256: 'a'.repeat(64) }),
    compute: Compute.sageMaker({ instanceType: 'ml.c7i.xlarge', accessLogs: RestApiAccessLogs.OFF }),
  });
  assembly = app.synth();
  examples = Template.fromStack(stack);
  authModes = Template.fromStack(auth);
  templates = [
    ['ArclightExamples', examples],
    ['AuthModes', authModes],
  ];
});

/** `s3:GetObject` → `s3`; `*` → `*`. */
const serviceOf = (action: string): string => action.split(':', 1)[0]!.toLowerCase();

describe('IAM: least privilege', () => {
  test('no Allow statement grants an S3 or SageMaker action (or every action) on Resource *', () => {
    let checked = 0;
    for (const [name, template] of templates) {
      for (const statement of policyStatements(template)) {
        if (statement.effect !== 'Allow') continue;
        const risky = statement.actions.filter((a) => ['s3', 'sagemaker', '*'].includes(serviceOf(a)));
        if (risky.length === 0) continue;
        checked++;
        for (const resource of statement.resources) {
          assert.notEqual(resource, '*', `${name}/${statement.holder} grants ${risky.join(',')} on *`);
        }
        for (const action of risky) {
          assert.doesNotMatch(action, /^(s3|sagemaker):\*$|^\*$/i, `${name}/${statement.holder} grants ${action}`);
        }
      }
    }
    assert.ok(checked >= 4, `S3 and SageMaker grants were found and checked (${checked})`);
  });

  test('no role carries a managed policy but two AWS documents and CDK ships: API Gateway logging, a CR provider', () => {
    const allowed: [RegExp, string][] = [
      // API Gateway's account-wide CloudWatch Logs role (REST access logs).
      [/^ArclightApiGatewayAccountCloudWatchRole/, 'AmazonAPIGatewayPushToCloudWatchLogs'],
      // CDK's AwsCustomResource provider, which creates ECS's service-linked role: it writes only its own logs.
      [/^AWS679f53fac002430cb0da5b7982bd2287ServiceRole/, 'AWSLambdaBasicExecutionRole'],
    ];
    for (const [name, template] of templates) {
      for (const [id, props] of resourcesOf(template, 'AWS::IAM::Role')) {
        const managed = ((props['ManagedPolicyArns'] as unknown[] | undefined) ?? []).map(flatten);
        const exception = allowed.find(([pattern]) => pattern.test(id));
        const expected = exception ? [`arn:{Ref:AWS::Partition}:iam::aws:policy/service-role/${exception[1]}`] : [];
        assert.deepEqual(managed, expected, `${name}/${id}`);
      }
      assert.equal(resourcesOf(template, 'AWS::IAM::ManagedPolicy').length, 0, name);
    }
  });
});

describe('model storage', () => {
  test('Arclight creates no bucket: model assets go to the CDK bootstrap bucket', () => {
    for (const [name, template] of templates) {
      assert.equal(resourcesOf(template, 'AWS::S3::Bucket').length, 0, `${name} makes no bucket of its own`);
    }
    const uris = resourcesOf(examples, 'AWS::Lambda::Function').flatMap(([, props]) =>
      props['Environment'] === undefined
        ? []
        : [flatten((props['Environment'] as { Variables: Record<string, unknown> }).Variables['ARCLIGHT_MODEL_URI'])],
    );
    assert.ok(uris.length >= 2);
    for (const uri of uris) assert.match(uri, /^s3:\/\/cdk-hnb659fds-assets-/, uri);
  });
});

describe('API Gateway', () => {
  test('throttling is on by default on every stage, HTTP and REST', () => {
    let stages = 0;
    for (const [name, template] of templates) {
      for (const [id, props] of resourcesOf(template, 'AWS::ApiGatewayV2::Stage')) {
        stages++;
        const route = props['DefaultRouteSettings'] as Record<string, number> | undefined;
        assert.ok((route?.['ThrottlingRateLimit'] ?? 0) > 0, `${name}/${id} rate limit`);
        assert.ok((route?.['ThrottlingBurstLimit'] ?? 0) > 0, `${name}/${id} burst limit`);
      }
      for (const [id, props] of resourcesOf(template, 'AWS::ApiGateway::Stage')) {
        stages++;
        const settings = (props['MethodSettings'] as Record<string, unknown>[] | undefined) ?? [];
        const all = settings.find((s) => s['HttpMethod'] === '*' && s['ResourcePath'] === '/*');
        assert.ok(Number(all?.['ThrottlingRateLimit']) > 0, `${name}/${id} rate limit`);
        assert.ok(Number(all?.['ThrottlingBurstLimit']) > 0, `${name}/${id} burst limit`);
      }
    }
    assert.ok(stages >= 7, `every API's stage was checked (${stages})`);
  });

  test('IAM mode: every route of the HTTP API ($default included) and every REST method requires SigV4', () => {
    const apis = resourcesOf(authModes, 'AWS::ApiGatewayV2::Api').filter(([id]) => id.startsWith('digitsiam'));
    assert.equal(apis.length, 1);
    const routes = resourcesOf(authModes, 'AWS::ApiGatewayV2::Route').filter(([id]) => id.startsWith('digitsiam'));
    assert.ok(
      routes.some(([, props]) => props['RouteKey'] === '$default'),
      'the $default route is there',
    );
    for (const [id, props] of routes) assert.equal(props['AuthorizationType'], 'AWS_IAM', id);
    const methods = resourcesOf(authModes, 'AWS::ApiGateway::Method').filter(([id]) => id.startsWith('mobileneti'));
    assert.ok(methods.length >= 1);
    for (const [id, props] of methods) {
      // OPTIONS (CORS preflight) carries no data; every other method must be signed.
      if (props['HttpMethod'] !== 'OPTIONS') assert.equal(props['AuthorizationType'], 'AWS_IAM', id);
    }
  });

  test('JWT mode: every route ($default included) goes through the JWT authorizer for the given issuer and audience', () => {
    const routes = resourcesOf(authModes, 'AWS::ApiGatewayV2::Route').filter(([id]) => id.startsWith('digitsjwt'));
    assert.ok(
      routes.some(([, props]) => props['RouteKey'] === '$default'),
      'the $default route is there',
    );
    const [authorizer] = resourcesOf(authModes, 'AWS::ApiGatewayV2::Authorizer').filter(([id]) =>
      id.startsWith('digitsjwt'),
    );
    assert.ok(authorizer, 'a JWT authorizer');
    const [authorizerId, authorizerProps] = authorizer;
    assert.equal(authorizerProps['AuthorizerType'], 'JWT');
    assert.deepEqual(authorizerProps['JwtConfiguration'], { Audience: JWT.audience, Issuer: JWT.issuer });
    for (const [id, props] of routes) {
      assert.equal(props['AuthorizationType'], 'JWT', id);
      assert.deepEqual(props['AuthorizerId'], { Ref: authorizerId }, id);
    }
  });

  test('ApiAuth.none() APIs are the deployer choice the synth warns about; every route is open the same way', () => {
    for (const [id, props] of resourcesOf(examples, 'AWS::ApiGatewayV2::Route')) {
      assert.equal(props['AuthorizationType'] ?? 'NONE', 'NONE', id);
    }
  });
});

describe('as AWS documents the services (issue 12: what a fresh account would refuse or expose)', () => {
  test('every REST method, every backend and auth mode: one integration response per status, all declared', () => {
    let methods = 0;
    for (const [, template] of templates) methods += assertIntegrationResponsesSound(template).methods;
    assert.ok(methods >= 3 * 17, `the REST methods of three SageMaker APIs were checked (${methods})`);
  });

  test('REST stages that log wait for the account-level CloudWatch role their stack sets; the others do not log', () => {
    for (const [name, template] of templates) {
      const accounts = Object.keys(template.findResources('AWS::ApiGateway::Account'));
      const stages = Object.entries(template.findResources('AWS::ApiGateway::Stage')) as [
        string,
        { DependsOn?: string[]; Properties: Record<string, unknown> },
      ][];
      for (const [id, stage] of stages) {
        if (stage.Properties['AccessLogSetting'] === undefined) {
          assert.ok(id.startsWith('nolog'), `${name}/${id} logs nothing`);
          continue;
        }
        assert.equal(accounts.length, 1, `${name}: one account setting`);
        assert.ok(stage.DependsOn?.includes(accounts[0]!), `${name}/${id} waits for the account setting`);
      }
    }
  });

  test('ECS hosts: Amazon Linux 2023, IMDS closed to containers, no log writes on *', () => {
    let hosts = 0;
    for (const [name, template] of templates) {
      const parameters = (template.toJSON()['Parameters'] ?? {}) as Record<string, { Default?: string }>;
      for (const [id, props] of resourcesOf(template, 'AWS::EC2::LaunchTemplate')) {
        hosts++;
        const data = props['LaunchTemplateData'] as Record<string, unknown>;
        const image = parameters[(data['ImageId'] as { Ref: string }).Ref]!.Default!;
        assert.match(image, /^\/aws\/service\/ecs\/optimized-ami\/amazon-linux-2023\//, `${name}/${id}`);
        assert.deepEqual(data['MetadataOptions'], { HttpPutResponseHopLimit: 1, HttpTokens: 'required' });
        assert.match(flatten(data['UserData']), /ECS_AWSVPC_BLOCK_IMDS=true/);
      }
      for (const statement of policyStatements(template)) {
        if (statement.resources.includes('*'))
          assert.ok(!statement.actions.some((a) => a.startsWith('logs:')), `${name}/${statement.holder}`);
      }
    }
    assert.ok(hosts >= 2, `${hosts} launch templates`);
  });

  test("cdk-nag AwsSolutions: no violation in any stack (the example app's and the auth modes')", () => {
    // buildExampleApp registers the AwsSolutions pack on the whole app (AuthModes included): a violation would have
    // made synth throw in before(); a passing pack writes no plugin report at all.
    assertNoNagViolations(assembly.directory);
  });
});

/** Values that look like credentials: AWS keys, private keys, `password=`/`secret:` pairs, bearer tokens. */
const SECRET_LIKE = [
  /AKIA[0-9A-Z]{16}/,
  /ASIA[0-9A-Z]{16}/,
  /-----BEGIN [A-Z ]*PRIVATE KEY-----/,
  /(password|passwd|secret|token|api[_-]?key)\s*[=:]/i,
  /bearer\s+[a-z0-9._-]{20,}/i,
  /(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])/, // an AWS secret access key's shape
];

function assertNoSecret(where: string, value: unknown): void {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  for (const pattern of SECRET_LIKE) assert.doesNotMatch(text, pattern, `${where}: ${text.slice(0, 200)}`);
}

describe('secrets', () => {
  test('no secret-looking value in any environment variable or output', () => {
    let values = 0;
    for (const [name, template] of templates) {
      for (const [id, props] of resourcesOf(template, 'AWS::Lambda::Function')) {
        const variables =
          (props['Environment'] as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {};
        for (const [key, value] of Object.entries(variables)) {
          values++;
          assert.doesNotMatch(key, /SECRET|PASSWORD|TOKEN|ACCESS_KEY/i, `${name}/${id} ${key}`);
          assertNoSecret(`${name}/${id} ${key}`, flatten(value));
        }
      }
      for (const [id, props] of resourcesOf(template, 'AWS::ECS::TaskDefinition')) {
        for (const container of props['ContainerDefinitions'] as {
          Environment?: { Name: string; Value: unknown }[];
        }[]) {
          for (const { Name, Value } of container.Environment ?? []) {
            values++;
            assertNoSecret(`${name}/${id} ${Name}`, flatten(Value));
          }
        }
      }
      for (const [id, props] of resourcesOf(template, 'AWS::SageMaker::Model')) {
        const env = (props['PrimaryContainer'] as { Environment?: Record<string, unknown> }).Environment ?? {};
        for (const [key, value] of Object.entries(env)) {
          values++;
          assertNoSecret(`${name}/${id} ${key}`, flatten(value));
        }
      }
      for (const [id, output] of Object.entries(template.findOutputs('*'))) {
        values++;
        assertNoSecret(`${name} output ${id}`, flatten((output as { Value: unknown }).Value));
      }
    }
    assert.ok(values >= 20, `environment variables and outputs were checked (${values})`);
  });
});

describe('containers', () => {
  /** Each synthesized Docker image context: its Dockerfile's text. */
  function dockerfiles(): { stack: string; dockerfile: string }[] {
    const out: { stack: string; dockerfile: string }[] = [];
    for (const stack of assembly.stacks) {
      // The default synthesizer lists a stack's images in its asset manifest (`<stack>.assets.json`).
      const manifest = JSON.parse(readFileSync(join(assembly.directory, `${stack.stackName}.assets.json`), 'utf8')) as {
        dockerImages?: Record<string, { source: { directory: string } }>;
      };
      for (const image of Object.values(manifest.dockerImages ?? {})) {
        const dir = join(assembly.directory, image.source.directory);
        out.push({ stack: stack.stackName, dockerfile: readFileSync(join(dir, 'Dockerfile'), 'utf8') });
      }
    }
    return out;
  }

  test('container-server images (SageMaker, ECS) switch to a non-root USER before their entry', () => {
    const containerImages = dockerfiles().filter(
      ({ dockerfile }) => !/FROM public\.ecr\.aws\/lambda\//.test(dockerfile),
    );
    assert.ok(containerImages.length >= 2, `GPU images found (${containerImages.length})`);
    for (const { stack, dockerfile } of containerImages) {
      const users = [...dockerfile.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]!);
      assert.ok(users.length > 0, `${stack}: no USER line`);
      const last = users[users.length - 1]!;
      assert.doesNotMatch(last, /^(root|0)(:|$)/, `${stack}: runs as ${last}`);
      const lastUser = dockerfile.lastIndexOf('\nUSER ');
      const entry = Math.max(dockerfile.lastIndexOf('\nENTRYPOINT'), dockerfile.lastIndexOf('\nCMD'));
      assert.ok(lastUser < entry, `${stack}: USER comes before the entry`);
    }
  });

  test('Lambda images stay on the AWS Lambda base image, which runs the function as a non-root sandbox user', () => {
    const lambdaImages = dockerfiles().filter(({ dockerfile }) => /FROM public\.ecr\.aws\/lambda\//.test(dockerfile));
    assert.ok(lambdaImages.length >= 3, `Lambda images found (${lambdaImages.length})`);
    for (const { stack, dockerfile } of lambdaImages) {
      // Lambda ignores USER and runs code as its own unprivileged user; a USER root line would still be a red flag.
      assert.doesNotMatch(dockerfile, /^USER\s+(root|0)\b/m, stack);
      assert.match(dockerfile, /^FROM public\.ecr\.aws\/lambda\/nodejs:\d+/m, stack);
    }
  });
});
