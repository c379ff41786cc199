/**
 * The CDK CLI under `arclight synth|deploy|diff|destroy`: which project to run (an app file, or a cdk.json app as
 * before), which CDK CLI (the project's own `aws-cdk` if it has one, else the one Arclight depends on), the exact
 * command line for each action, and a run that streams the CLI's output and keeps it for the failure message.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { APP_FILE_ENV, appEntryCommand } from '../../app-file/app-command.js';
import type { LoadedAppFile } from '../../app-file/build-app.js';
import { didYouMean } from '../../app-file/did-you-mean.js';
import { findAppFile, loadAppFile } from '../../app-file/load.js';
import { readCdkJson } from './assembly.js';
import { UsageError } from '../fail.js';

/** What the commands run: the app an app file describes, or the project's cdk.json app. */
export type Project =
  | { readonly kind: 'app-file'; readonly dir: string; readonly loaded: LoadedAppFile }
  | { readonly kind: 'cdk-json'; readonly dir: string; readonly app: string; readonly output: string };

/**
 * The project in `dir`: `file` if given; else cdk.json's app (an existing CDK app works as before); else
 * arclight.yaml, .yml or .json. The app file is checked here, every problem at once.
 */
export function findProject(dir: string, file?: string): Project {
  const cwd = resolve(dir);
  if (file !== undefined) return { kind: 'app-file', dir: cwd, loaded: loadAppFile(resolve(cwd, file)) };
  const cdkJson = readCdkJson(cwd);
  if (cdkJson.app) return { kind: 'cdk-json', dir: cwd, app: cdkJson.app, output: cdkJson.output ?? 'cdk.out' };
  const found = findAppFile(cwd);
  if (found === undefined) {
    throw new UsageError(
      `there is no arclight.yaml (or .yml, .json) and no cdk.json with an "app" in ${cwd}`,
      'Run arclight init --yaml to start one, or pass --file <arclight.yaml>',
    );
  }
  return { kind: 'app-file', dir: cwd, loaded: loadAppFile(found) };
}

/** Where a project's cloud assembly goes. */
export function assemblyDir(project: Project): string {
  return project.kind === 'app-file' ? join(project.loaded.dir, 'cdk.out') : resolve(project.dir, project.output);
}

/** The CDK app command of a project, as `--app` takes it. */
export function appCommand(project: Project): string {
  return project.kind === 'app-file' ? appEntryCommand() : project.app;
}

/** The environment the CDK CLI runs in: the app file named for the package's app entry; notices and telemetry off. */
export function cdkEnvironment(project: Project, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  return {
    ...base,
    CDK_DISABLE_CLI_TELEMETRY: 'true',
    ...(project.kind === 'app-file' ? { [APP_FILE_ENV]: project.loaded.file } : {}),
    // The file's region wins over the shell's, as a stack with env.region would.
    ...(project.kind === 'app-file' && project.loaded.app.region
      ? { AWS_REGION: project.loaded.app.region, AWS_DEFAULT_REGION: project.loaded.app.region }
      : {}),
  };
}

/** The CDK CLI to run: the project's own `aws-cdk`, else Arclight's. */
export function cdkCliScript(dir: string): { readonly script: string; readonly from: 'project' | 'arclight' } {
  const own = createRequire(join(resolve(dir), 'package.json'));
  for (const [require, from] of [
    [own, 'project'],
    [createRequire(import.meta.url), 'arclight'],
  ] as const) {
    try {
      const pkg = require.resolve('aws-cdk/package.json');
      const bin = (JSON.parse(readFileSync(pkg, 'utf8')) as { bin?: Record<string, string> }).bin?.['cdk'];
      if (bin !== undefined && existsSync(join(dirname(pkg), bin))) return { script: join(dirname(pkg), bin), from };
    } catch {
      // Not installed there.
    }
  }
  throw new UsageError('cannot find the CDK CLI (the aws-cdk package)', 'Run npm install aws-cdk in the project');
}

/** The options of `arclight deploy`, `diff` and `destroy` that reach the CDK CLI. */
export interface CdkActionOptions {
  /** Stacks to act on (all when empty). */
  readonly stacks: readonly string[];
  /** deploy: `never`, `any-change` or `broadening`. @default the CDK CLI's (broadening) */
  readonly requireApproval?: string;
  /** deploy: where the CDK CLI writes the stacks' outputs. */
  readonly outputsFile?: string;
  /** Extra arguments passed through as they are. */
  readonly extra?: readonly string[];
}

export type CdkAction = 'synth' | 'deploy' | 'diff' | 'destroy';

/**
 * The CDK CLI's arguments for `action`. synth runs the app into the assembly folder; the others act on that
 * already-synthesized assembly (`--app <cdk.out>`), so what was validated is what deploys.
 */
