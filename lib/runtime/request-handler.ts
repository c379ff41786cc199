/**
 * The request path: route, admit, time out, dispatch, and every failure turned into the contract's error body.
 * It asks the model's lifecycle (model-lifecycle.ts) only whether the model is ready and for what was loaded.
 * Routes answer through one table (`RouteKind` → handler), so a new route is a row here and one in routes.ts.
 */
import { ARCLIGHT_VERSION, DEFAULTS, MODEL_VERSION_HEADER, REQUEST_ID_HEADER } from '../contract.js';
import { isHttpError, type HttpError, type Model, type ModelFormat, type PredictRequest } from '../predictor.js';
import { decodePayload, encodeResult, type InternalRequest, type InternalResponse } from './codec/codec.js';
import { httpError } from './codec/http-errors.js';
import { checkResponse, validatedRequest } from './codec/predictor-schemas.js';
import { clipText, errorBodyJson, stringifyJson } from './codec/json.js';
import { withTimeout } from './deadline.js';
import { apiDocs } from './docs/api-docs.js';
import { infer } from './default-predictor.js';
import { tensorSignature } from './executors/model.js';
import type { Loaded, ModelLifecycle } from './model-lifecycle.js';
import { matchRoute, type ModelRef, type Route } from './routes.js';
import { asError, requestLogger, type Logger } from './telemetry/logger.js';
import type { CapturedExchange } from './telemetry/data-capture.js';
import type { Telemetry } from './telemetry/telemetry.js';
import { METRICS } from '../metric-catalog.js';
import { requestIdFrom } from './transports/request-id.js';

/** What answering requests needs besides the lifecycle. */
export interface RequestHandlingOptions {
  /** A request still running after this answers 504. @default 28 s */
  readonly requestTimeoutMs?: number;
  /** Inference requests accepted at once (running and queued); past it 503 `overloaded`. @default unbounded */
  readonly maxPending?: number;
  /** The playground page at `GET /docs`. @default false */
  readonly docs?: boolean;
  /** Check results against the predictor's declared response schema (dev and test mode). @default false */
  readonly checkResponses?: boolean;
  /** Data capture: handed every inference exchange once answered; it samples and queues, never waits. @default off */
  readonly dataCapture?: { capture(exchange: CapturedExchange): void };
}

/** Per-call overrides from the transport. */
export interface HandleOptions {
  /** The transport's own request id (API Gateway's), else the client's `x-request-id` or a fresh one. */
  readonly requestId?: string;
  /** Time left for this request, when the transport has a deadline of its own. */
  readonly timeoutMs?: number;
}

/** One matched request, as a route's handler sees it. */
export interface RouteCall<R extends Route = Route> {
  readonly route: R;
  readonly request: InternalRequest;
  readonly requestId: string;
  readonly timeoutMs: number;
}

type RouteHandlers = {
  readonly [K in Route['kind']]: (
    call: RouteCall<Extract<Route, { kind: K }>>,
  ) => Promise<InternalResponse> | InternalResponse;
};

/** The API's identity, for `GET /` and the OIP metadata. */
export interface ApiIdentity {
  readonly apiName: string;
  /** Whether a user's predictor answers `POST /` (else the OIP default). */
  readonly customPredictor: boolean;
  /** The format declared up front, shown before the model has loaded. */
  readonly declaredFormat?: ModelFormat;
}

/** The protocol extensions this server implements, as its metadata lists them (Triton's names). */
const SERVER_EXTENSIONS = ['binary_tensor_data', 'statistics'];

/** Routes whose requests the statistics count as inferences. */
const INFERENCE_ROUTES: ReadonlySet<Route['kind']> = new Set(['infer', 'predict']);

/** The OIP metadata's `platform` of each format (Triton's names where it has one). */
const PLATFORM: Readonly<Record<ModelFormat, string>> = {
  onnx: 'onnxruntime_onnx',
  torchscript: 'pytorch_libtorch',
  'lightning-checkpoint': 'pytorch_lightning_checkpoint',
};

export class RequestHandler {
  private pending = 0;
  private readonly idleWaiters: (() => void)[] = [];
  private readonly requestTimeoutMs: number;

