/**
 * `arclight dev` as a user runs it: `node bin/arclight.js dev --assembly <synthesized example app> --port 0` in a
 * child process, talked to over real sockets: the Lambda-backed APIs in local Lambda hosts, the SageMaker and ECS
 * ones in their container servers (on CPU). SIGTERM stops it and every child it started.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { readCdkJson, synthesize } from '../../../lib/cli/deploy/assembly.js';
import {
  REPO_ROOT,
  STACK_FRAME,
  assertLogitsClose,
  collect,
  httpTransport,
  loadDigitsExpected,
  runCli,
  spawnCli,
  stderrLines,
  waitForStderr,
  type CliResult,
  contractError,
} from '../../helpers.js';

const expected = loadDigitsExpected();
const READY = /arclight: serving (\d+) APIs on (http:\/\/127\.0\.0\.1:(\d+))\/ \(ready\)\n((?: {2}.*\n)+)/;
let outdir: string;

before(async () => {
  outdir = mkdtempSync(join(tmpdir(), 'arclight-dev-test-'));
  await synthesize(readCdkJson(REPO_ROOT).app!, outdir, { cwd: REPO_ROOT });
});

after(() => {
  if (outdir) rmSync(outdir, { recursive: true, force: true });
});

/** The ids and command lines of the live processes whose parent is `pid` (from /proc). */
function childrenOf(pid: number): { pid: number; command: string }[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .filter((name) => {
      try {
        // pid (comm) state ppid ...: comm may hold spaces, so count from the closing parenthesis.
        const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid;
      } catch {
        return false;
      }
    })
    .map((name) => ({ pid: Number(name), command: readCommand(Number(name)) }));
}

function readCommand(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
}

/** The process's state letter from /proc (`T`: stopped by a signal). */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]!;
}

