/**
 * The deployed contract: what constructs set and the runtime reads, in one place.
 * Both `lib/constructs` and `lib/runtime` import this module; it imports nothing.
 */

/** This release of Arclight: the Open Inference Protocol's server metadata reports it (a test keeps it equal to package.json's). */
export const ARCLIGHT_VERSION = '0.1.0';

/** Environment variables the runtime reads. */
export const ENV = {
  apiName: 'ARCLIGHT_API_NAME',
  modelUri: 'ARCLIGHT_MODEL_URI',
  modelSha256: 'ARCLIGHT_MODEL_SHA256',
  modelFormat: 'ARCLIGHT_MODEL_FORMAT',
  config: 'ARCLIGHT_CONFIG',
  executionProviders: 'ARCLIGHT_EXECUTION_PROVIDERS',
  intraOpThreads: 'ARCLIGHT_INTRA_OP_THREADS',
  maxBatchSize: 'ARCLIGHT_MAX_BATCH_SIZE',
  maxBatchDelayMs: 'ARCLIGHT_MAX_BATCH_DELAY_MS',
  /** Container server: inference requests waiting beyond those running; past it 503 `overloaded`. */
  maxQueueLength: 'ARCLIGHT_MAX_QUEUE_LENGTH',
  /** Container server: executor worker threads, each holding one session. */
  workers: 'ARCLIGHT_WORKERS',
  /** Container server: the port SageMaker tells the container to listen on. */
  sageMakerPort: 'SAGEMAKER_BIND_TO_PORT',
  /** Container server: the address to listen on (every interface by default; `arclight dev` keeps it on loopback). */
  bindHost: 'ARCLIGHT_BIND_HOST',
  maxBodyBytes: 'ARCLIGHT_MAX_BODY_BYTES',
  requestTimeoutMs: 'ARCLIGHT_REQUEST_TIMEOUT_MS',
  predictorEntry: 'ARCLIGHT_PREDICTOR',
  logLevel: 'ARCLIGHT_LOG_LEVEL',
  /** Lambda: how long after the process started the init phase waits for the model (ms); unset: Lambda's window. */
  initBudgetMs: 'ARCLIGHT_INIT_BUDGET_MS',
  /** Models larger than this (MB) are fetched to a file under the temp dir instead of memory. */
  modelMemoryBudgetMb: 'ARCLIGHT_MODEL_MEMORY_BUDGET_MB',
  /** Byte-range part size (MiB) of the parallel S3 fetch. */
  modelFetchPartMb: 'ARCLIGHT_MODEL_FETCH_PART_MB',
  /** Parallel byte-range GETs of the S3 fetch. */
  modelFetchConcurrency: 'ARCLIGHT_MODEL_FETCH_CONCURRENCY',
  /** `on` | `off`: CloudWatch EMF metrics on stdout. Unset: on on Lambda, off elsewhere. */
  metrics: 'ARCLIGHT_METRICS',
  /** Lightning checkpoints: the Python file defining the model's class. */
  modelModule: 'ARCLIGHT_MODEL_MODULE',
  /** Lightning checkpoints: the class in that file. */
  modelClass: 'ARCLIGHT_MODEL_CLASS',
  /** Torch models: JSON `[{ name, datatype, shape }]` declaring the inputs, in `forward`'s order. */
  modelInputs: 'ARCLIGHT_MODEL_INPUTS',
  /** Torch models: JSON `[{ name, datatype, shape }]` naming the outputs, in the order `forward` returns them. */
  modelOutputs: 'ARCLIGHT_MODEL_OUTPUTS',
  /** The Python interpreter (with torch) that runs the torch executor. */
  python: 'ARCLIGHT_PYTHON',
  /** `on` | `off`: the playground page at `GET /docs`. Unset: off (deployed APIs); `arclight serve` and `dev` turn it on. */
  docs: 'ARCLIGHT_DOCS',
  /** `on` | `off`: check responses against a predictor's declared schema. Unset: on when NODE_ENV is development or test. */
  checkResponses: 'ARCLIGHT_CHECK_RESPONSES',
  /** Batch jobs (the Step Functions item handler): items of one batch in flight at once. Unset: 4. */
  batchConcurrency: 'ARCLIGHT_BATCH_CONCURRENCY',
} as const;

