/**
 * The Lambda entry the image bundles: the runtime configured from the deployed contract's env vars.
 * The model fetch starts when this is called, at import of the bundle: on Lambda that is the init phase, at full CPU.
 * onnxruntime-node is imported only then, while the bytes arrive (the bundle keeps it external and never imports it
 * statically), and the session is created as soon as they are verified.
 */
import type { DefinedPredictor } from '../../predictor.js';
import { bootFromEnv } from '../boot.js';
import { createLambdaHandler, type LambdaHandler } from './lambda-adapter.js';

export function lambdaHandlerFromEnv(predictor?: DefinedPredictor<unknown>): LambdaHandler {
  const { runtime, settings } = bootFromEnv(predictor);
  return createLambdaHandler(runtime, { maxBodyBytes: settings.maxBodyBytes });
}