/** Waits (up to 5 s) for the process to reach a state: the front stops a host just after its response is sent. */
async function waitForState(pid: number, state: string): Promise<void> {
  for (const deadline = Date.now() + 5000; processState(pid) !== state;) {
    assert.ok(Date.now() < deadline, `process ${pid} is in state ${processState(pid)}, not ${state}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function assertOneLineError(result: CliResult, pattern: RegExp): void {
  assert.equal(result.code, 1, `exit code ${result.code}; stderr:\n${result.stderr}`);
  const lines = stderrLines(result.stderr).filter((line) => !line.startsWith('arclight: synth'));
  assert.equal(lines.length, 1, `one error line, got:\n${lines.join('\n')}`);
  assert.match(lines[0]!, /^arclight: error: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(result.stderr, STACK_FRAME);
}

describe('arclight dev --assembly <the synthesized example app> --port 0', () => {
  test('serves all six APIs on the port it prints, lists them at /, and SIGTERM stops it all with exit 0', async () => {
    const child = spawnCli(['dev', '--assembly', outdir, '--port', '0']);
    const exited = collect(child, 240_000);
    const children: { pid: number; command: string }[] = [];
    try {
      const [, count, base, port, listing] = await waitForStderr(child, READY, 180_000);
      assert.equal(count, '6');
      assert.notEqual(Number(port), 0, 'the chosen port, not 0');
      // Each line shows the model version the API serves.
      assert.match(listing!, new RegExp(`^ {2}digits +${base}/digits +lambda arm64, model version 1$`, 'm'));
      assert.match(listing!, new RegExp(`^ {2}mobilenet +${base}/mobilenet +lambda x86_64, model version 1$`, 'm'));
      assert.match(
        listing!,
        new RegExp(`^ {2}digits-async +${base}/digits-async +lambda arm64(, model version 1)?$`, 'm'),
      );
      assert.match(
        listing!,
        new RegExp(`^ {2}mobilenet-gpu +${base}/mobilenet-gpu +sagemaker x86_64, on CPU, model version 1$`, 'm'),
      );
      assert.match(
        listing!,
        new RegExp(`^ {2}digits-ecs +${base}/digits-ecs +ecs x86_64, on CPU, model version 1$`, 'm'),
      );
      assert.match(
        listing!,
        new RegExp(`^ {2}mobilenet-async +${base}/mobilenet-async +sagemaker x86_64, on CPU(, model version 1)?$`, 'm'),
      );
      children.push(...childrenOf(child.pid!));
      const hosts = children.filter((c) => c.command.includes('lambda-host'));
      assert.equal(hosts.length, 3, `one local Lambda host per Lambda API; children: ${JSON.stringify(children)}`);
      // The container APIs: `node <a copy of the build context>/server.mjs`, as the image's ENTRYPOINT runs it.
      const servers = children.filter((c) => /^\S*node \S*\/arclight-container-\w+\/server\.mjs $/.test(c.command));
      assert.equal(servers.length, 3, `one container server per container API; children: ${JSON.stringify(children)}`);
      const http = httpTransport(base!, 60_000);

      const index = await http({ path: '/' });
      assert.equal(index.status, 200);
      const api = (
        name: string,
        compute: string,
        architecture: string,
        stack = 'ArclightExamples',
      ): Record<string, string> => ({
        name,
        url: `${base}/${name}`,
        compute,
        architecture,
        stack,
        status: 'ready',
        docs: `${base}/${name}/docs`,
        openapi: `${base}/${name}/openapi.json`,
        modelVersion: '1',
      });
      assert.deepEqual(index.json(), {
        apis: [
          api('digits', 'lambda', 'arm64'),
          api('mobilenet', 'lambda', 'x86_64'),
          api('digits-async', 'lambda', 'arm64', 'ArclightAsyncExamples'),
          api('mobilenet-gpu', 'sagemaker', 'x86_64'),
          api('digits-ecs', 'ecs', 'x86_64'),
          api('mobilenet-async', 'sagemaker', 'x86_64', 'ArclightAsyncExamples'),
        ],
      });

      // A browser at / gets the same list as a page linking each API's playground and OpenAPI document.
      const page = await http({ path: '/', headers: { accept: 'text/html,*/*;q=0.8' } });
      assert.equal(page.status, 200);
      assert.match(page.headers['content-type'] ?? '', /^text\/html/);
      assert.ok(page.text.includes(`<a href="${base}/digits/docs">playground</a>`), page.text);

      // Every API serves its OpenAPI document and, under dev whatever the deployed setting, the playground.
      for (const name of ['digits', 'mobilenet', 'mobilenet-gpu', 'digits-ecs']) {
        const doc = await http({ path: `/${name}/openapi.json` });
        assert.equal(doc.status, 200, `${name}: ${doc.text}`);
        assert.equal(doc.json<{ openapi: string }>().openapi, '3.1.0');
        const page = await http({ path: `/${name}/docs` });
        assert.equal(page.status, 200, `${name}: ${page.text}`);
        assert.match(page.headers['content-type'] ?? '', /^text\/html/);
        assert.match(page.headers['content-security-policy'] ?? '', /^default-src 'none'/);
      }

      // digits: the predictor at POST /digits (and /digits/), grey levels 0–16.
      for (const [path, i] of [
        ['/digits', 0],
        ['/digits/', 1],
        ['/digits?explain=no', 2],
      ] as const) {
        const pixels = expected.images[i]!.map((v) => Math.round(v * 16));
        const reply = await http({ path, body: JSON.stringify({ pixels }) });
        assert.equal(reply.status, 200, reply.text);
        const logits = expected.logits[i]!;
        assert.equal(reply.json<{ digit: number }>().digit, logits.indexOf(Math.max(...logits)), `${path} image ${i}`);
        assert.match(reply.headers['x-request-id'] ?? '', /^[0-9a-f-]{36}$/);
        assert.equal(reply.headers['x-model-version'], '1', 'the answer names the model version behind it');
      }
      // A binary body crosses the host base64-encoded and reaches the predictor as bytes, which it refuses.
      const binary = await http({
        path: '/digits',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.from([0, 159, 146, 150]),
      });
      assert.equal(binary.status, 415, binary.text);

      // mobilenet: the Open Inference Protocol under /mobilenet.
      // One OIP request for MobileNet, sent to the Lambda API and the SageMaker one.
      const mobilenetInfer = JSON.stringify({
        inputs: [
          { name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224], data: new Array(3 * 224 * 224).fill(0.5) },
        ],
      });
      const metadata = await http({ path: '/mobilenet/v2/models/mobilenet' });
      assert.equal(metadata.status, 200, metadata.text);
      assert.deepEqual(metadata.json<{ outputs: unknown }>().outputs, [
        { name: 'output', datatype: 'FP32', shape: [-1, 1000] },
      ]);
      const infer = await http({
        path: '/mobilenet/v2/models/mobilenet/infer',
        body: mobilenetInfer,
      });
      assert.equal(infer.status, 200, infer.text);
      assert.deepEqual(infer.json<{ outputs: { shape: number[] }[] }>().outputs[0]!.shape, [1, 1000]);

      // Errors in the HTTP contract's format: the front's own, and an API's.
      const unknown = await http({ path: '/nope/v2/health/ready' });
      assert.equal(unknown.status, 404);
      const error = contractError(unknown.json());
      assert.equal(error.code, 'not_found');
      assert.match(
        error.message,
        /no API at \/nope\/v2\/health\/ready; this app serves \/digits, \/mobilenet, \/digits-async, \/mobilenet-gpu, \/digits-ecs, \/mobilenet-async/,
      );
      assert.equal(error.requestId, unknown.headers['x-request-id']);
      const otherModel = await http({ path: '/digits/v2/models/mobilenet' });
      assert.equal(otherModel.status, 404);
      assert.equal(contractError(otherModel.json()).code, 'model_not_found');

      // digits-ecs: the same digits predictor, in its container server (ECS), at POST /digits-ecs.
      for (const i of [0, 3]) {
        const pixels = expected.images[i]!.map((v) => Math.round(v * 16));
        const reply = await http({ path: '/digits-ecs', body: JSON.stringify({ pixels }) });
        assert.equal(reply.status, 200, reply.text);
        const logits = expected.logits[i]!;
        assert.equal(
          reply.json<{ digit: number }>().digit,
          logits.indexOf(Math.max(...logits)),
          `digits-ecs image ${i}`,
        );
      }
      const ecsReady = await http({ path: '/digits-ecs/v2/health/ready' });
      assert.equal(ecsReady.status, 200, ecsReady.text);
      // mobilenet-gpu: the default OIP predictor in its container server (SageMaker), on CPU here.
      const gpuInfer = await http({
        path: '/mobilenet-gpu/v2/models/mobilenet-gpu/infer',
        body: mobilenetInfer,
      });
      assert.equal(gpuInfer.status, 200, gpuInfer.text);
      assert.deepEqual(gpuInfer.json<{ outputs: { shape: number[] }[] }>().outputs[0]!.shape, [1, 1000]);
      const scores = (reply: typeof infer): number[] =>
        reply.json<{ outputs: { data: number[] }[] }>().outputs[0]!.data;
      assertLogitsClose(scores(gpuInfer), scores(infer), 'the same model on SageMaker (container) as on Lambda');
      // Bad requests get the contract's JSON errors from the container servers too.
      const badJson = await http({ path: '/digits-ecs', body: '{"pixels": [' });
      assert.equal(badJson.status, 400, badJson.text);
      const badError = contractError(badJson.json());
      assert.equal(badError.code, 'malformed_json');
      assert.equal(badError.requestId, badJson.headers['x-request-id']);
      const badShape = await http({
        path: '/mobilenet-gpu/v2/models/mobilenet-gpu/infer',
        body: JSON.stringify({ inputs: [{ name: 'input', datatype: 'FP32', shape: [1, 3], data: [1, 2, 3] }] }),
      });
      assert.equal(badShape.status, 400, badShape.text);
      assert.equal(contractError(badShape.json()).code, 'invalid_input');
      const wrongModel = await http({ path: '/mobilenet-gpu/v2/models/mobilenet' });
      assert.equal(wrongModel.status, 404);
      assert.equal(contractError(wrongModel.json()).code, 'model_not_found');
      const wrongMethod = await http({ method: 'DELETE', path: '/digits-ecs/v2/health/live' });
      assert.equal(wrongMethod.status, 405);
      assert.equal(wrongMethod.headers['allow'], 'GET');

      // As Lambda freezes a sandbox between invocations, each local Lambda host is stopped (SIGSTOP) while no request
      // is in it, and continued for the next; the container servers run on.
      for (const host of hosts) await waitForState(host.pid, 'T');
      for (const server of servers) assert.notEqual(processState(server.pid), 'T');
      const thawed = await http({
        path: '/digits',
        body: JSON.stringify({ pixels: expected.images[0]!.map(() => 0) }),
      });
      assert.equal(thawed.status, 200, thawed.text);
      // An event above Lambda's 6,291,456 bytes is refused as API Gateway answers it: 4.8 MB of bytes is 6.4 MB base64.
      const oversize = await http({
        path: '/digits',
        headers: { 'content-type': 'application/octet-stream' },
        body: Buffer.alloc(4_800_000, 1),
      });
      assert.equal(oversize.status, 413);
      assert.deepEqual(oversize.json(), { message: 'Request Entity Too Large' });
      for (const host of hosts) await waitForState(host.pid, 'T');
    } finally {
      child.kill('SIGTERM');
    }
    const result = await exited;
    assert.equal(result.signal, null, result.stderr);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stderr, /'digits' is built for linux\/arm64: running it from a copy of its build context/);
    for (const [name, compute] of [
      ['mobilenet-gpu', 'sagemaker'],
      ['digits-ecs', 'ecs'],
      ['mobilenet-async', 'sagemaker'],
    ]) {
      assert.match(
        result.stderr,
        new RegExp(
          `'${name}' runs on ${compute}: its container server \\(node server\\.mjs, as its image starts it\\) .*on CPU \\(ARCLIGHT_EXECUTION_PROVIDERS=cpu; deployed: cuda,cpu\\), as there is no GPU here`,
        ),
      );
    }
    // The container servers drained and shut down on the SIGTERM (they log as JSON on stdout).
    assert.equal(
      result.stdout.match(/"outcome":"drained","message":"shut down"/g)?.length,
      3,
      result.stdout.slice(-2000),
    );
    assert.match(result.stderr, /arclight: SIGTERM, stopping/);
    // Every child (the hosts, the container servers, esbuild's service process that compiled the host) ends with it.
    const deadline = Date.now() + 5000;
    while (children.some((c) => isAlive(c.pid)) && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    for (const c of children) assert.equal(isAlive(c.pid), false, `${c.pid} (${c.command}) is gone`);
  });

  test('an app that fails to synthesize is one error line with its message, and exit 1', async () => {
    const result = await runCli(['dev', '--app', `node -e "throw new Error('the app is broken')"`, '--port', '0']);
    assertOneLineError(result, /the CDK app 'node -e .*' exited with code 1: Error: the app is broken/);
  });

  test('a directory that is no cloud assembly is one error line, and exit 1', async () => {
    const result = await runCli(['dev', '--assembly', join(outdir, 'nope'), '--port', '0']);
    assertOneLineError(result, /is not a cloud assembly \(no manifest\.json\)/);
  });
});
