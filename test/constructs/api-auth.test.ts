/**
 * ApiAuth on synthesized RealtimeApis: none (open routes, a synth warning, the cdk-nag authorizer finding
 * acknowledged with its reason), IAM (every route AWS_IAM), JWT (one JWT authorizer per API with the issuer and
 * audiences, every route using it, even when one ApiAuth is shared by two APIs). Bad JWT options are synth errors.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import type { IConstruct } from 'constructs';
import { ApiAuth, ModelSource, RealtimeApi } from '../../lib/index.js';
import { flatten, resourcesOf, tempApp, thrownProblems, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX } from '../helpers.js';

useScratchTmpdir();

const ISSUER = 'https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbCdEf';
const AUDIENCE = ['client-a', 'client-b'];
/** The eight routes of the HTTP contract plus the $default catch-all. */
const ROUTE_COUNT = 9;

let none: { stack: Stack; api: RealtimeApi; template: Template };
let iam: { stack: Stack; api: RealtimeApi; template: Template };
let jwt: { stack: Stack; apis: RealtimeApi[]; template: Template };

before(() => {
  const app = tempApp();
  const model = ModelSource.fromAsset(DIGITS_ONNX);
  const noneStack = new Stack(app, 'None');
  const noneApi = new RealtimeApi(noneStack, 'open', { model, auth: ApiAuth.none() });
  const iamStack = new Stack(app, 'Iam');
  const iamApi = new RealtimeApi(iamStack, 'signed', { model, auth: ApiAuth.iam() });
  const jwtStack = new Stack(app, 'Jwt');
  const shared = ApiAuth.jwt({ issuer: ISSUER, audience: AUDIENCE });
  const jwtApis = [
    new RealtimeApi(jwtStack, 'first', { model, auth: shared }),
    new RealtimeApi(jwtStack, 'second', { model, auth: shared }),
  ];
  app.synth();
  none = { stack: noneStack, api: noneApi, template: Template.fromStack(noneStack) };
  iam = { stack: iamStack, api: iamApi, template: Template.fromStack(iamStack) };
  jwt = { stack: jwtStack, apis: jwtApis, template: Template.fromStack(jwtStack) };
});

/** The validation rules acknowledged on a construct, with their reasons. */
function acknowledged(construct: IConstruct): Record<string, string> {
  const out: Record<string, string> = {};
  for (const entry of construct.node.metadata) {
    if (entry.type === Validations.ACKNOWLEDGED_RULES_METADATA_KEY) Object.assign(out, entry.data);
  }
  return out;
}

describe('ApiAuth.none()', () => {
  test('leaves every route open: no authorizer anywhere', () => {
    assert.equal(resourcesOf(none.template, 'AWS::ApiGatewayV2::Authorizer').length, 0);
    const routes = resourcesOf(none.template, 'AWS::ApiGatewayV2::Route');
    assert.equal(routes.length, ROUTE_COUNT);
    for (const [, route] of routes) {
      assert.ok([undefined, 'NONE'].includes(route['AuthorizationType'] as string), String(route['AuthorizationType']));
      assert.equal(route['AuthorizerId'], undefined);
    }
  });

  test('is the default, and warns at synth (arclight:openApi)', () => {
    Annotations.fromStack(none.stack).hasWarning(
      '/None/open',
      Match.stringLikeRegexp("RealtimeApi 'open' accepts unauthenticated calls.*\\[ack: arclight:openApi\\]"),
    );
    assert.equal(ApiAuth.none().kind, 'none');
  });

  test('acknowledges cdk-nag’s missing-authorizer finding, with its reason, only on the open API', () => {
    const reason = acknowledged(none.api.api)['Annotation::AwsSolutions-APIG4'];
    assert.match(reason ?? '', /ApiAuth\.none\(\)/);
    assert.equal(acknowledged(iam.api.api)['Annotation::AwsSolutions-APIG4'], undefined);
    assert.equal(acknowledged(jwt.apis[0]!.api)['Annotation::AwsSolutions-APIG4'], undefined);
  });
});

describe('ApiAuth.iam()', () => {
  test('puts AWS_IAM on every route and adds no authorizer resource', () => {
    const routes = resourcesOf(iam.template, 'AWS::ApiGatewayV2::Route');
    assert.equal(routes.length, ROUTE_COUNT);
    for (const [, route] of routes) assert.equal(route['AuthorizationType'], 'AWS_IAM');
    assert.equal(resourcesOf(iam.template, 'AWS::ApiGatewayV2::Authorizer').length, 0);
  });

  test('does not warn about an open API', () => {
    const warnings = Annotations.fromStack(iam.stack).findWarning('*', Match.stringLikeRegexp('arclight:openApi'));
    assert.deepEqual(warnings, []);
  });
});

describe('ApiAuth.jwt()', () => {
  test('gives each API one JWT authorizer with the issuer and audiences, and every route uses its own API’s', () => {
    const authorizers = resourcesOf(jwt.template, 'AWS::ApiGatewayV2::Authorizer');
    assert.equal(authorizers.length, 2, 'one per API, also when the ApiAuth is shared');
    for (const api of jwt.apis) {
      const apiId = jwt.stack.getLogicalId(api.api.node.defaultChild as never);
      const own = authorizers.filter(([, a]) => flatten(a['ApiId']) === `{Ref:${apiId}}`);
      assert.equal(own.length, 1, `${api.apiName} has its own authorizer`);
      const [authorizerId, authorizer] = own[0]!;
      assert.equal(authorizer['AuthorizerType'], 'JWT');
      assert.deepEqual(authorizer['JwtConfiguration'], { Issuer: ISSUER, Audience: AUDIENCE });
      assert.deepEqual(authorizer['IdentitySource'], ['$request.header.Authorization']);
      const routes = resourcesOf(jwt.template, 'AWS::ApiGatewayV2::Route').filter(
        ([, r]) => flatten(r['ApiId']) === `{Ref:${apiId}}`,
      );
      assert.equal(routes.length, ROUTE_COUNT);
      for (const [, route] of routes) {
        assert.equal(route['AuthorizationType'], 'JWT');
        assert.deepEqual(route['AuthorizerId'], { Ref: authorizerId });
      }
    }
  });

  test('bad options are synth errors, listed together', () => {
    assert.deepEqual(ApiAuth.jwt({ issuer: ISSUER, audience: ['a'] }).problems(), []);
    assert.deepEqual(ApiAuth.jwt({ issuer: 'http://idp.example.com', audience: ['a'] }).problems(), [
      "jwt issuer 'http://idp.example.com' must be an https:// URL",
    ]);
    assert.deepEqual(ApiAuth.jwt({ issuer: 'idp.example.com', audience: [] }).problems(), [
      "jwt issuer 'idp.example.com' must be an https:// URL",
      'jwt audience must name at least one audience',
    ]);
    const problems = thrownProblems(
      () =>
        new RealtimeApi(new Stack(tempApp(), 'S'), 'api', {
          model: ModelSource.fromS3Uri('s3://my-models/m.onnx'),
          auth: ApiAuth.jwt({ issuer: 'https://', audience: [] }),
        }),
    );
    assert.deepEqual(problems, [
      "jwt issuer 'https://' must be an https:// URL",
      'jwt audience must name at least one audience',
    ]);
  });
});
