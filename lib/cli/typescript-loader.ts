/**
 * Lets the CLI import a user's TypeScript predictor without a build step. Registered only when a predictor is
 * TypeScript: the CLI itself is compiled JavaScript and starts without tsx.
 */
import { extname } from 'node:path';

const TYPESCRIPT_EXTENSIONS = new Set(['.ts', '.mts', '.cts', '.tsx']);
let registered = false;

/** Registers tsx's ESM and CommonJS hooks (a predictor in a package without "type": "module" loads through require). */
export async function registerTypeScriptFor(file: string): Promise<void> {
  if (registered || !TYPESCRIPT_EXTENSIONS.has(extname(file))) return;
  const [{ register: registerCjs }, { register }] = await Promise.all([import('tsx/cjs/api'), import('tsx/esm/api')]);
  registerCjs();
  register();
  registered = true;
}
