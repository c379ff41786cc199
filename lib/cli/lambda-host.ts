/**
 * A local Lambda host for one function: imports the bundled handler (its init phase, with the function's env
 * already in this process's env) and turns HTTP requests into API Gateway HTTP API (payload 2.0) events and the
 * handler's results back into HTTP responses, with a Lambda-like context whose deadline is the function's timeout.
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
import { errorBodyJson } from '../runtime/codec/json.js';

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

function sendError(res: ServerResponse, status: number, code: string, message: string, requestId: string): void {
  send(res, {
    status,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: Buffer.from(errorBodyJson(code, message, requestId)),
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

/** Imports the bundle, listens on a loopback port, and answers each request with one invocation. */
export async function runLambdaHost(spec: LambdaHostSpec): Promise<void> {
  let handler: Handler | undefined;
  let initError: string | undefined;
  try {
    const bundle = (await import(pathToFileURL(spec.bundle).href)) as Record<string, unknown>;
    const exported = bundle[spec.handlerExport];
    if (typeof exported !== 'function') throw new Error(`${spec.bundle} exports no function '${spec.handlerExport}'`);
    handler = exported as Handler;
  } catch (error) {
    initError = (error as Error)?.message ?? String(error);
    process.stderr.write(`arclight: '${spec.apiName}' failed to initialize: ${(error as Error)?.stack ?? initError}\n`);
  }

  const timeoutMs = spec.timeoutSeconds * 1000;
  const server = createServer((req, res) => {
    void (async () => {
      const requestId = randomUUID();
      const body = await readBody(req, MAX_EVENT_BODY_BYTES);
      if (body === undefined) {
        return sendError(
          res,
          413,
          'payload_too_large',
          `API Gateway takes bodies up to ${MAX_EVENT_BODY_BYTES} bytes`,
          requestId,
        );
      }
      if (!handler) {
        return sendError(res, 500, 'internal_error', `the function failed to initialize: ${initError}`, requestId);
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
        { requestId, accountId: spec.accountId },
      );
      const deadline = Date.now() + timeoutMs;
      let timer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
      try {
        const result = await Promise.race([invoke(handler, event, lambdaContext(spec, deadline)), timedOut]);
        if (result === 'timeout') {
          process.stderr.write(
            `arclight: '${spec.apiName}' ${requestId} Task timed out after ${spec.timeoutSeconds} seconds\n`,
          );
          return sendError(
            res,
            504,
            'predictor_timeout',
            `the function timed out after ${spec.timeoutSeconds} s`,
            requestId,
          );
        }
        send(res, httpResponse(result));
      } catch (error) {
        process.stderr.write(
          `arclight: '${spec.apiName}' ${requestId} Invoke Error: ${(error as Error)?.stack ?? String(error)}\n`,
        );
        sendError(res, 500, 'internal_error', 'the function failed; its log has the details', requestId);
      } finally {
        clearTimeout(timer);
      }
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

if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const spec = JSON.parse(process.argv[2] ?? '{}') as LambdaHostSpec;
  await runLambdaHost(spec);
}
