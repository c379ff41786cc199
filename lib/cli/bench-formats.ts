/**
 * `arclight bench formats`: the same model as ONNX, TorchScript and a Lightning checkpoint, each served through the
 * real front (runtime + node:http on loopback) and sent the same Open Inference Protocol request (binary tensors). Prints whether their
 * outputs agree (max abs diff against the first format) and latency p50/p99 and throughput per format, so a user picks
 * the fastest way for their model. With a TorchScript model it also times torch called directly in Python on the same
 * input: the executor's overhead.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { ModelFormat, TensorInfo } from '../predictor.js';
import { createHttpServer, listen } from '../runtime/transports/http-server.js';
import { createLogger } from '../runtime/telemetry/logger.js';
import { makeTensor } from '../runtime/executors/model.js';
import { BINARY_HEADER } from '../runtime/codec/oip.js';
import { TENSOR_TYPE_OF, binaryElements, isDatatype } from '../runtime/codec/tensor-types.js';
import { Runtime } from '../runtime/runtime.js';
import { TorchProcess } from '../runtime/executors/torch-process.js';
import { UsageError } from './fail.js';

export interface BenchFormatsOptions {
  readonly onnx?: string;
  readonly torchscript?: string;
  readonly checkpoint?: string;
  /** The checkpoint's module file and class. */
  readonly module?: string;
  readonly className?: string;
  /** An OIP inference request (JSON, or @file): `{"inputs":[{"name","datatype","shape","data"}]}`. */
  readonly input: string;
  /** Timed requests per format. */
  readonly requests: number;
  /** Requests in flight at once. */
  readonly concurrency: number;
  /** Largest max abs diff that counts as agreement. */
  readonly tolerance: number;
  /** Intra-op threads for every format (onnxruntime and torch alike). */
  readonly threads?: number;
}

export interface FormatRow {
  readonly format: ModelFormat;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly requestsPerSecond: number;
  /** Against the first format's outputs (0 for the first). */
  readonly maxAbsDiff: number;
}

export interface BenchFormatsResult {
  readonly rows: readonly FormatRow[];
  readonly agree: boolean;
  /** TorchScript called directly in Python on the same input, and the front's p50 over it. */
  readonly direct?: { readonly p50Ms: number; readonly overheadRatio: number };
}

interface InferDocument {
  inputs: { name: string; datatype: string; shape: number[]; data: unknown }[];
}

const WARM_UP_REQUESTS = 20;

export async function benchFormats(options: BenchFormatsOptions): Promise<BenchFormatsResult> {
  const request = parseInput(options.input);
  const models = modelsOf(options);
  const rows: FormatRow[] = [];
  let reference: number[] | undefined;
  for (const { format, path, torch } of models) {
    const measured = await measureFormat(format, path, torch, request, options);
    reference ??= measured.output;
    rows.push({ ...measured.row, maxAbsDiff: maxAbsDiff(measured.output, reference) });
  }
  const agree = rows.every((r) => r.maxAbsDiff <= options.tolerance);
  const result: BenchFormatsResult = { rows, agree };
  if (!options.torchscript) return result;
  const directP50 = await torchDirectP50(options.torchscript, request, options);
  const front = rows.find((r) => r.format === 'torchscript')!;
  return { ...result, direct: { p50Ms: directP50, overheadRatio: front.p50Ms / directP50 } };
}

