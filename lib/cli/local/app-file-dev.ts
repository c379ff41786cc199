/**
 * `arclight dev` on an app file: when no cdk.json names an app, the package's CDK app entry builds the app from
 * arclight.yaml (checked first, every problem at once), as `arclight synth` does.
 */
import { APP_FILE_ENV } from '../../app-file/app-command.js';
import { appCommand, findProject } from '../deploy/cdk-cli.js';

/** The app command for `arclight dev` (undefined leaves dev's own cdk.json lookup), with the file named in env. */
export function appFileCommand(file: string | undefined, options: Record<string, unknown>): string | undefined {
  if (options['assembly'] !== undefined) return undefined;
  const project = findProject(process.cwd(), file);
  if (project.kind !== 'app-file') return undefined;
  process.env[APP_FILE_ENV] = project.loaded.file;
  return appCommand(project);
}
