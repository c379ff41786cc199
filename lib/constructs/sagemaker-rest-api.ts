/**
 * The REST API in front of a SageMaker endpoint, serving the whole HTTP contract. InvokeEndpoint only ever reaches
 * the container's `POST /invocations`, so each contract route is a resource and method whose AWS integration calls
 * InvokeEndpoint naming the route it stands for in the custom-attributes header (`arclight-route=GET /v2`), on which
 * the container server dispatches. A container's 4xx/5xx comes back from InvokeEndpoint as a ModelError (424) that
 * carries the container's status and body; a response mapping template restores both. Known routes with the wrong
 * method and other model names are answered by API Gateway itself (mock integrations) in the contract's error format.
 */
import { RemovalPolicy } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { DEFAULTS, ERROR_STATUS, REQUEST_ID_HEADER, ROUTES, SAGEMAKER_ROUTE } from '../contract.js';
import type { BackendContext } from './backend-common.js';

/** One path of the contract and the methods it answers. */
export interface ContractRoute {
  readonly path: string;
  readonly methods: readonly ('GET' | 'POST')[];
}

/** The contract's routes, the model's name being the API's (the container serves that one model). */
export function contractRoutes(apiName: string): ContractRoute[] {
  const model = `${ROUTES.modelPrefix}${apiName}`;
  return [
    { path: '/', methods: ['GET', 'POST'] },
    { path: '/v2', methods: ['GET'] },
    { path: ROUTES.live, methods: ['GET'] },
    { path: ROUTES.ready, methods: ['GET'] },
    { path: model, methods: ['GET'] },
    { path: `${model}/ready`, methods: ['GET'] },
    { path: `${model}/infer`, methods: ['POST'] },
    { path: ROUTES.openapi, methods: ['GET'] },
  ];
}

/** The statuses of the contract, which a container's error keeps on its way through InvokeEndpoint. */
const CONTRACT_STATUSES = [...new Set(Object.values(ERROR_STATUS))].sort((a, b) => a - b);

const HEADERS = {
  contentType: 'method.response.header.Content-Type',
  retryAfter: 'method.response.header.Retry-After',
  requestId: `method.response.header.${REQUEST_ID_HEADER}`,
  allow: 'method.response.header.Allow',
} as const;

const METHOD_RESPONSES: apigw.MethodResponse[] = ['200', ...CONTRACT_STATUSES.map(String), '502'].map((statusCode) => ({
  statusCode,
  responseParameters: Object.fromEntries(Object.values(HEADERS).map((header) => [header, false])),
}));

/** JSON-string-safe VTL for a value (escapeJavaScript alone escapes `'`, which JSON does not allow). */
function vtlString(reference: string): string {
  return `$util.escapeJavaScript(${reference}).replaceAll("\\\\'", "'")`;
}

/** A mapping template answering the contract's error body with API Gateway's request id. */
function errorTemplate(code: string, message: string): Record<string, string> {
  return {
    'application/json': `{"error":{"code":"${code}","message":"${message}","requestId":"$context.requestId"}}`,
  };
}

/**
 * A container error through InvokeEndpoint: a ModelError (424) whose OriginalStatusCode and OriginalMessage are the
 * container's status and body. Contract statuses pass through; anything else is a 502. Overrides are applied once,
 * at the end, as API Gateway requires.
 */
const CONTAINER_ERROR_TEMPLATE = [
  '#set($error = $util.parseJson($input.body))',
  `#if("$error.OriginalStatusCode".matches('${CONTRACT_STATUSES.join('|')}'))`,
  '#set($status = $error.OriginalStatusCode)',
  '#else',
  '#set($status = 502)',
  '#end',
  '#set($context.responseOverride.status = $status)',
  '$error.OriginalMessage',
].join('\n');

