/**
 * How `arclight dev` makes a container build context runnable here: a copy with this machine's onnxruntime-node
 * linked where the image installs it, and the container's environment with the local overrides (CPU, loopback, port).
 */
import assert from 'node:assert/strict';
import { existsSync, lstatSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { AssemblyContainerApi } from '../../../lib/cli/deploy/assembly.js';
import {
  containerProcessEnv,
  freeLoopbackPort,
  runnableContainerContext,
} from '../../../lib/cli/local/dev-container.js';
import { buildContainerImageContext } from '../../../lib/constructs/images/container-image-context.js';
import { ENV } from '../../../lib/contract.js';
import { DIGITS_PREDICTOR, REPO_ROOT } from '../../helpers.js';

const require = createRequire(import.meta.url);
let contextDir: string;

before(() => {
  contextDir = buildContainerImageContext({ predictorEntry: join(REPO_ROOT, DIGITS_PREDICTOR), gpu: true });
});

after(() => {
  if (contextDir) rmSync(contextDir, { recursive: true, force: true });
});

describe('runnableContainerContext', () => {
  test("a copy of the context whose modules resolve onnxruntime-node to this machine's; cleanup keeps the package", () => {
    const context = runnableContainerContext(contextDir);
    const installed = dirname(require.resolve('onnxruntime-node/package.json'));
    try {
      assert.notEqual(context.dir, contextDir);
      for (const file of ['server.mjs', 'onnx-worker.mjs', 'predictor.mjs', 'Dockerfile']) {
        assert.equal(readFileSync(join(context.dir, file), 'utf8'), readFileSync(join(contextDir, file), 'utf8'), file);
      }
      const link = join(context.dir, 'node_modules', 'onnxruntime-node');
      assert.ok(lstatSync(link).isSymbolicLink());
      assert.equal(realpathSync(link), realpathSync(installed));
      // Resolved from the server's own directory, as its `import('onnxruntime-node')` is (and not from a node_modules
      // that happens to sit in an ancestor of the temp dir).
      const fromServer = createRequire(join(context.dir, 'server.mjs')).resolve('onnxruntime-node');
      assert.equal(realpathSync(fromServer), realpathSync(require.resolve('onnxruntime-node')));
    } finally {
      context.cleanup();
    }
    assert.equal(existsSync(context.dir), false);
    assert.ok(existsSync(join(installed, 'package.json')), 'removing the copy leaves the linked package alone');
  });
});

describe('containerProcessEnv', () => {
  const api: AssemblyContainerApi = {
    apiName: 'digits-ecs',
    compute: 'ecs',
    gpu: true,
    lambdaArchitecture: 'x86_64',
    stackName: 'S',
    logicalId: 'TaskDefinition',
    contextDir: '/unused',
    serverFile: 'server.mjs',
    imageDir: '/opt/arclight',
    imageEnvironment: {
      NODE_OPTIONS: '--enable-source-maps',
      [ENV.executionProviders]: 'cuda,cpu',
      [ENV.predictorEntry]: '/opt/arclight/predictor.mjs',
      [ENV.logLevel]: 'DEBUG',
      OUTSIDE: '/opt/arclightish/x',
    },
    environment: {
      [ENV.apiName]: 'digits-ecs',
      [ENV.executionProviders]: 'cuda,cpu',
      [ENV.logLevel]: 'WARN',
      [ENV.bindHost]: '0.0.0.0',
    },
    assets: [],
  };

  test("the image's ENV with its paths moved to the copy, the template's over it, then CPU, loopback and the port", () => {
    const env = containerProcessEnv(api, '/tmp/copy', 4321, { PATH: '/bin', [ENV.logLevel]: 'ERROR' });
    assert.equal(env['PATH'], '/bin');
    assert.equal(env['NODE_OPTIONS'], '--enable-source-maps');
    assert.equal(env[ENV.predictorEntry], '/tmp/copy/predictor.mjs');
    assert.equal(env['OUTSIDE'], '/opt/arclightish/x', 'only paths inside the WORKDIR move');
    assert.equal(env[ENV.apiName], 'digits-ecs');
    assert.equal(env[ENV.logLevel], 'WARN', "the template's over the image's over the shell's");
    assert.equal(env[ENV.executionProviders], 'cpu', 'no GPU here');
    assert.equal(env[ENV.bindHost], '127.0.0.1', 'reached through the front server only');
    assert.equal(env[ENV.sageMakerPort], '4321');
  });

  test('freeLoopbackPort gives a port that can be bound on loopback', async () => {
    const port = await freeLoopbackPort();
    assert.ok(port > 0 && port < 65536);
    const server = createServer();
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', resolve);
    });
    await new Promise((resolve) => server.close(resolve));
  });
});
