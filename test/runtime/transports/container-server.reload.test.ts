/**
 * Live reload in the container server, as a container runs it (the container main, its env from the deployed
 * contract) against s3rver: clients send requests back to back while version 2 is uploaded and a corrupt version 3
 * after it. No request fails or stalls across the swap, answers switch to version 2's outputs, version 1's workers
 * end (the process's thread count returns to what it was), and version 3 is refused while version 2 keeps serving.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { assertReloadRun } from '../../reload-assertions.js';
import { putFirstVersion, reloadUnderLoad } from '../../reload-under-load.js';
import { startContainerMain, type ServedProcess } from '../../served-process.js';

const BUCKET = 'models';
const PREFIX = 'digits/';
let s3: EmbeddedS3;
let served: ServedProcess | undefined;

before(async () => {
  s3 = await startEmbeddedS3([BUCKET]);
  await putFirstVersion(s3, BUCKET, PREFIX);
});

after(async () => {
  await served?.stop();
  await s3?.close();
});

test('container server: a new version swapped in under load, a corrupt one refused', async (t) => {
  served = await startContainerMain({
    ...s3.env,
    ARCLIGHT_API_NAME: 'digits',
    ARCLIGHT_MODEL_URI: `s3://${BUCKET}/${PREFIX}`,
    ARCLIGHT_MODEL_POLL_SECONDS: '0.25',
    ARCLIGHT_WORKERS: '2',
    ARCLIGHT_INTRA_OP_THREADS: '1',
  });
  const run = await reloadUnderLoad(s3, served, { bucket: BUCKET, prefix: PREFIX, apiName: 'digits' });
  const figures = assertReloadRun(run);
  t.diagnostic(`reload figures (container server): ${JSON.stringify(figures)}`);
  assert.equal(served.exited(), false);
});
