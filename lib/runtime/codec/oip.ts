/**
 * Open Inference Protocol v2: inference requests validated against the model's metadata and turned into
 * tensors; results turned back into responses. Every problem is a 400 that names the input and what was expected.
 * JSON tensors (`data` flat or nested) and the binary tensor extension (`Inference-Header-Content-Length`) both work.
 */
import { z } from 'zod';
import type { Datatype, Tensor, TensorData, TensorInfo, TensorType } from '../../predictor.js';
import { invalidInput } from './http-errors.js';
import { clipText, parseJsonBody, previewJson } from './json.js';
import {
  DATATYPES,
  DATATYPE_OF,
  INT64_MAX,
  INT64_MIN,
  INTEGER_RANGE,
  TENSOR_TYPE_OF,
  allocate,
  binaryElements,
  bytesPerElement,
  fromFloat16Bits,
  isDatatype,
  stringsFromBinary,
  tensorDataFromBytes,
  toFloat16Bits,
} from './tensor-types.js';

/** Header of the binary tensor extension: the length of the JSON part that starts the body. */
export const BINARY_HEADER = 'inference-header-content-length';

const parameters = z.record(z.string(), z.unknown()).optional();

const inferRequestSchema = z.object({
  id: z.string().optional(),
  parameters,
  inputs: z
    .array(
      z.object({
        name: z.string().min(1),
        shape: z.array(z.unknown()),
        datatype: z.string(),
        data: z.unknown().optional(),
        parameters,
      }),
    )
    .min(1, 'at least one input is required'),
  outputs: z
    .array(z.object({ name: z.string().min(1), parameters }))
    .min(1, 'when given, name at least one output (leave outputs out for all of them)')
    .optional(),
});

/**
 * Parameters of the protocol (and Triton's extensions) that this server does not implement: refused with a 400
 * rather than ignored, since a client asking for them expects an answer shaped by them. Parameters no one defines
 * are left alone, as the protocol lets servers and clients add their own.
 */
const UNSUPPORTED_PARAMETERS: Readonly<Record<'request' | 'input' | 'output', Readonly<Record<string, string>>>> = {
  request: {
    sequence_id: 'sequence batching is not supported',
    sequence_start: 'sequence batching is not supported',
    sequence_end: 'sequence batching is not supported',
  },
  input: {
    shared_memory_region: 'the shared-memory extension is not supported; send the data in the request',
  },
  output: {
    classification: 'the classification extension is not supported; ask for the raw output and take its top k',
    shared_memory_region: 'the shared-memory extension is not supported; the output comes in the response',
  },
};

type RawInput = RawRequest['inputs'][number];

/** The signature a request is validated against. */
export interface ModelSignature {
  readonly inputs: readonly TensorInfo[];
  readonly outputs: readonly TensorInfo[];
}

/** A validated inference request. */
export interface InferRequest {
  readonly id?: string;
  readonly feeds: Record<string, Tensor>;
  /** Outputs asked for, in order; all outputs when absent. */
  readonly outputNames?: readonly string[];
  /** Outputs to send as raw bytes after the JSON header. */
  readonly binaryOutputs: ReadonlySet<string>;
}

/** Decodes and validates an inference request body (JSON, or JSON + binary tensors). */
export function decodeInferRequest(
  body: Buffer | string,
  headers: Readonly<Record<string, string>>,
  signature: ModelSignature,
): InferRequest {
  const binaryHeader = headers[BINARY_HEADER];
  // The body itself, never a copy: the HTTP adapter placed it so the binary part starts aligned, and its tensors are
  // views into it that move to the worker thread as they are.
  const { json, binary } =
    binaryHeader === undefined
      ? { json: body }
      : splitBinaryBody(typeof body === 'string' ? Buffer.from(body) : body, binaryHeader);
  const request = validRequest(parseJsonBody(json));
  checkParameters(request);
  const feeds = decodeInputs(request.inputs, signature.inputs, binary);
  const outputNames = request.outputs?.map((o) => o.name);
  checkOutputNames(outputNames, signature.outputs);
  return {
    ...(request.id === undefined ? {} : { id: request.id }),
    feeds,
    ...(outputNames === undefined ? {} : { outputNames }),
    binaryOutputs: binaryOutputsOf(request, signature.outputs),
  };
}