/** The table and the agreement line, as the command prints them. */
export function formatReport(result: BenchFormatsResult, tolerance: number): string {
  const header = ['format', 'p50 ms', 'p99 ms', 'req/s', 'max |Δ| vs first'];
  const lines = result.rows.map((r) => [
    r.format,
    r.p50Ms.toFixed(3),
    r.p99Ms.toFixed(3),
    r.requestsPerSecond.toFixed(0),
    r.maxAbsDiff.toExponential(2),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const row = (cells: readonly string[]): string =>
    `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `| ${widths.map((w, i) => (i === 0 ? '-'.repeat(w) : `${'-'.repeat(w - 1)}:`)).join(' | ')} |`;
  const worst = Math.max(...result.rows.map((r) => r.maxAbsDiff));
  const out = [row(header), rule, ...lines.map(row)];
  out.push(
    `agreement: ${result.agree ? 'pass' : 'FAIL'} (max |Δ| ${worst.toExponential(2)} ${result.agree ? '≤' : '>'} ${tolerance})`,
  );
  if (result.direct) {
    out.push(
      `torch executor overhead: torchscript through the front p50 / torch in Python p50 (${result.direct.p50Ms.toFixed(3)} ms) = ${result.direct.overheadRatio.toFixed(2)}`,
    );
  }
  return out.join('\n');
}

interface ModelToServe {
  readonly format: ModelFormat;
  readonly path: string;
  readonly torch?: { readonly module: string; readonly className: string };
}

function modelsOf(options: BenchFormatsOptions): ModelToServe[] {
  const models: ModelToServe[] = [];
  if (options.onnx) models.push({ format: 'onnx', path: options.onnx });
  if (options.torchscript) models.push({ format: 'torchscript', path: options.torchscript });
  if (options.checkpoint) {
    if (!options.module || !options.className) {
      throw new UsageError('--checkpoint needs --module and --class', 'Name the Python file and class of the model');
    }
    models.push({
      format: 'lightning-checkpoint',
      path: options.checkpoint,
      torch: { module: options.module, className: options.className },
    });
  }
  if (models.length === 0) throw new UsageError('give at least one of --onnx, --torchscript, --checkpoint');
  return models;
}

function parseInput(text: string): InferDocument {
  const source = text.startsWith('@') ? readFileSync(text.slice(1), 'utf8') : text;
  let value: unknown;
  try {
    value = JSON.parse(source);
  } catch (error) {
    throw new UsageError(`--input is not valid JSON: ${(error as Error).message}`, INPUT_HINT);
  }
  const inputs = (value as Partial<InferDocument> | null)?.inputs;
  if (!Array.isArray(inputs) || inputs.length === 0) throw new UsageError('--input has no "inputs" list', INPUT_HINT);
  return value as InferDocument;
}

const INPUT_HINT = 'Give an Open Inference Protocol request: \'{"inputs":[{"name","datatype","shape","data"}]}\'';

/**
 * The request as binary tensors (the extension large tensors should use: JSON parsing would cost more than the
 * model), its inputs renamed by position to the model's own names where they differ (ONNX's `image` is TorchScript's
 * `x`): the same tensors reach every format.
 */
function forModel(request: InferDocument, inputs: readonly TensorInfo[]): Body {
  const names = new Set(inputs.map((i) => i.name));
  const parts: Uint8Array[] = [];
  const described = request.inputs.map((input, i) => {
    const name = names.has(input.name) || inputs[i] === undefined ? input.name : inputs[i]!.name;
    if (!isDatatype(input.datatype)) throw new UsageError(`--input '${input.name}' has datatype ${input.datatype}`);
    const tensor = makeTensor(TENSOR_TYPE_OF[input.datatype], flatten(input.data), input.shape);
    const bytes = binaryElements(tensor);
    parts.push(bytes);
    const { datatype, shape } = input;
    return { name, datatype, shape, parameters: { binary_data_size: bytes.byteLength } };
  });
  const header = Buffer.from(JSON.stringify({ inputs: described }));
  return { bytes: Buffer.concat([header, ...parts]), headerLength: header.length };
}

interface Body {
  readonly bytes: Buffer;
  readonly headerLength: number;
}

function flatten(value: unknown): number[] {
  return Array.isArray(value) ? value.flatMap(flatten) : [Number(value)];
}

async function measureFormat(
  format: ModelFormat,
  path: string,
  torch: ModelToServe['torch'],
  request: InferDocument,
  options: BenchFormatsOptions,
): Promise<{ row: Omit<FormatRow, 'maxAbsDiff'>; output: number[] }> {
  const runtime = new Runtime({
    apiName: 'bench',
    modelUri: path,
    modelFormat: format,
    ...(torch ? { torch } : {}),
    ...(options.threads === undefined ? {} : { intraOpThreads: options.threads }),
    logger: createLogger('bench', 'ERROR'),
    logStartupFailure: false,
  });
  const server = createHttpServer(runtime, {});
  try {
    const address = await listen(server, 0, '127.0.0.1');
    await runtime.start();
    const url = `http://127.0.0.1:${address.port}/v2/models/bench/infer`;
    const body = forModel(request, runtime.describe()['inputs'] as TensorInfo[]);
    const output = await infer(url, body);
    for (let i = 0; i < WARM_UP_REQUESTS; i++) await infer(url, body);
    const latencies: number[] = [];
    let next = 0;
    const started = performance.now();
    const worker = async (): Promise<void> => {
      while (next++ < options.requests) {
        const t0 = performance.now();
        await infer(url, body);
        latencies.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: options.concurrency }, worker));
    const seconds = (performance.now() - started) / 1000;
    latencies.sort((a, b) => a - b);
    return {
      row: {
        format,
        p50Ms: percentile(latencies, 0.5),
        p99Ms: percentile(latencies, 0.99),
        requestsPerSecond: latencies.length / seconds,
      },
      output,
    };
  } finally {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await runtime.close().catch(() => undefined);
  }
}

