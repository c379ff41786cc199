/**
 * The REST API in front of a SageMaker endpoint, serving the whole HTTP contract. InvokeEndpoint only ever reaches
 * the container's `POST /invocations`, so each contract route is a resource and method whose AWS integration calls
 * InvokeEndpoint naming the route it stands for in the custom-attributes header (`arclight-route=GET /v2`), on which
 * the container server dispatches. A container's 4xx/5xx comes back from InvokeEndpoint as a ModelError (424) that
 * carries the container's status and body; a response mapping template restores both. Known routes with the wrong
 * method and other model names are answered by API Gateway itself (mock integrations) in the contract's error format.
 */
import { RemovalPolicy, Stack } from 'aws-cdk-lib';
import * as apigw from 'aws-cdk-lib/aws-apigateway';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { DEFAULTS, ERROR_STATUS, REQUEST_ID_HEADER, ROUTES, SAGEMAKER_ROUTE, type ErrorCode } from '../../contract.js';
import { acknowledgeFinding, type BackendContext } from './backend-common.js';
import { SAGEMAKER_LIMITS } from './limits.js';

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
    { path: `${model}/stats`, methods: ['GET'] },
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

/** A mapping template answering the contract's error body (`{"error": message, "code", "requestId"}`). */
function errorTemplate(code: ErrorCode, message: string): Record<string, string> {
  return {
    'application/json': `{"error":"${message}","code":"${code}","requestId":"$context.requestId"}`,
  };
}

/**
 * A container error through InvokeEndpoint: a ModelError (424) whose OriginalStatusCode and OriginalMessage are the
 * container's status and body. Contract statuses pass through (a 503 with its Retry-After); anything else stays the
 * response's 502. Each override is applied at most once, as API Gateway requires.
 */
const CONTAINER_ERROR_TEMPLATE = [
  '#set($error = $util.parseJson($input.body))',
  `#if("$error.OriginalStatusCode".matches('${CONTRACT_STATUSES.join('|')}'))`,
  '#set($context.responseOverride.status = $error.OriginalStatusCode)',
  '#end',
  `#if("$error.OriginalStatusCode" == "503")`,
  `#set($context.responseOverride.header.Retry-After = "${DEFAULTS.retryAfterSeconds}")`,
  '#end',
  '$error.OriginalMessage',
].join('\n');

/**
 * InvokeEndpoint's answers mapped to the method's, one integration response per method status (API Gateway keys them
 * by status: a second one with the same status replaces the first). Selection patterns are matched against
 * InvokeEndpoint's status and are disjoint; the README's table of them is checked against this list.
 */
export const INVOKE_RESPONSES: readonly apigw.IntegrationResponse[] = uniqueStatuses([
  {
    statusCode: '200',
    responseParameters: { [HEADERS.contentType]: 'integration.response.header.Content-Type' },
  },
  {
    // The container answered with an error (ModelError): its status and body, restored by the template.
    selectionPattern: '424',
    statusCode: '502',
    responseParameters: { [HEADERS.contentType]: "'application/json'" },
    responseTemplates: { 'application/json': CONTAINER_ERROR_TEMPLATE },
  },
  gatewayErrorResponse(
    '413',
    'payload_too_large',
    `the request is larger than SageMaker's ${SAGEMAKER_LIMITS.maxPayloadBytes / 2 ** 20} MB InvokeEndpoint limit`,
  ),
  // 429: throttled (or a model not ready); 503: SageMaker unavailable. Both: retry shortly.
  gatewayErrorResponse('429|503', 'overloaded', 'the endpoint is throttling or unavailable; retry shortly', true),
  // Any other 4xx (not 413, 424, 429): SageMaker refused the request.
  gatewayErrorResponse(
    '4(?:0\\d|1[0-24-9]|2[0-35-8]|[3-9]\\d)',
    'invalid_input',
    "SageMaker's InvokeEndpoint refused the request",
  ),
  // Any other 5xx (not 503): SageMaker failed.
  gatewayErrorResponse('5(?:0[0-24-9]|[1-9]\\d)', 'internal_error', "SageMaker's InvokeEndpoint failed"),
]);

