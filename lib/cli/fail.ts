import { StartupError } from '../runtime/startup-error.js';

/** A CLI error: one line on stderr saying what and how to fix it; the stack only with --verbose. */
export function reportError(error: unknown, verbose: boolean): void {
  const line = error instanceof StartupError ? error.oneLine() : error instanceof Error ? error.message : String(error);
  process.stderr.write(`arclight: error: ${line}\n`);
  if (verbose) {
    const stack = error instanceof Error && error.cause instanceof Error ? error.cause.stack : (error as Error)?.stack;
    if (stack) process.stderr.write(`${stack}\n`);
  } else if (!(error instanceof StartupError)) {
    process.stderr.write('arclight: run with --verbose for the stack\n');
  }
}

/** A usage problem with the command line itself. */
export class UsageError extends StartupError {}
