/**
 * The package's own CDK app: the CDK CLI runs it (`--app`) to build the app an app file describes, so a folder with
 * only `arclight.yaml`, predictors and models needs no cdk.json and no infrastructure code. The file comes in
 * ARCLIGHT_APP_FILE; a problem with it is printed as the CLI prints it, and the app exits 1.
 */
import { readFileSync } from 'node:fs';
import { App } from 'aws-cdk-lib';
import { packageFile } from '../package-files.js';
import { APP_FILE_ENV } from './app-command.js';
import { buildAppFromFile } from './build-app.js';
import { AppFileError, findAppFile, loadAppFile } from './load.js';

const file = process.env[APP_FILE_ENV] ?? findAppFile(process.cwd());
if (file === undefined) {
  process.stderr.write(`Error: no ${APP_FILE_ENV} and no arclight.yaml in ${process.cwd()}\n`);
  process.exit(1);
}
try {
  // The feature flags `arclight init`'s CDK apps set in cdk.json, so both flavours synthesize alike.
  const { context } = JSON.parse(readFileSync(packageFile('templates', 'app', 'cdk.json'), 'utf8')) as {
    context?: Record<string, unknown>;
  };
  const app = new App({ context });
  buildAppFromFile(loadAppFile(file), app);
  app.synth();
} catch (error) {
  if (!(error instanceof AppFileError)) throw error;
  process.stderr.write(`Error: ${error.message}\n`);
  process.exit(1);
}
