/**
 * Tracing with a real X-Ray daemon address: a UDP listener on loopback (AWS_XRAY_DAEMON_ADDRESS) receives what the
 * runtime sends, and each datagram is parsed as the daemon would (the `{"format": "json", "version": 1}` header line,
 * then the segment document). The container entry (as its image runs it), over real HTTP: the cold start as a segment
 * with fetch, session and init; an OIP request as a segment joined to the caller's trace, with decode, run and encode.
 * The Lambda handler: one `arclight` subsegment under the invocation's segment (`_X_AMZN_TRACE_ID`), carrying the cold
 * start's phases on the first invocation. Off (the default): nothing is sent.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { ENV } from '../../../lib/contract.js';
import { Runtime } from '../../../lib/runtime/runtime.js';
import type { Logger } from '../../../lib/runtime/telemetry/logger.js';
import { createLambdaHandler } from '../../../lib/runtime/transports/lambda-adapter.js';
import { DIGITS_ONNX, REPO_ROOT, closedPort, digitsInferBody, loadDigitsExpected } from '../../helpers.js';

interface Subsegment {
  readonly name: string;
  readonly id: string;
  readonly start_time: number;
  readonly end_time: number;
}
interface SegmentDocument extends Subsegment {
  readonly trace_id: string;
  readonly parent_id?: string;
  readonly type?: string;
  readonly http?: { response: { status: number } };
  readonly subsegments: Subsegment[];
}

/** A UDP listener standing in for the X-Ray daemon; every datagram parsed, its header checked. */
let daemon: Socket;
let daemonAddress: string;
let received: SegmentDocument[] = [];

before(async () => {
  daemon = createSocket('udp4');
  daemon.on('message', (message) => {
    const text = message.toString('utf8');
    const newline = text.indexOf('\n');
    assert.deepEqual(JSON.parse(text.slice(0, newline)), { format: 'json', version: 1 });
    received.push(JSON.parse(text.slice(newline + 1)) as SegmentDocument);
  });
  daemon.bind(0, '127.0.0.1');
  await once(daemon, 'listening');
  daemonAddress = `127.0.0.1:${daemon.address().port}`;
});
after(() => daemon.close());