type RawRequest = z.infer<typeof inferRequestSchema>;

/**
 * The request, checked against the schema. The usual, well-formed request is recognised by a plain check (the
 * schema's parse costs about 0.1 ms a request on the server's thread); anything that check does not vouch for goes
 * through the schema, so every refusal still carries the schema's message.
 */
function validRequest(value: unknown): RawRequest {
  if (plainlyValid(value)) return value;
  const parsed = inferRequestSchema.safeParse(value);
  if (!parsed.success) throw invalidInput(`invalid inference request: ${describeSchemaError(parsed.error)}`);
  return parsed.data;
}

/** True only for a value the schema surely accepts as it is (extra keys aside, which no one reads). */
function plainlyValid(value: unknown): value is RawRequest {
  if (!isRecord(value)) return false;
  const { id, parameters, inputs, outputs } = value;
  if ((id !== undefined && typeof id !== 'string') || !optionalRecord(parameters)) return false;
  if (!Array.isArray(inputs) || inputs.length === 0) return false;
  for (const input of inputs as unknown[]) {
    if (!isRecord(input) || !nonEmptyString(input['name']) || !Array.isArray(input['shape'])) return false;
    if (typeof input['datatype'] !== 'string' || !optionalRecord(input['parameters'])) return false;
  }
  if (outputs === undefined) return true;
  if (!Array.isArray(outputs) || outputs.length === 0) return false;
  return (outputs as unknown[]).every(
    (output) => isRecord(output) && nonEmptyString(output['name']) && optionalRecord(output['parameters']),
  );
}

/** A JSON object (what JSON.parse makes: never a class instance), not an array or null. */
function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalRecord(value: unknown): boolean {
  return value === undefined || isRecord(value);
}

function nonEmptyString(value: unknown): boolean {
  return typeof value === 'string' && value.length > 0;
}

function splitBinaryBody(body: Buffer, headerLength: string): { json: Buffer; binary: BinaryCursor } {
  const length = Number(headerLength);
  if (!/^\d+$/.test(headerLength.trim()) || length > body.length) {
    throw invalidInput(
      `${BINARY_HEADER} must be the byte length of the JSON header, at most the body length ${body.length}; got '${clipText(headerLength, 32)}'`,
    );
  }
  if (length === 0) {
    throw invalidInput(
      `${BINARY_HEADER} is 0, but the body must start with the JSON inference request; set it to that JSON's byte length`,
    );
  }
  return { json: body.subarray(0, length), binary: new BinaryCursor(body.subarray(length)) };
}

class BinaryCursor {
  private offset = 0;
  constructor(private readonly bytes: Buffer) {}
  take(size: number, inputName: string): Buffer {
    if (this.offset + size > this.bytes.length) {
      throw invalidInput(
        `input '${inputName}': binary_data_size ${size} runs past the end of the body (${this.bytes.length - this.offset} bytes left)`,
      );
    }
    const slice = this.bytes.subarray(this.offset, this.offset + size);
    this.offset += size;
    return slice;
  }
  assertConsumed(): void {
    if (this.offset !== this.bytes.length) {
      throw invalidInput(
        `binary body has ${this.bytes.length - this.offset} bytes that no input's binary_data_size claims`,
      );
    }
  }
}

function checkParameters(request: z.infer<typeof inferRequestSchema>): void {
  refuseUnsupported(request.parameters, 'request', 'the request');
  for (const input of request.inputs) refuseUnsupported(input.parameters, 'input', `input '${clipText(input.name)}'`);
  for (const output of request.outputs ?? [])
    refuseUnsupported(output.parameters, 'output', `output '${clipText(output.name)}'`);
}

