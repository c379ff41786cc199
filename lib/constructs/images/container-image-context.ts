/**
 * The container image's Docker build context (SageMaker and ECS), generated at synth: the container server
 * (`lib/runtime/transports/container-main.ts`) bundled by esbuild into one ESM file, the user's predictor bundled beside it, and
 * a Dockerfile. The GPU variant runs on an NVIDIA CUDA 12 + cuDNN 9 runtime base with Node.js 22 and installs
 * onnxruntime-node with its CUDA 12 provider (`ONNXRUNTIME_NODE_INSTALL=cuda12`) inside the image build; the CPU
 * variant runs on the Node.js 22 slim image. No Docker is needed to synthesize; `cdk deploy` builds the image.
 */
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULTS, ENV } from '../../contract.js';
import { packageModule } from '../../package-files.js';
import { copyTorchFiles } from './lambda-image-context.js';
import { bundleForNode } from './node-bundle.js';

export interface ContainerImageContextOptions {
  /** Absolute path of the user's predictor module; the default (Open Inference Protocol) predictor when absent. */
  readonly predictorEntry?: string;
  /** GPU image (CUDA 12 + cuDNN 9, onnxruntime's CUDA provider) or CPU image. */
  readonly gpu: boolean;
  /** A torch model: a PyTorch base (GPU) or Debian's python3-torch (CPU); `module` is a checkpoint's class file. */
  readonly torch?: { readonly module?: string };
}

/** Where the image keeps a checkpoint's module file, under APP_DIR. */
export const MODEL_MODULE_DIR = 'model';
/** PyTorch's CUDA 12 + cuDNN 9 runtime image: the GPU base for torch models (its Python is /opt/conda/bin/python). */
export const TORCH_GPU_BASE_IMAGE = 'pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime';
const TORCH_GPU_PYTHON = '/opt/conda/bin/python';

/** The bundled container server, which the image's ENTRYPOINT runs. */
export const SERVER_FILE = 'server.mjs';
/** The bundled predictor, named to the server by `ARCLIGHT_PREDICTOR`. */
export const PREDICTOR_FILE = 'predictor.mjs';
/** Where the image keeps the server, the predictor and node_modules. */
export const APP_DIR = '/opt/arclight';
/** NVIDIA's CUDA 12 runtime image with cuDNN 9: the libraries onnxruntime's CUDA 12 provider loads. */
export const GPU_BASE_IMAGE = 'nvidia/cuda:12.6.3-cudnn-runtime-ubuntu22.04';
/** The Node.js 22 image: the CPU image's base, and where the GPU image takes Node.js and npm from. */
export const NODE_BASE_IMAGE = 'node:22-bookworm-slim';
/** The uid the server runs as (not root). */
export const CONTAINER_UID = 10001;

/** The container server's entry (written in lib/runtime). */
export const CONTAINER_ENTRY = packageModule('runtime/transports/container-main');
/** The inference worker thread's entry: the worker pool looks for `onnx-worker.mjs` beside the bundled server. */
export const WORKER_ENTRY = packageModule('runtime/executors/onnx-worker');
export const WORKER_FILE = 'onnx-worker.mjs';
/** Predictors import 'arclight' for the predictor API; in the image that is predictor.ts alone, not the CDK side. */
const require = createRequire(import.meta.url);