/** Model formats `ARCLIGHT_MODEL_FORMAT` takes; unset, the format is read from the model file. */
export const MODEL_FORMATS = ['onnx', 'torchscript', 'lightning-checkpoint'] as const;

/** Routes every backend serves (SageMaker adds `invocations` and `ping`). */
export const ROUTES = {
  predict: '/',
  metadata: '/',
  live: '/v2/health/live',
  ready: '/v2/health/ready',
  modelPrefix: '/v2/models/',
  invocations: '/invocations',
  ping: '/ping',
  /** The API's OpenAPI 3.1 document. */
  openapi: '/openapi.json',
  /** The playground page (when `ARCLIGHT_DOCS` is on). */
  docs: '/docs',
} as const;

/**
 * SageMaker's REST API front: InvokeEndpoint only ever reaches the container's `POST /invocations`, so each route's
 * integration names the route it stands for in the custom-attributes header, which InvokeEndpoint hands to the
 * container untouched: `X-Amzn-SageMaker-Custom-Attributes: arclight-route=GET /v2/health/ready`.
 */
export const SAGEMAKER_ROUTE = {
  header: 'X-Amzn-SageMaker-Custom-Attributes',
  attribute: 'arclight-route',
} as const;

/** Error codes carried in the error body's `code` (`{"error":"<message>","code",...}`), each with the status it is sent with. */
export const ERROR_STATUS = {
  invalid_input: 400,
  malformed_json: 400,
  not_found: 404,
  model_not_found: 404,
  method_not_allowed: 405,
  request_timeout: 408,
  payload_too_large: 413,
  unsupported_media_type: 415,
  predictor_error: 500,
  internal_error: 500,
  /** Lambda: the result would exceed Lambda's 6 MB response limit (Lambda itself would fail the invocation). */
  response_too_large: 500,
  overloaded: 503,
  not_ready: 503,
  predictor_timeout: 504,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/** Defaults, each matching the AWS limit it stands for. */
export const DEFAULTS = {
  /** Lambda's synchronous invocation payload limit (6 MB). */
  maxBodyBytes: 6 * 1024 * 1024,
  /** API Gateway's integration timeout is 29 s; answer before it does. */
  requestTimeoutMs: 28_000,
  port: 8080,
  host: '127.0.0.1',
  /** Seconds a client is told to wait after a 503. */
  retryAfterSeconds: 1,
  /** Container server: largest dynamic batch (1: batching off). */
  maxBatchSize: 1,
  /** Container server: longest a request waits for batch-mates. */
  maxBatchDelayMs: 2,
  /** Container server: inference requests queued beyond those running. */
  maxQueueLength: 64,
  /** Container server: the port (SageMaker's and ECS's convention). */
  containerPort: 8080,
} as const;

/**
 * AWS Lambda's limits on a synchronous invocation, which API Gateway's Lambda integrations make. The request limit is
 * on the whole event (headers, requestContext and the body, as JSON), and binary bodies travel base64-encoded in it.
 */
export const LAMBDA_PAYLOAD = {
  /** The invocation event, and the function's result, as JSON: 6 MB (6,291,456 bytes) each. */
  payloadBytes: 6_291_456,
  /** Room kept in the event for all but the body: headers, query, requestContext (JWT claims included). */
  eventEnvelopeBytes: 16_384,
  /** The largest body that can arrive: a text (JSON) body, as it is in the event. The Lambda compute's default. */
  maxTextBodyBytes: 6_291_456 - 16_384,
  /** The largest binary body that can arrive: base64 makes 3 bytes 4 characters. */
  maxBinaryBodyBytes: Math.floor((6_291_456 - 16_384) / 4) * 3,
} as const;

/** The header that carries the request id, both ways. */
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * The CloudFormation metadata key a RealtimeApi puts on its function (`{ apiName, compute, architecture }`):
 * `arclight dev` finds the APIs of a synthesized app by it.
 */
export const API_METADATA_KEY = 'arclight:api';