function refuseUnsupported(
  given: Readonly<Record<string, unknown>> | undefined,
  level: keyof typeof UNSUPPORTED_PARAMETERS,
  where: string,
): void {
  if (given === undefined) return;
  for (const [name, why] of Object.entries(UNSUPPORTED_PARAMETERS[level])) {
    if (Object.hasOwn(given, name)) throw invalidInput(`${where}: parameter '${name}': ${why}`);
  }
}

function describeSchemaError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${formatPath(issue.path)}: ${issue.message}`)
    .join('; ');
}

function formatPath(path: readonly PropertyKey[]): string {
  if (path.length === 0) return 'body';
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? String(p) : `.${String(p)}`)).join('');
}

function decodeInputs(
  raw: readonly RawInput[],
  expected: readonly TensorInfo[],
  binary: BinaryCursor | undefined,
): Record<string, Tensor> {
  const byName = new Map(expected.map((info) => [info.name, info]));
  const feeds: Record<string, Tensor> = Object.create(null) as Record<string, Tensor>;
  for (const input of raw) {
    const info = byName.get(input.name);
    if (info === undefined) {
      throw invalidInput(`unknown input '${clipText(input.name)}'; the model takes ${listInputs(expected)}`);
    }
    if (Object.hasOwn(feeds, input.name)) throw invalidInput(`input '${input.name}' is given more than once`);
    feeds[input.name] = decodeInput(input, info, binary);
  }
  const missing = expected.filter((info) => !Object.hasOwn(feeds, info.name));
  if (missing.length > 0) {
    throw invalidInput(`missing input ${missing.map((m) => `'${m.name}' (${describeInfo(m)})`).join(', ')}`);
  }
  binary?.assertConsumed();
  return feeds;
}

function listInputs(expected: readonly TensorInfo[]): string {
  return expected.map((info) => `'${info.name}' (${describeInfo(info)})`).join(', ');
}

/** `FP32 [-1,1,8,8]`: datatype and shape, -1 for a dynamic dimension. */
export function describeInfo(info: TensorInfo): string {
  if (info.asSent) return 'any datatype and shape';
  return `${info.datatype} [${info.shape.join(',')}]`;
}

function decodeInput(input: RawInput, declared: TensorInfo, binary: BinaryCursor | undefined): Tensor {
  // A tensor the model does not describe (TorchScript with no declared inputs) is taken as sent; the model's own
  // errors name it later.
  const info = declared.asSent ? asSentInfo(input, declared) : declared;
  const where = `input '${input.name}'`;
  if (!isDatatype(input.datatype)) {
    throw invalidInput(`${where}: datatype '${input.datatype}' is not one of ${DATATYPES.join(', ')}`);
  }
  if (input.datatype !== info.datatype) {
    throw invalidInput(`${where}: datatype ${input.datatype} does not match the model's ${info.datatype}`);
  }
  const dims = checkShape(input.shape, info, where);
  const count = elementCount(dims, where);
  const type = TENSOR_TYPE_OF[info.datatype];
  const binarySize = input.parameters?.['binary_data_size'];
  if (binarySize !== undefined) {
    if (binary === undefined) {
      throw invalidInput(`${where}: binary_data_size is set but the request has no ${BINARY_HEADER} header`);
    }
    if (input.data !== undefined) throw invalidInput(`${where}: give either data or binary_data_size, not both`);
    return { type, dims, data: fromBinary(binary, binarySize, type, count, where) };
  }
  if (input.data === undefined) throw invalidInput(`${where}: data is missing`);
  return { type, dims, data: fromJson(input.data, dims, count, info.datatype, where) };
}

function asSentInfo(input: RawInput, declared: TensorInfo): TensorInfo {
  const rank = input.shape.length;
  return {
    ...declared,
    datatype: isDatatype(input.datatype) ? input.datatype : declared.datatype,
    shape: Array.from({ length: rank }, () => -1),
    dimNames: Array.from({ length: rank }, () => null),
  };
}