/** Refuses (at synth) two integration responses with one status code, which API Gateway would silently merge. */
function uniqueStatuses(responses: apigw.IntegrationResponse[]): apigw.IntegrationResponse[] {
  const seen = new Set<string>();
  for (const { statusCode } of responses) {
    if (seen.has(statusCode)) throw new Error(`two integration responses with status ${statusCode}`);
    seen.add(statusCode);
  }
  return responses;
}

/** API Gateway answering an InvokeEndpoint failure with a contract error of its own (the code's status). */
function gatewayErrorResponse(
  selectionPattern: string,
  code: ErrorCode,
  message: string,
  retry = false,
): apigw.IntegrationResponse {
  return {
    selectionPattern,
    statusCode: String(ERROR_STATUS[code]),
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
      integrationResponses: [...INVOKE_RESPONSES],
    },
  });
}

/** API Gateway answering alone, without reaching the endpoint. */
function mockError(
  status: number,
  code: ErrorCode,
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

/**
 * How the REST API's stage writes access logs. API Gateway refuses access logging on a REST stage until the region's
 * account setting names a CloudWatch Logs role ("CloudWatch Logs role ARN must be set in account settings"), which a
 * fresh account does not have.
 */
export enum RestApiAccessLogs {
  /**
   * Access logs on; the stack sets the region's API Gateway account setting to a role of its own (one per stack,
   * with AWS's documented AmazonAPIGatewayPushToCloudWatchLogs policy). The setting is account-wide: it replaces a
   * role set before (which other REST APIs then log through), and both the setting and the role are retained when the
   * stack is deleted, so that those APIs keep logging.
   */
  CREATE_ACCOUNT_ROLE = 'create-account-role',
  /** Access logs on; the region's account setting already names a role (the deploy fails if it does not). */
  EXISTING_ACCOUNT_ROLE = 'existing-account-role',
  /** No access logs: nothing account-wide is needed or changed. API Gateway's CloudWatch metrics remain. */
  OFF = 'off',
}

export interface SageMakerRestApiProps {
  readonly context: BackendContext;
  readonly endpointName: string;
  readonly endpointArn: string;
  readonly accessLogs: RestApiAccessLogs;
}

/** The REST API with every contract route, its stage throttled and access-logged, its own InvokeEndpoint role. */
export function createSageMakerRestApi(scope: Construct, props: SageMakerRestApiProps): apigw.RestApi {
  const { context, endpointName, endpointArn } = props;
  const logging = props.accessLogs !== RestApiAccessLogs.OFF;
  const accessLogs = logging
    ? new logs.LogGroup(scope, 'AccessLogs', { retention: context.logRetention, removalPolicy: RemovalPolicy.DESTROY })
    : undefined;
  const api = new apigw.RestApi(scope, 'Api', {
    restApiName: context.apiName,
    description: `Arclight API ${context.apiName} (SageMaker endpoint ${endpointName})`,
    endpointTypes: [apigw.EndpointType.REGIONAL],
    // The account setting is made (or not) below, once per stack, rather than once per API as CDK's option would.
    cloudWatchRole: false,
    binaryMediaTypes: ['application/octet-stream', 'image/*'],
    deployOptions: {
      stageName: 'api',
      // X-Ray on the stage (tracing: true); the endpoint's hosts run no X-Ray daemon, so the trace ends at InvokeEndpoint.
      tracingEnabled: context.tracing,
      throttlingRateLimit: context.throttle?.rateLimit ?? 100,
      throttlingBurstLimit: context.throttle?.burstLimit ?? 200,
      ...(accessLogs
        ? {
            accessLogDestination: new apigw.LogGroupLogDestination(accessLogs),
            accessLogFormat: apigw.AccessLogFormat.jsonWithStandardFields(),
          }
        : {}),
    },
  });
  if (props.accessLogs === RestApiAccessLogs.CREATE_ACCOUNT_ROLE) {
    api.deploymentStage.node.addDependency(apiGatewayAccountSetting(scope));
  }
  const invokeRole = new iam.Role(scope, 'InvokeRole', {
    assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
    description: `Lets the ${context.apiName} REST API call InvokeEndpoint on its SageMaker endpoint, and nothing else`,
  });
  invokeRole.addToPolicy(new iam.PolicyStatement({ actions: ['sagemaker:InvokeEndpoint'], resources: [endpointArn] }));
  // The stage goes live once the role may call InvokeEndpoint (its policy attached), not a moment before.
  api.deploymentStage.node.addDependency(invokeRole);
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
  addContractGatewayResponses(api);
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

/**
 * API Gateway's own answers that have a contract equivalent, in the contract's error shape: the 29 s integration
 * timeout (504 `predictor_timeout`), a body above its 10 MB (413 `payload_too_large`), and any other 5xx it makes
 * (`internal_error`, its status kept). Gateway response templates are substituted, not run as VTL:
 * `$context.error.messageString` is API Gateway's message, already quoted.
 */
function addContractGatewayResponses(api: apigw.RestApi): void {
  const responses: [string, apigw.ResponseType, ErrorCode, string, boolean][] = [
    [
      'Timeout',
      apigw.ResponseType.INTEGRATION_TIMEOUT,
      'predictor_timeout',
      '"the endpoint did not answer within API Gateway\'s 29 s"',
      true,
    ],
    [
      'TooLarge',
      apigw.ResponseType.REQUEST_TOO_LARGE,
      'payload_too_large',
      '"the request is larger than API Gateway\'s 10 MB"',
      true,
    ],
    ['ServerError', apigw.ResponseType.DEFAULT_5XX, 'internal_error', '$context.error.messageString', false],
  ];
  for (const [id, type, code, message, withStatus] of responses) {
    api.addGatewayResponse(id, {
      type,
      ...(withStatus ? { statusCode: String(ERROR_STATUS[code]) } : {}),
      responseHeaders: { 'Content-Type': "'application/json'" },
      templates: { 'application/json': `{"error":${message},"code":"${code}","requestId":"$context.requestId"}` },
    });
  }
}

/** The id of the stack-wide construct holding the API Gateway account setting and its role. */
const ACCOUNT_SETTING_ID = 'ArclightApiGatewayAccount';

/**
 * The region's API Gateway account setting, naming a CloudWatch Logs role: one per stack, however many REST APIs
 * need it. Both are retained on stack deletion (other REST APIs in the region may log through the role by then).
 */
export function apiGatewayAccountSetting(scope: Construct): apigw.CfnAccount {
  const stack = Stack.of(scope);
  const existing = stack.node.tryFindChild(ACCOUNT_SETTING_ID) as Construct | undefined;
  if (existing) return existing.node.findChild('Account') as apigw.CfnAccount;
  const holder = new Construct(stack, ACCOUNT_SETTING_ID);
  const role = new iam.Role(holder, 'CloudWatchRole', {
    assumedBy: new iam.ServicePrincipal('apigateway.amazonaws.com'),
    description: "API Gateway's account-wide CloudWatch Logs role in this region (REST API access logs need one)",
    managedPolicies: [iam.ManagedPolicy.fromAwsManagedPolicyName('service-role/AmazonAPIGatewayPushToCloudWatchLogs')],
  });
  role.applyRemovalPolicy(RemovalPolicy.RETAIN);
  const account = new apigw.CfnAccount(holder, 'Account', { cloudWatchRoleArn: role.roleArn });
  account.applyRemovalPolicy(RemovalPolicy.RETAIN);
  acknowledgeFinding(
    role,
    'AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs]',
    "AmazonAPIGatewayPushToCloudWatchLogs is the policy AWS documents for API Gateway's account-wide logging role: it serves every REST API in the region, so it cannot be scoped to this stack's log groups.",
  );
  return account;
}
