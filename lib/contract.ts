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
  /** `on`: X-Ray segments of the phases (fetch, session, init, decode, run, encode) to the daemon. Unset: off. */
  tracing: 'ARCLIGHT_TRACING',
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
  /** A versioned model (ARCLIGHT_MODEL_URI ending in `/`): serve this version folder only. Unset: the highest. */
  modelVersion: 'ARCLIGHT_MODEL_VERSION',
  /** Containers: seconds between looks for a new version under a versioned prefix (live reload). Unset or 0: off. */
  modelPollSeconds: 'ARCLIGHT_MODEL_POLL_SECONDS',
  /** Data capture: `s3://bucket/prefix/` receiving sampled requests and responses as JSON lines. Unset: off. */
  dataCaptureUri: 'ARCLIGHT_DATA_CAPTURE_URI',
  /** Data capture: the percentage of requests captured (0-100). @default 100 when the URI is set */
  dataCapturePercent: 'ARCLIGHT_DATA_CAPTURE_PERCENT',
  /** Batch jobs (the Step Functions item handler): items of one batch in flight at once. Unset: 4. */
  batchConcurrency: 'ARCLIGHT_BATCH_CONCURRENCY',
  /** Variants: the name of the variant this process serves (a metric dimension and the `x-arclight-variant` answer). */
  variant: 'ARCLIGHT_VARIANT',
  /** Lambda: JSON `[{ name, weight, env }]` of the weighted variants the function serves beside its own model. */
  variants: 'ARCLIGHT_VARIANTS',
  /** Containers: the shadow variant's base URL, which gets a copy of inference requests. Unset: no shadow. */
  shadowUrl: 'ARCLIGHT_SHADOW_URL',
  /** Lambda: the shadow variant's function (alias ARN), invoked asynchronously with a copy. Unset: no shadow. */
  shadowFunction: 'ARCLIGHT_SHADOW_FUNCTION',
  /** The percentage of inference requests copied to the shadow (0-100). @default 100 */
  shadowPercent: 'ARCLIGHT_SHADOW_PERCENT',
  /** `on` inside a SageMaker batch transform: each `/invocations` record answered 200 with its outcome (BatchJob). */
  transformRecords: 'ARCLIGHT_TRANSFORM_RECORDS',
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
  /** Async API: an Idempotency-Key sent again with a different request (400, not 422: no status the SageMaker front lacks). */
  idempotency_key_reused: 400,
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

/** The response header naming the model version that produced the answer. */
export const MODEL_VERSION_HEADER = 'x-model-version';

/**
 * Variants: on a request, pins the production variant that answers it (a name the API serves; anything else is a
 * 400); on a response, names the variant that answered.
 */
export const VARIANT_HEADER = 'x-arclight-variant';

/** The header that carries the request id, both ways. */
export const REQUEST_ID_HEADER = 'x-request-id';

/**
 * The CloudFormation metadata key a RealtimeApi puts on its function (`{ apiName, compute, architecture }`):
 * `arclight dev` finds the APIs of a synthesized app by it.
 */
export const API_METADATA_KEY = 'arclight:api';

/** The async API's routes, under the API's base URL (`/<api>` under `arclight dev`). */
export const ASYNC_ROUTES = {
  /** `POST`: submit a request; 202 `{ id, status: "queued", statusUrl }`. */
  submit: '/async',
  /** `POST`: a presigned S3 PUT URL for a body above API Gateway's limit. */
  uploads: '/async/uploads',
  /** `GET /async/{id}`: the job's status, and its result or error once it ended. */
  jobPrefix: '/async/',
} as const;

/** Headers of the async API. */
export const ASYNC_HEADERS = {
  /** A client's key for a submission: a retried submission with the same key gets the same id. */
  idempotencyKey: 'idempotency-key',
  /** Submits the body uploaded through `POST /async/uploads` (its `uploadId`) instead of the request's own body. */
  upload: 'x-arclight-upload',
  /**
   * Set by the async worker on the request it hands the predictor (the job id). The local Lambda host lets such a
   * request past API Gateway's body and time limits, as the deployed worker reads its body from S3 inside the function;
   * `arclight dev` drops it from clients' requests.
   */
  job: 'x-arclight-async-job',
  /** Where the job's completion is POSTed, signed (an async API with webhooks on): https in the cloud. */
  callbackUrl: 'arclight-callback-url',
} as const;

