/**
 * The default predictor: serves the model through the Open Inference Protocol v2 with no user code.
 * `POST /` and `POST /v2/models/{name}/infer` both land here.
 */
import { definePredictor, type Model, type PredictorResponse } from '../predictor.js';
import { httpError, invalidInput } from './codec/http-errors.js';
import { clipText, isJsonContentType, mediaType } from './codec/json.js';
import { BINARY_HEADER, decodeInferRequest, encodeInferResponse } from './codec/oip.js';
import { ModelRunError } from './executors/onnx-executor.js';
import type { ModelStatistics } from './telemetry/model-statistics.js';
import { activeTrace } from './telemetry/tracing.js';

interface InferInput {
  readonly body: Buffer;
  readonly text?: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Validates an OIP request against the model, runs it and encodes the response; times its phases when asked. */
export async function infer(
  model: Model,
  request: InferInput,
  statistics?: ModelStatistics,
): Promise<PredictorResponse> {
  const started = performance.now();
  checkContentType(request.headers);
  const decoded = decodeInferRequest(request.text ?? request.body, request.headers, model);
  const decodedAt = performance.now();
  statistics?.phase('compute_input', decodedAt - started);
  activeTrace()?.phase('decode', started, decodedAt);
  let results;
  try {
    results = await model.run(decoded.feeds, decoded.outputNames);
  } catch (error) {
    if (error instanceof ModelRunError) throw invalidInput(`the model cannot run on these inputs: ${error.message}`);
    throw error;
  }
  const encoding = performance.now();
  const { body, headers } = encodeInferResponse(model.name, decoded.id, results, decoded.binaryOutputs, model.version);
  const encodedAt = performance.now();
  statistics?.phase('compute_output', encodedAt - encoding);
  activeTrace()?.phase('encode', encoding, encodedAt);
  return { status: 200, headers, body };
}

/**
 * Content type is not part of the protocol (Triton ignores it; tritonclient's asyncio client sends every body as
 * application/octet-stream, `curl -d` as a form): a body without the binary header is the JSON request whatever its
 * content type says, and one with it is the binary extension's. Only a type that clearly is not JSON (an image, a
 * form upload, a PDF) is a 415, which says what to send instead.
 */
function checkContentType(headers: Readonly<Record<string, string>>): void {
  const contentType = headers['content-type'];
  if (contentType === undefined || headers[BINARY_HEADER] !== undefined) return;
  const type = mediaType(contentType);
  if (isJsonContentType(type) || !clearlyNotJson(type)) return;
  throw httpError(
    'unsupported_media_type',
    `content type '${clipText(type)}' is not accepted; send an Open Inference Protocol document as application/json, or its binary form with the ${BINARY_HEADER} header`,
  );
}

const NOT_JSON_FAMILIES = new Set(['image', 'audio', 'video', 'font', 'model', 'multipart']);
const NOT_JSON_TYPES = new Set([
  'application/pdf',
  'application/zip',
  'application/gzip',
  'application/x-protobuf',
  'application/protobuf',
  'application/msgpack',
  'application/x-msgpack',
  'application/cbor',
]);

function clearlyNotJson(type: string): boolean {
  return NOT_JSON_FAMILIES.has(type.split('/', 1)[0]!) || NOT_JSON_TYPES.has(type);
}

/** The predictor used when the deployer gives none. */
export const defaultPredictor = definePredictor({
  predict: (request, context) => infer(context.model, request),
});
