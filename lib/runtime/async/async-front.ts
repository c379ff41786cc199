/**
 * The async API's front: `POST /async` stores the request and queues its id, `POST /async/uploads` hands out a
 * presigned PUT URL for bodies above API Gateway's limit, `GET /async/{id}` reads the job's status (and its result or
 * error once it ended). Transport-neutral like the runtime's request handler: a Lambda behind API Gateway runs it on
 * AWS, `arclight dev` in its own process. Every failure is the HTTP contract's error body.
 */
import {
  ASYNC_DEFAULTS,
  ASYNC_HEADERS,
  ASYNC_ROUTES,
  ERROR_STATUS,
  REQUEST_ID_HEADER,
  type ErrorCode,
} from '../../contract.js';
import type { InternalResponse } from '../codec/codec.js';
import { errorBodyJson, isJsonContentType, mediaType, printable } from '../codec/json.js';
import { requestIdFrom } from '../transports/request-id.js';
import type { JobPayloads } from './job-payloads.js';
import type { JobStore } from './job-store.js';
import {
  JOB_ID,
  isTerminal,
  jobId,
  requestKey,
  sha256Hex,
  uploadId as newUploadId,
  uploadKey,
  type JobRecord,
} from './job.js';
import { callbackUrlProblem } from './callback-url.js';
import { failureObjectError, type AsyncEndpoint } from './sagemaker-endpoint.js';

/** Where submitted job ids go: SQS on AWS, an in-process queue under `arclight dev`. */
export interface JobQueue {
  send(id: string): Promise<void>;
}

/** A request as the front sees it: the path is the API's own (`/async/…`), headers lower-cased. */
export interface FrontRequest {
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export interface AsyncFrontOptions {
  readonly apiName: string;
  readonly store: JobStore;
  readonly payloads: JobPayloads;
  /** Where job ids go (Lambda and ECS computes); unused when `endpoint` is set. */
  readonly queue?: JobQueue;
  /** SageMaker compute: submissions go to asynchronous inference, and statuses come from its output objects. */
  readonly endpoint?: AsyncEndpoint;
  /** The API's base URL (no trailing `/`) for `statusUrl`; from the Host header when absent. */
  readonly baseUrl?: string;
  /** @default ASYNC_DEFAULTS.maxBodyBytes */
  readonly maxBodyBytes?: number;
  /** Bodies above this go through an upload. @default ASYNC_DEFAULTS.directBodyBytes */
  readonly directBodyBytes?: number;
  /** @default ASYNC_DEFAULTS.inlineResultBytes */
  readonly inlineResultBytes?: number;
  /** @default ASYNC_DEFAULTS.urlTtlSeconds */
  readonly urlTtlSeconds?: number;
  /** @default ASYNC_DEFAULTS.retentionDays */
  readonly retentionDays?: number;
  /**
   * Submissions may name an `Arclight-Callback-Url` (the worker POSTs the job's end there); `allowLocal` lets http and
   * local addresses through (`arclight dev`). @default webhooks off: the header is refused
   */
  readonly webhooks?: { readonly allowLocal: boolean };
  readonly now?: () => Date;
  /** Where failures to store or queue are reported. */
  readonly onError?: (message: string, error: unknown) => void;
}

/** An answer in the contract's error form. */
class FrontError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/;

export class AsyncFront {
  private readonly maxBodyBytes: number;
  private readonly directBodyBytes: number;
  private readonly inlineResultBytes: number;
  private readonly urlTtlSeconds: number;
  private readonly retentionSeconds: number;
  private readonly now: () => Date;

  constructor(private readonly options: AsyncFrontOptions) {
    this.maxBodyBytes = options.maxBodyBytes ?? ASYNC_DEFAULTS.maxBodyBytes;
    this.directBodyBytes = Math.min(this.maxBodyBytes, options.directBodyBytes ?? ASYNC_DEFAULTS.directBodyBytes);
    this.inlineResultBytes = options.inlineResultBytes ?? ASYNC_DEFAULTS.inlineResultBytes;
    this.urlTtlSeconds = options.urlTtlSeconds ?? ASYNC_DEFAULTS.urlTtlSeconds;
    this.retentionSeconds = (options.retentionDays ?? ASYNC_DEFAULTS.retentionDays) * 86_400;
    this.now = options.now ?? (() => new Date());
    if (!options.queue && !options.endpoint) throw new Error('AsyncFront needs a queue or an endpoint');
  }