  private readonly routes: RouteHandlers = {
    live: () => json(200, { live: true }),
    ready: () => this.ready(),
    ping: () => this.ready(),
    server: () => json(200, { name: 'arclight', version: ARCLIGHT_VERSION, extensions: SERVER_EXTENSIONS }),
    metadata: () => json(200, this.describe()),
    model: ({ route }) =>
      this.onVersion(route, (loaded) => json(200, modelMetadata(loaded.model, this.lifecycle.versions))),
    'model-ready': ({ route }) =>
      this.onVersion(route, (loaded) => json(200, { name: loaded.model.name, ready: true })),
    infer: ({ route, request, timeoutMs }) => this.onVersion(route, (loaded) => this.infer(loaded, request, timeoutMs)),
    stats: ({ route }) => this.onVersion(route, () => json(200, { model_stats: [this.lifecycle.statistics.toJSON()] })),
    openapi: ({ route }) => this.apiDocs(route.kind),
    docs: ({ route }) => this.apiDocs(route.kind),
    predict: ({ request, requestId, timeoutMs }) =>
      this.lifecycle.use(undefined, (loaded) =>
        // Without user code, POST / is OIP inference: straight to it, with the transport's text body intact.
        this.identity.customPredictor
          ? this.admit(() => this.predict(loaded, request, requestId, timeoutMs))
          : this.infer(loaded, request, timeoutMs),
      ),
  };

  constructor(
    private readonly lifecycle: ModelLifecycle,
    private readonly identity: ApiIdentity,
    private readonly options: RequestHandlingOptions,
    private readonly log: Logger,
    private readonly telemetry: Telemetry,
  ) {
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs;
  }

  /** Answers one request; never throws. */
  async handle(request: InternalRequest, options: HandleOptions = {}): Promise<InternalResponse> {
    const started = performance.now();
    const requestId = options.requestId ?? requestIdFrom(request.headers[REQUEST_ID_HEADER]);
    let route: Route | undefined;
    let response: InternalResponse;
    try {
      route = matchRoute(request.method, request.path);
      response = await this.dispatch({
        route,
        request,
        requestId,
        timeoutMs: options.timeoutMs ?? this.requestTimeoutMs,
      });
    } catch (error) {
      response = this.errorResponse(error, requestId, route);
    }
    response.headers[REQUEST_ID_HEADER] = requestId;
    const latencyMs = performance.now() - started;
    if (route !== undefined && INFERENCE_ROUTES.has(route.kind)) {
      this.lifecycle.statistics.request(response.status < 300, latencyMs);
      this.options.dataCapture?.capture({ requestId, request, response });
    }
    this.log.info('request', {
      requestId,
      method: request.method,
      route: route?.kind ?? 'none',
      path: request.path,
      status: response.status,
      latencyMs: Math.round(latencyMs * 1000) / 1000,
    });
    this.telemetry.request(latencyMs, response.status);
    return response;
  }

  /** Inference requests accepted and not yet answered. */
  get inFlight(): number {
    return this.pending;
  }