function checkShape(shape: readonly unknown[], info: TensorInfo, where: string): number[] {
  for (const [axis, dim] of shape.entries()) {
    if (typeof dim !== 'number' || !Number.isSafeInteger(dim) || dim < 0) {
      throw invalidInput(`${where}: shape[${axis}] must be a non-negative integer, got ${previewJson(dim)}`);
    }
  }
  const dims = shape as number[];
  if (dims.length !== info.shape.length) {
    throw invalidInput(
      `${where}: shape [${dims.join(',')}] has rank ${dims.length}; the model expects rank ${info.shape.length}: ${describeInfo(info)}`,
    );
  }
  for (const [axis, fixed] of info.shape.entries()) {
    if (fixed >= 0 && dims[axis] !== fixed) {
      throw invalidInput(
        `${where}: shape [${dims.join(',')}] has ${dims[axis]} at axis ${axis}; the model expects ${fixed}: ${describeInfo(info)}`,
      );
    }
  }
  return dims;
}

/** Most elements one tensor may hold: past this a shape is an attack or a mistake, never a request. */
const MAX_ELEMENTS = 2 ** 31 - 1;

function elementCount(dims: readonly number[], where: string): number {
  let count = 1;
  for (const dim of dims) {
    count *= dim;
    if (count > MAX_ELEMENTS) {
      throw invalidInput(`${where}: shape [${dims.join(',')}] holds more than ${MAX_ELEMENTS} elements`);
    }
  }
  return count;
}

function fromBinary(cursor: BinaryCursor, size: unknown, type: TensorType, count: number, where: string): TensorData {
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) {
    throw invalidInput(`${where}: binary_data_size must be a non-negative integer`);
  }
  if (type === 'string') {
    const strings = stringsFromBinary(cursor.take(size, where), count);
    if (!Array.isArray(strings)) throw invalidInput(`${where}: BYTES binary data: ${strings.problem}`);
    return strings;
  }
  if (type === 'bool' && size === count) {
    return tensorDataFromBytes(cursor.take(size, where), type, count);
  }
  const expected = count * bytesPerElement(type);
  if (size !== expected) {
    throw invalidInput(
      `${where}: binary_data_size is ${size} bytes; the shape needs ${expected} (${count} × ${bytesPerElement(type)})`,
    );
  }
  // A view into the body when aligned (the HTTP adapter aligns the binary part): no copy of the tensor.
  return tensorDataFromBytes(cursor.take(size, where), type, count);
}

function fromJson(
  data: unknown,
  dims: readonly number[],
  count: number,
  datatype: Datatype,
  where: string,
): TensorData {
  if (!Array.isArray(data)) throw invalidInput(`${where}: data must be an array, flat or nested to the shape`);
  const flat = isNested(data) ? flattenNested(data, dims, where) : data;
  if (flat.length !== count) {
    throw invalidInput(`${where}: data has ${flat.length} elements; shape [${dims.join(',')}] needs ${count}`);
  }
  return fillTyped(flat, datatype, where);
}

function isNested(data: readonly unknown[]): boolean {
  return data.length > 0 && Array.isArray(data[0]);
}

/** Flattens data nested exactly to the shape; depth is bounded by the model's rank, never by the request. */
function flattenNested(data: readonly unknown[], dims: readonly number[], where: string): unknown[] {
  const out: unknown[] = [];
  const visit = (level: readonly unknown[], axis: number, path: string): void => {
    if (level.length !== dims[axis]) {
      throw invalidInput(
        `${where}: nested data${path} has ${level.length} items at axis ${axis}; shape [${dims.join(',')}] needs ${dims[axis]}`,
      );
    }
    const leaf = axis === dims.length - 1;
    for (let i = 0; i < level.length; i++) {
      const item = level[i];
      if (leaf) {
        if (Array.isArray(item))
          throw invalidInput(`${where}: data${path}[${i}] nests deeper than the shape's rank ${dims.length}`);
        out.push(item);
      } else if (Array.isArray(item)) {
        visit(item, axis + 1, `${path}[${i}]`);
      } else {
        throw invalidInput(
          `${where}: data${path}[${i}] must be an array (nested data follows shape [${dims.join(',')}])`,
        );
      }
    }
  };
  if (dims.length === 0) throw invalidInput(`${where}: a scalar's data cannot be nested`);
  visit(data, 0, '');
  return out;
}