/** Headers of a completion webhook (the body is the job's notification, JSON). */
export const WEBHOOK_HEADERS = {
  /** `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the API's webhook secret>`. */
  signature: 'arclight-signature',
  /** The job's id. */
  jobId: 'arclight-job-id',
  /** One id per notification, the same on each retry of it: receivers drop repeats by it. */
  deliveryId: 'arclight-delivery-id',
} as const;

/** Environment variables of an async API's functions (constructs set them; the runtime reads them). */
export const ASYNC_ENV = {
  /** The bucket holding requests (`requests/`, `uploads/`) and results (`results/`). */
  bucket: 'ARCLIGHT_ASYNC_BUCKET',
  /** The DynamoDB table of job statuses. */
  table: 'ARCLIGHT_ASYNC_TABLE',
  /** The SQS queue the worker consumes. */
  queueUrl: 'ARCLIGHT_ASYNC_QUEUE_URL',
  /** The largest request body accepted (bytes). */
  maxBodyBytes: 'ARCLIGHT_ASYNC_MAX_BODY_BYTES',
  /** Results up to this size (bytes) are returned inline by `GET /async/{id}`; larger ones as a presigned URL. */
  inlineResultBytes: 'ARCLIGHT_ASYNC_INLINE_RESULT_BYTES',
  /** How long presigned upload and result URLs are valid (seconds). */
  urlTtlSeconds: 'ARCLIGHT_ASYNC_URL_TTL_SECONDS',
  /** How long a job's status is kept (days); its objects expire by the bucket's lifecycle rule. */
  retentionDays: 'ARCLIGHT_ASYNC_RETENTION_DAYS',
  /** Deliveries of a job's message before it is given up (the queue's maxReceiveCount). */
  maxReceives: 'ARCLIGHT_ASYNC_MAX_RECEIVES',
  /** SageMaker compute: the endpoint the front hands submissions to (InvokeEndpointAsync) instead of the queue. */
  endpointName: 'ARCLIGHT_ASYNC_ENDPOINT_NAME',
  /** SageMaker compute: how long one job may run (InvocationTimeoutSeconds, up to 3600). */
  invocationTimeoutSeconds: 'ARCLIGHT_ASYNC_INVOCATION_TIMEOUT_SECONDS',
  /** The SNS topic the worker publishes each job's end to. */
  topicArn: 'ARCLIGHT_ASYNC_TOPIC_ARN',
  /** `on`: submissions may name an `Arclight-Callback-Url` (the front accepts it, the worker POSTs to it). */
  webhooks: 'ARCLIGHT_ASYNC_WEBHOOKS',
  /** Where the webhook signing key is: `secretsmanager:<arn>` or `ssm:<parameter name>` (a SecureString). */
  webhookSecret: 'ARCLIGHT_ASYNC_WEBHOOK_SECRET',
  /** How long one webhook delivery may take (milliseconds). */
  webhookTimeoutMs: 'ARCLIGHT_ASYNC_WEBHOOK_TIMEOUT_MS',
  /** Deliveries of one webhook before it is given up. */
  webhookAttempts: 'ARCLIGHT_ASYNC_WEBHOOK_ATTEMPTS',
} as const;

/** The async API's defaults. */
export const ASYNC_DEFAULTS = {
  /** Largest request body: 1 GiB (SageMaker asynchronous inference's limit). */
  maxBodyBytes: 1024 ** 3,
  /**
   * The largest body `POST /async` takes itself: the front runs on Lambda, whose event holds 6 MB (API Gateway's 10 MB
   * never comes into play); above it, clients upload through `POST /async/uploads`.
   */
  directBodyBytes: LAMBDA_PAYLOAD.maxTextBodyBytes,
  /** Results up to 256 KiB come back inline. */
  inlineResultBytes: 256 * 1024,
  /** Presigned URLs are valid for 15 minutes. */
  urlTtlSeconds: 900,
  retentionDays: 7,
  /** Three deliveries, then the message goes to the dead-letter queue and the job is failed. */
  maxReceives: 3,
} as const;
