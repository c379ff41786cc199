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
import { createLogger } from '../lib/runtime/telemetry/logger.js';
import { BINARY_HEADER } from '../lib/runtime/codec/oip.js';
import { Runtime } from '../lib/runtime/runtime.js';
import { serveWorker } from './child.js';
import {
  MODELS,
  assertSameLogits,
  binaryLogits,
  lambdaBinaryLogits,
  importSynthesizedHandler,
  okInvoker,
  timeInterleaved,
  type MeasuredModel,
  type ModelPlan,
  type PlansInput,
  type Variant,
} from './interleaved.js';
import { apiGatewayV2Event, inputFor, oipBinaryBody, oipJsonBody } from './payloads.js';

export type VariantId =
  'raw' | 'hand-written' | 'json-parse' | 'handler-json' | 'handler-binary' | 'http-json' | 'http-binary';

export interface ModelResult extends MeasuredModel<VariantId> {
  readonly shape: readonly number[];
  readonly jsonBodyBytes: number;
  readonly binaryBodyBytes: number;
  /** Log lines the runtime wrote for one handler request (checked before measuring; must be ≥ 1). */
  readonly logLinesPerRequest: number;
}

export interface OverheadResult {
  readonly onnxruntime: string;
  readonly threads: number;
  readonly models: readonly ModelResult[];
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
  const { handler } = await importSynthesizedHandler(model.key, model.path, threads);
  const server = createHttpServer(runtime, { keepAliveTimeoutMs: 120_000 });
  const { port } = await listen(server, 0, '127.0.0.1');
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  const jsonBody = oipJsonBody(model, input);
  const jsonHeaders = { 'content-type': 'application/json' };
  const binary = oipBinaryBody(model, input);
  const jsonEvent = apiGatewayV2Event(jsonBody, jsonHeaders);
  const binaryEvent = apiGatewayV2Event(binary.body, binary.headers);
  const jsonBuffer = Buffer.from(jsonBody);

  const invoke = okInvoker(handler);
  const post = (body: Buffer, headers: Record<string, string>) => postOk(agent, port, body, headers);
  const handWritten = handWrittenHandler(session);

  const variants: Variant<VariantId>[] = [
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
      logits: async () => lambdaBinaryLogits(await invoke(binaryEvent)),
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
    await assertSameLogits(variants);
    const logLinesPerRequest = await countLogLines(() => invoke(jsonEvent));
    if (logLinesPerRequest < 1) throw new Error('the runtime wrote no log line for a request; is logging at INFO?');

    const timed = await timeInterleaved(model.key, variants, plan, progress, Math.ceil(plan.warmup / 4));
    return {
      model: model.key,
      path: model.path,
      shape: model.shape,
      jsonBodyBytes: jsonBuffer.length,
      binaryBodyBytes: binary.body.length,
      logLinesPerRequest,
      plan,
      // Warm-up included, as this scenario has always reported it.
      seconds: timed.warmupSeconds + timed.seconds,
      variants: timed.variants,
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

serveWorker<PlansInput, OverheadResult>(async (input, progress) => {
  const models: ModelResult[] = [];
  for (const plan of input.plans) models.push(await measureModel(plan, input.threads, progress));
  return { onnxruntime: ort.env.versions.node ?? 'unknown', threads: input.threads, models };
});