function fillTyped(flat: readonly unknown[], datatype: Datatype, where: string): TensorData {
  const type = TENSOR_TYPE_OF[datatype];
  const data = allocate(type, flat.length);
  const bad = (i: number, expected: string): never => {
    throw invalidInput(`${where}: data[${i}] is ${previewJson(flat[i])}; ${datatype} needs ${expected}`);
  };
  switch (datatype) {
    case 'FP32':
    case 'FP64': {
      const out = data as Float32Array | Float64Array;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'number' || !Number.isFinite(v)) bad(i, 'a finite number');
        out[i] = v as number;
      }
      if (datatype === 'FP32') checkFloat32Range(out as Float32Array, flat, where);
      break;
    }
    case 'FP16': {
      const out = data as Uint16Array;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > 65504)
          bad(i, 'a finite number within ±65504');
        out[i] = toFloat16Bits(v as number);
      }
      break;
    }
    case 'BYTES': {
      const out = data as string[];
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'string') bad(i, 'a string');
        out[i] = v as string;
      }
      break;
    }
    case 'BOOL': {
      const out = data as Uint8Array;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'boolean') bad(i, 'true or false');
        out[i] = v ? 1 : 0;
      }
      break;
    }
    case 'INT64': {
      const out = data as BigInt64Array;
      for (let i = 0; i < flat.length; i++)
        out[i] = toInt64(flat[i], () =>
          bad(i, 'an integer: a safe JSON number (|n| ≤ 2^53−1) or a decimal string within int64'),
        );
      break;
    }
    default: {
      const [min, max] = INTEGER_RANGE[datatype]!;
      const out = data as Int8Array | Uint8Array | Int16Array | Int32Array;
      for (let i = 0; i < flat.length; i++) {
        const v = flat[i];
        if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
          bad(i, `an integer in [${min}, ${max}]`);
        out[i] = v as number;
      }
    }
  }
  return data;
}

/** A finite double that overflows float32 becomes Infinity: refuse it rather than serve it. */
function checkFloat32Range(out: Float32Array, flat: readonly unknown[], where: string): void {
  for (let i = 0; i < out.length; i++) {
    if (!Number.isFinite(out[i]!)) {
      throw invalidInput(`${where}: data[${i}] is ${String(flat[i])}; FP32 needs a finite number within ±3.4028235e38`);
    }
  }
}

const INT64_STRING = /^-?\d{1,19}$/;

function toInt64(value: unknown, refuse: () => never): bigint {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) refuse();
    return BigInt(value);
  }
  if (typeof value === 'string' && INT64_STRING.test(value)) {
    const big = BigInt(value);
    if (big >= INT64_MIN && big <= INT64_MAX) return big;
  }
  return refuse();
}

function checkOutputNames(names: readonly string[] | undefined, outputs: readonly TensorInfo[]): void {
  if (names === undefined) return;
  const known = new Set(outputs.map((o) => o.name));
  const seen = new Set<string>();
  for (const name of names) {
    if (!known.has(name)) {
      throw invalidInput(
        `unknown output '${clipText(name)}'; the model gives ${outputs.map((o) => `'${o.name}'`).join(', ')}`,
      );
    }
    if (seen.has(name)) throw invalidInput(`output '${name}' is asked for more than once`);
    seen.add(name);
  }
}

/**
 * The outputs to send as binary: the request's `binary_data_output` sets the default, and an output's own
 * `binary_data` overrides it either way (extension_binary_data.md).
 */
