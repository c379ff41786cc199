/**
 * The Lambda image's Docker build context, generated at synth: the runtime and the predictor bundled by esbuild
 * into one ESM file, onnxruntime-node with only the target platform's native files, and a Dockerfile on the
 * AWS Lambda Node.js 22 base image. No Docker is needed to synthesize; `cdk deploy` builds the image.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildSync } from 'esbuild';

/** The CPU architectures Lambda offers, as Node.js names them. */
export type NodeArch = 'arm64' | 'x64';

export interface LambdaImageContextOptions {
  /** Absolute path of the user's predictor module; the default predictor when absent. */
  readonly predictorEntry?: string;
  readonly arch: NodeArch;
}

/** The file the image's CMD names (`index.handler`). */
export const BUNDLE_FILE = 'index.mjs';

/** Where onnxruntime-node's native files for one platform live inside its package. */
export function nativeDir(arch: NodeArch): string {
  return join('bin', 'napi-v6', 'linux', arch);
}

const here = dirname(fileURLToPath(import.meta.url));
const RUNTIME_ENTRY = join(here, '..', 'runtime', 'lambda.ts');
/** Predictors import 'arclight' for the predictor API; in the image that is predictor.ts alone, not the CDK side. */
const PREDICTOR_API = join(here, '..', 'predictor.ts');
const require = createRequire(import.meta.url);

/** Writes the build context into a fresh directory and returns its path. */
export function buildLambdaImageContext(options: LambdaImageContextOptions): string {
  const dir = mkdtempSync(join(tmpdir(), 'arclight-lambda-'));
  bundleRuntime(dir, options.predictorEntry);
  copyOnnxRuntime(join(dir, 'node_modules'), options.arch);
  writeFileSync(join(dir, 'Dockerfile'), DOCKERFILE);
  return dir;
}

function bundleRuntime(dir: string, predictorEntry: string | undefined): void {
  const imports = predictorEntry
    ? `import predictor from ${JSON.stringify(predictorEntry)};\nexport const handler = lambdaHandlerFromEnv(predictor);`
    : 'export const handler = lambdaHandlerFromEnv();';
  buildSync({
    stdin: {
      contents: `import { lambdaHandlerFromEnv } from ${JSON.stringify(RUNTIME_ENTRY)};\n${imports}\n`,
      resolveDir: here,
      sourcefile: 'arclight-lambda-entry.ts',
      loader: 'ts',
    },
    outfile: join(dir, BUNDLE_FILE),
    bundle: true,
    platform: 'node',
    target: 'node22',
    format: 'esm',
    minify: true,
    sourcemap: true,
    sourcesContent: false,
    legalComments: 'none',
    logLevel: 'silent',
    // The native addon and its JS stay a package beside the bundle: it loads its binary relative to itself.
    external: ['onnxruntime-node'],
    alias: { arclight: PREDICTOR_API },
    // Some bundled CommonJS dependencies call require() on Node built-ins.
    banner: {
      js: "import { createRequire as __arclightRequire } from 'node:module'; const require = __arclightRequire(import.meta.url);",
    },
  });
  // esbuild writes the map's sources relative to this temp dir, which neither the cloud assembly nor the image has
  // (a stack read /var/task/../../<checkout>/lib/...): make them relative to the app's directory, so that stacks
  // name lib/..., functions/... beside the bundle wherever it runs, and the image hash no longer depends on where
  // the checkout lies.
  const mapFile = join(dir, `${BUNDLE_FILE}.map`);
  const map = JSON.parse(readFileSync(mapFile, 'utf8')) as { sources: string[] };
  map.sources = map.sources.map((source) => relative(process.cwd(), resolve(dir, source)).split(sep).join('/'));
  writeFileSync(mapFile, JSON.stringify(map));
}

/** onnxruntime-node's JS, its common package, and the native files of one platform only (not all ~300 MB). */
function copyOnnxRuntime(nodeModules: string, arch: NodeArch): void {
  const ortRoot = dirname(require.resolve('onnxruntime-node/package.json'));
  const commonRoot = packageRoot(require.resolve('onnxruntime-common', { paths: [ortRoot] }), 'onnxruntime-common');
  const ortTarget = join(nodeModules, 'onnxruntime-node');
  mkdirSync(ortTarget, { recursive: true });
  cpSync(join(ortRoot, 'package.json'), join(ortTarget, 'package.json'));
  cpSync(join(ortRoot, 'dist'), join(ortTarget, 'dist'), { recursive: true });
  const natives = join(ortRoot, nativeDir(arch));
  if (readdirSync(natives).length === 0) throw new Error(`onnxruntime-node has no native files for linux/${arch}`);
  cpSync(natives, join(ortTarget, nativeDir(arch)), { recursive: true });
  cpSync(commonRoot, join(nodeModules, 'onnxruntime-common'), {
    recursive: true,
    filter: (source) => !source.endsWith('.map') && !source.includes(`${join('onnxruntime-common', 'lib')}`),
  });
}

/** The package directory holding a resolved file (packages whose exports hide package.json). */
function packageRoot(file: string, name: string): string {
  let dir = dirname(file);
  while (!dir.endsWith(`${join('node_modules', name)}`)) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`cannot find the ${name} package above ${file}`);
    dir = parent;
  }
  return dir;
}

const DOCKERFILE = `# Generated by Arclight at synth. The base image runs the handler as a non-root user.
FROM public.ecr.aws/lambda/nodejs:22
# HOME=/tmp: onnxruntime keeps a small cache under $HOME, and /tmp is the only writable place on Lambda.
ENV NODE_OPTIONS=--enable-source-maps HOME=/tmp
COPY node_modules/ \${LAMBDA_TASK_ROOT}/node_modules/
COPY ${BUNDLE_FILE} ${BUNDLE_FILE}.map \${LAMBDA_TASK_ROOT}/
CMD ["index.handler"]
`;
