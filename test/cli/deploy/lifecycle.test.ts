/**
 * `arclight synth|deploy|diff|destroy|dev` and `init --yaml` as a user meets them, in a folder holding only
 * arclight.yaml, a predictor and a model (no cdk.json, no package.json): a real `cdk synth` through the package's app
 * entry, `arclight dev` serving the API, deploy without AWS credentials failing in one clear line, a broken file
 * reported whole before anything runs, and the CDK CLI command lines built from the arguments.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { APP_FILE_ENV } from '../../../lib/app-file/app-command.js';
import { loadAppFile } from '../../../lib/app-file/load.js';
import {
  appCommand,
  assemblyDir,
  cdkArguments,
  cdkEnvironment,
  findProject,
  stacksOf,
} from '../../../lib/cli/deploy/cdk-cli.js';
import { deployFailure } from '../../../lib/cli/deploy/deploy.js';
import { init } from '../../../lib/cli/init.js';
import { collect, DIGITS_ONNX, REPO_ROOT, waitForStderr, type CliResult } from '../../helpers.js';

const CLI = join(REPO_ROOT, 'bin', 'arclight.js');
const root = mkdtempSync(join(tmpdir(), 'arclight-lifecycle-'));
after(() => rmSync(root, { recursive: true, force: true }));

/** An environment with no AWS setup at all: no keys, no profile files, no instance metadata. */
const NO_AWS: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([key]) => !key.startsWith('AWS_') && !key.startsWith('CDK_')),
);
Object.assign(NO_AWS, {
  HOME: root,
  AWS_CONFIG_FILE: join(root, 'no-aws-config'),
  AWS_SHARED_CREDENTIALS_FILE: join(root, 'no-aws-credentials'),
  AWS_EC2_METADATA_DISABLED: 'true',
  TMPDIR: root,
});

/** A folder with only arclight.yaml, a predictor and a model. */
function appFolder(name: string, yaml: string): string {
  const dir = join(root, name);
  mkdirSync(join(dir, 'models'), { recursive: true });
  cpSync(DIGITS_ONNX, join(dir, 'models', 'digits.onnx'));
  cpSync(join(REPO_ROOT, 'templates', 'app', 'functions', 'predictor.ts'), join(dir, 'predictor.ts'));
  writeFileSync(join(dir, 'arclight.yaml'), yaml);
  return dir;
}

const APP_YAML = [
  'stackName: Lifecycle',
  'apis:',
  '  - name: digits',
  '    predictor: predictor.ts',
  '    model: models/digits.onnx',
  '    compute: { kind: lambda, memorySize: 1024 }',
  '',
].join('\n');

function run(
  args: readonly string[],
  cwd: string,
  env: NodeJS.ProcessEnv = NO_AWS,
  timeoutMs = 240_000,
): Promise<CliResult> {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, env, stdio: 'pipe' });
  return collect(child, timeoutMs);
}

