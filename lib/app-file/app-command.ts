/**
 * The command that runs the package's CDK app entry for an app file, as a CDK CLI `--app`: plain node on the built
 * package, node with tsx's loader on the repository's sources.
 */
import { packageModule } from '../package-files.js';

/** The environment variable naming the app file for the entry. */
export const APP_FILE_ENV = 'ARCLIGHT_APP_FILE';

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The shell command that synthesizes the app the file describes (the file is passed in ARCLIGHT_APP_FILE). */
export function appEntryCommand(): string {
  const entry = packageModule('app-file/app-entry');
  const loader = entry.endsWith('.ts') ? ['--import', import.meta.resolve('tsx')] : [];
  return [process.execPath, ...loader, entry].map(quote).join(' ');
}