  /** Whether the front answers this path (the rest of the API is not async). */
  static serves(path: string): boolean {
    return path === ASYNC_ROUTES.submit || path.startsWith(ASYNC_ROUTES.jobPrefix);
  }

  /** Answers one request; never throws. */
  async handle(request: FrontRequest): Promise<InternalResponse> {
    const requestId = requestIdFrom(request.headers[REQUEST_ID_HEADER]);
    try {
      return withRequestId(await this.route(request), requestId);
    } catch (error) {
      if (error instanceof FrontError) return errorResponse(error.code, error.message, requestId, error.headers);
      this.options.onError?.(`async front: ${request.method} ${request.path} failed`, error);
      return errorResponse('internal_error', 'the async API could not complete the request; try again', requestId);
    }
  }

  private route(request: FrontRequest): Promise<InternalResponse> {
    const { method, path } = request;
    if (path === ASYNC_ROUTES.submit || path === ASYNC_ROUTES.uploads) {
      if (method !== 'POST') throw methodNotAllowed(method, path, 'POST');
      return path === ASYNC_ROUTES.submit ? this.submit(request) : this.createUpload(request);
    }
    const id = path.slice(ASYNC_ROUTES.jobPrefix.length);
    if (!path.startsWith(ASYNC_ROUTES.jobPrefix) || id.includes('/')) {
      throw new FrontError('not_found', `no async route at ${printable(path)}`);
    }
    if (method !== 'GET' && method !== 'HEAD') throw methodNotAllowed(method, path, 'GET');
    return this.status(id);
  }

  private async submit(request: FrontRequest): Promise<InternalResponse> {
    const key = request.headers[ASYNC_HEADERS.idempotencyKey];
    if (key !== undefined && !IDEMPOTENCY_KEY.test(key)) {
      throw new FrontError('invalid_input', 'Idempotency-Key must be 1 to 255 printable ASCII characters');
    }
    const id = jobId(this.options.apiName, key);
    const callbackUrl = this.callbackUrl(request);
    const body = await this.requestBody(id, request);
    if (key !== undefined) {
      const existing = await this.options.store.get(id);
      if (existing) return this.replay(existing, body.fingerprint, request);
    }
    const now = this.now();
    if (body.bytes !== undefined) await this.options.payloads.put(body.key, body.bytes, body.contentType);
    const statusUrl = this.statusUrl(id, request);
    const fields: JobRecord = {
      id,
      status: 'queued',
      createdAt: now.toISOString(),
      updatedAt: now.toISOString(),
      requestKey: body.key,
      ...(body.contentType ? { contentType: body.contentType } : {}),
      fingerprint: body.fingerprint,
      attempts: 0,
      statusUrl,
      ...(callbackUrl ? { callbackUrl } : {}),
      expiresAt: Math.floor(now.getTime() / 1000) + this.retentionSeconds,
    };
    // SageMaker: invoked before the record is stored, so a stored job always has its outputs; a failed store leaves
    // an invocation whose outputs nothing names (a retry makes a new one), never a job that runs nowhere.
    const record = this.options.endpoint ? { ...fields, outputs: await this.invokeEndpoint(fields) } : fields;
    const { created, record: stored } = await this.options.store.create(record);
    // Two submissions with one key raced: the one stored first is the job.
    if (!created) return this.replay(stored, body.fingerprint, request);
    if (!stored.outputs) await this.enqueue(stored);
    return accepted(stored, statusUrl, false);
  }

  /** The submission's callback URL, checked; refused when this API sends no webhooks. */
  private callbackUrl(request: FrontRequest): string | undefined {
    const value = request.headers[ASYNC_HEADERS.callbackUrl];
    if (value === undefined) return undefined;
    if (!this.options.webhooks) {
      throw new FrontError(
        'invalid_input',
        `this async API sends no webhooks, so ${ASYNC_HEADERS.callbackUrl} cannot be used (deploy it with notifications: { webhooks: true })`,
      );
    }
    const problem = callbackUrlProblem(value.trim(), this.options.webhooks.allowLocal);
    if (problem) throw new FrontError('invalid_input', `${ASYNC_HEADERS.callbackUrl} is refused: ${problem}`);
    return value.trim();
  }

  /** The same key again: the same job (queued again if its message may never have been sent), unless the body differs. */
  private async replay(record: JobRecord, fingerprint: string, request: FrontRequest): Promise<InternalResponse> {
    if (record.fingerprint !== fingerprint) {
      throw new FrontError(
        'idempotency_key_reused',
        `Idempotency-Key was used for job ${record.id} with a different request; send a new key for a new request`,
      );
    }
    // A queued job's message may have been lost with the front that stored it: sending it again is harmless, as a
    // job is claimed and ended once whatever the number of deliveries.
    if (record.status === 'queued' && !record.outputs) await this.enqueue(record);
    return accepted(record, this.statusUrl(record.id, request), true);
  }

