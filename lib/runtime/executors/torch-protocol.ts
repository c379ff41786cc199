/**
 * The torch executor's wire format (python/arclight_executor.py speaks the other side): length-prefixed frames over
 * pipes, tensors as raw little-endian bytes with a small binary header, never JSON. Control messages (load options,
 * metadata, errors) are small JSON documents.
 *
 *     frame   = u32 length (LE) | payload        payload = u8 kind | body
 *     tensors = u16 count | per tensor: u16 name length | name | u8 dtype | u8 rank | rank × i64 dims | u64 bytes
 *               | pad to 8 | data | pad to 8          (padding counted from the payload's start)
 */
import type { Tensor } from '../../predictor.js';
import {
  bytesPerElement,
  tensorDataFromBytes,
  type NumericTensorData,
  type NumericTensorType,
} from '../codec/tensor-types.js';

export const FRAME = { hello: 1, load: 2, ready: 3, run: 4, result: 5, error: 6, bye: 7 } as const;

export type FrameKind = (typeof FRAME)[keyof typeof FRAME];

/** Tensor types by their code on the wire (the Python side lists them in the same order). */
const TYPE_CODES: readonly NumericTensorType[] = [
  'bool',
  'uint8',
  'int8',
  'int16',
  'int32',
  'int64',
  'float16',
  'float32',
  'float64',
];

/** The largest frame accepted from the executor: a corrupt length must not make this process allocate gigabytes. */
export const MAX_FRAME_BYTES = 2 ** 31 - 1;

/** Where a RUN's and a RESULT's tensors start in the payload: after the kind byte and the u32 id. */
const TENSORS_AT = 5;

const pad8 = (n: number): number => (8 - (n % 8)) % 8;

/** A frame with a JSON body (LOAD). */
export function jsonFrame(kind: FrameKind, value: unknown): Buffer {
  const body = Buffer.from(JSON.stringify(value ?? null));
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame.writeUInt32LE(1 + body.length, 0);
  frame.writeUInt8(kind, 4);
  body.copy(frame, 5);
  return frame;
}

/** A RUN frame: the request id, the named tensors and the outputs asked for (none: all). */
export function runFrame(id: number, feeds: Readonly<Record<string, Tensor>>, outputNames: readonly string[] = []) {
  const entries = Object.entries(feeds).map(([name, tensor]) => ({
    name: Buffer.from(name),
    tensor: tensor as Tensor<NumericTensorType> & { readonly data: NumericTensorData },
  }));
  const wanted = outputNames.map((name) => Buffer.from(name));
  let size = TENSORS_AT + 2;
  for (const { name, tensor } of entries) {
    size += 2 + name.length + 2 + 8 * tensor.dims.length + 8;
    size += pad8(size) + tensor.data.byteLength + pad8(tensor.data.byteLength);
  }
  size += 2 + wanted.reduce((n, w) => n + 2 + w.length, 0);
  // Zero-filled: the padding goes out as zeros, not as whatever the pool held.
  const frame = Buffer.alloc(4 + size);
  const payload = frame.subarray(4);
  frame.writeUInt32LE(size, 0);
  payload.writeUInt8(FRAME.run, 0);
  payload.writeUInt32LE(id, 1);
  let at = TENSORS_AT;
  at = payload.writeUInt16LE(entries.length, at);
  for (const { name, tensor } of entries) {
    at = payload.writeUInt16LE(name.length, at);
    at += name.copy(payload, at);
    at = payload.writeUInt8(TYPE_CODES.indexOf(tensor.type), at);
    at = payload.writeUInt8(tensor.dims.length, at);
    for (const dim of tensor.dims) at = payload.writeBigInt64LE(BigInt(dim), at);
    at = payload.writeBigUInt64LE(BigInt(tensor.data.byteLength), at);
    at += pad8(at);
    const { buffer, byteOffset, byteLength } = tensor.data;
    payload.set(new Uint8Array(buffer, byteOffset, byteLength), at);
    at += byteLength + pad8(byteLength);
  }
  at = payload.writeUInt16LE(wanted.length, at);
  for (const name of wanted) {
    at = payload.writeUInt16LE(name.length, at);
    at += name.copy(payload, at);
  }
  return frame;
}

/** A frame as received: its kind and its payload (the kind byte included, at offset 0). */
export interface Frame {
  readonly kind: number;
  readonly payload: Buffer;
}

/** The u32 request id of a RESULT or ERROR frame. */
export function frameId(frame: Frame): number {
  return frame.payload.readUInt32LE(1);
}

/** The JSON body of a HELLO, READY (from offset 1) or ERROR (after its id) frame. */
export function frameJson<T>(frame: Frame): T {
  const start = frame.kind === FRAME.error ? 5 : 1;
  return JSON.parse(frame.payload.toString('utf8', start)) as T;
}

/** A RESULT frame's tensors, each copied into its own typed array (aligned, and free of the frame's buffer). */
export function resultTensors(frame: Frame): Record<string, Tensor> {
  const p = frame.payload;
  let at = TENSORS_AT;
  const count = p.readUInt16LE(at);
  at += 2;
  const out: Record<string, Tensor> = {};
  for (let i = 0; i < count; i++) {
    const nameLength = p.readUInt16LE(at);
    at += 2;
    const name = p.toString('utf8', at, at + nameLength);
    at += nameLength;
    const type = TYPE_CODES[p.readUInt8(at)];
    const rank = p.readUInt8(at + 1);
    at += 2;
    if (type === undefined) throw new Error(`torch executor sent output '${name}' with an unknown dtype code`);
    const dims: number[] = [];
    for (let d = 0; d < rank; d++, at += 8) dims.push(Number(p.readBigInt64LE(at)));
    const bytes = Number(p.readBigUInt64LE(at));
    at += 8;
    at += pad8(at);
    const count = dims.reduce((a, b) => a * b, 1);
    if (count * bytesPerElement(type) !== bytes || at + bytes > p.length) {
      throw new Error(`torch executor sent output '${name}' with ${bytes} bytes`);
    }
    const data = tensorDataFromBytes(p.subarray(at, at + bytes), type, count);
    at += bytes + pad8(bytes);
    out[name] = { type, data, dims } as Tensor;
  }
  return out;
}

/** Splits a byte stream into frames; chunks may cut frames anywhere. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  constructor(private readonly onFrame: (frame: Frame) => void) {}

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.buffered < 4) return;
      const head = this.peek(4);
      const length = head.readUInt32LE(0);
      if (length < 1 || length > MAX_FRAME_BYTES) throw new Error(`torch executor sent a frame of ${length} bytes`);
      if (this.buffered < 4 + length) return;
      const frame = this.take(4 + length).subarray(4);
      this.onFrame({ kind: frame.readUInt8(0), payload: frame });
    }
  }

  private peek(n: number): Buffer {
    if (this.chunks[0]!.length >= n) return this.chunks[0]!;
    this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0]!;
  }

  private take(n: number): Buffer {
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    const taken = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks = rest.length > 0 ? [rest] : [];
    this.buffered -= n;
    return taken;
  }
}