/** The onnxruntime-node version the image installs: the one this package depends on, so local and deployed agree. */
export function onnxRuntimeVersion(): string {
  const pkg = JSON.parse(readFileSync(require.resolve('onnxruntime-node/package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** Writes the build context into a fresh directory and returns its path. */
export function buildContainerImageContext(options: ContainerImageContextOptions): string {
  if (!existsSync(CONTAINER_ENTRY)) {
    throw new Error(`the container server entry ${CONTAINER_ENTRY} is missing: the container image cannot be built`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'arclight-container-'));
  bundle(dir, CONTAINER_ENTRY, SERVER_FILE);
  if (existsSync(WORKER_ENTRY)) bundle(dir, WORKER_ENTRY, WORKER_FILE);
  if (options.predictorEntry) bundle(dir, options.predictorEntry, PREDICTOR_FILE);
  if (options.torch) copyTorchFiles(dir, options.torch.module);
  const withPredictor = Boolean(options.predictorEntry);
  const dockerfile = options.torch
    ? torchDockerfile(options.gpu, withPredictor, options.torch.module !== undefined)
    : options.gpu
      ? gpuDockerfile(withPredictor)
      : cpuDockerfile(withPredictor);
  writeFileSync(join(dir, 'Dockerfile'), dockerfile);
  writeFileSync(join(dir, '.dockerignore'), 'Dockerfile\n.dockerignore\n');
  return dir;
}

function bundle(dir: string, entry: string, outName: string): void {
  bundleForNode(dir, outName, { file: entry });
}

function appFiles(withPredictor: boolean): string {
  const files = [SERVER_FILE, `${SERVER_FILE}.map`];
  if (existsSync(WORKER_ENTRY)) files.push(WORKER_FILE, `${WORKER_FILE}.map`);
  if (withPredictor) files.push(PREDICTOR_FILE, `${PREDICTOR_FILE}.map`);
  return files.join(' ');
}

/**
 * The container server's Node.js options. A small young generation (1 MiB semi-spaces): scavenges then come every ~20
 * requests, and the socket chunks each request body arrives in (their ArrayBuffers' external memory) die in them.
 * With the default 16 MiB, or 64, external memory grew by V8's 64 MiB limit between scavenges and started a
 * mark-compact every ~35 MobileNet requests. Bodies never queue in memory (body-slabs.ts), so nothing large is
 * promoted by the frequent scavenges. Measured on MobileNet, 2 workers, concurrency 4 and 16
 * (`bench/peers/main-thread.ts --trace-gc`): no mark-compacts instead of 32 per 1,000 requests, 3.2–3.3 ms of CPU per
 * request instead of 4.0–4.7, 19–40% more requests per second.
 */
export const CONTAINER_NODE_OPTIONS = '--enable-source-maps --max-semi-space-size=1';

function runtimeEnv(executionProviders: string, withPredictor: boolean): string {
  const vars = [
    'NODE_ENV=production',
    `NODE_OPTIONS="${CONTAINER_NODE_OPTIONS}"`,
    'HOME=/tmp',
    // onnxruntime's telemetry writes a device id and event files on every start; the runtime turns it off as well.
    'ORT_DISABLE_TELEMETRY=1',
    `${ENV.executionProviders}=${executionProviders}`,
    ...(withPredictor ? [`${ENV.predictorEntry}=${APP_DIR}/${PREDICTOR_FILE}`] : []),
  ];
  return `ENV ${vars.join(' \\\n    ')}`;
}

const ENTRY_LINES = `EXPOSE ${DEFAULTS.port}
# SageMaker starts the image as \`docker run <image> serve\`: the server ignores its arguments.
ENTRYPOINT ["node", "${APP_DIR}/${SERVER_FILE}"]`;

function gpuDockerfile(withPredictor: boolean): string {
  return `# Generated by Arclight at synth: the container server on GPU (CUDA 12 + cuDNN 9).
# Stage 1: Node.js 22 installs onnxruntime-node with its CUDA 12 execution provider binaries.
FROM ${NODE_BASE_IMAGE} AS node
WORKDIR ${APP_DIR}
ENV ONNXRUNTIME_NODE_INSTALL=cuda12
RUN npm install --omit=dev --no-audit --no-fund --no-package-lock onnxruntime-node@${onnxRuntimeVersion()} \\
 && npm cache clean --force

# Stage 2: NVIDIA's CUDA 12 runtime with cuDNN 9, plus the Node.js 22 binary and the installed package.
FROM ${GPU_BASE_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node
RUN groupadd --system --gid ${CONTAINER_UID} arclight \\
 && useradd --system --uid ${CONTAINER_UID} --gid arclight --home-dir /tmp --shell /usr/sbin/nologin arclight
WORKDIR ${APP_DIR}
COPY --from=node ${APP_DIR}/node_modules/ ${APP_DIR}/node_modules/
COPY ${appFiles(withPredictor)} ${APP_DIR}/
${runtimeEnv('cuda,cpu', withPredictor)}
USER ${CONTAINER_UID}:${CONTAINER_UID}
${ENTRY_LINES}
`;
}

/**
 * A torch model's image: the container server with Node.js beside Python and torch, the executor program and the
 * module file. GPU: PyTorch's CUDA runtime image; CPU: Node.js's Debian image with Debian's python3-torch.
 */
function torchDockerfile(gpu: boolean, withPredictor: boolean, withModule: boolean): string {
  const python = gpu ? TORCH_GPU_PYTHON : '/usr/bin/python3';
  const base = gpu
    ? `FROM ${NODE_BASE_IMAGE} AS node

FROM ${TORCH_GPU_BASE_IMAGE}
COPY --from=node /usr/local/bin/node /usr/local/bin/node`
    : `FROM ${NODE_BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3-torch && rm -rf /var/lib/apt/lists/*`;
  return `# Generated by Arclight at synth: the container server on ${gpu ? 'GPU (PyTorch, CUDA 12 + cuDNN 9)' : 'CPU'}, a torch model.
${base}
RUN groupadd --system --gid ${CONTAINER_UID} arclight \
 && useradd --system --uid ${CONTAINER_UID} --gid arclight --home-dir /tmp --shell /usr/sbin/nologin arclight
WORKDIR ${APP_DIR}
COPY ${appFiles(withPredictor)} ${APP_DIR}/
COPY python/ ${APP_DIR}/python/
${
  withModule
    ? `COPY ${MODEL_MODULE_DIR}/ ${APP_DIR}/${MODEL_MODULE_DIR}/
`
    : ''
}${runtimeEnv(gpu ? 'cuda,cpu' : 'cpu', withPredictor)} \
    ${ENV.python}=${python}
USER ${CONTAINER_UID}:${CONTAINER_UID}
${ENTRY_LINES}
`;
}

function cpuDockerfile(withPredictor: boolean): string {
  return `# Generated by Arclight at synth: the container server on CPU.
FROM ${NODE_BASE_IMAGE}
RUN groupadd --system --gid ${CONTAINER_UID} arclight \\
 && useradd --system --uid ${CONTAINER_UID} --gid arclight --home-dir /tmp --shell /usr/sbin/nologin arclight
WORKDIR ${APP_DIR}
RUN npm install --omit=dev --no-audit --no-fund --no-package-lock onnxruntime-node@${onnxRuntimeVersion()} \\
 && npm cache clean --force
COPY ${appFiles(withPredictor)} ${APP_DIR}/
${runtimeEnv('cpu', withPredictor)}
USER ${CONTAINER_UID}:${CONTAINER_UID}
${ENTRY_LINES}
`;
}