/**
 * InvokeEndpoint's answers mapped to the method's. Selection patterns are matched against InvokeEndpoint's status and
 * are disjoint: 424 the container's error, 429 not ready (or throttled), other 4xx SageMaker refusing the request,
 * 503 SageMaker unavailable, other 5xx SageMaker failing.
 */
const INVOKE_RESPONSES: apigw.IntegrationResponse[] = [
  {
    statusCode: '200',
    responseParameters: { [HEADERS.contentType]: 'integration.response.header.Content-Type' },
  },
  {
    selectionPattern: '424',
    statusCode: '502',
    responseParameters: { [HEADERS.contentType]: "'application/json'" },
    responseTemplates: { 'application/json': CONTAINER_ERROR_TEMPLATE },
  },
  gatewayErrorResponse('429', 503, 'not_ready', 'the endpoint is not ready or is throttling; retry shortly', true),
  gatewayErrorResponse(
    '4(?:[013-9]\\d|2[0-35-8])',
    400,
    'invalid_input',
    "SageMaker's InvokeEndpoint refused the request (HTTP $context.integration.status)",
  ),
  gatewayErrorResponse('503', 503, 'overloaded', 'the endpoint is unavailable; retry shortly', true),
  gatewayErrorResponse(
    '5(?:0[0-24-9]|[1-9]\\d)',
    502,
    'internal_error',
    "SageMaker's InvokeEndpoint failed (HTTP $context.integration.status)",
  ),
];

function gatewayErrorResponse(
  selectionPattern: string,
  status: number,
  code: string,
  message: string,
  retry = false,
): apigw.IntegrationResponse {
  return {
    selectionPattern,
    statusCode: String(status),
    responseParameters: {
      [HEADERS.contentType]: "'application/json'",
      [HEADERS.requestId]: 'context.requestId',
      ...(retry ? { [HEADERS.retryAfter]: `'${DEFAULTS.retryAfterSeconds}'` } : {}),
    },
    responseTemplates: errorTemplate(code, message),
  };
}

/** An InvokeEndpoint call standing for `method path`: the route rides in the custom attributes, the body as it came. */
function invokeEndpoint(method: string, path: string, endpointName: string, role: iam.IRole): apigw.AwsIntegration {
  const hasBody = method === 'POST';
  return new apigw.AwsIntegration({
    service: 'runtime.sagemaker',
    path: `endpoints/${endpointName}/invocations`,
    integrationHttpMethod: 'POST',
    options: {
      credentialsRole: role,
      // No contentHandling: text passes as text, binary media types as bytes (CONVERT_TO_BINARY would base64-decode
      // JSON bodies). A GET sends InvokeEndpoint a `{}` body, which the route ignores.
      passthroughBehavior: hasBody
        ? apigw.PassthroughBehavior.WHEN_NO_TEMPLATES
        : apigw.PassthroughBehavior.WHEN_NO_MATCH,
      ...(hasBody ? {} : { requestTemplates: { 'application/json': '{}' } }),
      requestParameters: {
        [`integration.request.header.${SAGEMAKER_ROUTE.header}`]: `'${SAGEMAKER_ROUTE.attribute}=${method} ${path}'`,
        'integration.request.header.Content-Type': hasBody
          ? 'method.request.header.Content-Type'
          : "'application/json'",
        'integration.request.header.Accept': 'method.request.header.Accept',
      },
      integrationResponses: INVOKE_RESPONSES,
    },
  });
}

/** API Gateway answering alone, without reaching the endpoint. */
function mockError(
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): apigw.MockIntegration {
  return new apigw.MockIntegration({
    passthroughBehavior: apigw.PassthroughBehavior.WHEN_NO_MATCH,
    requestTemplates: { 'application/json': '{"statusCode": 200}' },
    integrationResponses: [
      {
        statusCode: String(status),
        responseParameters: {
          [HEADERS.contentType]: "'application/json'",
          [HEADERS.requestId]: 'context.requestId',
          ...headers,
        },
        responseTemplates: errorTemplate(code, message),
      },
    ],
  });
}