describe('the CDK CLI invocation', () => {
  const dir = appFolder('args', APP_YAML);
  const project = findProject(dir);

  test('an app file runs through the package app entry, with the file named in the environment', () => {
    assert.equal(project.kind, 'app-file');
    const out = assemblyDir(project);
    assert.equal(out, join(dir, 'cdk.out'));
    assert.deepEqual(cdkArguments('synth', project, { stacks: [] }), [
      'synth',
      '--app',
      appCommand(project),
      '--output',
      out,
      '--quiet',
      '--no-notices',
      '--no-version-reporting',
    ]);
    assert.match(appCommand(project), /app-file\/app-entry\.(ts|js)$/);
    const env = cdkEnvironment(project, {});
    assert.equal(env[APP_FILE_ENV], join(dir, 'arclight.yaml'));
    assert.equal(env['CDK_DISABLE_CLI_TELEMETRY'], 'true');
  });

  test("deploy, diff and destroy act on the synthesized assembly, on the named APIs' stacks", () => {
    const out = assemblyDir(project);
    assert.deepEqual(
      cdkArguments('deploy', project, {
        stacks: ['Lifecycle-digits'],
        requireApproval: 'never',
        outputsFile: '/tmp/o.json',
      }),
      [
        'deploy',
        '--app',
        out,
        'Lifecycle-digits',
        '--require-approval',
        'never',
        '--outputs-file',
        '/tmp/o.json',
        '--progress',
        'events',
        '--no-notices',
        '--no-version-reporting',
      ],
    );
    assert.deepEqual(cdkArguments('deploy', project, { stacks: [] }).slice(0, 4), ['deploy', '--app', out, '--all']);
    assert.deepEqual(cdkArguments('diff', project, { stacks: ['A', 'B'] }).slice(0, 5), [
      'diff',
      '--app',
      out,
      'A',
      'B',
    ]);
    assert.deepEqual(cdkArguments('destroy', project, { stacks: ['A'] }).slice(0, 5), [
      'destroy',
      '--app',
      out,
      'A',
      '--force',
    ]);
  });

  test('API names select stacks; an unknown one is refused with a did-you-mean', () => {
    const stacks = new Map([
      ['digits', 'Lifecycle-digits'],
      ['mobilenet', 'Lifecycle-mobilenet'],
    ]);
    assert.deepEqual(stacksOf([], stacks), ['Lifecycle-digits', 'Lifecycle-mobilenet']);
    assert.deepEqual(stacksOf(['mobilenet'], stacks), ['Lifecycle-mobilenet']);
    assert.throws(() => stacksOf(['digts'], stacks), {
      message: "there is no API 'digts' in this app (did you mean 'digits'?)",
    });
  });

  test('a cdk.json app is still run as it is', () => {
    const cdk = appFolder('cdk-app', APP_YAML);
    writeFileSync(join(cdk, 'cdk.json'), JSON.stringify({ app: 'npx tsx bin/app.ts', output: 'out' }));
    const found = findProject(cdk);
    assert.equal(found.kind, 'cdk-json');
    assert.equal(appCommand(found), 'npx tsx bin/app.ts');
    assert.equal(assemblyDir(found), join(cdk, 'out'));
    assert.equal(findProject(cdk, 'arclight.yaml').kind, 'app-file');
  });

  test("a failed deployment is told by its first failing resource and CloudFormation's reason", () => {
    // The CDK CLI's `--progress events` lines, as it prints them for a stack whose function fails to create.
    const output = [
      'Lifecycle-digits: deploying... [1/1]',
      'Lifecycle-digits | 0/12 | 10:01:00 AM | CREATE_IN_PROGRESS   | AWS::CloudFormation::Stack | Lifecycle-digits User Initiated',
      'Lifecycle-digits | 3/12 | 10:01:40 AM | CREATE_FAILED        | AWS::Lambda::Function      | digits/Function (digitsFunction1234ABCD) Resource handler returned message: "Memory size 20000 is above the maximum (Service: Lambda, Status Code: 400)"',
      'Lifecycle-digits | 3/12 | 10:01:41 AM | CREATE_FAILED        | AWS::ApiGatewayV2::Api     | digits/Api (digitsApi5678) Resource creation cancelled',
      ' ❌  Lifecycle-digits failed: _ToolkitError: The stack named Lifecycle-digits failed creation',
    ].join('\n');
    assert.equal(
      deployFailure(output),
      'CREATE_FAILED AWS::Lambda::Function digits/Function (digitsFunction1234ABCD) Resource handler returned message: "Memory size 20000 is above the maximum (Service: Lambda, Status Code: 400)"',
    );
    assert.equal(
      deployFailure('\n ❌  Lifecycle-digits failed: Error: Need to perform AWS calls for account 1234\n'),
      'Lifecycle-digits failed: Error: Need to perform AWS calls for account 1234',
    );
  });
});