  private async invokeEndpoint(record: JobRecord): Promise<NonNullable<JobRecord['outputs']>> {
    try {
      return await this.options.endpoint!.invoke({
        id: record.id,
        requestKey: record.requestKey,
        ...(record.contentType ? { contentType: record.contentType } : {}),
      });
    } catch (error) {
      this.options.onError?.(`async front: could not invoke the endpoint for job ${record.id}`, error);
      throw new FrontError(
        'not_ready',
        `job ${record.id} could not be handed to the endpoint; send it again (with the same Idempotency-Key to keep its id)`,
        { 'retry-after': '1' },
      );
    }
  }

  /** SageMaker's outcome of a job it runs: the output object (succeeded) or the failure object (failed), else queued. */
  private async endpointOutcome(record: JobRecord): Promise<JobRecord> {
    const outputs = record.outputs;
    if (!outputs || isTerminal(record.status)) return record;
    const output = await this.options.payloads.head(outputs.outputKey);
    if (output) {
      const contentType = output.contentType ?? 'application/octet-stream';
      return {
        ...record,
        status: 'succeeded',
        result: { key: outputs.outputKey, contentType, bytes: output.bytes, status: 200 },
      };
    }
    if (!(await this.options.payloads.head(outputs.failureKey))) return record;
    const { bytes } = await this.options.payloads.get(outputs.failureKey);
    return { ...record, status: 'failed', error: failureObjectError(bytes, record.id) };
  }

  private async enqueue(record: JobRecord): Promise<void> {
    try {
      await this.options.queue!.send(record.id);
    } catch (error) {
      this.options.onError?.(`async front: could not queue job ${record.id}`, error);
      throw new FrontError(
        'not_ready',
        `job ${record.id} is stored but could not be queued; send it again (with the same Idempotency-Key to keep its id)`,
        { 'retry-after': '1' },
      );
    }
  }

  /** The request's body: its own bytes (content-addressed), or an upload named by the upload header. */
  private async requestBody(
    id: string,
    request: FrontRequest,
  ): Promise<{ key: string; fingerprint: string; contentType?: string; bytes?: Buffer }> {
    const upload = request.headers[ASYNC_HEADERS.upload];
    if (upload !== undefined) return this.uploadedBody(upload, request.body);
    if (request.body.length > this.directBodyBytes) {
      throw new FrontError(
        'payload_too_large',
        `the body is ${request.body.length} bytes, above the ${this.directBodyBytes} bytes a request can carry; POST ${ASYNC_ROUTES.uploads} for an upload URL and submit with the ${ASYNC_HEADERS.upload} header`,
      );
    }
    const contentType = request.headers['content-type'];
    const sha256 = sha256Hex(request.body);
    return {
      key: requestKey(id, sha256),
      fingerprint: `sha256:${sha256}`,
      bytes: request.body,
      ...(contentType ? { contentType } : {}),
    };
  }

  private async uploadedBody(
    upload: string,
    body: Buffer,
  ): Promise<{ key: string; fingerprint: string; contentType?: string }> {
    if (!JOB_ID.test(upload)) {
      throw new FrontError(
        'invalid_input',
        `${ASYNC_HEADERS.upload} must be an uploadId from POST ${ASYNC_ROUTES.uploads}`,
      );
    }
    if (body.length > 0) {
      throw new FrontError('invalid_input', `a submission with ${ASYNC_HEADERS.upload} carries no body of its own`);
    }
    const key = uploadKey(upload);
    const head = await this.options.payloads.head(key);
    if (!head) {
      throw new FrontError(
        'invalid_input',
        `nothing was uploaded for upload ${upload} (PUT the body to its uploadUrl first; uploads expire)`,
      );
    }
    if (head.bytes > this.maxBodyBytes) {
      throw new FrontError(
        'payload_too_large',
        `upload ${upload} is ${head.bytes} bytes, above this API's ${this.maxBodyBytes}`,
      );
    }
    return { key, fingerprint: `upload:${upload}`, ...(head.contentType ? { contentType: head.contentType } : {}) };
  }

