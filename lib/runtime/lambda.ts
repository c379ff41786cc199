/**
 * The Lambda entry when the runtime reads everything from the environment (the default predictor).
 * The model fetch starts at import, which on Lambda is the init phase, at full CPU.
 */
import { createLambdaHandler } from './lambda-adapter.js';
import { bootFromEnv } from './boot.js';

const { runtime, settings } = bootFromEnv();

export const handler = createLambdaHandler(runtime, { maxBodyBytes: settings.maxBodyBytes });
