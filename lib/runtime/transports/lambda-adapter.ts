/**
 * The Lambda adapter: API Gateway HTTP API (payload 2.0) and REST API (payload 1.0) proxy events → internal
 * requests → the runtime → proxy results. Binary bodies travel base64-encoded both ways. Several `Set-Cookie` go out
 * as payload 2.0's `cookies` (1.0: `multiValueHeaders`), never folded into one header. A result above Lambda's 6 MB
 * response limit, which Lambda would turn into a bare failure (API Gateway: `500 Internal Server Error`), is answered
 * with a contract error that says so instead.
 */
import type { APIGatewayProxyEvent, APIGatewayProxyEventV2, APIGatewayProxyResult, Context } from 'aws-lambda';
import { LAMBDA_PAYLOAD } from '../../contract.js';
import { isHttpError } from '../../predictor.js';
import type { InternalRequest, InternalResponse } from '../codec/codec.js';
import { decodeBody, requestCoding } from '../codec/content-encoding.js';
import { errorBodyJson, isJsonContentType, mediaType } from '../codec/json.js';
import { BINARY_HEADER } from '../codec/oip.js';
import { isRouted } from '../routes.js';
import { BodyMemory } from './body-memory.js';
import { requestIdFrom } from './request-id.js';
import type { Runtime } from '../runtime.js';

export type ApiGatewayEvent = APIGatewayProxyEventV2 | APIGatewayProxyEvent;

export interface LambdaHandlerOptions {
  /** Bodies above this answer 413. @default the largest body Lambda can deliver (`LAMBDA_PAYLOAD.maxTextBodyBytes`) */
  readonly maxBodyBytes?: number;
  /** Time kept back from the invocation's deadline to send the 504 in. @default 500 ms */
  readonly deadlineMarginMs?: number;
  /** Results whose JSON is larger answer 500 `response_too_large`. @default Lambda's 6,291,456 bytes */
  readonly maxResultBytes?: number;
}

/** A proxy result; `cookies` only for payload 2.0 events. */
export type LambdaResult = APIGatewayProxyResult & { cookies?: string[] };

export type LambdaHandler = (event: unknown, context?: Partial<Context>) => Promise<LambdaResult>;

type PayloadVersion = '1.0' | '2.0';

/** Thrown for an event that is not an API Gateway proxy event. */
class BadEvent extends Error {}

/** A Lambda handler over a runtime; it waits for the runtime's start (begun at import) before the first request. */
export function createLambdaHandler(runtime: Runtime, options: LambdaHandlerOptions = {}): LambdaHandler {
  const maxBodyBytes = options.maxBodyBytes ?? LAMBDA_PAYLOAD.maxTextBodyBytes;
  const maxResultBytes = options.maxResultBytes ?? LAMBDA_PAYLOAD.payloadBytes;
  const margin = options.deadlineMarginMs ?? 500;
  const bodyMemory = new BodyMemory();
  const answer = async (
    event: unknown,
    context: Partial<Context> | undefined,
    memory: BodyMemory | undefined,
  ): Promise<LambdaResult> => {
    let request: InternalRequest;
    let requestId: string;
    let version: PayloadVersion;
    try {
      ({ request, requestId, version } = fromEvent(event, context, memory));
    } catch (error) {
      if (!(error instanceof BadEvent)) throw error;
      return errorResult(400, 'invalid_input', error.message, gatewayRequestId(event, context));
    }
    if (bodyBytes(request) > maxBodyBytes) {
      return errorResult(
        413,
        'payload_too_large',
        `request body exceeds the limit of ${maxBodyBytes} bytes`,
        requestId,
      );
    }
    try {
      request = decodedRequest(request, maxBodyBytes);
    } catch (error) {
      if (!isHttpError(error)) throw error;
      return errorResult(error.status, error.code, error.message, requestId);
    }
    if (runtime.status !== 'ready') await runtime.ensureStarted();
    const remaining = context?.getRemainingTimeInMillis?.();
    const response = await runtime.handle(request, {
      requestId,
      ...(remaining === undefined ? {} : { timeoutMs: Math.max(0, remaining - margin) }),
    });
    // Powertools' Lambda pattern: this invocation's metrics are written before the sandbox may freeze.
    runtime.telemetry.afterInvocation();
    const result = toResult(response, version);
    const bytes = resultBytes(result, maxResultBytes);
    if (bytes <= maxResultBytes) return result;
    runtime.log.error('response too large for Lambda', { requestId, status: result.statusCode, bytes, maxResultBytes });
    return errorResult(
      500,
      'response_too_large',
      `the response is ${bytes} bytes as a Lambda result, above Lambda's limit of ${maxResultBytes} bytes` +
        `${result.isBase64Encoded ? ' (a binary body counts base64-encoded, 4/3 of its size)' : ''}; ` +
        'ask for less per request, or serve this API from a container compute (SageMaker or ECS)',
      requestId,
    );
  };
  return async (event, context) => {
    // Offered only when free: the body decoded first thing (synchronously) takes it, so in use afterwards means ours.
    const memory = runtime.bodiesStayInside && !bodyMemory.inUse ? bodyMemory : undefined;
    let succeeded = false;
    try {
      const result = await answer(event, context, memory);
      succeeded = result.statusCode < 300;
      return result;
    } finally {
      // A success's answer is bytes of its own, and nothing holds its body; after a failure (a timeout's run may still
      // read it), whatever holds the body keeps that buffer.
      if (memory?.inUse) {
        if (succeeded) memory.release();
        else memory.abandon();
      }
    }
  };
}

