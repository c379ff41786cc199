/**
 * Test-only ONNX model writer: builds small (or large-initializer) models in memory as ModelProto bytes, so tests
 * and benches can serve models of any input datatype and shape without Python or files on disk.
 *
 *   writeOnnxModel({ inputs: [{ name: 'x', type: 'float32', dims: ['batch', 3] }],
 *                    outputs: [{ name: 'y', type: 'float32', dims: ['batch', 3] }],
 *                    nodes: [{ op: 'Identity', inputs: ['x'], outputs: ['y'] }] })
 */
import onnxProto from 'onnx-proto';
import type { TensorData, TensorType } from '../lib/predictor.js';

const { onnx } = onnxProto;

/** ONNX TensorProto.DataType of each tensor type Arclight serves. */
export const ONNX_DATA_TYPE: Readonly<Record<TensorType, number>> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int8: onnx.TensorProto.DataType.INT8,
  int16: onnx.TensorProto.DataType.INT16,
  int32: onnx.TensorProto.DataType.INT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
  float16: onnx.TensorProto.DataType.FLOAT16,
  float64: onnx.TensorProto.DataType.DOUBLE,
  string: onnx.TensorProto.DataType.STRING,
};

/** A graph input or output: a number is a fixed dimension, a string a symbolic (dynamic) one. */
export interface ValueSpec {
  readonly name: string;
  readonly type: TensorType;
  readonly dims: readonly (number | string)[];
}

/** A node attribute value: int, float, string, int list, float list, or a tensor. */
export type AttributeValue =
  | { readonly int: number }
  | { readonly float: number }
  | { readonly string: string }
  | { readonly ints: readonly number[] }
  | { readonly floats: readonly number[] }
  | { readonly strings: readonly string[] }
  | { readonly tensor: InitializerSpec };

export interface NodeSpec {
  /** Operator type, e.g. `Identity`, `Cast`, `MatMul`. */
  readonly op: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly name?: string;
  /** Operator domain. @default '' (ai.onnx) */
  readonly domain?: string;
  readonly attributes?: Readonly<Record<string, AttributeValue>>;
}

/** A constant tensor in the graph; `data` is written as little-endian raw bytes. */
export interface InitializerSpec {
  readonly name: string;
  readonly type: TensorType;
  readonly dims: readonly number[];
  /** A typed array of the type (float16 as raw bits in a Uint16Array), or the raw bytes themselves. */
  readonly data: TensorData | Uint8Array;
}

export interface ModelSpec {
  readonly inputs: readonly ValueSpec[];
  readonly outputs: readonly ValueSpec[];
  readonly nodes: readonly NodeSpec[];
  readonly initializers?: readonly InitializerSpec[];
  /** @default 'test' */
  readonly graphName?: string;
  /** ai.onnx opset. @default 13 */
  readonly opset?: number;
  /** Other operator domains the graph uses (`ai.onnx.ml`), with their opset. @default none */
  readonly domains?: Readonly<Record<string, number>>;
  /** @default 8 */
  readonly irVersion?: number;
}

/** Serializes a model to ONNX ModelProto bytes. */
export function writeOnnxModel(spec: ModelSpec): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: spec.irVersion ?? 8,
    producerName: 'arclight-test',
    producerVersion: '1',
    opsetImport: [
      { domain: '', version: spec.opset ?? 13 },
      ...Object.entries(spec.domains ?? {}).map(([domain, version]) => ({ domain, version })),
    ],
    graph: {
      name: spec.graphName ?? 'test',
      input: spec.inputs.map(valueInfo),
      output: spec.outputs.map(valueInfo),
      node: spec.nodes.map((node, i) => ({
        opType: node.op,
        name: node.name ?? `${node.op.toLowerCase()}_${i}`,
        domain: node.domain ?? '',
        input: [...node.inputs],
        output: [...node.outputs],
        attribute: Object.entries(node.attributes ?? {}).map(([name, value]) => attribute(name, value)),
      })),
      initializer: (spec.initializers ?? []).map(tensorProto),
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * One Identity node per input: output `<name>_out` (or `outputName`) has the input's type and dims, so a request's
 * tensor comes back exactly as the model received it.
 */
export function identityModel(inputs: readonly (ValueSpec & { readonly outputName?: string })[]): Uint8Array {
  const outputs = inputs.map(({ name, type, dims, outputName }) => ({ name: outputName ?? `${name}_out`, type, dims }));
  return writeOnnxModel({
    inputs: inputs.map(({ name, type, dims }) => ({ name, type, dims })),
    outputs,
    nodes: inputs.map((input, i) => ({ op: 'Identity', inputs: [input.name], outputs: [outputs[i]!.name] })),
  });
}

function valueInfo(value: ValueSpec): InstanceType<typeof onnx.ValueInfoProto> {
  return onnx.ValueInfoProto.create({
    name: value.name,
    type: {
      tensorType: {
        elemType: ONNX_DATA_TYPE[value.type],
        shape: { dim: value.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  });
}

function tensorProto(spec: InitializerSpec): InstanceType<typeof onnx.TensorProto> {
  const { data } = spec;
  if (Array.isArray(data)) {
    const stringData = data.map((text) => new TextEncoder().encode(text));
    return onnx.TensorProto.create({
      name: spec.name,
      dataType: ONNX_DATA_TYPE.string,
      dims: [...spec.dims],
      stringData,
    });
  }
  return onnx.TensorProto.create({
    name: spec.name,
    dataType: ONNX_DATA_TYPE[spec.type],
    dims: [...spec.dims],
    rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
  });
}

function attribute(name: string, value: AttributeValue): InstanceType<typeof onnx.AttributeProto> {
  const { AttributeType } = onnx.AttributeProto;
  if ('int' in value) return onnx.AttributeProto.create({ name, type: AttributeType.INT, i: value.int });
  if ('float' in value) return onnx.AttributeProto.create({ name, type: AttributeType.FLOAT, f: value.float });
  if ('string' in value) {
    return onnx.AttributeProto.create({ name, type: AttributeType.STRING, s: new TextEncoder().encode(value.string) });
  }
  if ('ints' in value) return onnx.AttributeProto.create({ name, type: AttributeType.INTS, ints: [...value.ints] });
  if ('strings' in value) {
    const strings = value.strings.map((text) => new TextEncoder().encode(text));
    return onnx.AttributeProto.create({ name, type: AttributeType.STRINGS, strings });
  }
  if ('floats' in value) {
    return onnx.AttributeProto.create({ name, type: AttributeType.FLOATS, floats: [...value.floats] });
  }
  return onnx.AttributeProto.create({ name, type: AttributeType.TENSOR, t: tensorProto(value.tensor) });
}
