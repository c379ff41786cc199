/**
 * Soak of the container server (the container main in a child process, as its Dockerfile starts it) on MobileNet
 * with 2 workers and dynamic batching on, under closed-loop load at concurrency 32 over the OIP binary extension:
 * every answer a right 200, the server's RSS after the run (after a full collection) at most MAX_RSS_DRIFT
 * (test/soak.ts) above that after the warm-up, the event-loop delay of the server's thread reported (inference runs
 * in the workers). Short profile (npm test): a few hundred requests; long (npm run soak): the 20k.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MOBILENET_ONNX } from '../../helpers.js';
import { byProfile } from '../../profile.js';
import { startContainerMain, type ServedProcess } from '../../served-process.js';
import { assertSoaked, describeSoak, mobileNetBinaryInfer, soak } from '../../soak.js';

describe('container server soak: MobileNet, 2 workers, batching on, OIP binary tensors', () => {
  let server: ServedProcess;

  before(async () => {
    server = await startContainerMain({
      ARCLIGHT_API_NAME: 'mobilenet',
      ARCLIGHT_MODEL_URI: MOBILENET_ONNX,
      ARCLIGHT_EXECUTION_PROVIDERS: 'cpu',
      ARCLIGHT_WORKERS: '2',
      ARCLIGHT_INTRA_OP_THREADS: '1',
      ARCLIGHT_MAX_BATCH_SIZE: '8',
      ARCLIGHT_MAX_BATCH_DELAY_MS: '2',
    });
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, 'exits 0 on SIGTERM');
  });

  test('every request a right 200, RSS flat after warm-up, event-loop delay reported', async (t) => {
    const result = await soak(server, {
      connections: 32,
      warmUp: byProfile({ short: 100, long: 3000 }),
      amount: byProfile({ short: 400, long: 20_000 }),
      requests: [mobileNetBinaryInfer('mobilenet')],
    });
    t.diagnostic(describeSoak('container mobilenet', result));
    assertSoaked(result, server);
  });
});
