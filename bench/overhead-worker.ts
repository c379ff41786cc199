/**
 * The `overhead` scenario's measuring side, run by bench/overhead.ts in a child process whose stdout is the
 * null device (the runtime logs at INFO, one JSON line per request, and that cost is part of every number).
 *
 * Per model, every variant answers the same input; variants are interleaved in round-robin blocks (the order
 * rotates each round) after a warm-up. No GC is forced between blocks: a forced full GC was seen to slow the
 * next block's handler calls by half again (digits handler p50 93 → 140 µs), which no server ever sees.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from 'aws-lambda';
import ort from 'onnxruntime-node';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';
import { createHttpServer, listen } from '../lib/runtime/transports/http-server.js';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ENV } from '../lib/contract.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../lib/constructs/images/lambda-image-context.js';
import type { LambdaHandler } from '../lib/runtime/transports/lambda-adapter.js';
import { createLogger } from '../lib/runtime/telemetry/logger.js';
import { BINARY_HEADER } from '../lib/runtime/codec/oip.js';
import { Runtime } from '../lib/runtime/runtime.js';
import { serveWorker } from './child.js';
import {
  DIGITS,
  MOBILENET,
  apiGatewayV2Event,
  inputFor,
  lambdaContext,
  oipBinaryBody,
  oipJsonBody,
  type BenchModel,
} from './payloads.js';
import { median, summarize, type Summary } from './stats.js';

export interface ModelPlan {
  readonly model: 'digits' | 'mobilenet';
  /** Unmeasured calls per variant before measuring. */
  readonly warmup: number;
  readonly rounds: number;
  /** Consecutive measured calls of one variant inside a round. */
  readonly block: number;
}

export interface OverheadInput {
  readonly threads: number;
  readonly plans: readonly ModelPlan[];
}

export type VariantId =
  'raw' | 'hand-written' | 'json-parse' | 'handler-json' | 'handler-binary' | 'http-json' | 'http-binary';

export interface VariantResult {
  readonly id: VariantId;
  readonly label: string;
  readonly summary: Summary;
  /** The median of each round's block, in round order: how the variant moved while the machine's load did. */
  readonly roundP50Ms: readonly number[];
}

export interface ModelResult {
  readonly model: string;
  readonly path: string;
  readonly shape: readonly number[];
  readonly jsonBodyBytes: number;
  readonly binaryBodyBytes: number;
  /** Log lines the runtime wrote for one handler request (checked before measuring; must be ≥ 1). */
  readonly logLinesPerRequest: number;
  readonly plan: ModelPlan;
  readonly seconds: number;
  readonly variants: readonly VariantResult[];
}

export interface OverheadResult {
  readonly onnxruntime: string;
  readonly threads: number;
  readonly models: readonly ModelResult[];
}

interface Variant {
  readonly id: VariantId;
  readonly label: string;
  /** One call; throws unless the answer is a success. */
  readonly call: () => Promise<unknown>;
  /** The output logits this variant answers with, to check every variant computes the same thing. */
  readonly logits?: () => Promise<Float32Array>;
}

const MODELS: Record<ModelPlan['model'], BenchModel> = { digits: DIGITS, mobilenet: MOBILENET };

/**
 * The Lambda handler as `cdk synth` builds it: the esbuild bundle of the image's build context, configured by the
 * deployed env contract (read at import, so set just before), with onnxruntime loaded from beside the bundle.
 */
async function importSynthesizedHandler(apiName: string, modelPath: string, threads: number): Promise<LambdaHandler> {
  const dir = buildLambdaImageContext({ arch: process.arch === 'arm64' ? 'arm64' : 'x64' });
  Object.assign(process.env, {
    [ENV.apiName]: apiName,
    [ENV.modelUri]: resolve(modelPath),
    [ENV.intraOpThreads]: String(threads),
    [ENV.logLevel]: 'INFO',
  });
  const bundle = pathToFileURL(join(dir, BUNDLE_FILE));
  const { handler } = (await import(bundle.href)) as { handler: LambdaHandler };
  return handler;
}

