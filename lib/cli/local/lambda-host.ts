/**
 * A local Lambda host for one function: imports the bundled handler (its init phase, with the function's env
 * already in this process's env) and turns HTTP requests into API Gateway HTTP API (payload 2.0) events and the
 * handler's results back into HTTP responses, with a Lambda-like context whose deadline is the function's timeout.
 *
 * It is as strict as Lambda behind API Gateway, so what fails on AWS fails here first:
 * - a body above API Gateway's 10 MB, or an event above Lambda's 6,291,456 bytes (binary bodies count base64-encoded),
 *   is answered `413 {"message":"Request Entity Too Large"}` without invoking the function;
 * - a function that throws, times out, returns more than 6 MB or a result that is not a proxy response is answered
 *   `500 {"message":"Internal Server Error"}`, with the details only in the log; API Gateway's 30 s integration
 *   timeout is `503 {"message":"Service Unavailable"}`;
 * - a failed init is not shown to the client (500 as above) and is run again on the next request;
 * - `console.*` lines are written as Lambda writes them (`timestamp<TAB>requestId<TAB>LEVEL<TAB>message`), with
 *   START / END / REPORT lines around each invocation.
 * `arclight dev` also freezes the host between invocations (SIGSTOP while no request is in it, SIGCONT for the next),
 * as Lambda freezes a sandbox: background work that outlives a response stops until the next request.
 *
 * `arclight dev` runs one of these per API as a child process (env is per process), compiled to plain ESM so that
 * no TypeScript loader stands between Node.js and the bundle: `node lambda-host.mjs '<LambdaHostSpec as JSON>'`.
 * It reports its port over IPC.
 */
import type { APIGatewayProxyEventV2, Context } from 'aws-lambda';
import { randomBytes, randomUUID } from 'node:crypto';
import { realpathSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { AsyncLocalStorage } from 'node:async_hooks';
import { format } from 'node:util';
import { ASYNC_HEADERS, LAMBDA_PAYLOAD } from '../../contract.js';

/** What the host runs; `arclight dev` passes it as the first argument. */
export interface LambdaHostSpec {
  readonly apiName: string;
  /** Absolute path of the bundle the image's CMD names. */
  readonly bundle: string;
  /** Its export that is the handler. */
  readonly handlerExport: string;
  readonly timeoutSeconds: number;
  readonly memorySize: number;
  readonly functionName: string;
  readonly accountId: string;
  readonly region: string;
}

/** The message the host sends its parent once it listens. */
export interface HostListening {
  readonly type: 'listening';
  readonly port: number;
  /** Why the bundle could not be imported (every invocation then answers 500). */
  readonly initError?: string;
}

/** API Gateway HTTP APIs take request bodies up to 10 MB. */
export const MAX_EVENT_BODY_BYTES = 10 * 1024 * 1024;

type Handler = (event: unknown, context: Context, callback?: (error: unknown, result?: unknown) => void) => unknown;

/** The request as the host saw it. */
export interface HostRequest {
  readonly method: string;
  /** Path and query string as sent: `/v2/models/x/infer?a=1`. */
  readonly url: string;
  readonly headers: IncomingHttpHeaders;
  readonly httpVersion?: string;
  readonly sourceIp?: string;
}

const TEXT_TYPES =
  /^(?:text\/.*|application\/(?:[\w.+-]*\+)?(?:json|xml)|application\/(?:javascript|x-www-form-urlencoded))$/;

/** Whether API Gateway hands a body with this content type to the function as text (not base64). */
export function isTextContentType(contentType: string | undefined): boolean {
  if (!contentType) return false;
  return TEXT_TYPES.test(contentType.split(';')[0]!.trim().toLowerCase());
}

/** An API Gateway HTTP API payload 2.0 event for a request on the `$default` stage, as API Gateway builds it. */
export function httpApiEvent(
  request: HostRequest,
  body: Buffer,
  options: { readonly requestId: string; readonly accountId: string; readonly now?: Date },
): APIGatewayProxyEventV2 {
  const now = options.now ?? new Date();
  const queryAt = request.url.indexOf('?');
  const rawPath = queryAt < 0 ? request.url : request.url.slice(0, queryAt);
  const rawQueryString = queryAt < 0 ? '' : request.url.slice(queryAt + 1);
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(request.headers)) {
    if (value === undefined || name === 'cookie') continue;
    headers[name] = Array.isArray(value) ? value.join(',') : value;
  }
  const cookies = request.headers.cookie
    ?.split(';')
    .map((cookie) => cookie.trim())
    .filter(Boolean);
  const query: Record<string, string> = {};
  for (const [name, value] of new URLSearchParams(rawQueryString)) {
    query[name] = name in query ? `${query[name]},${value}` : value;
  }
  const domainName = headers['host'] ?? 'localhost';
  const text = isTextContentType(headers['content-type']) && isUtf8(body);
  return {
    version: '2.0',
    routeKey: '$default',
    rawPath,
    rawQueryString,
    ...(cookies?.length ? { cookies } : {}),
    headers,
    ...(Object.keys(query).length > 0 ? { queryStringParameters: query } : {}),
    requestContext: {
      accountId: options.accountId,
      apiId: 'local',
      domainName,
      domainPrefix: domainName.split('.')[0]!,
      http: {
        method: request.method,
        path: rawPath,
        protocol: `HTTP/${request.httpVersion ?? '1.1'}`,
        sourceIp: headers['x-forwarded-for']?.split(',')[0]?.trim() || request.sourceIp || '127.0.0.1',
        userAgent: headers['user-agent'] ?? '',
      },
      requestId: options.requestId,
      routeKey: '$default',
      stage: '$default',
      time: gatewayTime(now),
      timeEpoch: now.getTime(),
    },
    ...(body.length > 0 ? { body: text ? body.toString('utf8') : body.toString('base64') } : {}),
    isBase64Encoded: body.length > 0 && !text,
  };
}

