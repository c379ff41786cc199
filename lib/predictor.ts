/**
 * The predictor API: the one module user code, the runtime and the constructs all share.
 * It holds types and two tiny values (`definePredictor`, `HttpError`) and imports nothing at run time.
 */

/** Open Inference Protocol v2 tensor datatypes Arclight serves. */
export type Datatype =
  | 'BOOL'
  | 'UINT8'
  | 'INT8'
  | 'INT16'
  | 'INT32'
  | 'INT64'
  | 'FP16'
  | 'FP32'
  | 'FP64'
  /** Strings (UTF-8 text): JSON strings, or in binary each element's 4-byte little-endian length then its bytes. */
  | 'BYTES';

/** Element types of tensors handed to and returned by `model.run` (onnxruntime's names). */
export type TensorType =
  'bool' | 'uint8' | 'int8' | 'int16' | 'int32' | 'int64' | 'float16' | 'float32' | 'float64' | 'string';

/** The typed array behind each tensor type (`float16` is raw IEEE half bits in a Uint16Array; `string` a plain array). */
export interface TensorDataByType {
  bool: Uint8Array;
  uint8: Uint8Array;
  int8: Int8Array;
  int16: Int16Array;
  int32: Int32Array;
  int64: BigInt64Array;
  float16: Uint16Array;
  float32: Float32Array;
  float64: Float64Array;
  string: string[];
}

export type TensorData = TensorDataByType[TensorType];

/** A dense tensor: element type, flat row-major data and dimensions. */
export interface Tensor<T extends TensorType = TensorType> {
  readonly type: T;
  readonly data: TensorDataByType[T];
  readonly dims: readonly number[];
}

/** A model input or output as the model declares it. */
export interface TensorInfo {
  readonly name: string;
  readonly datatype: Datatype;
  /** Dimensions, -1 where the model leaves one dynamic. */
  readonly shape: readonly number[];
  /** The model's own names for dimensions (symbolic names of dynamic axes), null for fixed ones. */
  readonly dimNames: readonly (string | null)[];
  /**
   * True when the model does not say this tensor's datatype and shape (a TorchScript `forward(x: Tensor)` with no
   * declared inputs): requests' datatypes and shapes are taken as sent, and `datatype`/`shape` are placeholders.
   */
  readonly asSent?: boolean;
}

/** Model file formats: ONNX (onnxruntime), TorchScript and Lightning checkpoints (the torch executor). */
export type ModelFormat = 'onnx' | 'torchscript' | 'lightning-checkpoint';

/** A torch model's input or output as the deployer declares it (`-1` for a dynamic dimension). */
export interface TensorDeclaration {
  readonly name: string;
  readonly datatype: Datatype;
  readonly shape: readonly number[];
}

/** The loaded model, as predictors see it. */
export interface Model {
  /** The name the model is served under (the API name). */
  readonly name: string;
  /** The model version served (a versioned prefix's folder number; `1` for one model object). @default absent */
  readonly version?: string;
  readonly format: ModelFormat;
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
  /** Builds a tensor; plain arrays are copied into the type's typed array. */
  tensor<T extends TensorType>(
    type: T,
    data: TensorDataByType[T] | readonly number[] | readonly bigint[] | readonly boolean[] | readonly string[],
    dims: readonly number[],
  ): Tensor<T>;
  /** Runs the model on named inputs; returns every output, or those named. */
  run(feeds: Readonly<Record<string, Tensor>>, outputNames?: readonly string[]): Promise<Record<string, Tensor>>;
}

/** Structured logger handed to predictors (the runtime's JSON logger, tagged with the request id). */
export interface PredictorLogger {
  debug(message: string, ...extra: LogAttributes[]): void;
  info(message: string, ...extra: LogAttributes[]): void;
  warn(message: string, ...extra: LogAttributes[]): void;
  error(message: string, ...extra: (LogAttributes | Error)[]): void;
}

/** Extra keys for one log record. */
export type LogAttributes = Record<string, unknown>;

export type JsonValue = null | boolean | number | string | readonly JsonValue[] | { readonly [key: string]: JsonValue };

export type Config = Readonly<Record<string, JsonValue>>;

/** What `init` receives, once per cold start. */
export interface InitContext<C extends Config = Config> {
  readonly model: Model;
  readonly config: C;
  readonly log: PredictorLogger;
  readonly apiName: string;
}

