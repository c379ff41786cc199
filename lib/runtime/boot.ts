import type { DefinedPredictor } from '../predictor.js';
import { createLogger } from './telemetry/logger.js';
import { Runtime } from './runtime.js';
import { settingsFromEnv, type RuntimeSettings } from './settings.js';

/** A runtime configured from the deployed contract's env vars, its start already under way. */
export function bootFromEnv(
  predictor?: DefinedPredictor<unknown>,
  env: NodeJS.ProcessEnv = process.env,
): { runtime: Runtime; settings: RuntimeSettings; started: Promise<boolean> } {
  const settings = settingsFromEnv(env);
  const runtime = new Runtime({
    ...settings,
    predictor,
    logger: createLogger(settings.apiName, settings.logLevel),
    env,
  });
  // That first start, settled either way (the runtime logs a failure and retries it on a later request).
  const started = runtime.start().then(
    () => true,
    () => false,
  );
  return { runtime, settings, started };
}