function binaryOutputsOf(request: z.infer<typeof inferRequestSchema>, outputs: readonly TensorInfo[]): Set<string> {
  const byDefault = flag(request.parameters, 'binary_data_output', 'the request') ?? false;
  const named = new Map((request.outputs ?? []).map((o) => [o.name, o.parameters]));
  const asked = request.outputs === undefined ? outputs.map((o) => o.name) : [...named.keys()];
  return new Set(
    asked.filter((name) => flag(named.get(name), 'binary_data', `output '${clipText(name)}'`) ?? byDefault),
  );
}

/** A boolean parameter, or undefined when absent; any other value is a 400. */
function flag(given: Readonly<Record<string, unknown>> | undefined, name: string, where: string): boolean | undefined {
  const value = given?.[name];
  if (value === undefined || typeof value === 'boolean') return value;
  throw invalidInput(`${where}: parameter '${name}' must be true or false, got ${previewJson(value)}`);
}

/** An encoded inference response. */
export interface EncodedResponse {
  readonly body: Buffer;
  readonly headers: Record<string, string>;
}

/** Encodes results as an OIP response: JSON, with binary outputs appended after the JSON header when asked. */
export function encodeInferResponse(
  modelName: string,
  id: string | undefined,
  results: Readonly<Record<string, Tensor>>,
  binaryOutputs: ReadonlySet<string> = new Set(),
  modelVersion?: string,
): EncodedResponse {
  const chunks: Buffer[] = [];
  const outputs = Object.entries(results).map(([name, tensor]) => {
    const head = { name, datatype: DATATYPE_OF[tensor.type], shape: [...tensor.dims] };
    if (!binaryOutputs.has(name)) return { ...head, data: toJsonData(tensor) };
    const bytes = binaryElements(tensor);
    chunks.push(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    return { ...head, parameters: { binary_data_size: bytes.length } };
  });
  // Plain JSON.stringify: toJsonData already made every value JSON-safe, and a replacer would slow it severalfold.
  const version = modelVersion === undefined ? {} : { model_version: modelVersion };
  const json = Buffer.from(
    JSON.stringify({ model_name: modelName, ...version, ...(id === undefined ? {} : { id }), outputs }),
  );
  if (chunks.length === 0) return { body: json, headers: { 'content-type': 'application/json' } };
  return {
    body: Buffer.concat([json, ...chunks]),
    headers: { 'content-type': 'application/octet-stream', [BINARY_HEADER]: String(json.length) },
  };
}

/**
 * Flat JSON data of a tensor: int64 as numbers when exact, else decimal strings; float16 decoded; bool as booleans.
 * A non-finite float, which JSON cannot write as a number, is the string `"NaN"`, `"Infinity"` or `"-Infinity"`:
 * still valid JSON (never the silent `null` of JSON.stringify), read back as the same float by numpy
 * (`np.array(data, dtype=np.float32)`, what tritonclient's `as_numpy` does) and by JavaScript's `Number()`.
 */
export function toJsonData(tensor: Tensor): unknown[] {
  switch (tensor.type) {
    case 'int64':
      return Array.from(tensor.data as BigInt64Array, (v) =>
        v >= -9007199254740991n && v <= 9007199254740991n ? Number(v) : v.toString(),
      );
    case 'float16':
      return floatsAsJson(Array.from(tensor.data as Uint16Array, fromFloat16Bits));
    case 'float32':
    case 'float64':
      return floatsAsJson(Array.from(tensor.data as Float32Array | Float64Array));
    case 'bool':
      return Array.from(tensor.data as Uint8Array, (v) => v !== 0);
    case 'string':
      return [...(tensor.data as string[])];
    default:
      return Array.from(tensor.data as ArrayLike<number>);
  }
}

/** Floats as JSON values: finite ones as they are (the common case pays one scan), the rest as strings. */
function floatsAsJson(values: number[]): (number | string)[] {
  if (values.every(Number.isFinite)) return values;
  return values.map((v) => (Number.isFinite(v) ? v : String(v)));
}