/** One request, as `predict` receives it; `P` is the payload's type (the declared request schema's output). */
export interface PredictRequest<P = unknown> {
  /** JSON → parsed value, `text/*` → string, anything else → Buffer; with a declared `request` schema, its output. */
  readonly payload: P;
  readonly query: Readonly<Record<string, string>>;
  /** Lower-cased header names. */
  readonly headers: Readonly<Record<string, string>>;
  readonly method: string;
  readonly path: string;
  /** The raw body bytes. */
  readonly body: Buffer;
}

/** What `predict` receives beside the request. */
export interface PredictContext<S, C extends Config = Config> {
  readonly model: Model;
  readonly state: S;
  readonly config: C;
  readonly requestId: string;
  readonly log: PredictorLogger;
  /** Aborted when the request times out; long predictors may stop early. */
  readonly signal: AbortSignal;
}

/** A full-control response: status, headers and body. */
export interface PredictorResponse {
  readonly status: number;
  /** Response headers; `set-cookie` may be a list, each value sent as its own `Set-Cookie` header. */
  readonly headers?: Readonly<Record<string, string | readonly string[]>>;
  readonly body?: JsonValue | string | Uint8Array;
}

/**
 * What `predict` may return: a JSON value (objects typed by interfaces too), text, bytes, or a full-control
 * response. A value JSON cannot encode is a 500 at run time.
 */
export type PredictResult = JsonValue | Uint8Array | PredictorResponse | object;

/** What `predictBatch` receives beside the requests. */
export interface PredictBatchContext<S, C extends Config = Config> {
  readonly model: Model;
  readonly state: S;
  readonly config: C;
  /** One per request, in order. */
  readonly requestIds: readonly string[];
  readonly log: PredictorLogger;
}

/**
 * One result per request of a batch, in order: a result, or an Error (an `HttpError` for its status) that fails
 * that request alone. Throwing fails the whole batch.
 */
export type PredictBatchResult = readonly (PredictResult | Error)[];

/**
 * A schema a predictor declares for its JSON request or response: any Standard Schema that also converts itself to
 * JSON Schema (Standard JSON Schema), as every zod 4 schema does (`z.object({...})`). Validation runs through
 * `~standard.validate`; the OpenAPI document takes its JSON Schema from `~standard.jsonSchema`.
 */
export interface DeclaredSchema<Input = unknown, Output = Input> {
  readonly '~standard': {
    readonly version: 1;
    readonly vendor: string;
    readonly types?: { readonly input: Input; readonly output: Output } | undefined;
    readonly validate: (value: unknown) => SchemaResult<Output> | Promise<SchemaResult<Output>>;
    readonly jsonSchema?: {
      readonly input: (options: { readonly target: string }) => Record<string, unknown>;
      readonly output: (options: { readonly target: string }) => Record<string, unknown>;
    };
  };
}

/** What a declared schema's validation gives: the value, or issues each with the path it is at. */
export type SchemaResult<Output> =
  { readonly value: Output; readonly issues?: undefined } | { readonly issues: readonly SchemaIssue[] };

/** One problem a declared schema found. */
export interface SchemaIssue {
  readonly message: string;
  readonly path?: readonly (PropertyKey | { readonly key: PropertyKey })[] | undefined;
}

/** The type a declared schema gives (its output); `unknown` when none is declared. */
export type SchemaOutput<Q> = Q extends DeclaredSchema<unknown, infer O> ? O : unknown;

/** The type a declared schema accepts (its input); `unknown` when none is declared. */
export type SchemaInput<R> = R extends DeclaredSchema<infer I, unknown> ? I : unknown;

/** What `predict` may return once a response schema is declared: that JSON, or a full-control response. */
export type DeclaredResult<R> = R extends DeclaredSchema ? SchemaInput<R> | PredictorResponse : PredictResult;

/**
 * A predictor: optional `init` once per cold start, `predict` per request, and optionally the JSON it takes and gives
 * (`request`, `response`: zod schemas) with an `example` request for the OpenAPI document and the playground.
 */
export interface PredictorDefinition<
  S = undefined,
  C extends Config = Config,
  Q extends DeclaredSchema | undefined = undefined,
  R extends DeclaredSchema | undefined = undefined,
