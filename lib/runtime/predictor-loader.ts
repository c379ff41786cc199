import { access } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { isPredictor, type DefinedPredictor } from '../predictor.js';
import { StartupError } from './startup-error.js';

/**
 * Imports a predictor module (TypeScript loads without a build step under the CLI, which registers tsx)
 * and returns its default export.
 */
export async function loadPredictor(entry: string): Promise<DefinedPredictor<unknown>> {
  const path = resolve(entry);
  try {
    await access(path);
  } catch (error) {
    throw new StartupError(`predictor file ${entry} does not exist`, 'Check the --predictor path', { cause: error });
  }
  let module: { default?: unknown };
  try {
    module = (await import(pathToFileURL(path).href)) as { default?: unknown };
  } catch (error) {
    throw new StartupError(
      `predictor ${entry} failed to import: ${(error as Error)?.message?.split('\n', 1)[0] ?? String(error)}`,
      'Fix the error in the predictor module (run with --verbose for the stack)',
      { cause: error },
    );
  }
  const predictor = defaultExport(module);
  if (!isPredictor(predictor)) {
    throw new StartupError(
      `predictor ${entry} has no default export made by definePredictor`,
      'End it with `export default definePredictor({ init, predict })`',
    );
  }
  return predictor;
}

/**
 * The module's default export. A TypeScript predictor in a CommonJS package (no "type": "module") compiles
 * `export default` to `exports.default`, which import() hands back as `default.default`.
 */
function defaultExport(module: { default?: unknown }): unknown {
  const value = module.default;
  if (isPredictor(value) || typeof value !== 'object' || value === null) return value;
  return (value as { default?: unknown }).default ?? value;
}
