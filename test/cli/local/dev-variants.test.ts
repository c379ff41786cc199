/**
 * `arclight dev` serving variants, over real sockets with the real digits model (test/fixtures/variants-app.ts): the
 * ECS API's two services as two container servers behind the front, split 2 : 1 exactly per cycle of three, a variant
 * pinned by `x-arclight-variant`, any other name a 400 (as the deployed ALB's rule answers); the Lambda API's shadow
 * function as a local Lambda host of its own that gets a copy of every inference request after the answer, its
 * answers logged and never returned.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { synthesize } from '../../../lib/cli/deploy/assembly.js';
import { DevServer } from '../../../lib/cli/local/dev.js';
import { VARIANT_HEADER } from '../../../lib/contract.js';
import { REPO_ROOT, assertLogitsClose, contractError, digitsInferBody, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();
let outdir: string;
let dev: DevServer;
const log: string[] = [];

before(
  async () => {
    outdir = mkdtempSync(join(tmpdir(), 'arclight-dev-variants-'));
    await synthesize('node --import tsx test/fixtures/variants-app.ts', outdir, { cwd: REPO_ROOT });
    dev = new DevServer({ assembly: outdir, port: 0, host: '127.0.0.1', log: (line) => log.push(line) });
    await dev.start();
    assert.deepEqual(
      dev.apis.map((api) => [api.name, api.compute, api.variant ?? '-', api.status]).sort(),
      [
        ['digits-ecs', 'ecs', '-', 'ready'],
        ['digits-ecs', 'ecs', 'v2', 'ready'],
        ['digits-fn', 'lambda', '-', 'ready'],
        ['digits-fn', 'lambda', 'candidate', 'ready'],
      ],
      log.join('\n'),
    );
  },
  { timeout: 600_000 },
);

after(async () => {
  await dev?.close();
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

async function infer(
  api: string,
  i: number,
  headers: Record<string, string> = {},
): Promise<{ status: number; variant: string | null; body: unknown; id: string | null }> {
  const response = await fetch(`${dev.url}/${api}/v2/models/${api}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: digitsInferBody([expected.images[i % expected.images.length]!]),
  });
  return {
    status: response.status,
    variant: response.headers.get(VARIANT_HEADER),
    id: response.headers.get('x-request-id'),
    body: await response.json(),
  };
}

describe('an ECS API with a weighted variant', () => {
  test('1 : 0.5 splits exactly 2 : 1 over each cycle of three, each answer the real model’s, naming its variant', async () => {
    const variants: (string | null)[] = [];
    for (let i = 0; i < 9; i++) {
      const r = await infer('digits-ecs', i);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const logits = (r.body as { outputs: { data: number[] }[] }).outputs[0]!.data;
      assertLogitsClose(logits, expected.logits[i % expected.images.length]!, `request ${i}`);
      variants.push(r.variant);
    }
    assert.deepEqual(variants, Array(3).fill(['AllTraffic', 'v2', 'AllTraffic']).flat());
  });

  test('x-arclight-variant pins one; a name the API does not serve is a 400 naming those it does', async () => {
    for (let i = 0; i < 3; i++) assert.equal((await infer('digits-ecs', i, { [VARIANT_HEADER]: 'v2' })).variant, 'v2');
    const bad = await fetch(`${dev.url}/digits-ecs/v2/models/digits-ecs/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [VARIANT_HEADER]: 'v3' },
      body: digitsInferBody([expected.images[0]!]),
    });
    assert.equal(bad.status, 400);
    const error = contractError(await bad.json());
    assert.equal(error.code, 'invalid_input');
    assert.match(error.message, /serves AllTraffic, v2/);
  });
});

describe('a Lambda API with a shadow variant', () => {
  test('every inference request is copied to the shadow after the answer; its answers are logged, never returned', async () => {
    const before = dev.shadowAnswers.length;
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await infer('digits-fn', i);
      assert.equal(r.status, 200);
      assert.equal(r.variant, 'AllTraffic', 'the answer is the API’s own');
      ids.push(r.id!);
    }
    // Not inference: no copy.
    assert.equal((await fetch(`${dev.url}/digits-fn/v2/health/ready`)).status, 200);
    for (const deadline = Date.now() + 30_000; dev.shadowAnswers.length < before + 4;) {
      assert.ok(Date.now() < deadline, log.join('\n'));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    await new Promise((resolve) => setTimeout(resolve, 300));
    const answers = dev.shadowAnswers.slice(before);
    assert.deepEqual(
      answers.map((a) => [a.apiName, a.variant, a.status, a.primaryStatus]),
      Array(4).fill(['digits-fn', 'candidate', 200, 200]),
    );
    assert.deepEqual(answers.map((a) => a.requestId).sort(), [...ids].sort(), 'the copies carry the request ids');
    assert.ok(log.some((line) => /^shadow candidate of 'digits-fn' answered 200/.test(line)));
  });

  test('the shadow cannot be pinned: it never answers a caller', async () => {
    const r = await fetch(`${dev.url}/digits-fn/v2/models/digits-fn/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', [VARIANT_HEADER]: 'candidate' },
      body: digitsInferBody([expected.images[0]!]),
    });
    assert.equal(r.status, 400);
    assert.equal(contractError(await r.json()).code, 'invalid_input');
  });
});
