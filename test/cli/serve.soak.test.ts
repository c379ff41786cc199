/**
 * Soak of `arclight serve` (the node:http adapter and the in-process onnxruntime executor) run as users run it, in a
 * child process, under closed-loop load at concurrency 32 from autocannon on loopback. Every answer must be a right
 * 200 (digits: the digit the reference logits give; MobileNet: a [1, 1000] output), and the server's RSS after the
 * run (after a full collection) may exceed that after the warm-up by at most MAX_RSS_DRIFT.
 * Short profile (npm test): a few thousand digits requests, a few hundred MobileNet ones. Long (npm run soak): the
 * issue's 100k digits and 20k MobileNet requests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { MOBILENET, inputFor, oipBinaryBody } from '../../bench/payloads.js';
import type { LoadRequest } from '../closed-loop-load.js';
import { DIGITS_ONNX, DIGITS_PREDICTOR, MOBILENET_ONNX, argmax, greyLevels, loadDigitsExpected } from '../helpers.js';
import { byProfile } from '../profile.js';
import { startServeCli, type ServedProcess } from '../served-process.js';
import { describeSoak, soak, type SoakResult } from '../soak.js';

const CONNECTIONS = 32;
/**
 * The bound is 5%. A short run is too brief for slow growth to add up to much, and the allocator's working
 * set moves by a few MiB from run to run, so the short profile holds a looser bound; the long profile holds 5%.
 */
const MAX_RSS_DRIFT = byProfile({ short: 0.1, long: 0.05 });

/** The soak's assertions, shared by both models. */
function assertSoaked(result: SoakResult, server: ServedProcess): void {
  const { run } = result;
  assert.equal(run.errors, 0, `connection errors: ${JSON.stringify(run.statusCodes)}`);
  assert.equal(run.timeouts, 0, 'timeouts');
  assert.equal(run.non2xx, 0, `non-2xx answers: ${JSON.stringify(run.statusCodes)}`);
  assert.equal(run.ok, run.amount, 'every request answered 2xx');
  assert.equal(run.wrong, 0, `wrong answers, the first: ${run.firstWrong}`);
  assert.equal(result.warmUp.ok, result.warmUp.amount, 'the warm-up was clean too');
  assert.ok(result.baseline.collected && result.final.collected, 'RSS compared after full collections');
  assert.ok(
    result.rssDrift <= MAX_RSS_DRIFT,
    `RSS drift ${(result.rssDrift * 100).toFixed(2)}% > ${MAX_RSS_DRIFT * 100}% after warm-up`,
  );
  assert.ok(result.final.loopDelay.count > 0, 'the event-loop delay was sampled during the run');
  assert.deepEqual(server.errorRecords(), [], 'no ERROR log records');
  assert.equal(server.exited(), false, 'still running');
}

describe('arclight serve soak: digits predictor, POST / JSON', () => {
  let server: ServedProcess;
  const expected = loadDigitsExpected();

  before(async () => {
    server = await startServeCli(['--model', DIGITS_ONNX, '--predictor', DIGITS_PREDICTOR, '--name', 'digits']);
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, 'exits 0 on SIGTERM');
  });

  /** 64 different images, each checked against the digit its reference logits give. */
  function requests(): LoadRequest[] {
    return expected.images.slice(0, 64).map((image, i) => {
      const want = argmax(expected.logits[i]!);
      return {
        method: 'POST',
        path: '/',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ pixels: greyLevels(image) }),
        check: (body) => {
          const digit = (JSON.parse(body) as { digit?: unknown }).digit;
          return digit === want ? undefined : `image ${i}: digit ${String(digit)}, expected ${want}`;
        },
      };
    });
  }

  test('every request a right 200, RSS flat after warm-up, event-loop delay reported', async (t) => {
    const result = await soak(server, {
      connections: CONNECTIONS,
      warmUp: byProfile({ short: 1000, long: 10_000 }),
      amount: byProfile({ short: 5000, long: 100_000 }),
      requests: requests(),
    });
    t.diagnostic(describeSoak('digits', result));
    assertSoaked(result, server);
  });
});

describe('arclight serve soak: MobileNet, default predictor, OIP binary tensors', () => {
  let server: ServedProcess;

  before(async () => {
    server = await startServeCli(['--model', MOBILENET_ONNX, '--name', 'mobilenet']);
  });
  after(async () => {
    if (server) assert.equal(await server.stop(), 0, 'exits 0 on SIGTERM');
  });

  /** One image; the answer's JSON header must describe a [1, 1000] FP32 output of 4000 bytes. */
  function requests(): LoadRequest[] {
    const { body, headers } = oipBinaryBody(MOBILENET, inputFor(MOBILENET));
    return [
      {
        method: 'POST',
        path: '/v2/models/mobilenet/infer',
        headers,
        body,
        check: (text) =>
          /^\{"model_name":"mobilenet".*"shape":\[1,1000\].*"binary_data_size":4000/.test(text)
            ? undefined
            : `unexpected answer: ${text.slice(0, 200)}`,
      },
    ];
  }

  test('every request a right 200, RSS flat after warm-up, event-loop delay reported', async (t) => {
    const result = await soak(server, {
      connections: CONNECTIONS,
      warmUp: byProfile({ short: 100, long: 1000 }),
      amount: byProfile({ short: 400, long: 20_000 }),
      requests: requests(),
    });
    t.diagnostic(describeSoak('mobilenet', result));
    assertSoaked(result, server);
  });
});
