/**
 * Where this package's own files are, wherever it runs from: the repository's TypeScript sources (`lib/*.ts`, under
 * tsx) or the compiled, installed package (`dist/*.js`). Synth bundles runtime modules and copies `python/` into
 * images, so those paths must follow the package, never the repository layout.
 */
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
/** `.ts` from source, `.js` from the compiled package. */
const MODULE_EXT = extname(here);
/** `lib/` from source, `dist/` compiled: both sit directly under the package root. */
const MODULES_DIR = dirname(here);

/** The package root: where package.json, python/ and templates/ are. */
export const PACKAGE_ROOT = dirname(MODULES_DIR);

/** One of the package's modules by its path under lib/ without extension, e.g. `runtime/lambda`. */
export function packageModule(path: string): string {
  return join(MODULES_DIR, `${path}${MODULE_EXT}`);
}

/** A file shipped at the package root, e.g. `python/arclight_executor.py`. */
export function packageFile(...segments: string[]): string {
  return join(PACKAGE_ROOT, ...segments);
}
