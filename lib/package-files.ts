/**
 * Where this package's own files are, wherever it runs from: the repository's TypeScript sources (`lib/*.ts`, under
 * tsx) or the compiled, installed package (`dist/*.js`, and the CommonJS bundle `dist/cjs/index.cjs`). Synth
 * bundles runtime modules and copies `python/` into images, so those paths follow the package, never the repository
 * layout.
 */
import { existsSync } from 'node:fs';
import { dirname, extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = fileURLToPath(import.meta.url);
const fromSource = extname(here) === '.ts';

/** The package root: the nearest folder above this module with a package.json (and python/, templates/). */
export const PACKAGE_ROOT = findRoot(dirname(here));

/** `lib/*.ts` from source; otherwise the ESM build `dist/*.js`, which every image bundle is made from. */
const MODULES_DIR = join(PACKAGE_ROOT, fromSource ? 'lib' : 'dist');
const MODULE_EXT = fromSource ? '.ts' : '.js';

/** One of the package's modules by its path under lib/ without extension, e.g. `runtime/lambda`. */
export function packageModule(path: string): string {
  return join(MODULES_DIR, `${path}${MODULE_EXT}`);
}

/** A file shipped at the package root, e.g. `python/arclight_executor.py`. */
export function packageFile(...segments: string[]): string {
  return join(PACKAGE_ROOT, ...segments);
}

function findRoot(dir: string): string {
  for (let at = dir; ; at = dirname(at)) {
    if (existsSync(join(at, 'package.json'))) return at;
    if (dirname(at) === at) throw new Error(`arclight: no package.json above ${dir}`);
  }
}