export function cdkArguments(action: CdkAction, project: Project, options: CdkActionOptions): string[] {
  const out = assemblyDir(project);
  const common = ['--no-notices', '--no-version-reporting'];
  switch (action) {
    case 'synth':
      return ['synth', '--app', appCommand(project), '--output', out, '--quiet', ...common, ...(options.extra ?? [])];
    case 'deploy':
      return [
        'deploy',
        '--app',
        out,
        ...options.stacks,
        ...(options.stacks.length === 0 ? ['--all'] : []),
        ...(options.requireApproval ? ['--require-approval', options.requireApproval] : []),
        ...(options.outputsFile ? ['--outputs-file', options.outputsFile] : []),
        '--progress',
        'events',
        ...common,
        ...(options.extra ?? []),
      ];
    case 'diff':
      return ['diff', '--app', out, ...options.stacks, ...common, ...(options.extra ?? [])];
    case 'destroy':
      return [
        'destroy',
        '--app',
        out,
        ...options.stacks,
        ...(options.stacks.length === 0 ? ['--all'] : []),
        '--force',
        ...common,
        ...(options.extra ?? []),
      ];
  }
}

/** One API of a synthesized assembly: its stack, and the stack output holding its URL. */
export interface AssemblyApiStack {
  readonly apiName: string;
  /** The CloudFormation stack name. */
  readonly stackName: string;
  /** The stack's artifact id (what the CDK CLI selects stacks by). */
  readonly artifactId: string;
  /** The output key of the API's URL. */
  readonly urlOutput: string;
}

/** RealtimeApi's URL output describes itself so: `URL of the <apiName> API`. */
const URL_OUTPUT = /^URL of the (.+) API$/;

/** Every API of the top-level stacks of the assembly at `dir`, found by RealtimeApi's URL output. */
export function assemblyApis(dir: string): AssemblyApiStack[] {
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as {
    artifacts?: Record<string, { type?: string; properties?: { templateFile?: string; stackName?: string } }>;
  };
  return Object.entries(manifest.artifacts ?? {}).flatMap(([artifactId, artifact]) => {
    if (artifact.type !== 'aws:cloudformation:stack' || artifact.properties?.templateFile === undefined) return [];
    const template = JSON.parse(readFileSync(join(dir, artifact.properties.templateFile), 'utf8')) as {
      Outputs?: Record<string, { Description?: string }>;
    };
    return Object.entries(template.Outputs ?? {}).flatMap(([key, output]) => {
      const apiName = URL_OUTPUT.exec(output.Description ?? '')?.[1];
      return apiName === undefined
        ? []
        : [{ apiName, stackName: artifact.properties?.stackName ?? artifactId, artifactId, urlOutput: key }];
    });
  });
}

/** Each API's stack artifact id, by API name. */
export function apiStacks(assembly: string): Map<string, string> {
  return new Map(assemblyApis(assembly).map((api) => [api.apiName, api.artifactId]));
}

/** The stacks of the named APIs (every stack with an API when none is named); an unknown name is a UsageError. */
export function stacksOf(apis: readonly string[], stacks: ReadonlyMap<string, string>): string[] {
  const known = [...stacks.keys()];
  for (const api of apis) {
    if (!stacks.has(api)) {
      const guess = didYouMean(api, known);
      throw new UsageError(
        `there is no API '${api}' in this app${guess ? ` (did you mean '${guess}'?)` : ''}`,
        `Its APIs: ${known.join(', ') || 'none'}`,
      );
    }
  }
  return [...new Set((apis.length > 0 ? apis : known).map((api) => stacks.get(api)!))];
}

/** How a CDK CLI run ended, with what it printed. */
export interface CdkRun {
  readonly code: number;
  readonly output: string;
}

/** Runs the CDK CLI in the project, its output streamed to `echo` as it comes (and kept, up to 2 MB). */
export async function runCdk(
  project: Project,
  args: readonly string[],
  echo: (chunk: string) => void = (chunk) => process.stderr.write(chunk),
  env: NodeJS.ProcessEnv = process.env,
): Promise<CdkRun> {
  const { script } = cdkCliScript(project.dir);
  const chunks: string[] = [];
  let kept = 0;
  return await new Promise<CdkRun>((done, fail) => {
    const child = spawn(process.execPath, [script, ...args], {
      cwd: project.kind === 'app-file' ? project.loaded.dir : project.dir,
      env: cdkEnvironment(project, env),
      // On a terminal the CDK CLI keeps it as its stdout: it asks for approvals (--require-approval) only when its
      // stdout is a TTY. Its progress and errors go to stderr (to stdout under CI=true, where stdout is piped too).
      stdio: ['inherit', process.stdout.isTTY ? 'inherit' : 'pipe', 'pipe'],
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream?.setEncoding('utf8').on('data', (chunk: string) => {
        if (kept < 2 * 2 ** 20) {
          chunks.push(chunk);
          kept += chunk.length;
        }
        echo(chunk);
      });
    }
    child.once('error', fail);
    child.once('close', (code, signal) => done({ code: code ?? (signal ? 128 : 1), output: chunks.join('') }));
  });
}