async function measureModel(plan: ModelPlan, threads: number, progress: (text: string) => void): Promise<ModelResult> {
  const model = MODELS[plan.model];
  const bytes = readFileSync(model.path);
  const input = inputFor(model);

  // Raw: onnxruntime-node on a prebuilt tensor, a session made from the same bytes with the same options.
  const session = await ort.InferenceSession.create(bytes, onnxSessionOptions({ intraOpThreads: threads }));
  const outputName = session.outputNames[0]!;
  const feeds = { [model.inputName]: new ort.Tensor('float32', input, [...model.shape]) };

  // Arclight: the runtime with the default (OIP) predictor, logging at INFO to this process's stdout.
  const runtime = new Runtime({
    apiName: model.key,
    modelUri: model.path,
    intraOpThreads: threads,
    logger: createLogger(model.key, 'INFO'),
  });
  await runtime.start();
  const handler = await importSynthesizedHandler(model.key, model.path, threads);
  const context = lambdaContext();
  const server = createHttpServer(runtime, { keepAliveTimeoutMs: 120_000 });
  const { port } = await listen(server, 0, '127.0.0.1');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  const jsonBody = oipJsonBody(model, input);
  const jsonHeaders = { 'content-type': 'application/json' };
  const binary = oipBinaryBody(model, input);
  const jsonEvent = apiGatewayV2Event(jsonBody, jsonHeaders);
  const binaryEvent = apiGatewayV2Event(binary.body, binary.headers);
  const jsonBuffer = Buffer.from(jsonBody);

  const invoke = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResult> => {
    const result = await handler(event, context);
    if (result.statusCode !== 200) throw new Error(`handler answered ${result.statusCode}: ${result.body}`);
    return result;
  };
  const post = (body: Buffer, headers: Record<string, string>) => postOk(agent, port, body, headers);
  const handWritten = handWrittenHandler(session);

  const variants: Variant[] = [
    {
      id: 'raw',
      label: 'raw session.run, prebuilt tensor',
      call: () => session.run(feeds),
      logits: async () => (await session.run(feeds))[outputName]!.data as Float32Array,
    },
    {
      id: 'hand-written',
      label: 'hand-written Lambda, JSON (no Arclight)',
      call: () => handWritten(jsonEvent),
      logits: async () => jsonLogits((await handWritten(jsonEvent)).body),
    },
    {
      id: 'json-parse',
      label: 'JSON.parse(event.body) alone',
      call: () => Promise.resolve(JSON.parse(jsonEvent.body!)),
    },
    {
      id: 'handler-json',
      label: 'Arclight Lambda handler (synth bundle), OIP JSON',
      call: () => invoke(jsonEvent),
      logits: async () => jsonLogits((await invoke(jsonEvent)).body),
    },
    {
      id: 'handler-binary',
      label: 'Arclight Lambda handler (synth bundle), OIP binary',
      call: () => invoke(binaryEvent),
      logits: async () => {
        const result = await invoke(binaryEvent);
        return binaryLogits(Buffer.from(result.body, 'base64'), result.headers?.[BINARY_HEADER]);
      },
    },
    {
      id: 'http-json',
      label: 'Arclight node:http, OIP JSON',
      call: () => post(jsonBuffer, jsonHeaders),
      logits: async () => jsonLogits((await post(jsonBuffer, jsonHeaders)).body.toString('utf8')),
    },
    {
      id: 'http-binary',
      label: 'Arclight node:http, OIP binary',
      call: () => post(binary.body, binary.headers),
      logits: async () => {
        const response = await post(binary.body, binary.headers);
        return binaryLogits(response.body, response.headers[BINARY_HEADER]);
      },
    },
  ];

  try {
    // Every variant must compute what raw computes, and the runtime must really log each request.
    const expected = (await variants[0]!.logits!()).slice();
    for (const variant of variants) {
      if (!variant.logits) continue;
      const got = await variant.logits();
      const diff = maxAbsDiff(expected, got);
      if (!(diff <= 1e-4)) throw new Error(`${variant.id} answers other logits than raw (max |Δ| ${diff})`);
    }
    const logLinesPerRequest = await countLogLines(() => invoke(jsonEvent));
    if (logLinesPerRequest < 1) throw new Error('the runtime wrote no log line for a request; is logging at INFO?');

    const samples = new Map<VariantId, number[]>(variants.map((v) => [v.id, []]));
    const roundP50 = new Map<VariantId, number[]>(variants.map((v) => [v.id, []]));
    const started = performance.now();

    progress(`${model.key}: warm-up (${plan.warmup} calls per variant)`);
    const warmBlock = Math.max(1, Math.ceil(plan.warmup / 4));
    for (let done = 0; done < plan.warmup; done += warmBlock) {
      for (const variant of variants) {
        for (let i = 0; i < Math.min(warmBlock, plan.warmup - done); i++) await variant.call();
      }
    }

    for (let round = 0; round < plan.rounds; round++) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(round + k) % variants.length]!;
        const into = samples.get(variant.id)!;
        const block: number[] = [];
        for (let i = 0; i < plan.block; i++) {
          const t0 = performance.now();
          await variant.call();
          block.push(performance.now() - t0);
        }
        into.push(...block);
        roundP50.get(variant.id)!.push(median(block));
      }
      if ((round + 1) % Math.max(1, Math.round(plan.rounds / 10)) === 0 || round + 1 === plan.rounds) {
        progress(`${model.key}: round ${round + 1}/${plan.rounds}`);
      }
    }

    return {
      model: model.key,
      path: model.path,
      shape: model.shape,
      jsonBodyBytes: jsonBuffer.length,
      binaryBodyBytes: binary.body.length,
      logLinesPerRequest,
      plan,
      seconds: (performance.now() - started) / 1000,
      variants: variants.map((v) => ({
        id: v.id,
        label: v.label,
        summary: summarize(samples.get(v.id)!),
        roundP50Ms: roundP50.get(v.id)!,
      })),
    };
  } finally {
    agent.destroy();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await session.release();
  }
}

