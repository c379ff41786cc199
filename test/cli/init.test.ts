/**
 * `arclight init` as a user runs it (`node bin/arclight.js init ...`): the files it writes, the versions it pins,
 * and its refusal to write into a directory that is not empty. test/package/consumer.test.ts installs and runs what
 * it makes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { REPO_ROOT, runCli } from '../helpers.js';

const own = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  version: string;
  dependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'arclight-init-'));
}

function listFiles(dir: string, prefix = ''): string[] {
  return readdirSync(join(dir, prefix), { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(dir, join(prefix, e.name)) : [join(prefix, e.name)]))
    .sort();
}

describe('arclight init', () => {
  test('writes a CDK app with one RealtimeApi, the ONNX starter model and the versions this package was tested with', async () => {
    const dir = join(tempDir(), 'My API');
    const result = await runCli(['init', dir]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /npm install/);
    assert.deepEqual(listFiles(dir), [
      '.gitignore',
      '.npmrc',
      'README.md',
      'bin/app.ts',
      'cdk.json',
      'functions/predictor.ts',
      'lib/api-stack.ts',
      'models/digits.onnx',
      'package.json',
      'test/api-stack.test.ts',
      'tsconfig.json',
    ]);
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Record<string, Record<string, unknown>>;
    assert.equal(pkg['name'], 'my-api');
    assert.deepEqual(pkg['dependencies'], {
      arclight: `^${own.version}`,
      'aws-cdk-lib': own.devDependencies['aws-cdk-lib'],
      constructs: own.devDependencies['constructs'],
    });
    assert.equal(pkg['devDependencies']!['aws-cdk'], own.dependencies['aws-cdk']);
    assert.equal(pkg['allowScripts']!['onnxruntime-node'], false);
    assert.match(readFileSync(join(dir, '.npmrc'), 'utf8'), /^onnxruntime-node-install=skip$/m);
    assert.match(
      readFileSync(join(dir, 'lib/api-stack.ts'), 'utf8'),
      /ModelSource\.fromAsset\('models\/digits\.onnx'\)/,
    );
    assert.deepEqual(
      readFileSync(join(dir, 'models/digits.onnx')),
      readFileSync(join(REPO_ROOT, 'templates/models/digits.onnx')),
    );
    assert.match(readFileSync(join(dir, 'README.md'), 'utf8'), /^# my-api$/m);
  });

  test('--template torch starts from the TorchScript model', async () => {
    const dir = tempDir();
    const result = await runCli(['init', dir, '--template', 'torch']);
    assert.equal(result.code, 0, result.stderr);
    assert.ok(existsSync(join(dir, 'models/digits.torchscript.pt')));
    assert.ok(!existsSync(join(dir, 'models/digits.onnx')));
    assert.match(readFileSync(join(dir, 'lib/api-stack.ts'), 'utf8'), /'models\/digits\.torchscript\.pt'/);
  });

  test('refuses a directory that is not empty, and leaves it alone; --force writes into it', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'notes.txt'), 'mine');
    const refused = await runCli(['init', dir]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /is not empty.*--force/);
    assert.deepEqual(readdirSync(dir), ['notes.txt']);

    const forced = await runCli(['init', dir, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(readFileSync(join(dir, 'notes.txt'), 'utf8'), 'mine');
    assert.ok(existsSync(join(dir, 'lib/api-stack.ts')));
  });

  test('an unknown template is a usage error naming the choices', async () => {
    const result = await runCli(['init', tempDir(), '--template', 'tensorflow']);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /onnx, torch/);
  });
});

describe('arclight --version and --help', () => {
  test('--version prints the package version', async () => {
    const result = await runCli(['--version']);
    assert.equal(result.code, 0);
    assert.equal(result.stdout.trim(), own.version);
  });

  test('--help lists every command, one line each', async () => {
    const result = await runCli(['--help']);
    assert.equal(result.code, 0);
    const commands = result.stdout
      .split('\n')
      .slice(result.stdout.split('\n').indexOf('Commands:') + 1)
      .filter((line) => line.trim() !== '');
    assert.deepEqual(
      commands.map((line) => line.trim().split(/\s+/, 1)[0]),
      [
        'init',
        'serve',
        'dev',
        'bench',
        'predict',
        'synth',
        'deploy',
        'diff',
        'destroy|delete',
        'batch',
        'get',
        'logs',
        'plan',
        'help',
      ],
    );
    for (const line of commands) assert.match(line, /^ {2}\S.*\s{2,}\S/, `"${line}" has its description on its line`);
  });
});
