/**
 * `arclight destroy [api…]` (also `delete`): deletes the APIs' stacks after a confirmation naming them (`--yes` skips
 * it; without a terminal to ask on, --yes is required).
 */
import { createInterface } from 'node:readline/promises';
import { assemblyApis, apiStacks, cdkArguments, runCdk, stacksOf } from './cdk-cli.js';
import { deployFailure, synthForAws } from './deploy.js';
import { UsageError } from '../fail.js';
import { CdkCliError } from './synth.js';

export interface DestroyOptions {
  readonly apis: readonly string[];
  readonly file?: string;
  readonly cwd?: string;
  /** Skip the confirmation. */
  readonly yes: boolean;
  readonly echo?: (chunk: string) => void;
  /** Asks the question; resolves to the answer. @default a prompt on the terminal */
  readonly ask?: (question: string) => Promise<string>;
}

/** Deletes the stacks; returns the names of the APIs deleted (none when the user said no). */
export async function destroy(options: DestroyOptions): Promise<string[]> {
  const { project, assembly } = await synthForAws(options);
  const stacks = stacksOf(options.apis, apiStacks(assembly));
  const apis = assemblyApis(assembly).filter((api) => stacks.includes(api.artifactId));
  const names = apis.map((api) => `${api.apiName} (stack ${api.stackName})`).join(', ');
  if (!options.yes) {
    const ask = options.ask ?? askOnTerminal;
    const answer = await ask(`Delete ${names} and every resource in ${stacks.length === 1 ? 'it' : 'them'}? [y/N] `);
    if (!/^y(es)?$/i.test(answer.trim())) return [];
  }
  const run = await runCdk(project, cdkArguments('destroy', project, { stacks }), options.echo);
  if (run.code !== 0) throw new CdkCliError(`delete failed: ${deployFailure(run.output)}`);
  return apis.map((api) => api.apiName);
}

async function askOnTerminal(question: string): Promise<string> {
  if (!process.stdin.isTTY) {
    throw new UsageError('refusing to delete without a confirmation', 'Pass --yes to delete without asking');
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    return await rl.question(question);
  } finally {
    rl.close();
  }
}
