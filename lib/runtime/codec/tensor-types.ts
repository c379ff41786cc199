import type { Datatype, Tensor, TensorData, TensorDataByType, TensorType } from '../../predictor.js';

/** Open Inference Protocol datatype → onnxruntime tensor type. */
export const TENSOR_TYPE_OF: Readonly<Record<Datatype, TensorType>> = {
  BOOL: 'bool',
  UINT8: 'uint8',
  INT8: 'int8',
  INT16: 'int16',
  INT32: 'int32',
  INT64: 'int64',
  FP16: 'float16',
  FP32: 'float32',
  FP64: 'float64',
  BYTES: 'string',
};

/** onnxruntime tensor type → Open Inference Protocol datatype. */
export const DATATYPE_OF: Readonly<Record<TensorType, Datatype>> = {
  bool: 'BOOL',
  uint8: 'UINT8',
  int8: 'INT8',
  int16: 'INT16',
  int32: 'INT32',
  int64: 'INT64',
  float16: 'FP16',
  float32: 'FP32',
  float64: 'FP64',
  string: 'BYTES',
};

export const DATATYPES = Object.keys(TENSOR_TYPE_OF) as Datatype[];

export function isDatatype(value: unknown): value is Datatype {
  return typeof value === 'string' && Object.hasOwn(TENSOR_TYPE_OF, value);
}

export function isTensorType(value: unknown): value is TensorType {
  return typeof value === 'string' && Object.hasOwn(DATATYPE_OF, value);
}

interface TypedArrayConstructor {
  new (length: number): TensorData;
  new (buffer: ArrayBufferLike, byteOffset: number, length: number): TensorData;
  readonly BYTES_PER_ELEMENT: number;
}

/** Tensor types held in a typed array: every one but `string`. */
export type NumericTensorType = Exclude<TensorType, 'string'>;
export type NumericTensorData = TensorDataByType[NumericTensorType];

/** Whether a tensor's data is a typed array (not the plain array of strings of a BYTES tensor). */
export function isNumericData(data: TensorData): data is NumericTensorData {
  return !Array.isArray(data);
}

export function isStringTensor(tensor: Tensor): tensor is Tensor<'string'> {
  return tensor.type === 'string';
}

const ARRAY_OF: Readonly<Record<NumericTensorType, TypedArrayConstructor>> = {
  bool: Uint8Array,
  uint8: Uint8Array,
  int8: Int8Array,
  int16: Int16Array,
  int32: Int32Array,
  int64: BigInt64Array,
  float16: Uint16Array,
  float32: Float32Array,
  float64: Float64Array,
};

export function allocate(type: TensorType, length: number): TensorData {
  if (type === 'string') return new Array<string>(length).fill('');
  return new ARRAY_OF[type](length);
}

/**
 * The elements in `bytes` (little-endian, as sent) as a typed array: a view sharing its memory when the offset is
 * aligned for the type, else an aligned copy. Booleans are always copied, to normalise them to 0/1.
 */
export function tensorDataFromBytes(bytes: Uint8Array, type: NumericTensorType, length: number): NumericTensorData {
  const constructor = ARRAY_OF[type];
  if (type !== 'bool' && bytes.byteOffset % constructor.BYTES_PER_ELEMENT === 0) {
    return new constructor(bytes.buffer, bytes.byteOffset, length) as NumericTensorData;
  }
  const data = new constructor(length) as NumericTensorData;
  new Uint8Array(data.buffer, data.byteOffset, data.byteLength).set(bytes.subarray(0, data.byteLength));
  if (type === 'bool') {
    const flags = data as Uint8Array;
    for (let i = 0; i < flags.length; i++) flags[i] = flags[i] ? 1 : 0;
  }
  return data;
}

export function bytesPerElement(type: NumericTensorType): number {
  return ARRAY_OF[type].BYTES_PER_ELEMENT;
}

/**
 * A tensor's elements as the binary tensor extension sends them: a numeric tensor's little-endian bytes (a view, no
 * copy); a BYTES tensor's elements each as a 4-byte little-endian length and then its UTF-8 bytes.
 */
export function binaryElements(tensor: Tensor): Uint8Array {
  const { data } = tensor;
  if (isNumericData(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  const encoded = data.map((text) => Buffer.from(text, 'utf8'));
  const out = Buffer.alloc(encoded.reduce((n, e) => n + 4 + e.length, 0));
  let at = 0;
  for (const element of encoded) {
    at = out.writeUInt32LE(element.length, at);
    at += element.copy(out, at);
  }
  return out;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * The elements of a binary BYTES tensor (each a 4-byte little-endian length, then that many bytes of UTF-8), or why
 * the bytes are not `count` such elements.
 */
export function stringsFromBinary(bytes: Uint8Array, count: number): string[] | { readonly problem: string } {
  const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: string[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    if (at + 4 > view.length) return { problem: `element ${i}'s 4-byte length runs past the tensor's bytes` };
    const length = view.readUInt32LE(at);
    at += 4;
    if (at + length > view.length) {
      return { problem: `element ${i} is ${length} bytes long, past the tensor's ${view.length - at} remaining` };
    }
    try {
      out.push(utf8.decode(view.subarray(at, at + length)));
    } catch {
      return { problem: `element ${i} is not UTF-8 text (ONNX string tensors hold text)` };
    }
    at += length;
  }
  if (at !== view.length) return { problem: `${view.length - at} bytes follow the last of its ${count} elements` };
  return out;
}

/** Inclusive integer ranges of the integer datatypes that fit a JS number exactly. */
export const INTEGER_RANGE: Partial<Readonly<Record<Datatype, readonly [number, number]>>> = {
  UINT8: [0, 255],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

export const INT64_MIN = -(2n ** 63n);
export const INT64_MAX = 2n ** 63n - 1n;

const f64 = new DataView(new ArrayBuffer(8));

/**
 * IEEE 754 half-precision bits of a number, rounded to nearest even, straight from the double (going through float32
 * first would round twice and miss the nearest half for values just past a halfway point).
 */
export function toFloat16Bits(value: number): number {
  f64.setFloat64(0, value);
  const high = f64.getUint32(0);
  const sign = (high >>> 16) & 0x8000;
  const exponent = (high >>> 20) & 0x7ff;
  if (exponent === 0x7ff) return sign | 0x7c00 | (Number.isNaN(value) ? 0x200 : 0);
  // The half's exponent: the double's, but never below -14, where subnormals share the smallest normal's scale.
  const e = Math.max(exponent - 1023, -14);
  if (e > 15) return sign | 0x7c00;
  // The magnitude in units of the half's last place: exact, as it only scales by a power of two. Normals land in
  // [1024, 2048) (the implicit bit included), subnormals below 1024.
  const units = Math.abs(value) * 2 ** (10 - e);
  const whole = Math.floor(units);
  const rest = units - whole;
  const rounded = rest > 0.5 || (rest === 0.5 && whole % 2 === 1) ? whole + 1 : whole;
  // Adding the rounded units to the exponent field lets a carry (2048 units, or 1024 from a subnormal) move up to
  // the next exponent, and past 65504 to infinity (0x7c00), as IEEE rounding does.
  return sign | (((e + 14) << 10) + rounded);
}

/** The number that IEEE 754 half-precision bits stand for. */
export function fromFloat16Bits(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >>> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 0x1f) return mantissa ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}
