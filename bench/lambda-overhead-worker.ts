/**
 * The `lambda-overhead` scenario's measuring side, run by bench/lambda-overhead.ts in a child process of the Node
 * that Lambda runs (22.x when found), stdout to the null device (the runtime logs at INFO, one JSON line per request,
 * and that cost is inside every Arclight number).
 *
 * Per model, three variants answer the same input, interleaved in round-robin blocks (the order rotates each round):
 * raw `session.run` on a prebuilt tensor; a hand-written binary Lambda (base64 body → tensor → `session.run` → the
 * first output's bytes as base64, no validation, no logging); Arclight's handler as synth bundles it, on the OIP
 * binary body with binary outputs; and that handler as deployed, where Lambda's environment turns metrics on (an EMF
 * line written after every invocation), a second instance of the same bundle. Every variant's logits are checked equal
 * before anything is timed.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { APIGatewayProxyEventV2, APIGatewayProxyResult } from 'aws-lambda';
import type ortTypes from 'onnxruntime-node';
import { onnxSessionOptions } from '../lib/runtime/executors/onnx-executor.js';
import { serveWorker } from './child.js';
import {
  MODELS,
  assertSameLogits,
  lambdaBinaryLogits,
  float32s,
  importSynthesizedHandler,
  okInvoker,
  timeInterleaved,
  type MeasuredModel,
  type ModelPlan,
  type PlansInput,
  type Variant,
} from './interleaved.js';
import { apiGatewayV2Event, inputFor, oipBinaryBody } from './payloads.js';

export type LambdaVariantId = 'raw' | 'hand-written' | 'handler' | 'deployed';

export interface LambdaModelResult extends MeasuredModel<LambdaVariantId> {
  readonly rawBodyBytes: number;
  readonly oipBodyBytes: number;
}

export interface LambdaOverheadResult {
  readonly node: string;
  readonly onnxruntime: string;
  readonly threads: number;
  readonly models: readonly LambdaModelResult[];
}

/**
 * The onnxruntime-node beside the synthesized bundle: raw and hand-written runs use that same copy, as one process on
 * Lambda would (a second copy of the native library in the process is a confound no deployment has).
 */
function ortBeside(bundle: string): typeof ortTypes {
  return createRequire(bundle)('onnxruntime-node') as typeof ortTypes;
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

async function measureModel(
  plan: ModelPlan,
  threads: number,
  progress: (text: string) => void,
): Promise<{ result: LambdaModelResult; onnxruntime: string }> {
  const model = MODELS[plan.model];
  const input = inputFor(model);
  const { handler, bundle } = await importSynthesizedHandler(model.key, model.path, threads);
  const deployed = await importSynthesizedHandler(model.key, model.path, threads, {
    bundle,
    instance: 'deployed',
    extraEnv: { AWS_LAMBDA_FUNCTION_NAME: `bench-${model.key}` },
  });
  const ort = ortBeside(bundle);
  const newSession = (): Promise<ortTypes.InferenceSession> =>
    ort.InferenceSession.create(readFileSync(model.path), onnxSessionOptions({ intraOpThreads: threads }));
  const session = await newSession();
  const outputName = session.outputNames[0]!;
  const feeds = { [model.inputName]: new ort.Tensor('float32', input, [...model.shape]) };
  // A session of its own, as Arclight's handler has: sharing raw's, the hand-written handler found raw's weights
  // still in the CPU's caches at the start of each block while Arclight's handler found its own evicted.
  const handWritten = handWrittenHandler(ort, await newSession(), model.inputName, model.shape);
  const rawBody = Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  const rawEvent = apiGatewayV2Event(rawBody, { 'content-type': 'application/octet-stream' });
  const oip = oipBinaryBody(model, input);
  const oipEvent = apiGatewayV2Event(oip.body, oip.headers);
  const invoke = okInvoker(handler);
  const invokeDeployed = okInvoker(deployed.handler);

  const variants: Variant<LambdaVariantId>[] = [
    {
      id: 'raw',
      label: 'raw session.run, prebuilt tensor',
      call: () => session.run(feeds),
      logits: async () => (await session.run(feeds))[outputName]!.data as Float32Array,
    },
    {
      id: 'hand-written',
      label: 'hand-written binary Lambda (base64 → run → base64)',
      call: () => handWritten(rawEvent),
      logits: async () => float32s(Buffer.from((await handWritten(rawEvent)).body, 'base64')),
    },
    {
      id: 'handler',
      label: 'Arclight Lambda handler (synth bundle), OIP binary',
      call: () => invoke(oipEvent),
      logits: async () => lambdaBinaryLogits(await invoke(oipEvent)),
    },
    {
      id: 'deployed',
      label: 'Arclight Lambda handler as deployed (+ EMF metrics per invocation)',
      call: () => invokeDeployed(oipEvent),
      logits: async () => lambdaBinaryLogits(await invokeDeployed(oipEvent)),
    },
  ];

  try {
    await assertSameLogits(variants);
    const timed = await timeInterleaved(model.key, variants, plan, progress);
    const result: LambdaModelResult = {
      model: model.key,
      path: model.path,
      rawBodyBytes: rawBody.length,
      oipBodyBytes: oip.body.length,
      plan,
      seconds: timed.seconds,
      variants: timed.variants,
    };
    return { result, onnxruntime: ort.env.versions.node ?? 'unknown' };
  } finally {
    await session.release();
  }
}

serveWorker<PlansInput, LambdaOverheadResult>(async (input, progress) => {
  const models: LambdaModelResult[] = [];
  let version = 'unknown';
  for (const plan of input.plans) {
    const { result, onnxruntime } = await measureModel(plan, input.threads, progress);
    models.push(result);
    version = onnxruntime;
  }
  return { node: process.version, onnxruntime: version, threads: input.threads, models };
});