describe('a folder with only arclight.yaml, a predictor and a model', () => {
  let dir: string;
  before(() => {
    dir = appFolder('app', APP_YAML);
  });

  test('arclight synth runs the real CDK CLI and builds the API stack', async (t) => {
    const started = performance.now();
    const result = await run(['synth'], dir);
    t.diagnostic(`arclight synth: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, 'synthesized 1 API into cdk.out: digits (stack Lifecycle-digits)\n');
    assert.ok(!existsSync(join(dir, 'cdk.json')));
    const template = JSON.parse(readFileSync(join(dir, 'cdk.out', 'Lifecycle-digits.template.json'), 'utf8')) as {
      Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
    };
    const fn = Object.values(template.Resources).find(
      (r) => r.Type === 'AWS::Lambda::Function' && r.Properties['PackageType'] === 'Image',
    );
    assert.equal(fn?.Properties['MemorySize'], 1024);
    // The synth warning about an open API reached the user through the CDK CLI.
    assert.match(result.stderr, /arclight:openApi/);
  });

  test('arclight dev serves it', async () => {
    const child = spawn(process.execPath, [CLI, 'dev', '--port', '0'], { cwd: dir, env: NO_AWS, stdio: 'pipe' });
    try {
      const [, base] = await waitForStderr(
        child,
        /serving 1 APIs? on (http:\/\/127\.0\.0\.1:\d+)\/ \(ready\)/,
        240_000,
      );
      const pixels = [
        0, 3, 13, 16, 9, 0, 0, 0, 0, 10, 15, 13, 15, 2, 0, 0, 0, 15, 4, 4, 16, 1, 0, 0, 0, 0, 0, 5, 16, 2, 0, 0, 0, 0,
        1, 14, 13, 0, 0, 0, 0, 0, 10, 16, 5, 0, 0, 0, 0, 4, 16, 13, 8, 10, 9, 1, 0, 2, 16, 16, 14, 12, 9, 1,
      ];
      const response = await fetch(`${base}/digits/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ pixels }),
      });
      const body = (await response.json()) as { digit: number; probabilities: number[] };
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.equal(body.digit, 2);
      assert.equal(body.probabilities.length, 10);
    } finally {
      child.kill('SIGTERM');
      await new Promise((done) => child.once('close', done));
    }
  });

  test('deploy without AWS credentials fails in one clear line, before synthesizing', async () => {
    const result = await run(['deploy'], dir, { ...NO_AWS, AWS_REGION: 'us-east-1' }, 60_000);
    assert.equal(result.code, 1);
    const lines = result.stderr.trim().split('\n');
    assert.equal(lines.length, 1, result.stderr);
    assert.match(lines[0]!, /^arclight: error: no AWS credentials \(.+\): run aws configure or aws sso login/);
    assert.equal(result.stdout, '');
  });

  test('deploy without a region says so in one line', async () => {
    const result = await run(['deploy'], dir, NO_AWS, 60_000);
    assert.equal(result.code, 1);
    assert.deepEqual(result.stderr.trim().split('\n'), [
      'arclight: error: no AWS region: set region: in arclight.yaml, or AWS_REGION, or a region in your AWS profile',
    ]);
  });

  test('deploy goes as far as it can without an account: synth, then the CDK CLI refusing in one line', async (t) => {
    // Credentials of the right shape that no account knows, and no network: the CDK CLI cannot resolve the account.
    const env = { ...NO_AWS, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'x' };
    const started = performance.now();
    const result = await run(['deploy', 'digits', '--require-approval', 'never'], dir, env, 400_000);
    t.diagnostic(`deploy until the CDK CLI gave up: ${((performance.now() - started) / 1000).toFixed(1)} s`);
    assert.equal(result.code, 1);
    assert.equal(result.stdout, '');
    assert.match(result.stderr, /Synthesis time/);
    const last = result.stderr.trim().split('\n').at(-1)!;
    assert.match(last, /^arclight: error: deploy failed: .*(AWS account|credentials|security token)/i);
  });

  test('delete without a terminal to ask on, and without --yes, deletes nothing', async () => {
    // Static credentials pass the check (nothing reaches AWS: the refusal comes first).
    const env = { ...NO_AWS, AWS_REGION: 'us-east-1', AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE', AWS_SECRET_ACCESS_KEY: 'x' };
    const result = await run(['delete', 'digits'], dir, env, 240_000);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /arclight: error: refusing to delete without a confirmation\. Pass --yes to delete without asking\n$/,
    );
  });

  test('a broken arclight.yaml is reported whole, before the CDK CLI runs', async () => {
    const broken = appFolder('broken', APP_YAML.replace('memorySize: 1024', 'memorySize: 20000, timout: 3'));
    const result = await run(['synth'], broken);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      [
        'arclight: error: arclight.yaml has 2 problems:',
        "  arclight.yaml:6:42 apis[0].compute.memorySize: 20000 is above Lambda's 10240 MB",
        "  arclight.yaml:6:49 apis[0].compute.timout: unknown key 'timout' (did you mean 'timeout'?)",
        '',
      ].join('\n'),
    );
    assert.ok(!existsSync(join(broken, 'cdk.out')));
  });
});

describe('arclight init --yaml', () => {
  test('scaffolds arclight.yaml, a predictor and a model that load as they are', () => {
    const dir = join(root, 'My App');
    const result = init({ dir, template: 'onnx', force: false, yaml: true });
    assert.deepEqual(result.files, [
      '.gitignore',
      '.npmrc',
      'README.md',
      'arclight.yaml',
      'functions/predictor.ts',
      'models/digits.onnx',
      'package.json',
    ]);
    const loaded = loadAppFile(join(dir, 'arclight.yaml'));
    assert.equal(loaded.app.stackName, 'my-app');
    assert.equal(loaded.app.apis[0]!.name, 'digits');
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, string>>;
    assert.equal(pkg['scripts']!['start'], 'arclight dev');
    assert.equal(pkg['scripts']!['deploy'], 'arclight deploy');
    assert.ok(pkg['dependencies']!['aws-cdk-lib']);
    assert.equal(pkg['devDependencies'], undefined);
  });
});