/**
 * The result's size as Lambda counts it (its JSON, in bytes). A body shorter than an eighth of the limit cannot
 * reach it (JSON escaping makes a character at most 6 bytes), so only a large one pays for the exact count.
 */
function resultBytes(result: LambdaResult, limit: number): number {
  if (result.body.length <= limit / 8) return result.body.length;
  return Buffer.byteLength(JSON.stringify(result), 'utf8');
}

function fromEvent(
  event: unknown,
  context: Partial<Context> | undefined,
  memory: BodyMemory | undefined,
): { request: InternalRequest; requestId: string; version: PayloadVersion } {
  if (typeof event !== 'object' || event === null) throw new BadEvent('the event is not an API Gateway proxy event');
  const e = event as Record<string, unknown>;
  if (e['version'] === '2.0') return fromV2(event as APIGatewayProxyEventV2, context, memory);
  if (typeof e['httpMethod'] === 'string') return fromV1(event as APIGatewayProxyEvent, context, memory);
  throw new BadEvent('the event is not an API Gateway proxy event (payload format 1.0 or 2.0)');
}

/** What API Gateway's ids look like (`abcDEF12345=`, a UUID): printable, short, no quotes or spaces to break a log. */
const GATEWAY_ID = /^[A-Za-z0-9._:=+/-]{1,128}$/;

/**
 * API Gateway's request id when the event carries one (also for an event refused as malformed), else Lambda's. An id
 * that is not a short printable string (a hand-made or corrupted event) is not echoed or logged.
 */
function gatewayRequestId(event: unknown, context: Partial<Context> | undefined): string {
  const requestContext = (event as { requestContext?: { requestId?: unknown } } | null)?.requestContext;
  const id = typeof requestContext === 'object' && requestContext !== null ? requestContext.requestId : undefined;
  if (typeof id === 'string' && GATEWAY_ID.test(id)) return id;
  return typeof context?.awsRequestId === 'string' && GATEWAY_ID.test(context.awsRequestId)
    ? context.awsRequestId
    : requestIdFrom(undefined);
}

