/** Cold-start telemetry counts fresh memory touched per phase, and the 'model ready' log line carries it. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MOBILENET_ONNX, captureLogs, startRuntime } from '../../helpers.js';

describe('fresh memory per cold-start phase', () => {
  test('fetch, session, first run and init are counted, within the process total; logged when ready', async () => {
    const { result: runtime, lines } = await captureLogs(() =>
      startRuntime({ apiName: 'mobilenet', modelUri: MOBILENET_ONNX, logLevel: 'INFO' }),
    );
    try {
      const timings = await runtime.start();
      // The 10 MB model is read (≥ its size touched) and parsed into a session (more again).
      assert.ok(timings.fetchFreshMiB >= 9, `fetch touched ${timings.fetchFreshMiB} MiB`);
      assert.ok(timings.sessionFreshMiB >= 9, `session touched ${timings.sessionFreshMiB} MiB`);
      assert.ok(timings.firstRunFreshMiB >= 0 && timings.initFreshMiB >= 0);
      const phases = timings.fetchFreshMiB + timings.sessionFreshMiB + timings.firstRunFreshMiB + timings.initFreshMiB;
      assert.ok(timings.processFreshMiB >= phases, `process ${timings.processFreshMiB} ≥ phases ${phases}`);
      assert.ok(timings.rssMiB > 0);
      const ready = lines.find((line) => line['message'] === 'model ready');
      assert.ok(ready, 'a model ready line');
      for (const key of ['fetchFreshMiB', 'sessionFreshMiB', 'firstRunFreshMiB', 'initFreshMiB', 'processFreshMiB']) {
        assert.equal(typeof ready[key], 'number', key);
      }
    } finally {
      await runtime.close();
    }
  });
});