export interface SageMakerRestApiProps {
  readonly context: BackendContext;
  readonly endpointName: string;
  readonly endpointArn: string;
}

/** The REST API with every contract route, its stage throttled and access-logged, its own InvokeEndpoint role. */
export function createSageMakerRestApi(scope: Construct, props: SageMakerRestApiProps): apigw.RestApi {
  const { context, endpointName, endpointArn } = props;
  const accessLogs = new logs.LogGroup(scope, 'AccessLogs', {
    retention: context.logRetention,
    removalPolicy: RemovalPolicy.DESTROY,
  });
  const api = new apigw.RestApi(scope, 'Api', {
    restApiName: context.apiName,
    description: `Arclight API ${context.apiName} (SageMaker endpoint ${endpointName})`,
    endpointTypes: [apigw.EndpointType.REGIONAL],
    // Execution logs need an account-wide CloudWatch role, which a library must not set; access logs are on.
    cloudWatchRole: false,
    binaryMediaTypes: ['application/octet-stream', 'image/*'],
    deployOptions: {
      stageName: 'api',
      throttlingRateLimit: context.throttle?.rateLimit ?? 100,
      throttlingBurstLimit: context.throttle?.burstLimit ?? 200,
      accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
      accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
    },
  });
  const invokeRole = new iam.Role(scope, 'InvokeRole', {
    assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
    description: `Lets the ${context.apiName} REST API call InvokeEndpoint on its SageMaker endpoint, and nothing else`,
  });
  invokeRole.addToPolicy(new iam.PolicyStatement({ actions: ['sagemaker:InvokeEndpoint'], resources: [endpointArn] }));
  const validator = new apigw.RequestValidator(scope, 'RequestValidator', {
    restApi: api,
    // No body model is attached (predictors define their own inputs), so bodies pass; headers are checked.
    validateRequestParameters: true,
    validateRequestBody: true,
  });
  const authorizationType = context.auth.kind === 'iam' ? apigw.AuthorizationType.IAM : apigw.AuthorizationType.NONE;
  const options: apigw.MethodOptions = { authorizationType, methodResponses: METHOD_RESPONSES };

  for (const route of contractRoutes(context.apiName)) {
    const resource = api.root.resourceForPath(route.path);
    for (const method of route.methods) {
      resource.addMethod(method, invokeEndpoint(method, route.path, endpointName, invokeRole), {
        ...options,
        requestValidator: validator,
        requestParameters: {
          'method.request.header.Content-Type': false,
          'method.request.header.Accept': false,
        },
      });
    }
    const allow = route.methods.join(', ');
    resource.addMethod(
      'ANY',
      mockError(405, 'method_not_allowed', `$context.httpMethod is not allowed on ${route.path}; use ${allow}`, {
        [HEADERS.allow]: `'${allow}'`,
      }),
      options,
    );
  }
  // Another model's name: the container serves one model, so API Gateway answers as the container would.
  const otherModel = api.root.resourceForPath(`${ROUTES.modelPrefix}{name}`);
  const modelNotFound = (): apigw.MockIntegration =>
    mockError(
      404,
      'model_not_found',
      `no model named '${vtlString("$input.params('name')")}'; this API serves '${context.apiName}'`,
    );
  otherModel.addMethod('ANY', modelNotFound(), options);
  otherModel.addResource('{proxy+}').addMethod('ANY', modelNotFound(), options);
  if (context.auth.kind === 'none') {
    // Any other path. Under ApiAuth.iam() the same response type answers unsigned requests, so it stays a 403 there.
    api.addGatewayResponse('NotFound', {
      type: apigw.ResponseType.MISSING_AUTHENTICATION_TOKEN,
      statusCode: '404',
      responseHeaders: { 'Content-Type': "'application/json'" },
      templates: errorTemplate('not_found', 'no route for $context.httpMethod $context.path'),
    });
  }
  return api;
}