function fromV2(event: APIGatewayProxyEventV2, context: Partial<Context> | undefined, memory: BodyMemory | undefined) {
  const method = event.requestContext?.http?.method;
  if (typeof method !== 'string' || typeof event.rawPath !== 'string') {
    throw new BadEvent('payload 2.0 event lacks requestContext.http.method or rawPath');
  }
  const headers = lowerCaseHeaders(event.headers);
  const cookies = strings(event.cookies);
  if (cookies.length) headers['cookie'] = cookies.join('; ');
  const stage = typeof event.requestContext.stage === 'string' ? event.requestContext.stage : undefined;
  const path = stripStage(event.rawPath, stage);
  const rawQuery = typeof event.rawQueryString === 'string' ? event.rawQueryString : '';
  // Most inference calls carry no query string: no parser for them.
  const query = rawQuery === '' ? {} : Object.fromEntries(new URLSearchParams(rawQuery));
  return {
    request: withBody({ method, path, query, headers }, event.body, event.isBase64Encoded, memory),
    requestId: gatewayRequestId(event, context),
    version: '2.0' as const,
  };
}

function fromV1(event: APIGatewayProxyEvent, context: Partial<Context> | undefined, memory: BodyMemory | undefined) {
  if (typeof event.path !== 'string') throw new BadEvent('payload 1.0 event lacks path');
  if (typeof event.httpMethod !== 'string') throw new BadEvent('payload 1.0 event lacks httpMethod');
  const headers = lowerCaseHeaders(event.headers);
  for (const [name, values] of entriesOf(event.multiValueHeaders)) {
    const texts = strings(values);
    if (texts.length) headers[name.toLowerCase()] = texts.join(', ');
  }
  const query: Record<string, string> = {};
  for (const [name, value] of entriesOf(event.queryStringParameters))
    if (typeof value === 'string') query[name] = value;
  for (const [name, values] of entriesOf(event.multiValueQueryStringParameters)) {
    const texts = strings(values);
    if (texts.length) query[name] = texts[texts.length - 1]!;
  }
  return {
    request: withBody(
      { method: event.httpMethod, path: event.path, query, headers },
      event.body,
      event.isBase64Encoded,
      memory,
    ),
    requestId: gatewayRequestId(event, context),
    version: '1.0' as const,
  };
}

/** HTTP APIs with a named stage put it in front of the path; routes are matched without it. */
function stripStage(path: string, stage: string | undefined): string {
  if (!stage || stage === '$default') return path;
  const prefix = `/${stage}`;
  if (path === prefix) return '/';
  return path.startsWith(`${prefix}/`) ? path.slice(prefix.length) : path;
}

/** A map's entries when the event holds an object there; API Gateway always does, a hand-made event may not. */
function entriesOf(value: unknown): [string, unknown][] {
  return typeof value === 'object' && value !== null ? Object.entries(value) : [];
}

/** The strings of what should be a list of them (cookies, multi-value headers); anything else holds none. */
function strings(value: unknown): string[] {
  return Array.isArray(value) ? value.filter((item): item is string => typeof item === 'string') : [];
}

function lowerCaseHeaders(headers: Record<string, string | undefined> | null | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (typeof headers !== 'object' || headers === null) return out;
  for (const [name, value] of Object.entries(headers)) if (typeof value === 'string') out[name.toLowerCase()] = value;
  return out;
}

const EMPTY = Buffer.alloc(0);

/**
 * The request with its body: base64 bodies decoded now; text bodies kept as the event's string, with the bytes made
 * only if someone asks (JSON parses straight from the string, saving two copies of a multi-MB body).
 */
function withBody(
  fields: Omit<InternalRequest, 'body' | 'text'>,
  body: string | null | undefined,
  isBase64Encoded: boolean | undefined,
  memory: BodyMemory | undefined,
): InternalRequest {
  if (body === null || body === undefined) return { ...fields, body: EMPTY };
  if (typeof body !== 'string') throw new BadEvent('event body must be a string');
  if (isBase64Encoded) return { ...fields, body: decodeBase64(body, fields.headers[BINARY_HEADER], memory) };
  let bytes: Buffer | undefined;
  return {
    ...fields,
    text: body,
    get body() {
      return (bytes ??= Buffer.from(body, 'utf8'));
    },
  };
}

/**
 * The request with a compressed body (`Content-Encoding: gzip` or `deflate`) inflated, at most `maxBodyBytes` of
 * it; the runtime then sees the plain body, without the header. API Gateway hands such a body over base64-encoded.
 */