/**
 * What a user would write for the same event without Arclight: parse the JSON, copy the numbers into a typed
 * array, run the session, stringify the output. No validation, no logging.
 */
function handWrittenHandler(session: ort.InferenceSession) {
  return async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResult> => {
    const request = JSON.parse(event.body!) as { inputs: { name: string; shape: number[]; data: number[] }[] };
    const input = request.inputs[0]!;
    const results = await session.run({
      [input.name]: new ort.Tensor('float32', Float32Array.from(input.data), input.shape),
    });
    const outputs = Object.entries(results).map(([name, tensor]) => ({
      name,
      datatype: 'FP32',
      shape: tensor.dims,
      data: Array.from(tensor.data as Float32Array),
    }));
    return { statusCode: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outputs }) };
  };
}

interface HttpAnswer {
  readonly body: Buffer;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** One POST / over the keep-alive agent; rejects unless the answer is 200. */
function postOk(agent: Agent, port: number, body: Buffer, headers: Record<string, string>): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path: '/',
        agent,
        headers: { ...headers, 'content-length': String(body.length) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', reject);
        res.on('end', () => {
          const answer = Buffer.concat(chunks);
          if (res.statusCode !== 200) reject(new Error(`server answered ${res.statusCode}: ${answer.toString()}`));
          else resolve({ body: answer, headers: res.headers });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function jsonLogits(body: string): Float32Array {
  const parsed = JSON.parse(body) as { outputs: { data: number[] }[] };
  return Float32Array.from(parsed.outputs[0]!.data);
}

function binaryLogits(body: Buffer, headerLength: unknown): Float32Array {
  const length = Number(headerLength);
  if (!Number.isInteger(length)) throw new Error(`binary answer lacks ${BINARY_HEADER}`);
  const bytes = body.subarray(length);
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) return Number.POSITIVE_INFINITY;
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i]! - b[i]!));
  return max;
}

/** The runtime's log lines written to stdout while `work` runs (they go on to the null device as usual). */
async function countLogLines(work: () => Promise<unknown>): Promise<number> {
  const write = process.stdout.write;
  let lines = 0;
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    if (typeof chunk === 'string' && chunk.startsWith('{"level"')) lines++;
    return (write as (...args: unknown[]) => boolean).call(process.stdout, chunk, ...rest);
  }) as typeof process.stdout.write;
  try {
    await work();
  } finally {
    process.stdout.write = write;
  }
  return lines;
}

serveWorker<OverheadInput, OverheadResult>(async (input, progress) => {
  const models: ModelResult[] = [];
  for (const plan of input.plans) models.push(await measureModel(plan, input.threads, progress));
  return { onnxruntime: ort.env.versions.node ?? 'unknown', threads: input.threads, models };
});
