/**
 * The README documents every synth warning id Arclight raises, and acknowledging one the way it says
 * (`Annotations.of(api).acknowledgeWarning(id, reason)`) removes it from what synth reports.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Annotations, Stack } from 'aws-cdk-lib';
import { Annotations as TemplateAnnotations, Match } from 'aws-cdk-lib/assertions';
import { Compute, ModelSource, RealtimeApi } from '../../lib/index.js';
import { tempApp, useScratchTmpdir } from '../cdk-helpers.js';
import { DIGITS_ONNX, REPO_ROOT } from '../helpers.js';

useScratchTmpdir();

const CONSTRUCTS = join(REPO_ROOT, 'lib', 'constructs');

function warningIds(): string[] {
  // Every construct file, in the grouping folders too (backends/, operations/, async/, batch/ ...).
  const ids = readdirSync(CONSTRUCTS, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.ts'))
    .flatMap((file) =>
      [...readFileSync(join(CONSTRUCTS, file), 'utf8').matchAll(/addWarningV2\(\s*'(arclight:\w+)'/g)].map(
        (m) => m[1]!,
      ),
    );
  return [...new Set(ids)].sort();
}

describe('synth warnings', () => {
  test('each id is in the README table of warnings', () => {
    const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
    const documented = [...readme.matchAll(/^\| `(arclight:\w+)` /gm)].map((m) => m[1]!).sort();
    const ids = warningIds();
    assert.ok(ids.length >= 4, `found ${ids.join()}`);
    assert.deepEqual(documented, ids);
  });

  test('Annotations.of(api).acknowledgeWarning(id, reason) silences that warning for that API only', () => {
    const app = tempApp();
    const stack = new Stack(app, 'Warnings');
    const quiet = new RealtimeApi(stack, 'quiet', {
      model: ModelSource.fromAsset(DIGITS_ONNX),
      compute: Compute.lambda(),
    });
    new RealtimeApi(stack, 'loud', { model: ModelSource.fromAsset(DIGITS_ONNX), compute: Compute.lambda() });
    Annotations.of(quiet).acknowledgeWarning('arclight:openApi', 'a public demo, throttled');
    const annotations = TemplateAnnotations.fromStack(stack);
    annotations.hasNoWarning('/Warnings/quiet', Match.stringLikeRegexp('unauthenticated'));
    annotations.hasWarning('/Warnings/loud', Match.stringLikeRegexp('unauthenticated'));
  });
});
