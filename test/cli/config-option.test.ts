/**
 * `--config` as `serve` and `batch run` read it: inline JSON or `@file.json`, always a JSON object, every mistake a
 * one-line usage error; and, through the built CLI, the object reaches both `init()` and `predict()`.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { UsageError } from '../../lib/cli/fail.js';
import { parseConfigOption } from '../../lib/cli/config-option.js';
import { DIGITS_ONNX, runCli } from '../helpers.js';
import { startServeCli, type ServedProcess } from '../served-process.js';

const dir = mkdtempSync(join(tmpdir(), 'arclight-config-'));
const configFile = join(dir, 'config.json');
writeFileSync(configFile, JSON.stringify({ threshold: 0.5, labels: ['a', 'b'] }));

describe('parseConfigOption', () => {
  test('inline JSON and @file both give the object', async () => {
    assert.deepEqual(await parseConfigOption('{"threshold":0.25}'), { threshold: 0.25 });
    assert.deepEqual(await parseConfigOption(`@${configFile}`), { threshold: 0.5, labels: ['a', 'b'] });
  });

  test('bad JSON, an unreadable file and a non-object are usage errors that say which', async () => {
    const cases: [string, RegExp][] = [
      ['{threshold: 1}', /^--config is not valid JSON: /],
      [`@${join(dir, 'missing.json')}`, /^--config file .*missing\.json cannot be read: ENOENT/],
      ['[1, 2]', /^--config must be a JSON object$/],
      ['null', /^--config must be a JSON object$/],
      ['42', /^--config must be a JSON object$/],
    ];
    for (const [value, message] of cases) {
      await assert.rejects(parseConfigOption(value), (error: unknown) => {
        assert.ok(error instanceof UsageError, value);
        assert.match(error.message, message);
        return true;
      });
    }
  });
});

describe('arclight serve --config (the built CLI)', () => {
  let served: ServedProcess | undefined;
  after(async () => {
    await served?.stop();
  });

  test('the object from @file reaches init() and predict()', async () => {
    served = await startServeCli([
      '--model',
      DIGITS_ONNX,
      '--predictor',
      'test/fixtures/config-echo-predictor.ts',
      '--config',
      `@${configFile}`,
    ]);
    const response = await fetch(`${served.url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{}',
      signal: AbortSignal.timeout(10_000),
    });
    assert.equal(response.status, 200);
    const expected = { threshold: 0.5, labels: ['a', 'b'] };
    assert.deepEqual(await response.json(), { init: expected, predict: expected });
  });

  test('bad JSON: exit 1 with one line naming --config, no stack', async () => {
    const result = await runCli(['serve', '--model', DIGITS_ONNX, '--config', '{bad', '--port', '0']);
    assert.equal(result.code, 1, result.stderr);
    assert.match(result.stderr, /--config is not valid JSON/);
    assert.doesNotMatch(result.stderr, /^\s+at\s/m);
  });
});