  /** Resolves once no inference request is in flight (a draining server waits on it). */
  drained(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** `GET /`: API name, model format, inputs and outputs. */
  describe(): Record<string, unknown> {
    const loaded = this.lifecycle.loaded;
    const model = loaded?.model;
    return {
      name: this.identity.apiName,
      format: loaded?.format ?? this.identity.declaredFormat ?? null,
      ready: model !== undefined,
      ...(loaded ? { version: loaded.version, versions: this.lifecycle.versions } : {}),
      predictor: this.identity.customPredictor ? 'custom' : 'default',
      inputs: model?.inputs ?? [],
      outputs: model?.outputs ?? [],
    };
  }

  private dispatch(call: RouteCall): Promise<InternalResponse> | InternalResponse {
    const handler = this.routes[call.route.kind] as (call: RouteCall) => Promise<InternalResponse> | InternalResponse;
    return handler(call);
  }

  private apiDocs(kind: 'openapi' | 'docs'): InternalResponse {
    const { model } = this.lifecycle.requireReady();
    const predictor = this.identity.customPredictor ? this.lifecycle.predictor : undefined;
    return apiDocs(kind, { model, predictor, playground: this.options.docs === true });
  }

  private ready(): InternalResponse {
    this.lifecycle.requireReady();
    return json(200, { ready: true });
  }

  private infer(loaded: Loaded, request: InternalRequest, timeoutMs: number): Promise<InternalResponse> {
    const statistics = this.lifecycle.statistics;
    return this.admit(() =>
      withTimeout(timeoutMs, () => infer(loaded.model, request, statistics).then(encodeResult)),
    ).then((response) => withVersion(response, loaded));
  }

  /** Admission control: past `maxPending` requests in flight, 503 `overloaded` with Retry-After, never a queue without end. */
  private async admit(work: () => Promise<InternalResponse>): Promise<InternalResponse> {
    const limit = this.options.maxPending;
    if (limit !== undefined && this.pending >= limit) {
      this.telemetry.event(METRICS.overloaded.name);
      throw httpError('overloaded', `the server is at capacity (${limit} requests in flight); retry shortly`, {
        'retry-after': String(DEFAULTS.retryAfterSeconds),
      });
    }
    this.pending++;
    try {
      return await work();
    } finally {
      if (--this.pending === 0) for (const wake of this.idleWaiters.splice(0)) wake();
    }
  }

  private async predict(
    loaded: Loaded,
    request: InternalRequest,
    requestId: string,
    timeoutMs: number,
  ): Promise<InternalResponse> {
    return withVersion(await this.runPredictor(loaded, request, requestId, timeoutMs), loaded);
  }

  private runPredictor(
    { model, state, batcher }: Loaded,
    request: InternalRequest,
    requestId: string,
    timeoutMs: number,
  ): Promise<InternalResponse> {
    const { predictor, config } = this.lifecycle;
    if (batcher) {
      const decoded = predictRequest(request);
      return withTimeout(timeoutMs, async () => {
        // A payload that cannot be decoded (or breaks the declared schema) fails here, alone, before it could join a batch.
        void decoded.payload;
        const result = await batcher.submit({ request: await validatedRequest(predictor, decoded), requestId });
        if (this.options.checkResponses) await checkResponse(predictor, result);
        return encodeResult(result);
      });
    }
    const log = this.log;
    return withTimeout(timeoutMs, async (deadline) => {
      const result = await predictor.predict(await validatedRequest(predictor, predictRequest(request)), {
        model,
        state,
        config,
        requestId,
        // Both made on first use: most predictors never log per request or watch the deadline.
        get log() {
          return requestLogger(log, requestId);
        },
        get signal() {
          return deadline.signal;
        },
      });
      if (this.options.checkResponses) await checkResponse(predictor, result);
      return encodeResult(result);
    });
  }

  private requireModel({ model: name }: ModelRef): Model {
    const { model } = this.lifecycle.requireReady();
    if (name !== model.name)
      throw httpError('model_not_found', `no model named '${clipText(name)}'; this API serves '${model.name}'`);
    return model;
  }

  /** Runs `work` on the version the path names (else the current one), holding it until `work` is done. */
  private onVersion(
    route: ModelRef,
    work: (loaded: Loaded) => Promise<InternalResponse> | InternalResponse,
  ): Promise<InternalResponse> {
    this.requireModel(route);
    return this.lifecycle.use(route.version, work);
  }

  private errorResponse(error: unknown, requestId: string, route: Route | undefined): InternalResponse {
    if (isHttpErrorSafely(error)) {
      // 503 (loading, overloaded) is an expected state that the request line already records: no error record for it.
      if (error.status >= 500 && error.status !== 503)
        this.log.error('request failed', { requestId, route: route?.kind, code: error.code, error });
      return errorJson(error.status, errorBodyJson(error.code, error.message, requestId), error.headers);
    }
    this.log.error('predictor failed', { requestId, route: route?.kind, error: asError(error) });
    const message = `the predictor failed; the logs carry the details under request id ${requestId}`;
    return errorJson(500, errorBodyJson('predictor_error', message, requestId));
  }
}

/** Names the version that answered, in the header every inference response carries. */
function withVersion(response: InternalResponse, loaded: Loaded): InternalResponse {
  response.headers[MODEL_VERSION_HEADER] = loaded.version;
  return response;
}

function modelMetadata(model: Model, versions: readonly string[]): Record<string, unknown> {
  return {
    name: model.name,
    versions,
    platform: PLATFORM[model.format],
    inputs: model.inputs.map(tensorSignature),
    outputs: model.outputs.map(tensorSignature),
  };
}

function predictRequest(request: InternalRequest): PredictRequest {
  let payload: { value: unknown } | undefined;
  return {
    get payload() {
      payload ??= { value: decodePayload(request) };
      return payload.value;
    },
    query: request.query,
    headers: request.headers,
    method: request.method,
    path: request.path,
    get body() {
      return request.body;
    },
  };
}

function json(status: number, value: unknown, headers: Record<string, string> = {}): InternalResponse {
  return {
    status,
    headers: { ...headers, 'content-type': 'application/json' },
    body: Buffer.from(stringifyJson(value)),
  };
}

function errorJson(status: number, text: string, headers: Readonly<Record<string, string>> = {}): InternalResponse {
  return { status, headers: { ...headers, 'content-type': 'application/json' }, body: Buffer.from(text) };
}

/** Whether a thrown value is an HttpError; a value that throws when looked at (a hostile Proxy) is not. */
function isHttpErrorSafely(error: unknown): error is HttpError {
  try {
    return isHttpError(error);
  } catch {
    return false;
  }
}
