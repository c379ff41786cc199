/**
 * The Node.js the deployed images run: 22.x (`public.ecr.aws/lambda/nodejs:22`, `node:22-bookworm-slim`). Scenarios
 * that time deployed code (the Lambda handler, the model fetch, cold starts, the container server) run it there:
 * $ARCLIGHT_BENCH_NODE, else a 22.x installed from the npm registry under /tmp/node22
 * (`npm install --prefix /tmp/node22 node@22`), else this process's Node, which the report then says.
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface DeployedNode {
  readonly execPath: string;
  readonly version: string;
  /** Why the measurement is not on a 22.x, when it is not. */
  readonly note?: string;
}

const NODE_ENV = 'ARCLIGHT_BENCH_NODE';
const NODE22_CANDIDATES = ['/tmp/node22/node_modules/node/bin/node', '/tmp/node22/node_modules/.bin/node'];

let found: DeployedNode | undefined;

/** The Node to run deployed code in (looked up once). */
export function deployedNode(): DeployedNode {
  found ??= lookUp();
  return found;
}

function lookUp(): DeployedNode {
  const candidates = [process.env[NODE_ENV], ...NODE22_CANDIDATES].filter((c): c is string => !!c && existsSync(c));
  for (const execPath of candidates) {
    const probe = spawnSync(execPath, ['--version'], { encoding: 'utf8' });
    const version = probe.stdout?.trim() ?? '';
    if (probe.status === 0 && version.startsWith('v22.')) return { execPath, version };
  }
  return {
    execPath: process.execPath,
    version: process.version,
    note: `no Node 22 found (set ${NODE_ENV}, or: npm install --prefix /tmp/node22 node@22): measured on ${process.version}, not on the Node the images run`,
  };
}
