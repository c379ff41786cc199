/**
 * An AsyncApi on a container compute (SageMaker, ECS) under `arclight dev`, as a client meets it over real sockets:
 * the synthesized fixture app, the real dev server running the image's server from its build context, jobs through
 * `/<api>/async` with the same contract as the Lambda compute, and the limits the API was synthesized with.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { synthesize } from '../../../lib/cli/deploy/assembly.js';
import { DevServer } from '../../../lib/cli/local/dev.js';
import { REPO_ROOT, contractError, loadDigitsExpected } from '../../helpers.js';

const expected = loadDigitsExpected();

/** The container compute an async API runs on, as its test names it. */
export interface ContainerAsyncApi {
  /** The API's name in the fixture app. */
  readonly api: string;
  readonly compute: 'sagemaker' | 'ecs';
  /** The app the dev server synthesizes (a file under test/fixtures). */
  readonly fixture: string;
  /** How the suite names what runs the jobs. */
  readonly label: string;
  /** What the first test says runs the jobs. */
  readonly runsOn: string;
}

/**
 * The shared suite: jobs through `/<api>/async` succeed with the synchronous answer, a bad input fails with the
 * contract's error, and the synthesized maxBodySize (64 MiB in both fixtures) holds.
 */
export function describeContainerAsyncApi({ api: API, compute, fixture, label, runsOn }: ContainerAsyncApi): void {
  let outdir: string;
  let dev: DevServer;
  const log: string[] = [];

  before(
    async () => {
      outdir = mkdtempSync(join(tmpdir(), `arclight-dev-async-${compute}-`));
      await synthesize(`node --import tsx ${fixture}`, outdir, { cwd: REPO_ROOT });
      dev = new DevServer({ assembly: outdir, port: 0, host: '127.0.0.1', log: (line) => log.push(line) });
      await dev.start();
      assert.deepEqual(
        dev.apis.map((api) => [api.name, api.compute, api.status]),
        [
          ['digits', 'lambda', 'ready'],
          [API, compute, 'ready'],
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

  async function submit(body: string): Promise<Record<string, unknown>> {
    const response = await fetch(`${dev.url}/${API}/async`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    const parsed = (await response.json()) as Record<string, unknown>;
    assert.equal(response.status, 202, JSON.stringify(parsed));
    return parsed;
  }

  async function waitFor(statusUrl: string, timeoutMs = 120_000): Promise<Record<string, unknown>> {
    for (const deadline = Date.now() + timeoutMs; ;) {
      const response = await fetch(statusUrl);
      assert.equal(response.status, 200);
      const job = (await response.json()) as Record<string, unknown>;
      if (job['status'] === 'succeeded' || job['status'] === 'failed') return job;
      assert.ok(Date.now() < deadline, `job still ${String(job['status'])}`);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  }

  describe(`arclight dev: an AsyncApi on ${label} at /<api>/async`, () => {
    test(`jobs run on ${runsOn} and succeed with the synchronous answer`, async () => {
      for (const index of [0, 1, 2, 3, 4]) {
        const body = JSON.stringify({ pixels: expected.images[index] });
        const sync = await fetch(`${dev.url}/digits`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
        });
        assert.equal(sync.status, 200);
        const job = await waitFor(String((await submit(body))['statusUrl']));
        assert.equal(job['status'], 'succeeded', JSON.stringify(job));
        assert.deepEqual(job['result'], await sync.json());
      }
    });

    test("a bad input fails the job with the predictor's contract error", async () => {
      const job = await waitFor(String((await submit('{"pixels":[1,2,3]}'))['statusUrl']));
      assert.equal(job['status'], 'failed');
      assert.equal(job['httpStatus'], 400);
      const { code } = contractError({ error: job['error'], code: job['code'], requestId: job['requestId'] });
      assert.equal(code, 'invalid_input');
    });

    test("the synthesized maxBodySize holds locally: an upload above 64 MiB is refused at submission's door", async () => {
      const response = await fetch(`${dev.url}/${API}/async/uploads`, { method: 'POST' });
      assert.equal(response.status, 201);
      assert.equal(((await response.json()) as { maxBytes: number }).maxBytes, 64 * 2 ** 20);
    });
  });
}
