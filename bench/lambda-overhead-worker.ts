/**
 * The `lambda-overhead` scenario's measuring side, run by bench/lambda-overhead.ts in a child process of the Node
 * that Lambda runs (22.x when found), stdout to the null device (the runtime logs at INFO, one JSON line per request,
 * and that cost is inside every Arclight number).
 *
 * Per model, three variants answer the same input, interleaved in round-robin blocks (the order rotates each round):
 * raw `session.run` on a prebuilt tensor; a hand-written binary Lambda (base64 body → tensor → `session.run` → the
 * first output's bytes as base64, no validation, no logging); Arclight's handler as synth bundles it, on the OIP
 * binary body with binary outputs. Every variant's logits are checked equal before anything is timed.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from 'aws-lambda';
import type ortTypes from 'onnxruntime-node';
import { ENV } from '../lib/contract.js';
import { BUNDLE_FILE, buildLambdaImageContext } from '../lib/constructs/images/lambda-image-context.js';
import { BINARY_HEADER } from '../lib/runtime/codec/oip.js';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';
import type { LambdaHandler } from '../lib/runtime/transports/lambda-adapter.js';
import { serveWorker } from './child.js';
import {
  DIGITS,
  MOBILENET,
  apiGatewayV2Event,
  inputFor,
  lambdaContext,
  oipBinaryBody,
  type BenchModel,
} from './payloads.js';
import { median, summarize, type Summary } from './stats.js';

export interface LambdaPlan {
  readonly model: 'digits' | 'mobilenet';
  readonly warmup: number;
  readonly rounds: number;
  readonly block: number;
}

export interface LambdaOverheadInput {
  readonly threads: number;
  readonly plans: readonly LambdaPlan[];
}

export type LambdaVariantId = 'raw' | 'hand-written' | 'handler';

export interface LambdaVariantResult {
  readonly id: LambdaVariantId;
  readonly label: string;
  readonly summary: Summary;
  /** Each round's block median, in round order. */
  readonly roundP50Ms: readonly number[];
}

export interface LambdaModelResult {
  readonly model: string;
  readonly path: string;
  readonly rawBodyBytes: number;
  readonly oipBodyBytes: number;
  readonly plan: LambdaPlan;
  readonly seconds: number;
  readonly variants: readonly LambdaVariantResult[];
}

export interface LambdaOverheadResult {
  readonly node: string;
  readonly onnxruntime: string;
  readonly threads: number;
  readonly models: readonly LambdaModelResult[];
}

interface Variant {
  readonly id: LambdaVariantId;
  readonly label: string;
  readonly call: () => Promise<unknown>;
  readonly logits: () => Promise<Float32Array>;
}

const MODELS: Record<LambdaPlan['model'], BenchModel> = { digits: DIGITS, mobilenet: MOBILENET };

/**
 * The synthesized bundle's handler, configured by the deployed env contract (read at import, so set just before),
 * and the onnxruntime-node beside it: raw and hand-written runs use that same copy, as one process on Lambda would
 * (a second copy of the native library in the process is a confound no deployment has).
 */
async function importSynthesizedHandler(
  apiName: string,
  modelPath: string,
  threads: number,
): Promise<{ handler: LambdaHandler; ort: typeof ortTypes }> {
  const dir = buildLambdaImageContext({ arch: process.arch === 'arm64' ? 'arm64' : 'x64' });
  Object.assign(process.env, {
    [ENV.apiName]: apiName,
    [ENV.modelUri]: resolve(modelPath),
    [ENV.intraOpThreads]: String(threads),
    [ENV.logLevel]: 'INFO',
  });
  const bundle = join(dir, BUNDLE_FILE);
  const { handler } = (await import(pathToFileURL(bundle).href)) as { handler: LambdaHandler };
  const ort = createRequire(bundle)('onnxruntime-node') as typeof ortTypes;
  return { handler, ort };
}

/**
 * What a user writes for a binary Lambda without a framework: the body's floats from base64 (copied only when the
 * decoded bytes sit at an offset a Float32Array cannot view), one run, the first output's bytes back as base64.
 */
function handWrittenHandler(
  ort: typeof ortTypes,
  session: ortTypes.InferenceSession,
  inputName: string,
  shape: readonly number[],
) {
  const outputName = session.outputNames[0]!;
  return async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResult> => {
    const bytes = Buffer.from(event.body!, 'base64');
    const data =
      bytes.byteOffset % 4 === 0
        ? new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4)
        : new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    const results = await session.run({ [inputName]: new ort.Tensor('float32', data, [...shape]) });
    const out = results[outputName]!.data as Float32Array;
    return {
      statusCode: 200,
      headers: { 'content-type': 'application/octet-stream' },
      body: Buffer.from(out.buffer, out.byteOffset, out.byteLength).toString('base64'),
      isBase64Encoded: true,
    };
  };
}

