import type { Model, ModelFormat, Tensor, TensorDataByType, TensorInfo, TensorType } from '../../predictor.js';
import type { Executor } from './executor.js';
import { allocate, isTensorType, toFloat16Bits } from '../codec/tensor-types.js';

/** The `model` predictors see: metadata, a tensor factory and `run`, over one executor. */
/** A tensor's signature as the protocol's metadata shows it: name, datatype, shape (no dimension names). */
export function tensorSignature({
  name,
  datatype,
  shape,
}: TensorInfo): Pick<TensorInfo, 'name' | 'datatype' | 'shape'> {
  return { name, datatype, shape };
}

export function createModel(name: string, format: ModelFormat, executor: Executor, version?: string): Model {
  return {
    name,
    ...(version === undefined ? {} : { version }),
    format,
    inputs: executor.inputs,
    outputs: executor.outputs,
    tensor: makeTensor,
    run: (feeds, outputNames) => executor.run(feeds, outputNames),
  };
}

type TensorSource<T extends TensorType> =
  TensorDataByType[T] | readonly number[] | readonly bigint[] | readonly boolean[];

/** Builds a tensor, copying plain arrays into the type's typed array; the element count must fit the dims. */
export function makeTensor<T extends TensorType>(type: T, source: TensorSource<T>, dims: readonly number[]): Tensor<T> {
  if (!isTensorType(type)) throw new TypeError(`model.tensor: unknown tensor type '${String(type)}'`);
  const count = dims.reduce((n, d) => {
    if (!Number.isSafeInteger(d) || d < 0)
      throw new TypeError(`model.tensor: dims must be non-negative integers, got [${dims.join(',')}]`);
    return n * d;
  }, 1);
  if (source.length !== count) {
    throw new TypeError(
      `model.tensor: ${source.length} elements do not fill dims [${dims.join(',')}] (${count} needed)`,
    );
  }
  const data = ArrayBuffer.isView(source) ? source : fill(type, source as readonly (number | bigint | boolean)[]);
  return { type, data: data as TensorDataByType[T], dims: [...dims] };
}

function fill(type: TensorType, values: readonly (number | bigint | boolean)[]): TensorDataByType[TensorType] {
  const data = allocate(type, values.length);
  if (type === 'int64') {
    const out = data as BigInt64Array;
    for (let i = 0; i < values.length; i++) out[i] = BigInt(values[i] as number | bigint);
  } else if (type === 'float16') {
    const out = data as Uint16Array;
    for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(Number(values[i]));
  } else {
    const out = data as Exclude<TensorDataByType[TensorType], BigInt64Array>;
    for (let i = 0; i < values.length; i++) out[i] = Number(values[i]);
  }
  return data;
}