async function waitFor(count: number, timeoutMs = 5000): Promise<void> {
  for (const deadline = Date.now() + timeoutMs; received.length < count;) {
    assert.ok(Date.now() < deadline, `expected ${count} documents, got ${received.length}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

const quietLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };
const names = (doc: SegmentDocument): string[] => doc.subsegments.map((s) => s.name);

function assertWellFormed(doc: SegmentDocument): void {
  assert.match(doc.trace_id, /^1-[0-9a-f]{8}-[0-9a-f]{24}$/);
  assert.match(doc.id, /^[0-9a-f]{16}$/);
  assert.ok(doc.end_time >= doc.start_time);
  for (const s of doc.subsegments) {
    assert.match(s.id, /^[0-9a-f]{16}$/);
    assert.ok(s.end_time >= s.start_time, s.name);
    assert.ok(Math.abs(s.start_time - Date.now() / 1000) < 120, `${s.name}: epoch seconds`);
  }
}

/** Runs the container main (as the image does) until ready, sends `work` its URL, stops it. */
async function containerRun(env: Record<string, string>, work: (url: string) => Promise<void>): Promise<void> {
  const port = await closedPort();
  const child = spawn(process.execPath, ['--import', 'tsx', 'lib/runtime/transports/container-main.ts'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      [ENV.apiName]: 'digits',
      [ENV.modelUri]: DIGITS_ONNX,
      [ENV.workers]: '1',
      [ENV.metrics]: 'off',
      SAGEMAKER_BIND_TO_PORT: String(port),
      AWS_XRAY_DAEMON_ADDRESS: daemonAddress,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  child.stdout.resume();
  const url = `http://127.0.0.1:${port}`;
  try {
    for (const deadline = Date.now() + 60_000; ;) {
      const status = await fetch(`${url}/ping`).then(
        async (r) => (await r.arrayBuffer(), r.status),
        () => 0,
      );
      if (status === 200) break;
      assert.ok(Date.now() < deadline && child.exitCode === null, `not ready: ${stderr}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await work(url);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await once(child, 'exit');
  }
}

describe('tracing in the container server', () => {
  test('the cold start is a segment (fetch, session, init); a request joins the caller trace (decode, run, encode)', async () => {
    received = [];
    const root = '1-5759e988-bd862e3fe1be46a994272793';
    const parent = '53995c3f42cd8ad8';
    const expected = loadDigitsExpected();
    await containerRun({ [ENV.tracing]: 'on' }, async (url) => {
      const response = await fetch(`${url}/v2/models/digits/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-amzn-trace-id': `Root=${root};Parent=${parent};Sampled=1` },
        body: digitsInferBody(expected.images.slice(0, 2)),
      });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
      // A caller that decided not to sample: not traced.
      const unsampled = await fetch(`${url}/v2/models/digits/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-amzn-trace-id': `Root=${root};Sampled=0` },
        body: digitsInferBody(expected.images.slice(0, 1)),
      });
      assert.equal(unsampled.status, 200);
      await waitFor(2);
    });
    const coldStart = received.find((d) => d.name === 'digits cold start');
    assert.ok(coldStart, JSON.stringify(received));
    assertWellFormed(coldStart);
    assert.deepEqual(names(coldStart), ['fetch', 'session', 'init']);
    const [fetchPhase, session, init] = coldStart.subsegments;
    assert.ok(fetchPhase!.end_time <= session!.start_time + 1e-3 && session!.end_time <= init!.start_time + 1e-3);

    const requests = received.filter((d) => d.name === 'digits');
    assert.equal(requests.length, 1, 'health checks and the unsampled request sent nothing');
    const request = requests[0]!;
    assertWellFormed(request);
    assert.equal(request.trace_id, root);
    assert.equal(request.parent_id, parent);
    assert.equal(request.http?.response.status, 200);
    assert.deepEqual(names(request), ['decode', 'run', 'encode']);
    for (const phase of request.subsegments) {
      assert.ok(phase.start_time >= request.start_time - 1e-3 && phase.end_time <= request.end_time + 1e-3, phase.name);
    }
  });

  test('off by default: nothing is sent', async () => {
    received = [];
    await containerRun({}, async (url) => {
      const response = await fetch(`${url}/v2/models/digits/infer`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-amzn-trace-id': 'Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1',
        },
        body: digitsInferBody(loadDigitsExpected().images.slice(0, 1)),
      });
      assert.equal(response.status, 200);
      await response.arrayBuffer();
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.deepEqual(received, []);
  });
});

describe('tracing on Lambda', () => {
  test("each invocation is an 'arclight' subsegment of Lambda's segment; the first carries the cold start", async () => {
    received = [];
    const env: NodeJS.ProcessEnv = {
      AWS_LAMBDA_FUNCTION_NAME: 'digits-fn',
      [ENV.tracing]: 'on',
      [ENV.metrics]: 'off',
      AWS_XRAY_DAEMON_ADDRESS: `udp:${daemonAddress} tcp:${daemonAddress}`,
    };
    const runtime = new Runtime({ apiName: 'digits', modelUri: DIGITS_ONNX, logger: quietLogger, env });
    await runtime.start();
    const handler = createLambdaHandler(runtime);
    const invoke = async (root: string, parent: string): Promise<void> => {
      // The Lambda runtime sets the invocation's trace header in the environment.
      env['_X_AMZN_TRACE_ID'] = `Root=${root};Parent=${parent};Sampled=1`;
      const result = await handler({
        version: '2.0',
        rawPath: '/v2/models/digits/infer',
        rawQueryString: '',
        headers: { 'content-type': 'application/json' },
        requestContext: { http: { method: 'POST' }, requestId: parent, stage: '$default' },
        body: digitsInferBody(loadDigitsExpected().images.slice(0, 1)),
        isBase64Encoded: false,
      });
      assert.equal(result.statusCode, 200);
    };
    const first = ['1-5759e988-bd862e3fe1be46a994272793', '1111111111111111'] as const;
    const second = ['1-5759e989-bd862e3fe1be46a994272794', '2222222222222222'] as const;
    await invoke(...first);
    await invoke(...second);
    await waitFor(2);
    for (const [doc, [root, parent]] of [
      [received[0]!, first],
      [received[1]!, second],
    ] as const) {
      assertWellFormed(doc);
      assert.equal(doc.type, 'subsegment');
      assert.equal(doc.name, 'arclight');
      assert.equal(doc.trace_id, root);
      assert.equal(doc.parent_id, parent);
    }
    assert.deepEqual(names(received[0]!), ['fetch', 'session', 'init', 'decode', 'run', 'encode']);
    assert.deepEqual(names(received[1]!), ['decode', 'run', 'encode']);

    // Not sampled by Lambda (no trace header): nothing sent.
    delete env['_X_AMZN_TRACE_ID'];
    const unsampled = await handler({
      version: '2.0',
      rawPath: '/v2/models/digits/infer',
      rawQueryString: '',
      headers: { 'content-type': 'application/json' },
      requestContext: { http: { method: 'POST' }, requestId: 'r', stage: '$default' },
      body: digitsInferBody(loadDigitsExpected().images.slice(0, 1)),
      isBase64Encoded: false,
    });
    assert.equal(unsampled.statusCode, 200);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.equal(received.length, 2);
    await runtime.close();
  });
});
