/**
 * `arclight serve --model s3://bucket/prefix/ --poll-interval` (the built CLI, as users run it) against s3rver:
 * the same live reload under load as the container server's test, through serve's in-process session.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { assertReloadRun } from '../../reload-assertions.js';
import { putFirstVersion, reloadUnderLoad } from '../../reload-under-load.js';
import { startServeCli, type ServedProcess } from '../../served-process.js';

const BUCKET = 'models';
const PREFIX = 'digits/';
let s3: EmbeddedS3;
let served: ServedProcess | undefined;

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  await putFirstVersion(s3, BUCKET, PREFIX);
  Object.assign(process.env, s3.env);
});

after(async () => {
  await served?.stop();
  await s3?.close();
});

test('arclight serve: a new version swapped in under load, a corrupt one refused', async (t) => {
  served = await startServeCli(['--model', `s3://${BUCKET}/${PREFIX}`, '--poll-interval', '0.25', '--threads', '1']);
  const run = await reloadUnderLoad(s3, served, { bucket: BUCKET, prefix: PREFIX, apiName: 'digits' });
  const figures = assertReloadRun(run);
  t.diagnostic(`reload figures (arclight serve): ${JSON.stringify(figures)}`);
  // A status line for each swap and refusal.
  const output = served.output();
  assert.match(output, /arclight: model version 2 \(was 1\)\n/);
  assert.match(
    output,
    /arclight: model version 3 refused: model s3:\/\/models\/digits\/3\/model.onnx failed its integrity check/,
  );
});