> {
  /** The JSON request body: validated before `predict` (400 naming the first bad field); `payload` is its output. */
  readonly request?: Q;
  /** The JSON response body: documented in the OpenAPI document and checked in dev and test mode. */
  readonly response?: R;
  /** An example request body: the OpenAPI document's example and the playground's starting request. */
  readonly example?: Q extends DeclaredSchema ? SchemaInput<Q> : JsonValue;
  init?(context: InitContext<C>): S | Promise<S>;
  predict(
    request: PredictRequest<SchemaOutput<Q>>,
    context: PredictContext<S, C>,
  ): DeclaredResult<R> | Promise<DeclaredResult<R>>;
  /**
   * Optional: answers several requests at once. Container servers with dynamic batching on
   * (`maxBatchSize` > 1) call it with up to `maxBatchSize` requests; elsewhere `predict` serves every request.
   */
  predictBatch?(
    requests: readonly PredictRequest<SchemaOutput<Q>>[],
    context: PredictBatchContext<S, C>,
  ): PredictBatchResult | Promise<PredictBatchResult>;
}

const PREDICTOR_BRAND = Symbol.for('arclight.predictor');

/** A predictor as `definePredictor` returns it (by default: with or without declared schemas). */
export type DefinedPredictor<
  S = undefined,
  C extends Config = Config,
  Q extends DeclaredSchema | undefined = DeclaredSchema | undefined,
  R extends DeclaredSchema | undefined = DeclaredSchema | undefined,
> = PredictorDefinition<S, C, Q, R> & {
  readonly [PREDICTOR_BRAND]: true;
};

/** Declares a predictor; the default export of a predictor module. */
export function definePredictor<
  S = undefined,
  C extends Config = Config,
  Q extends DeclaredSchema | undefined = undefined,
  R extends DeclaredSchema | undefined = undefined,
>(definition: PredictorDefinition<S, C, Q, R>): DefinedPredictor<S, C, Q, R> {
  if (typeof definition?.predict !== 'function') {
    throw new TypeError('definePredictor: `predict` must be a function');
  }
  if (definition.init !== undefined && typeof definition.init !== 'function') {
    throw new TypeError('definePredictor: `init` must be a function when given');
  }
  if (definition.predictBatch !== undefined && typeof definition.predictBatch !== 'function') {
    throw new TypeError('definePredictor: `predictBatch` must be a function when given');
  }
  for (const key of ['request', 'response'] as const) {
    const schema: unknown = definition[key];
    if (schema !== undefined && !isDeclaredSchema(schema)) {
      throw new TypeError(`definePredictor: \`${key}\` must be a schema (e.g. zod's z.object({...})) when given`);
    }
  }
  return Object.freeze({ ...definition, [PREDICTOR_BRAND]: true as const });
}

/** Whether a value is a Standard Schema (zod 4's schemas are). */
export function isDeclaredSchema(value: unknown): value is DeclaredSchema {
  const props = (value as { '~standard'?: { validate?: unknown } } | null | undefined)?.['~standard'];
  return typeof props === 'object' && props !== null && typeof props.validate === 'function';
}

/** Whether a value is a predictor (made by `definePredictor`, or shaped like one). */
export function isPredictor(value: unknown): value is DefinedPredictor<unknown> {
  return typeof value === 'object' && value !== null && typeof (value as { predict?: unknown }).predict === 'function';
}

const HTTP_ERROR_BRAND = Symbol.for('arclight.http-error');

/** Throw one to answer with that status and a JSON error body: `new HttpError(400, 'invalid_input', '...')`. */
export class HttpError extends Error {
  override readonly name = 'HttpError';
  readonly [HTTP_ERROR_BRAND] = true;
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    /** Extra response headers (e.g. `Retry-After`). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(message);
    if (!Number.isInteger(status) || status < 400 || status > 599) {
      throw new RangeError(`HttpError status must be an integer in 400..599, got ${String(status)}`);
    }
  }
}

/** Whether a value is an HttpError, also one made by another copy of this module (a bundled predictor's). */
export function isHttpError(value: unknown): value is HttpError {
  return typeof value === 'object' && value !== null && (value as Record<symbol, unknown>)[HTTP_ERROR_BRAND] === true;
}
