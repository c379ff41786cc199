/** `arclight diff [api…]`: what a deploy would change, from the CDK CLI's diff of the synthesized stacks. */
import { apiStacks, cdkArguments, runCdk, stacksOf } from './cdk-cli.js';
import { synthForAws } from './deploy.js';
import { CdkCliError } from './synth.js';

export interface DiffOptions {
  readonly apis: readonly string[];
  readonly file?: string;
  readonly cwd?: string;
  readonly echo?: (chunk: string) => void;
}

/** Prints the diff; returns the CDK CLI's exit code (0, or 1 with --fail and differences). */
export async function diff(options: DiffOptions): Promise<void> {
  const { project, assembly } = await synthForAws(options);
  const stacks = stacksOf(options.apis, apiStacks(assembly));
  const run = await runCdk(
    project,
    cdkArguments('diff', project, { stacks }),
    options.echo ?? ((c) => process.stdout.write(c)),
  );
  if (run.code !== 0)
    throw new CdkCliError(`cdk diff failed (exit ${run.code})`, 'The CDK output above has the details');
}