function isUtf8(bytes: Buffer): boolean {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch {
    return false;
  }
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** `12/Mar/2020:19:03:58 +0000`, API Gateway's requestContext.time. */
function gatewayTime(date: Date): string {
  const two = (n: number): string => String(n).padStart(2, '0');
  return `${two(date.getUTCDate())}/${MONTHS[date.getUTCMonth()]}/${date.getUTCFullYear()}:${two(date.getUTCHours())}:${two(date.getUTCMinutes())}:${two(date.getUTCSeconds())} +0000`;
}

/** An HTTP response from a handler's result, by API Gateway's payload 2.0 rules. */
export interface HostResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[]>;
  readonly body: Buffer;
}

/**
 * A structured result (`{ statusCode, headers, cookies, body, isBase64Encoded }`) as it says; anything else is
 * JSON with status 200, as API Gateway infers it.
 */
export function httpResponse(result: unknown): HostResponse {
  if (typeof result !== 'object' || result === null || !('statusCode' in result)) {
    return {
      status: 200,
      headers: { 'content-type': 'application/json' },
      body: Buffer.from(JSON.stringify(result ?? null)),
    };
  }
  const r = result as {
    statusCode: unknown;
    headers?: Record<string, unknown>;
    cookies?: unknown[];
    body?: unknown;
    isBase64Encoded?: unknown;
  };
  const headers: Record<string, string | string[]> = {};
  for (const [name, value] of Object.entries(r.headers ?? {})) {
    if (value !== undefined && value !== null) headers[name.toLowerCase()] = String(value);
  }
  if (Array.isArray(r.cookies) && r.cookies.length > 0) headers['set-cookie'] = r.cookies.map(String);
  const text = typeof r.body === 'string' ? r.body : r.body === undefined || r.body === null ? '' : String(r.body);
  return {
    status: Number(r.statusCode),
    headers,
    body: r.isBase64Encoded === true ? Buffer.from(text, 'base64') : Buffer.from(text, 'utf8'),
  };
}