/** One inference; the first output's values. */
async function infer(url: string, body: Body): Promise<number[]> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', [BINARY_HEADER]: String(body.headerLength) },
    body: body.bytes,
  });
  const text = await response.text();
  if (response.status !== 200) throw new Error(`inference answered ${response.status}: ${text.slice(0, 300)}`);
  const { outputs } = JSON.parse(text) as { outputs: { data: number[] }[] };
  return outputs[0]!.data.map(Number);
}

function maxAbsDiff(values: readonly number[], reference: readonly number[]): number {
  if (values.length !== reference.length) return Number.POSITIVE_INFINITY;
  let worst = 0;
  for (let i = 0; i < values.length; i++) worst = Math.max(worst, Math.abs(values[i]! - reference[i]!));
  return worst;
}

function percentile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

const DIRECT_SCRIPT = `
import json, sys, time
import torch
spec = json.load(open(sys.argv[1]))
if spec["threads"]: torch.set_num_threads(spec["threads"])
torch.set_num_interop_threads(1)
model = torch.jit.load(spec["path"], map_location="cpu").eval()
dtypes = {"FP32": torch.float32, "FP64": torch.float64, "FP16": torch.float16, "INT64": torch.int64,
          "INT32": torch.int32, "INT16": torch.int16, "INT8": torch.int8, "UINT8": torch.uint8, "BOOL": torch.bool}
def flat(v):
    return [x for item in v for x in flat(item)] if isinstance(v, list) else [v]
args = [torch.tensor(flat(i["data"]), dtype=dtypes[i["datatype"]]).reshape(i["shape"]) for i in spec["inputs"]]
times = []
with torch.inference_mode():
    for n in range(spec["warmUp"] + spec["requests"]):
        t0 = time.perf_counter(); model(*args); t1 = time.perf_counter()
        if n >= spec["warmUp"]: times.append((t1 - t0) * 1000)
times.sort()
print(json.dumps({"p50": times[len(times) // 2]}))
`;

/** TorchScript called directly in Python (no front, no protocol) on the same input: its p50, ms. */
async function torchDirectP50(path: string, request: InferDocument, options: BenchFormatsOptions): Promise<number> {
  const probe = await TorchProcess.start();
  const python = probe.python;
  await probe.stop(0);
  const dir = mkdtempSync(join(tmpdir(), 'arclight-bench-'));
  try {
    const spec = join(dir, 'spec.json');
    writeFileSync(
      spec,
      JSON.stringify({
        path,
        inputs: request.inputs,
        threads: options.threads ?? null,
        warmUp: WARM_UP_REQUESTS,
        requests: options.requests,
      }),
    );
    const { stdout } = await promisify(execFile)(python, ['-c', DIRECT_SCRIPT, spec], { maxBuffer: 1 << 20 });
    return (JSON.parse(stdout) as { p50: number }).p50;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
