/**
 * `arclight synth`: the app (an arclight.yaml, or a cdk.json app) synthesized by the CDK CLI into its cloud
 * assembly, then a line per API: its stack and compute.
 */
import { relative } from 'node:path';
import { StartupError } from '../../runtime/startup-error.js';
import { failureLine } from './assembly.js';
import { assemblyApis, assemblyDir, cdkArguments, findProject, runCdk, type Project } from './cdk-cli.js';

export interface SynthOptions {
  /** The app file. @default arclight.yaml (.yml, .json) in cwd, unless cdk.json names an app */
  readonly file?: string;
  /** The project folder. @default process.cwd() */
  readonly cwd?: string;
  /** Arguments passed to `cdk synth` as they are. */
  readonly extra?: readonly string[];
  /** Where the CDK CLI's output goes. @default stderr */
  readonly echo?: (chunk: string) => void;
}

/** A CDK CLI run that failed: its error in one line. */
export class CdkCliError extends StartupError {}

/** Synthesizes the project; returns it and the assembly folder. */
export async function synth(options: SynthOptions = {}): Promise<{ project: Project; assembly: string }> {
  const project = findProject(options.cwd ?? process.cwd(), options.file);
  const run = await runCdk(project, cdkArguments('synth', project, { stacks: [], extra: options.extra }), options.echo);
  if (run.code !== 0) {
    throw new CdkCliError(`cdk synth failed: ${failureLine(run.output)}`, 'The CDK output above has the details');
  }
  return { project, assembly: assemblyDir(project) };
}

/** `synthesized 2 APIs into cdk.out: digits (stack app-digits, lambda), ...` */
export function synthSummary(assembly: string): string {
  const apis = assemblyApis(assembly);
  const where = relative(process.cwd(), assembly) || '.';
  return `synthesized ${apis.length} API${apis.length === 1 ? '' : 's'} into ${where}${apis.length > 0 ? ': ' : ''}${apis
    .map((api) => `${api.apiName} (stack ${api.stackName})`)
    .join(', ')}`;
}
