/**
 * The one esbuild configuration every image's code goes through: Node.js 22, ESM, minified with names kept, one file with its source
 * map, onnxruntime-node left outside (it loads its native binaries relative to its own package), and `arclight`
 * resolved to the predictor API alone so no CDK code lands in an image.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { buildSync, type StdinOptions } from 'esbuild';
import { packageModule } from '../../package-files.js';

const PREDICTOR_API = packageModule('predictor');

/** What to bundle: a module file, or generated source (an entry that wires the runtime to a predictor). */
export type BundleEntry = { readonly file: string } | { readonly source: StdinOptions };

/** Bundles `entry` into `dir/outName` (and `outName.map`). */
export function bundleForNode(dir: string, outName: string, entry: BundleEntry): void {
  buildSync({
    ...('file' in entry ? { entryPoints: [entry.file] } : { stdin: entry.source }),
    outfile: join(dir, outName),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: true,
    // Real class and function names in logs and stacks (`StartupError`, a predictor's own errors), not `pe`.
    keepNames: true,
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'silent',
    external: ['onnxruntime-node'],
    alias: { arclight: PREDICTOR_API },
    // Some bundled CommonJS dependencies call require() on Node built-ins.
    banner: {
      js: "import { createRequire as __arclightRequire } from 'node:module'; const require = __arclightRequire(import.meta.url);",
    },
  });
  relativizeSourceMap(join(dir, `${outName}.map`), dir);
}

/**
 * esbuild writes the map's sources relative to the temp dir, which neither the cloud assembly nor the image has:
 * make them relative to the app's directory, so stacks name lib/..., functions/... wherever the bundle runs, and the
 * image hash does not depend on where the checkout lies.
 */
function relativizeSourceMap(mapFile: string, dir: string): void {
  const map = JSON.parse(readFileSync(mapFile, 'utf8')) as { sources: string[] };
  map.sources = map.sources.map((source) => relative(process.cwd(), resolve(dir, source)).split(sep).join('/'));
  writeFileSync(mapFile, JSON.stringify(map));
}
