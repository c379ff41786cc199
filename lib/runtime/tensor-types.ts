import type { Datatype, TensorData, TensorType } from '../predictor.js';

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
  readonly BYTES_PER_ELEMENT: number;
}

const ARRAY_OF: Readonly<Record<TensorType, TypedArrayConstructor>> = {
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
  return new ARRAY_OF[type](length);
}

export function bytesPerElement(type: TensorType): number {
  return ARRAY_OF[type].BYTES_PER_ELEMENT;
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

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 half-precision bits of a number, rounded to nearest even. */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  let mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const e = exponent - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mantissa |= 0x800000;
    const shift = 14 - e;
    const half = mantissa >>> shift;
    const rest = mantissa & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    return sign | (rest > halfway || (rest === halfway && half & 1) ? half + 1 : half);
  }
  const half = (e << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  return sign | (rest > 0x1000 || (rest === 0x1000 && half & 1) ? half + 1 : half);
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
