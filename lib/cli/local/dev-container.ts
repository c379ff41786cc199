/**
 * A container-backed API (SageMaker, ECS) as `arclight dev` runs it: the file its image's ENTRYPOINT starts, run
 * with node from a temporary copy of its build context, with the container's environment (the image's ENV, then the
 * template's), on CPU and on a loopback port. The image installs onnxruntime-node while it is built; the copy gets
 * this machine's instead, linked at `node_modules/onnxruntime-node` (ES modules ignore NODE_PATH).
 */
import { cpSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { ENV } from '../../contract.js';
import type { AssemblyContainerApi } from '../deploy/assembly.js';

const require = createRequire(import.meta.url);

/** A copy of a container build context that runs on this machine. */
export interface RunnableContainerContext {
  readonly dir: string;
  /** Removes the copy. */
  cleanup(): void;
}

/**
 * A copy of the build context (a copy, not links: node resolves a module's imports from its real path) with this
 * machine's onnxruntime-node linked where the image installs it.
 */
export function runnableContainerContext(contextDir: string): RunnableContainerContext {
  const installed = dirname(require.resolve('onnxruntime-node/package.json'));
  const dir = mkdtempSync(join(tmpdir(), 'arclight-container-'));
  try {
    cpSync(contextDir, dir, { recursive: true });
    mkdirSync(join(dir, 'node_modules'), { recursive: true });
    symlinkSync(installed, join(dir, 'node_modules', 'onnxruntime-node'), 'dir');
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** What `arclight dev` overrides in a container's environment, and why. */
export const LOCAL_CONTAINER_OVERRIDES = {
  /** There is no GPU here: the CUDA provider is not even tried. */
  [ENV.executionProviders]: 'cpu',
  /** The front server is the only way in. */
  [ENV.bindHost]: '127.0.0.1',
  /** Locally, the playground at /docs and response checks are on, as for every API under `arclight dev`. */
  [ENV.docs]: 'on',
  [ENV.checkResponses]: 'on',
} as const;

/**
 * The container's environment: `base` (the shell's, pointed at the embedded S3), the image's ENV with paths inside the
 * image's WORKDIR moved to the copy, the template's environment, then the local overrides and the port.
 */
export function containerProcessEnv(
  api: AssemblyContainerApi,
  runDir: string,
  port: number,
  base: NodeJS.ProcessEnv,
): NodeJS.ProcessEnv {
  const inImage = (value: string): string => {
    if (value === api.imageDir) return runDir;
    const prefix = api.imageDir.endsWith('/') ? api.imageDir : `${api.imageDir}/`;
    return value.startsWith(prefix) ? join(runDir, ...posix.relative(api.imageDir, value).split('/')) : value;
  };
  const image = Object.fromEntries(Object.entries(api.imageEnvironment).map(([name, value]) => [name, inImage(value)]));
  return {
    ...base,
    ...image,
    ...api.environment,
    // The image runs Node.js 22; the SDK's warning about an older Node.js is the parent's to give, once.
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    ...LOCAL_CONTAINER_OVERRIDES,
    [ENV.sageMakerPort]: String(port),
  };
}

/** A port free on loopback now (the container server binds it a moment later). */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