function floats(bytes: Buffer): Float32Array {
  const out = new Float32Array(bytes.length / 4);
  new Uint8Array(out.buffer).set(bytes);
  return out;
}

async function measureModel(
  plan: LambdaPlan,
  threads: number,
  progress: (text: string) => void,
): Promise<{ result: LambdaModelResult; onnxruntime: string }> {
  const model = MODELS[plan.model];
  const input = inputFor(model);
  const { handler, ort } = await importSynthesizedHandler(model.key, model.path, threads);
  const session = await ort.InferenceSession.create(
    readFileSync(model.path),
    onnxSessionOptions({ intraOpThreads: threads }),
  );
  const outputName = session.outputNames[0]!;
  const feeds = { [model.inputName]: new ort.Tensor('float32', input, [...model.shape]) };
  const context = lambdaContext();
  const handWritten = handWrittenHandler(ort, session, model.inputName, model.shape);
  const rawBody = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const rawEvent = apiGatewayV2Event(rawBody, { 'content-type': 'application/octet-stream' });
  const oip = oipBinaryBody(model, input);
  const oipEvent = apiGatewayV2Event(oip.body, oip.headers);
  const invoke = async (): Promise<APIGatewayProxyResult> => {
    const result = await handler(oipEvent, context);
    if (result.statusCode !== 200) throw new Error(`handler answered ${result.statusCode}: ${result.body}`);
    return result;
  };

  const variants: Variant[] = [
    {
      id: 'raw',
      label: 'raw session.run, prebuilt tensor',
      call: () => session.run(feeds),
      logits: async () => ((await session.run(feeds))[outputName]!.data as Float32Array).slice(),
    },
    {
      id: 'hand-written',
      label: 'hand-written binary Lambda (base64 → run → base64)',
      call: () => handWritten(rawEvent),
      logits: async () => floats(Buffer.from((await handWritten(rawEvent)).body, 'base64')),
    },
    {
      id: 'handler',
      label: 'Arclight Lambda handler (synth bundle), OIP binary',
      call: invoke,
      logits: async () => {
        const result = await invoke();
        const length = Number(result.headers?.[BINARY_HEADER]);
        if (!Number.isInteger(length)) throw new Error(`the handler's answer lacks ${BINARY_HEADER}`);
        return floats(Buffer.from(result.body, 'base64').subarray(length));
      },
    },
  ];

  try {
    const expected = await variants[0]!.logits();
    for (const variant of variants) {
      const got = await variant.logits();
      if (got.length !== expected.length || got.some((v, i) => Math.abs(v - expected[i]!) > 1e-4)) {
        throw new Error(`${variant.id} answers other logits than raw`);
      }
    }
    progress(`${model.key}: warm-up (${plan.warmup} calls per variant)`);
    for (let i = 0; i < plan.warmup; i++) for (const variant of variants) await variant.call();
    const samples = new Map<LambdaVariantId, number[]>(variants.map((v) => [v.id, []]));
    const roundP50 = new Map<LambdaVariantId, number[]>(variants.map((v) => [v.id, []]));
    const started = performance.now();
    for (let round = 0; round < plan.rounds; round++) {
      for (let k = 0; k < variants.length; k++) {
        const variant = variants[(round + k) % variants.length]!;
        const block: number[] = [];
        for (let i = 0; i < plan.block; i++) {
          const t0 = performance.now();
          await variant.call();
          block.push(performance.now() - t0);
        }
        samples.get(variant.id)!.push(...block);
        roundP50.get(variant.id)!.push(median(block));
      }
      progress(`${model.key}: round ${round + 1}/${plan.rounds}`);
    }
    const result: LambdaModelResult = {
      model: model.key,
      path: model.path,
      rawBodyBytes: rawBody.length,
      oipBodyBytes: oip.body.length,
      plan,
      seconds: (performance.now() - started) / 1000,
      variants: variants.map((v) => ({
        id: v.id,
        label: v.label,
        summary: summarize(samples.get(v.id)!),
        roundP50Ms: roundP50.get(v.id)!,
      })),
    };
    return { result, onnxruntime: ort.env.versions.node ?? 'unknown' };
  } finally {
    await session.release();
  }
}

serveWorker<LambdaOverheadInput, LambdaOverheadResult>(async (input, progress) => {
  const models: LambdaModelResult[] = [];
  let version = 'unknown';
  for (const plan of input.plans) {
    const { result, onnxruntime } = await measureModel(plan, input.threads, progress);
    models.push(result);
    version = onnxruntime;
  }
  return { node: process.version, onnxruntime: version, threads: input.threads, models };
});