/** A Lambda context whose deadline is `deadline` (epoch ms). */
export function lambdaContext(spec: LambdaHostSpec, deadline: number): Context {
  const day = new Date().toISOString().slice(0, 10).replaceAll('-', '/');
  return {
    callbackWaitsForEmptyEventLoop: true,
    functionName: spec.functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:${spec.region}:${spec.accountId}:function:${spec.functionName}`,
    memoryLimitInMB: String(spec.memorySize),
    awsRequestId: randomUUID(),
    logGroupName: `/aws/lambda/${spec.functionName}`,
    logStreamName: `${day}/[$LATEST]${randomBytes(16).toString('hex')}`,
    getRemainingTimeInMillis: () => Math.max(0, deadline - Date.now()),
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
  };
}

/** Calls a handler, async or callback style, and settles with its result. */
function invoke(handler: Handler, event: unknown, context: Context): Promise<unknown> {
  if (handler.length < 3) return Promise.resolve().then(() => handler(event, context));
  return new Promise((resolve, reject) => {
    const returned = handler(event, context, (error, result) => (error ? reject(error) : resolve(result)));
    if (returned && typeof (returned as Promise<unknown>).then === 'function') {
      (returned as Promise<unknown>).then(resolve, reject);
    }
  });
}

function send(res: ServerResponse, response: HostResponse): void {
  res.writeHead(response.status, { ...response.headers, 'content-length': String(response.body.length) });
  res.end(response.body);
}

/**
 * What API Gateway (HTTP API) answers when the Lambda integration fails: a bare `{"message": ...}`, the details only
 * in the function's log. The host gives the same answers, so a client meets them in `arclight dev` first.
 */
export const GATEWAY_ANSWERS = {
  /** The function threw, timed out, failed its init, or returned a result Lambda or API Gateway cannot take. */
  functionError: { status: 500, message: 'Internal Server Error' },
  /** No answer within the integration timeout (30 s), counted from the request's arrival (a cold start included). */
  integrationTimeout: { status: 503, message: 'Service Unavailable' },
  /** A body above API Gateway's 10 MB, or an event above Lambda's 6 MB (binary bodies count base64-encoded). */
  requestTooLarge: { status: 413, message: 'Request Entity Too Large' },
} as const;

/** Lambda's and API Gateway's limits, applied by the host. */
export const LAMBDA_HOST_LIMITS = {
  /** API Gateway HTTP API takes request bodies up to 10 MB. */
  maxGatewayBodyBytes: MAX_EVENT_BODY_BYTES,
  /** Lambda takes invocation events up to 6,291,456 bytes of JSON. */
  maxEventBytes: LAMBDA_PAYLOAD.payloadBytes,
  /** Lambda returns results up to 6 MB of JSON (a larger one fails the invocation: `Function.ResponseSizeTooLarge`). */
  maxResultBytes: LAMBDA_PAYLOAD.payloadBytes,
  /** API Gateway HTTP API's integration timeout. */
  integrationTimeoutMs: 30_000,
} as const;

function sendGatewayAnswer(res: ServerResponse, answer: { status: number; message: string }, requestId: string): void {
  send(res, {
    status: answer.status,
    // API Gateway names its own request id in `apigw-requestid`.
    headers: { 'content-type': 'application/json', 'apigw-requestid': requestId },
    body: Buffer.from(JSON.stringify({ message: answer.message })),
  });
}

/** The body, or undefined once it passes `limit`. */
function readBody(req: IncomingMessage, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    req.on('data', (chunk: Buffer) => {
      length += chunk.length;
      if (length <= limit) chunks.push(chunk);
    });
    req.once('end', () => resolve(length > limit ? undefined : Buffer.concat(chunks)));
    req.once('error', reject);
  });
}

/** The invocation a console line belongs to (Lambda prints `undefined` outside one, during init). */
const invocation = new AsyncLocalStorage<string>();

const CONSOLE_LEVELS = [
  ['log', 'INFO'],
  ['info', 'INFO'],
  ['warn', 'WARN'],
  ['error', 'ERROR'],
  ['debug', 'DEBUG'],
  ['trace', 'TRACE'],
] as const;

/**
 * Lambda's Node.js runtime writes each `console.*` call as one line, `timestamp<TAB>requestId<TAB>LEVEL<TAB>message`,
 * its newlines turned into carriage returns so a multi-line message stays one log event. The runtime's own JSON
 * records are written to stdout directly and stay as they are, as on Lambda.
 */
export function lambdaConsoleLine(level: string, requestId: string | undefined, args: readonly unknown[]): string {
  return `${new Date().toISOString()}\t${requestId ?? 'undefined'}\t${level}\t${format(...args).replaceAll('\n', '\r')}\n`;
}

function patchConsole(): void {
  for (const [method, level] of CONSOLE_LEVELS) {
    console[method] = (...args: unknown[]) => {
      process.stdout.write(lambdaConsoleLine(level, invocation.getStore(), args));
    };
  }
}

/** An error as Lambda's runtime logs it: `{"errorType","errorMessage","stack":[lines]}`. */
function errorRecord(error: unknown): string {
  const e = error instanceof Error ? error : new Error(String(error));
  return JSON.stringify({
    errorType: e.constructor?.name ?? e.name,
    errorMessage: e.message,
    stack: (e.stack ?? '').split('\n'),
  });
}

/** The bundle's handler, imported anew on each try: after a failed init, Lambda runs the init again on the next invoke. */
class FunctionInit {
  handler: Handler | undefined;
  error: string | undefined;
  /** The last successful init's duration (ms), until the first invocation reports it. */
  pendingInitMs: number | undefined;
  private tries = 0;

  constructor(private readonly spec: LambdaHostSpec) {}

  async run(): Promise<Handler | undefined> {
    this.tries += 1;
    const started = performance.now();
    try {
      // A fresh module instance per try: ES modules cache a failed evaluation under its URL.
      const url = `${pathToFileURL(this.spec.bundle).href}${this.tries === 1 ? '' : `?init=${this.tries}`}`;
      const bundle = (await import(url)) as Record<string, unknown>;
      const exported = bundle[this.spec.handlerExport];
      if (typeof exported !== 'function') {
        throw new Error(`${this.spec.bundle} exports no function '${this.spec.handlerExport}'`);
      }
      this.handler = exported as Handler;
      this.error = undefined;
      this.pendingInitMs = performance.now() - started;
    } catch (error) {
      this.error = (error as Error)?.message ?? String(error);
      process.stdout.write(lambdaConsoleLine('ERROR', undefined, [`Uncaught Exception \t${errorRecord(error)}`]));
      process.stderr.write(
        `arclight: '${this.spec.apiName}' failed to initialize (Lambda retries the init on the next request): ${this.error}\n`,
      );
    }
    return this.handler;
  }
}

/** Result sizes and shapes Lambda and API Gateway refuse; undefined when the result can be answered. */
function refusedResult(result: unknown): string | undefined {
  const bytes = Buffer.byteLength(JSON.stringify(result ?? null) ?? 'null', 'utf8');
  if (bytes > LAMBDA_HOST_LIMITS.maxResultBytes) {
    return `Function.ResponseSizeTooLarge: the result is ${bytes} bytes, above Lambda's ${LAMBDA_HOST_LIMITS.maxResultBytes}`;
  }
  if (typeof result === 'object' && result !== null && 'statusCode' in result) {
    const status = Number((result as { statusCode: unknown }).statusCode);
    if (!Number.isInteger(status) || status < 100 || status > 599) {
      return `the result's statusCode ${JSON.stringify((result as { statusCode: unknown }).statusCode)} is not an HTTP status`;
    }
  }
  return undefined;
}

