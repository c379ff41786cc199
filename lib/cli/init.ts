/**
 * `arclight init [dir]`: a new CDK app with one RealtimeApi that works at once (`npm install && npm start`), made from
 * the package's templates/ folder and the versions this package was built and tested with.
 */
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, relative, resolve } from 'node:path';
import { packageFile } from '../package-files.js';
import { UsageError } from './fail.js';

/** The starter templates: the same digits predictor with an ONNX model, or a TorchScript one (needs Python + torch). */
export const INIT_TEMPLATES = ['onnx', 'torch'] as const;
export type InitTemplate = (typeof INIT_TEMPLATES)[number];

const STARTER_MODELS: Record<InitTemplate, string> = { onnx: 'digits.onnx', torch: 'digits.torchscript.pt' };
/** npm leaves files with these names out of a package, so the templates carry them under another name. */
const RENAMED: Record<string, string> = { _gitignore: '.gitignore', _npmrc: '.npmrc' };
/** Dependencies whose install scripts the app denies (npm 11's allowScripts): none is needed on the CPU. */
const DENIED_INSTALL_SCRIPTS = ['esbuild', 'onnxruntime-node', 'protobufjs'];

export interface InitOptions {
  /** Where to create the app (made if missing). */
  readonly dir: string;
  readonly template: InitTemplate;
  /** Write into a directory that is not empty (files of the same name are overwritten). */
  readonly force: boolean;
  /** The app as an arclight.yaml (no infrastructure code) instead of a CDK app. @default false */
  readonly yaml?: boolean;
}

export interface InitResult {
  readonly dir: string;
  /** The files written, relative to dir. */
  readonly files: readonly string[];
}

interface ArclightPackage {
  readonly version: string;
  readonly dependencies: Record<string, string>;
  readonly devDependencies: Record<string, string>;
}

/** Writes the app; refuses a non-empty directory without force. */
export function init(options: InitOptions): InitResult {
  const dir = resolve(options.dir);
  assertWritable(dir, options.force);
  const name = projectName(dir);
  const model = STARTER_MODELS[options.template];
  const substitute = (text: string): string =>
    text.replaceAll('PROJECT_NAME', name).replaceAll('STACK_NAME', stackName(name)).replaceAll('MODEL_FILE', model);
  const files: string[] = [];
  const write = (path: string, text: string): void => {
    mkdirSync(dirname(join(dir, path)), { recursive: true });
    writeFileSync(join(dir, path), text);
    files.push(path);
  };
  const templateDir = packageFile('templates', options.yaml ? 'yaml' : 'app');
  for (const source of listFiles(templateDir)) {
    const path = relative(templateDir, source);
    write(join(dirname(path), RENAMED[basename(path)] ?? basename(path)), substitute(readFileSync(source, 'utf8')));
  }
  if (options.yaml) {
    // The same starter predictor as the CDK flavour's.
    const predictor = join('functions', 'predictor.ts');
    write(predictor, substitute(readFileSync(packageFile('templates', 'app', predictor), 'utf8')));
  }
  mkdirSync(join(dir, 'models'), { recursive: true });
  cpSync(packageFile('templates', 'models', model), join(dir, 'models', model));
  files.push(join('models', model));
  const pkg = options.yaml ? yamlPackageJson(appPackageJson(name)) : appPackageJson(name);
  write('package.json', `${JSON.stringify(pkg, null, 2)}\n`);
  return { dir, files: files.sort() };
}

function assertWritable(dir: string, force: boolean): void {
  if (!existsSync(dir)) return;
  if (!statSync(dir).isDirectory()) throw new UsageError(`${dir} exists and is not a directory`, 'Pick another path');
  if (readdirSync(dir).length > 0 && !force) {
    throw new UsageError(
      `${dir} is not empty`,
      'Pick a new or empty directory, or pass --force to write the starter files into it (files of the same name are replaced)',
    );
  }
}

/** An npm package name from the directory's name. */
function projectName(dir: string): string {
  const name = basename(dir)
    .toLowerCase()
    .replace(/[^a-z0-9._-]+/g, '-')
    .replace(/^[._-]+|-+$/g, '');
  return name.length > 0 ? name : 'arclight-app';
}

/** A CloudFormation stack name prefix from the project's name. */
function stackName(name: string): string {
  const stack = name.replace(/[^A-Za-z0-9-]+/g, '-').replace(/^[^A-Za-z]+|-+$/g, '');
  return stack.length > 0 ? stack : 'arclight-app';
}

/** The arclight.yaml flavour's package.json: Arclight and the CDK libraries it synthesizes with; no TypeScript build. */
function yamlPackageJson(cdkApp: Record<string, unknown>): Record<string, unknown> {
  const rest = Object.fromEntries(Object.entries(cdkApp).filter(([key]) => key !== 'devDependencies'));
  return {
    ...rest,
    scripts: {
      start: 'arclight dev',
      synth: 'arclight synth',
      deploy: 'arclight deploy',
      diff: 'arclight diff',
      delete: 'arclight delete',
    },
  };
}

function listFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory() ? listFiles(join(dir, entry.name)) : [join(dir, entry.name)],
  );
}

/** The app's package.json: this Arclight, and the CDK, TypeScript and tsx versions it was tested with. */
function appPackageJson(name: string): Record<string, unknown> {
  const own = JSON.parse(readFileSync(packageFile('package.json'), 'utf8')) as ArclightPackage;
  const version = (dep: string): string => {
    const found = own.devDependencies[dep] ?? own.dependencies[dep];
    if (found === undefined) throw new Error(`arclight's package.json does not name ${dep}`);
    return found;
  };
  return {
    name,
    version: '0.1.0',
    private: true,
    type: 'module',
    engines: { node: '>=20.19' },
    scripts: {
      start: 'arclight dev',
      test: 'tsc && node --import tsx --test test/*.test.ts',
      synth: 'cdk synth',
      deploy: 'cdk deploy',
    },
    dependencies: {
      arclight: `^${own.version}`,
      'aws-cdk-lib': version('aws-cdk-lib'),
      constructs: version('constructs'),
    },
    devDependencies: {
      '@types/node': version('@types/node'),
      'aws-cdk': version('aws-cdk'),
      tsx: version('tsx'),
      typescript: version('typescript'),
    },
    allowScripts: Object.fromEntries(DENIED_INSTALL_SCRIPTS.map((dep) => [dep, false])),
  };
}
