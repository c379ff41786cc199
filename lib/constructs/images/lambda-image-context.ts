/**
 * The Lambda image's Docker build context, generated at synth: the runtime and the predictor bundled by esbuild
 * into one ESM file, onnxruntime-node with only the target platform's native files, and a Dockerfile on the
 * AWS Lambda Node.js 22 base image. A torch model's image adds Python with CPU torch, the torch executor program
 * (`python/`) and the checkpoint's module file (`model/`). No Docker is needed to synthesize; `cdk deploy` builds it.
 */
import { cpSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { ENV } from '../../contract.js';
import { packageFile, packageModule } from '../../package-files.js';
import { bundleForNode } from './node-bundle.js';

/** The CPU architectures Lambda offers, as Node.js names them. */
export type NodeArch = 'arm64' | 'x64';

/** Which events a Lambda image's bundle answers. */
export type LambdaEntry = 'api' | 'async' | 'batch';

export interface LambdaImageContextOptions {
  /** Absolute path of the user's predictor module; the default predictor when absent. */
  readonly predictorEntry?: string;
  readonly arch: NodeArch;
  /** A torch model: Python, CPU torch and the executor go into the image; `module` is a checkpoint's class file. */
  readonly torch?: { readonly module?: string };
  /**
   * What the bundle answers: API Gateway events (`api`); those plus `worker`, an AsyncApi's SQS consumer, over the
   * same runtime (`async`); or a BatchJob's Step Functions events (`batch`). @default 'api'
   */
  readonly entry?: LambdaEntry;
}

/** Where the image keeps a checkpoint's module file (`${LAMBDA_TASK_ROOT}/model`). */
export const LAMBDA_MODULE_DIR = '/var/task/model';
/** The Python the Lambda image installs torch for (Amazon Linux 2023 packages it). */
export const LAMBDA_PYTHON = '/usr/bin/python3.12';
/** The torch release the Lambda image installs (CPU). */
export const TORCH_VERSION = '2.5.1';
/** The torch executor program, copied into images that serve torch models. */
export const EXECUTOR_PROGRAM = packageFile('python', 'arclight_executor.py');

/** The file the image's CMD names (`index.handler`). */
export const BUNDLE_FILE = 'index.mjs';

/** Where onnxruntime-node's native files for one platform live inside its package. */
export function nativeDir(arch: NodeArch): string {
  return join('bin', 'napi-v6', 'linux', arch);
}

const RUNTIME_ENTRY = packageModule('runtime/transports/lambda');
const ASYNC_RUNTIME_ENTRY = packageModule('runtime/async/lambda-worker');
/** The BatchJob's handler (Step Functions events), exported as `handler` like the API's. */
const BATCH_ENTRY = { module: packageModule('runtime/batch/step-functions-handler'), factory: 'batchHandlerFromEnv' };
const require = createRequire(import.meta.url);

/** Writes the build context into a fresh directory and returns its path. */
export function buildLambdaImageContext(options: LambdaImageContextOptions): string {
  const dir = mkdtempSync(join(tmpdir(), 'arclight-lambda-'));
  BUNDLERS[options.entry ?? 'api'](dir, options.predictorEntry);
  copyOnnxRuntime(join(dir, 'node_modules'), options.arch);
  if (options.torch) copyTorchFiles(dir, options.torch.module);
  writeFileSync(
    join(dir, 'Dockerfile'),
    options.torch ? torchDockerfile(options.torch.module !== undefined) : DOCKERFILE,
  );
  return dir;
}

/** The executor program beside the bundle (where the runtime looks for it) and the module file under `model/`. */
export function copyTorchFiles(dir: string, module: string | undefined): void {
  mkdirSync(join(dir, 'python'));
  cpSync(EXECUTOR_PROGRAM, join(dir, 'python', basename(EXECUTOR_PROGRAM)));
  if (module !== undefined) {
    mkdirSync(join(dir, 'model'));
    cpSync(module, join(dir, 'model', basename(module)));
  }
}

function bundleRuntime(
  dir: string,
  predictorEntry: string | undefined,
  entry: { module: string; factory: string } = { module: RUNTIME_ENTRY, factory: 'lambdaEntryFromEnv' },
): void {
  // A top-level await: Lambda's init phase lasts until the model is loaded (or the init budget is spent).
  const imports = predictorEntry
    ? `import predictor from ${JSON.stringify(predictorEntry)};\nexport const handler = await ${entry.factory}(predictor);`
    : `export const handler = await ${entry.factory}();`;
  bundleForNode(dir, BUNDLE_FILE, {
    source: {
      contents: `import { ${entry.factory} } from ${JSON.stringify(entry.module)};\n${imports}\n`,
      resolveDir: dirname(entry.module),
      sourcefile: 'arclight-lambda-entry.ts',
      loader: 'ts',
    },
  });
}

/** The async worker's entry: `handler` (API Gateway events, what `arclight dev` runs) and `worker` (SQS events). */
function bundleAsyncRuntime(dir: string, predictorEntry: string | undefined): void {
  const entry = predictorEntry
    ? `import predictor from ${JSON.stringify(predictorEntry)};\nconst entry = await asyncLambdaEntryFromEnv(predictor);`
    : 'const entry = await asyncLambdaEntryFromEnv();';
  bundleForNode(dir, BUNDLE_FILE, {
    source: {
      contents: `import { asyncLambdaEntryFromEnv } from ${JSON.stringify(ASYNC_RUNTIME_ENTRY)};\n${entry}\nexport const handler = entry.handler;\nexport const worker = entry.worker;\n`,
      resolveDir: dirname(ASYNC_RUNTIME_ENTRY),
      sourcefile: 'arclight-async-entry.ts',
      loader: 'ts',
    },
  });
}

const BUNDLERS: Record<LambdaEntry, (dir: string, predictorEntry: string | undefined) => void> = {
  api: (dir, predictorEntry) => bundleRuntime(dir, predictorEntry),
  async: bundleAsyncRuntime,
  batch: (dir, predictorEntry) => bundleRuntime(dir, predictorEntry, BATCH_ENTRY),
};

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
# HOME=/tmp: /tmp is the only writable place on Lambda. onnxruntime's telemetry off (it writes files on every start).
# No --enable-source-maps: it costs about 0.4 s of init; names are kept in the bundle, so stacks stay readable.
ENV HOME=/tmp ORT_DISABLE_TELEMETRY=1
COPY node_modules/ \${LAMBDA_TASK_ROOT}/node_modules/
COPY ${BUNDLE_FILE} ${BUNDLE_FILE}.map \${LAMBDA_TASK_ROOT}/
CMD ["index.handler"]
`;

/**
 * The torch variant: Python 3.12 and CPU torch beside Node.js. On arm64 (Lambda's default) the standard index's torch
 * wheels are CPU-only; for x86_64 pass \`--build-arg TORCH_INDEX_URL=<PyTorch's CPU wheel index>\` to skip the CUDA
 * libraries a GPU wheel would bring.
 */
function torchDockerfile(withModule: boolean): string {
  return `# Generated by Arclight at synth: a torch model, run by Python with CPU torch. The handler runs as a non-root user.
FROM public.ecr.aws/lambda/nodejs:22
ARG TORCH_INDEX_URL=
RUN dnf install -y python3.12 python3.12-pip && dnf clean all \\
 && ${LAMBDA_PYTHON} -m pip install --no-cache-dir \${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==${TORCH_VERSION}
# HOME=/tmp: torch keeps small caches under $HOME, and /tmp is the only writable place on Lambda.
ENV HOME=/tmp ORT_DISABLE_TELEMETRY=1 ${ENV.python}=${LAMBDA_PYTHON}
COPY node_modules/ \${LAMBDA_TASK_ROOT}/node_modules/
COPY python/ \${LAMBDA_TASK_ROOT}/python/
${withModule ? 'COPY model/ ${LAMBDA_TASK_ROOT}/model/\n' : ''}COPY ${BUNDLE_FILE} ${BUNDLE_FILE}.map \${LAMBDA_TASK_ROOT}/
CMD ["index.handler"]
`;
}
