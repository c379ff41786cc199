/**
 * A model file's format, read from its first and last bytes when the deployer does not say: TorchScript files and
 * (new-style) checkpoints are zip archives, told apart by their entries (a TorchScript archive holds `<name>/code/`
 * and `<name>/constants.pkl`); an old-style `torch.save` checkpoint is a bare pickle; anything else is taken for ONNX,
 * whose loader then says clearly if it is not.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import type { ModelFormat } from './predictor.js';

/** Bytes read from each end of a model file: the zip's central directory sits at the end. */
const EDGE_BYTES = 1024 * 1024;

/** Local file header and end-of-central-directory signatures ("PK\x03\x04", "PK\x05\x06"). */
const ZIP_LOCAL = 0x04034b50;
const ZIP_END = 0x06054b50;
const ZIP_ENTRY = 0x02014b50;
const ZIP64_END = 0x06064b50;
const ZIP64_LOCATOR = 0x07064b50;
/** A pickle of protocol 2 or later starts with PROTO (0x80) and the protocol number. */
const PICKLE_PROTO = 0x80;

/**
 * A local model file's format: the one declared, else read from the file. An empty file counts as ONNX (whoever
 * checks the size says it is empty).
 */
export function modelFileFormat(path: string, size: number, declared?: ModelFormat): ModelFormat {
  return declared ?? (size > 0 ? detectModelFormat(path) : 'onnx');
}

/** The format of a model held in memory or in a file. */
export function detectModelFormat(model: Uint8Array | string): ModelFormat {
  const { head, tail, tailStart } =
    typeof model === 'string' ? readEdges(model) : { head: model, tail: model, tailStart: 0 };
  if (head.length >= 4 && readU32(head, 0) === ZIP_LOCAL) return zipFormat(head, tail, tailStart);
  if (head.length >= 2 && head[0] === PICKLE_PROTO && head[1]! >= 2 && head[1]! <= 5) return 'lightning-checkpoint';
  return 'onnx';
}

/**
 * Names of a zip's entries, from its central directory; `tail` is the file's end, starting at `tailStart` in it.
 * Empty when the directory is not within the tail.
 */
export function zipEntryNames(tail: Uint8Array, tailStart = 0): string[] {
  const end = lastIndexOfU32(tail, ZIP_END);
  if (end < 0 || end + 22 > tail.length) return [];
  const entries = readU16(tail, end + 10);
  let offset = readU32(tail, end + 16);
  // torch writes zip64 archives: the directory's offset is then in the zip64 end record, which its locator names.
  if (offset === 0xffffffff && end >= 20 && readU32(tail, end - 20) === ZIP64_LOCATOR) {
    const record = Number(readU64(tail, end - 20 + 8)) - tailStart;
    if (record < 0 || record + 56 > tail.length || readU32(tail, record) !== ZIP64_END) return [];
    offset = Number(readU64(tail, record + 48));
  }
  let at = offset - tailStart;
  if (at < 0 || at >= end) return [];
  const names: string[] = [];
  const decoder = new TextDecoder();
  for (let i = 0; i < entries && at + 46 <= end; i++) {
    if (readU32(tail, at) !== ZIP_ENTRY) break;
    const nameLength = readU16(tail, at + 28);
    const extra = readU16(tail, at + 30);
    const comment = readU16(tail, at + 32);
    names.push(decoder.decode(tail.subarray(at + 46, at + 46 + nameLength)));
    at += 46 + nameLength + extra + comment;
  }
  return names;
}

function zipFormat(head: Uint8Array, tail: Uint8Array, tailStart: number): ModelFormat {
  let names = zipEntryNames(tail, tailStart);
  // No readable directory: the local headers at the start still name the first entries.
  if (names.length === 0) names = localEntryNames(head);
  const isTorchScript =
    names.some((n) => /^[^/]+\/code\//.test(n)) && names.some((n) => /^[^/]+\/constants\.pkl$/.test(n));
  return isTorchScript ? 'torchscript' : 'lightning-checkpoint';
}

/** Entry names from the local headers found at the start of a zip. */
function localEntryNames(head: Uint8Array): string[] {
  const names: string[] = [];
  const decoder = new TextDecoder();
  let at = 0;
  while (at + 30 <= head.length && readU32(head, at) === ZIP_LOCAL) {
    const compressed = readU32(head, at + 18);
    const nameLength = readU16(head, at + 26);
    const extra = readU16(head, at + 28);
    names.push(decoder.decode(head.subarray(at + 30, at + 30 + nameLength)));
    at += 30 + nameLength + extra + compressed;
  }
  return names;
}

function readEdges(path: string): { head: Uint8Array; tail: Uint8Array; tailStart: number } {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, EDGE_BYTES));
    readSync(fd, head, 0, head.length, 0);
    const tail = Buffer.alloc(Math.min(size, EDGE_BYTES));
    readSync(fd, tail, 0, tail.length, size - tail.length);
    return { head, tail, tailStart: size - tail.length };
  } finally {
    closeSync(fd);
  }
}

function readU16(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8);
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

function readU64(bytes: Uint8Array, at: number): bigint {
  return BigInt(readU32(bytes, at)) | (BigInt(readU32(bytes, at + 4)) << 32n);
}

function lastIndexOfU32(bytes: Uint8Array, value: number): number {
  for (let at = bytes.length - 22; at >= 0 && at >= bytes.length - 22 - 65535; at--) {
    if (readU32(bytes, at) === value) return at;
  }
  return -1;
}