  private async createUpload(request: FrontRequest): Promise<InternalResponse> {
    const contentType = uploadContentType(request);
    const id = newUploadId();
    const expiresAt = new Date(this.now().getTime() + this.urlTtlSeconds * 1000);
    const uploadUrl = await this.options.payloads.uploadUrl(uploadKey(id), contentType, this.urlTtlSeconds);
    return json(201, {
      uploadId: id,
      uploadUrl,
      method: 'PUT',
      headers: { 'content-type': contentType },
      maxBytes: this.maxBodyBytes,
      expiresAt: expiresAt.toISOString(),
      submit: { method: 'POST', path: ASYNC_ROUTES.submit, headers: { [ASYNC_HEADERS.upload]: id } },
    });
  }

  private async status(id: string): Promise<InternalResponse> {
    const stored = JOB_ID.test(id) ? await this.options.store.get(id) : undefined;
    if (!stored) throw new FrontError('not_found', `no async job ${printable(id)} (unknown, or expired)`);
    const record = await this.endpointOutcome(stored);
    const common = {
      id: record.id,
      status: record.status,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      attempts: record.attempts,
    };
    if (record.status === 'failed' && record.error) {
      const { status, ...error } = record.error;
      return json(200, { ...common, ...error, httpStatus: status });
    }
    if (record.status !== 'succeeded' || !record.result) return json(200, common);
    const result = record.result;
    const described = {
      ...common,
      httpStatus: result.status,
      resultContentType: result.contentType,
      resultBytes: result.bytes,
    };
    if (result.bytes <= this.inlineResultBytes && isInlineType(result.contentType)) {
      const { bytes } = await this.options.payloads.get(result.key);
      const text = bytes.toString('utf8');
      return json(200, { ...described, result: isJsonContentType(result.contentType) ? JSON.parse(text) : text });
    }
    const expiresAt = new Date(this.now().getTime() + this.urlTtlSeconds * 1000);
    const resultUrl = await this.options.payloads.downloadUrl(result.key, this.urlTtlSeconds);
    return json(200, { ...described, resultUrl, resultUrlExpiresAt: expiresAt.toISOString() });
  }

  private statusUrl(id: string, request: FrontRequest): string {
    const base =
      this.options.baseUrl ??
      `${request.headers['x-forwarded-proto'] ?? 'https'}://${request.headers['host'] ?? 'localhost'}`;
    return `${base}${ASYNC_ROUTES.jobPrefix}${id}`;
  }
}

/** JSON and text results are returned in the status body; bytes always through a URL. */
function isInlineType(contentType: string): boolean {
  return isJsonContentType(contentType) || mediaType(contentType).startsWith('text/');
}

function uploadContentType(request: FrontRequest): string {
  if (request.body.length === 0) return 'application/octet-stream';
  let parsed: unknown;
  try {
    parsed = JSON.parse(request.body.toString('utf8'));
  } catch {
    throw new FrontError('malformed_json', `POST ${ASYNC_ROUTES.uploads} takes {"contentType": "<type>"} or no body`);
  }
  const contentType = (parsed as { contentType?: unknown } | null)?.contentType;
  if (contentType === undefined) return 'application/octet-stream';
  if (typeof contentType !== 'string' || !/^[\w.+-]+\/[\w.+-]+(\s*;[\x20-\x7e]*)?$/.test(contentType)) {
    throw new FrontError('invalid_input', 'contentType must be a media type such as application/json');
  }
  return contentType;
}

function accepted(record: JobRecord, statusUrl: string, replayed: boolean): InternalResponse {
  const response = json(202, { id: record.id, status: record.status, statusUrl });
  return {
    ...response,
    headers: { ...response.headers, location: statusUrl, ...(replayed ? { 'idempotent-replayed': 'true' } : {}) },
  };
}

function methodNotAllowed(method: string, path: string, allow: string): FrontError {
  return new FrontError('method_not_allowed', `${printable(method)} ${printable(path)} is not allowed; use ${allow}`, {
    allow,
  });
}

function json(status: number, value: unknown): InternalResponse {
  return { status, headers: { 'content-type': 'application/json' }, body: Buffer.from(JSON.stringify(value)) };
}

function withRequestId(response: InternalResponse, requestId: string): InternalResponse {
  return { ...response, headers: { ...response.headers, [REQUEST_ID_HEADER]: requestId } };
}

function errorResponse(
  code: ErrorCode,
  message: string,
  requestId: string,
  headers: Record<string, string> = {},
): InternalResponse {
  return {
    status: ERROR_STATUS[code],
    headers: { 'content-type': 'application/json', [REQUEST_ID_HEADER]: requestId, ...headers },
    body: Buffer.from(errorBodyJson(code, message, requestId)),
  };
}
