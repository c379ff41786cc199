/**
 * The Lambda bundle as synth built it before the init-phase load (issue 12, items 8–11), kept as the coldstart
 * scenario's baseline: the entry exported the handler at once (the load ran on into the first invocation), esbuild
 * minified names away, the image ran Node.js with `--enable-source-maps`, and onnxruntime's telemetry was on.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

const RUNTIME_ENTRY = fileURLToPath(new URL('../lib/runtime/transports/lambda.ts', import.meta.url));
const PREDICTOR_API = fileURLToPath(new URL('../lib/predictor.ts', import.meta.url));

/** The file the legacy bundle is written to, beside the current one (it shares the context's onnxruntime-node). */
export const LEGACY_BUNDLE_FILE = 'index-legacy.mjs';

/** The environment the legacy image set (its Dockerfile's ENV), and telemetry as onnxruntime leaves it. */
export const LEGACY_ENV: Readonly<Record<string, string>> = {
  NODE_OPTIONS: '--enable-source-maps',
  ORT_DISABLE_TELEMETRY: '0',
};

/** Writes the legacy bundle (and its map) into a Lambda build context. */
export function buildLegacyBundle(contextDir: string): string {
  const outfile = join(contextDir, LEGACY_BUNDLE_FILE);
  buildSync({
    stdin: {
      contents: `import { lambdaHandlerFromEnv } from ${JSON.stringify(RUNTIME_ENTRY)};\nexport const handler = lambdaHandlerFromEnv();\n`,
      resolveDir: contextDir,
      sourcefile: 'arclight-lambda-entry.ts',
      loader: 'ts',
    },
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'silent',
    external: ['onnxruntime-node'],
    alias: { arclight: PREDICTOR_API },
    banner: {
      js: "import { createRequire as __arclightRequire } from 'node:module'; const require = __arclightRequire(import.meta.url);",
    },
  });
  return outfile;
}