/** Imports the bundle, listens on a loopback port, and answers each request with one invocation. */
export async function runLambdaHost(spec: LambdaHostSpec): Promise<void> {
  patchConsole();
  const init = new FunctionInit(spec);
  await init.run();
  const initError = init.error;

  const timeoutMs = spec.timeoutSeconds * 1000;
  const server = createServer((req, res) => {
    void (async () => {
      const arrived = Date.now();
      // An async job (sent by arclight dev's worker, never by a client): deployed, the worker reads its body from S3
      // inside the function, so neither API Gateway's limits nor Lambda's event limit stand between it and the
      // predictor; the runtime's own body limit (the async API's) still does.
      const asyncJob = req.headers[ASYNC_HEADERS.job] !== undefined;
      // The deployed worker's event carries the job id as its request id (the job's logs and error name it).
      const jobId = req.headers[ASYNC_HEADERS.job];
      const gatewayId = typeof jobId === 'string' && /^[0-9a-f]{32}$/.test(jobId) ? jobId : randomUUID();
      const body = await readBody(req, asyncJob ? Number.MAX_SAFE_INTEGER : LAMBDA_HOST_LIMITS.maxGatewayBodyBytes);
      if (body === undefined) {
        process.stderr.write(
          `arclight: '${spec.apiName}' ${gatewayId}: 413 as API Gateway answers: the body is above its ${LAMBDA_HOST_LIMITS.maxGatewayBodyBytes} bytes\n`,
        );
        return sendGatewayAnswer(res, GATEWAY_ANSWERS.requestTooLarge, gatewayId);
      }
      const event = httpApiEvent(
        {
          method: req.method ?? 'GET',
          url: req.url ?? '/',
          headers: req.headers,
          httpVersion: req.httpVersion,
          sourceIp: req.socket.remoteAddress,
        },
        body,
        { requestId: gatewayId, accountId: spec.accountId },
      );
      const eventBytes = Buffer.byteLength(JSON.stringify(event), 'utf8');
      if (!asyncJob && eventBytes > LAMBDA_HOST_LIMITS.maxEventBytes) {
        process.stderr.write(
          `arclight: '${spec.apiName}' ${gatewayId}: 413 as Lambda refuses it: the event is ${eventBytes} bytes (a ${body.length}-byte body${event.isBase64Encoded ? ', base64-encoded' : ''}), above Lambda's ${LAMBDA_HOST_LIMITS.maxEventBytes}\n`,
        );
        return sendGatewayAnswer(res, GATEWAY_ANSWERS.requestTooLarge, gatewayId);
      }
      const handler = init.handler ?? (await init.run());
      if (!handler) return sendGatewayAnswer(res, GATEWAY_ANSWERS.functionError, gatewayId);
      const context = lambdaContext(spec, Date.now() + timeoutMs);
      const requestId = context.awsRequestId;
      const outcome = await invokeWithin(handler, event, context, {
        functionMs: timeoutMs,
        integrationMs: asyncJob
          ? timeoutMs
          : Math.max(0, LAMBDA_HOST_LIMITS.integrationTimeoutMs - (Date.now() - arrived)),
      });
      const answer = logInvocation(spec, requestId, outcome, init);
      if (answer) return sendGatewayAnswer(res, answer, gatewayId);
      send(res, httpResponse(outcome.result));
    })().catch((error: unknown) => {
      process.stderr.write(`arclight: '${spec.apiName}' request failed: ${String(error)}\n`);
      res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;

  const stop = (): void => {
    server.close();
    server.closeAllConnections();
    process.exit(0);
  };
  // The parent stops this process with SIGTERM; a terminal's Ctrl-C reaches the parent, which does that.
  process.on('SIGINT', () => undefined);
  process.once('SIGTERM', stop);
  // Exit with the parent, however it ends.
  process.once('disconnect', stop);

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const message: HostListening = { type: 'listening', port, ...(initError === undefined ? {} : { initError }) };
  process.send?.(message);
}

/** How one invocation ended. */
interface Outcome {
  readonly kind: 'result' | 'error' | 'function-timeout' | 'integration-timeout';
  readonly result?: unknown;
  readonly error?: unknown;
  readonly durationMs: number;
}

/** Invokes the handler under the function's timeout and API Gateway's integration timeout, whichever comes first. */
async function invokeWithin(
  handler: Handler,
  event: unknown,
  context: Context,
  limits: { readonly functionMs: number; readonly integrationMs: number },
): Promise<Outcome> {
  const started = performance.now();
  const timers: NodeJS.Timeout[] = [];
  const after = (ms: number, kind: Outcome['kind']): Promise<Outcome['kind']> =>
    new Promise((resolve) => timers.push(setTimeout(resolve, ms, kind)));
  const invoked = invocation
    .run(context.awsRequestId, () => invoke(handler, event, context))
    .then(
      (result): Outcome => ({ kind: 'result', result, durationMs: performance.now() - started }),
      (error: unknown): Outcome => ({ kind: 'error', error, durationMs: performance.now() - started }),
    );
  const first = await Promise.race([
    invoked,
    after(limits.functionMs, 'function-timeout'),
    after(limits.integrationMs, 'integration-timeout'),
  ]);
  for (const timer of timers) clearTimeout(timer);
  return typeof first === 'string' ? { kind: first, durationMs: performance.now() - started } : first;
}

/**
 * Writes the invocation's log as Lambda does (START, the error if any, END, REPORT) and returns API Gateway's answer
 * when the invocation failed; undefined when its result goes to the client.
 */
function logInvocation(
  spec: LambdaHostSpec,
  requestId: string,
  outcome: Outcome,
  init: FunctionInit,
): { status: number; message: string } | undefined {
  const lines = [`START RequestId: ${requestId} Version: $LATEST`];
  let answer: { status: number; message: string } | undefined;
  const refused = outcome.kind === 'result' ? refusedResult(outcome.result) : undefined;
  if (outcome.kind === 'error') {
    lines.push(lambdaConsoleLine('ERROR', requestId, [`Invoke Error \t${errorRecord(outcome.error)}`]).trimEnd());
    answer = GATEWAY_ANSWERS.functionError;
  } else if (outcome.kind === 'function-timeout') {
    lines.push(
      `${new Date().toISOString()} ${requestId} Task timed out after ${spec.timeoutSeconds.toFixed(2)} seconds`,
    );
    answer = GATEWAY_ANSWERS.functionError;
  } else if (outcome.kind === 'integration-timeout') {
    lines.push(
      `${new Date().toISOString()} ${requestId} API Gateway's integration timed out (30 s); the function runs on`,
    );
    answer = GATEWAY_ANSWERS.integrationTimeout;
  } else if (refused) {
    lines.push(lambdaConsoleLine('ERROR', requestId, [`Invoke Error \t${refused}`]).trimEnd());
    answer = GATEWAY_ANSWERS.functionError;
  }
  const initMs = init.pendingInitMs;
  init.pendingInitMs = undefined;
  lines.push(
    `END RequestId: ${requestId}`,
    `REPORT RequestId: ${requestId}\tDuration: ${outcome.durationMs.toFixed(2)} ms\tBilled Duration: ${Math.ceil(outcome.durationMs)} ms\tMemory Size: ${spec.memorySize} MB\tMax Memory Used: ${Math.round(process.memoryUsage.rss() / 2 ** 20)} MB${initMs === undefined ? '' : `\tInit Duration: ${initMs.toFixed(2)} ms`}`,
  );
  process.stdout.write(`${lines.join('\n')}\n`);
  return answer;
}

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LambdaHostSpec;
  await runLambdaHost(spec);
}
