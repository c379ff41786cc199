/**
 * The API's own documentation routes: `GET /openapi.json` (always) and `GET /docs`, the playground (when on). Both are
 * made once per loaded model: they depend on nothing but the model's signature and the predictor's declarations.
 */
import { ENV, ROUTES } from '../../contract.js';
import type { DefinedPredictor, Model } from '../../predictor.js';
import type { InternalResponse } from '../codec/codec.js';
import { httpError } from '../codec/http-errors.js';
import { tensorSignature } from '../executors/model.js';
import { stringifyJson } from '../codec/json.js';
import { inferExample, openApiDocument } from './openapi.js';
import { imageInput, playgroundResponse, type PlaygroundData } from './playground.js';

export interface ApiDocsOptions {
  readonly model: Model;
  /** The custom predictor, if any. */
  readonly predictor?: DefinedPredictor<unknown>;
  /** Whether `GET /docs` serves the playground. */
  readonly playground: boolean;
}

const made = new WeakMap<Model, { openapi?: Buffer; docs?: InternalResponse }>();

/** The answer to `GET /openapi.json` or `GET /docs`. */
export function apiDocs(kind: 'openapi' | 'docs', options: ApiDocsOptions): InternalResponse {
  const cache = made.get(options.model) ?? {};
  made.set(options.model, cache);
  if (kind === 'openapi') {
    cache.openapi ??= Buffer.from(stringifyJson(openApiDocument(options)));
    return { status: 200, headers: { 'content-type': 'application/json' }, body: cache.openapi };
  }
  if (!options.playground) {
    throw httpError(
      'not_found',
      `the playground (${ROUTES.docs}) is off for this API: ${ENV.docs}=on turns it on (RealtimeApi's docs prop); ${ROUTES.openapi} describes the API`,
    );
  }
  cache.docs ??= playgroundResponse(playgroundData(options.model, options.predictor));
  // Each answer gets headers of its own: the transport adds the request id to them.
  return { ...cache.docs, headers: { ...cache.docs.headers } };
}

function playgroundData(model: Model, predictor: DefinedPredictor<unknown> | undefined): PlaygroundData {
  return {
    name: model.name,
    format: model.format,
    predictor: predictor ? 'custom' : 'default',
    inputs: model.inputs.map(tensorSignature),
    outputs: model.outputs.map(tensorSignature),
    target: predictor ? '' : `v2/models/${encodeURIComponent(model.name)}/infer`,
    example: predictor ? (predictor.example ?? null) : (inferExample(model.inputs) ?? null),
    image: predictor ? null : imageInput(model),
  };
}