function decodedRequest(request: InternalRequest, maxBodyBytes: number): InternalRequest {
  // A request no route takes is answered 404/405 whatever its body is coded in.
  if (request.headers['content-encoding'] === undefined || !isRouted(request.method, request.path)) return request;
  const coding = requestCoding(request.headers['content-encoding']);
  const headers = { ...request.headers };
  delete headers['content-encoding'];
  const { method, path, query } = request;
  return { method, path, query, headers, body: decodeBody(request.body, coding, maxBodyBytes) };
}

function bodyBytes(request: InternalRequest): number {
  return request.text === undefined ? request.body.length : Buffer.byteLength(request.text, 'utf8');
}

/** A character beyond Latin-1 (a UTF-16 code unit above 0xFF). */
const BEYOND_LATIN1 = /[\u0100-\uffff]/;

/**
 * Decodes base64, refusing what is not: Node's decoder skips characters outside the alphabet, so a body that
 * decodes to fewer bytes than its length promises held some. It also reads a character beyond Latin-1 by its low
 * byte, which may spell a letter of the alphabet: `BEYOND_LATIN1` refuses those. A string V8 stores one byte per
 * character cannot hold one, and V8 answers that regex for such a string without reading it (0.1 µs for a MobileNet
 * body on Node 22, where the ASCII count `Buffer.byteLength` took 110 µs, as long as the decode itself).
 *
 * The bytes land in `memory` when given, else in memory of their own (never Node's shared pool), placed so that an
 * OIP binary part (after the JSON header that `inference-header-content-length` measures) starts 8-byte aligned: its
 * tensors are views into the body, where a tensor at an odd offset of a pooled buffer had to be copied once more
 * (MobileNet: 588 KiB a request).
 */
function decodeBase64(text: string, binaryHeader: string | undefined, memory: BodyMemory | undefined): Buffer {
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const length = (text.length / 4) * 3 - padding;
  if (text.length % 4 !== 0 || BEYOND_LATIN1.test(text)) throw notBase64();
  const binaryAt = Number(binaryHeader);
  const pad =
    binaryHeader !== undefined && Number.isSafeInteger(binaryAt) && binaryAt >= 0 ? (8 - (binaryAt % 8)) % 8 : 0;
  // Not zero-filled (every byte is written next): a zeroed ArrayBuffer of a large body came from fresh pages each time.
  const body = memory?.take(pad, length) ?? Buffer.allocUnsafeSlow(pad + length).subarray(pad);
  if (body.write(text, 'base64') !== length) throw notBase64();
  return body;
}

function notBase64(): BadEvent {
  return new BadEvent('event body is marked base64 but is not valid base64');
}

function toResult(response: InternalResponse, version: PayloadVersion): LambdaResult {
  const textual = isTextual(response.headers['content-type'] ?? '');
  return {
    statusCode: response.status,
    headers: response.headers,
    ...cookiesOf(response, version),
    body: response.body.toString(textual ? 'utf8' : 'base64'),
    isBase64Encoded: !textual,
  };
}

/** Payload 2.0 carries `Set-Cookie` values in `cookies`; 1.0 in `multiValueHeaders` (one header each either way). */
function cookiesOf(
  response: InternalResponse,
  version: PayloadVersion,
): Pick<LambdaResult, 'cookies' | 'multiValueHeaders'> {
  if (!response.cookies?.length) return {};
  if (version === '2.0') return { cookies: [...response.cookies] };
  return { multiValueHeaders: { 'set-cookie': [...response.cookies] } };
}

function isTextual(contentType: string): boolean {
  return contentType === '' || isJsonContentType(contentType) || mediaType(contentType).startsWith('text/');
}

function errorResult(statusCode: number, code: string, message: string, requestId: string): LambdaResult {
  return {
    statusCode,
    headers: { 'content-type': 'application/json', 'x-request-id': requestId },
    body: errorBodyJson(code, message, requestId),
    isBase64Encoded: false,
  };
}
