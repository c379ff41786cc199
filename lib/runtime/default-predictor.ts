/**
 * The default predictor: serves the model through the Open Inference Protocol v2 with no user code.
 * `POST /` and `POST /v2/models/{name}/infer` both land here.
 */
import { definePredictor, type Model, type PredictorResponse } from '../predictor.js';
import { httpError, invalidInput } from './codec/http-errors.js';
import { isJsonContentType, mediaType } from './codec/json.js';
import { BINARY_HEADER, decodeInferRequest, encodeInferResponse } from './codec/oip.js';
import { ModelRunError } from './executors/onnx-executor.js';

interface InferInput {
  readonly body: Buffer;
  readonly text?: string;
  readonly headers: Readonly<Record<string, string>>;
}

/** Validates an OIP request against the model, runs it and encodes the response. */
export async function infer(model: Model, request: InferInput): Promise<PredictorResponse> {
  checkContentType(request.headers);
  const decoded = decodeInferRequest(request.text ?? request.body, request.headers, model);
  let results;
  try {
    results = await model.run(decoded.feeds, decoded.outputNames);
  } catch (error) {
    if (error instanceof ModelRunError) throw invalidInput(`the model cannot run on these inputs: ${error.message}`);
    throw error;
  }
  const { body, headers } = encodeInferResponse(model.name, decoded.id, results, decoded.binaryOutputs);
  return { status: 200, headers, body };
}

function checkContentType(headers: Readonly<Record<string, string>>): void {
  const contentType = headers['content-type'];
  if (contentType === undefined || isJsonContentType(contentType)) return;
  if (headers[BINARY_HEADER] !== undefined && mediaType(contentType) === 'application/octet-stream') return;
  throw httpError(
    'unsupported_media_type',
    `content type '${mediaType(contentType)}' is not accepted; send an Open Inference Protocol document as application/json`,
  );
}

/** The predictor used when the deployer gives none. */
export const defaultPredictor = definePredictor({
  predict: (request, context) => infer(context.model, request),
});
