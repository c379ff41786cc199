/**
 * Data capture against s3rver through the real AWS SDK: the container main (its env as deployed) writes the sampled
 * share of its inference exchanges as SageMaker-format JSON lines; with S3 stalled (test/s3-fault-proxy.ts holding
 * every upload) every request is still answered, and a full queue drops and counts instead of growing.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { GetObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { startEmbeddedS3, type EmbeddedS3 } from '../../../lib/cli/local/embedded-s3.js';
import { createS3Client } from '../../../lib/runtime/model-store/model-store.js';
import { DataCapture } from '../../../lib/runtime/telemetry/data-capture.js';
import { createLogger } from '../../../lib/runtime/telemetry/logger.js';
import { DIGITS_ONNX, digitsInferBody, loadDigitsExpected } from '../../helpers.js';
import { startFaultProxy, type FaultProxy } from '../../s3-fault-proxy.js';
import { startContainerMain } from '../../served-process.js';

/** One captured record, as the tests read it. */
interface CaptureLine {
  readonly eventVersion: string;
  readonly captureData: {
    readonly endpointInput: { readonly mode: string; readonly encoding: string; readonly data: string };
    readonly endpointOutput: { readonly mode: string; readonly encoding: string; readonly data: string };
  };
  readonly eventMetadata: {
    readonly eventId: string;
    readonly status: number;
    readonly modelVersion: string;
    readonly path: string;
  };
}

let s3: EmbeddedS3;
let proxy: FaultProxy;
const images = loadDigitsExpected().images;

before(async () => {
  s3 = await startEmbeddedS3(['models', 'capture']);
  await s3.put('models', 'digits.onnx', readFileSync(DIGITS_ONNX));
  proxy = await startFaultProxy(s3.endpoint, s3.env);
});

after(async () => {
  await proxy?.close();
  await s3?.close();
});

async function capturedLines(prefix: string): Promise<CaptureLine[]> {
  const client = createS3Client(s3.env);
  try {
    const listed = await client.send(new ListObjectsV2Command({ Bucket: 'capture', Prefix: prefix }));
    const lines: CaptureLine[] = [];
    for (const object of listed.Contents ?? []) {
      assert.match(object.Key!, new RegExp(`^${prefix}digits/\\d{4}/\\d\\d/\\d\\d/\\d\\d/.+\\.jsonl$`));
      const body = await client.send(new GetObjectCommand({ Bucket: 'capture', Key: object.Key! }));
      const text = await body.Body!.transformToString();
      lines.push(
        ...text
          .trim()
          .split('\n')
          .map((line) => JSON.parse(line) as CaptureLine),
      );
    }
    return lines;
  } finally {
    client.destroy();
  }
}

function send(url: string, i: number): Promise<{ id: string; body: string; status: number }> {
  const id = randomUUID();
  const body = digitsInferBody([images[i % images.length]!]);
  return fetch(`${url}/v2/models/digits/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-request-id': id },
    body,
  }).then(async (r) => (await r.arrayBuffer(), { id, body, status: r.status }));
}

describe('data capture in the container server', () => {
  test('half the requests, sampled, land in S3 as JSON lines with request, response and model version', async () => {
    const served = await startContainerMain({
      ...s3.env,
      ARCLIGHT_API_NAME: 'digits',
      ARCLIGHT_MODEL_URI: 's3://models/digits.onnx',
      ARCLIGHT_DATA_CAPTURE_URI: 's3://capture/half/',
      ARCLIGHT_DATA_CAPTURE_PERCENT: '50',
      ARCLIGHT_WORKERS: '1',
    });
    const sent = new Map<string, string>();
    try {
      for (let i = 0; i < 400; i += 4) {
        for (const r of await Promise.all([0, 1, 2, 3].map((k) => send(served.url, i + k)))) {
          assert.equal(r.status, 200);
          sent.set(r.id, r.body);
        }
      }
    } finally {
      // SIGTERM drains and uploads what is still queued.
      assert.equal(await served.stop(15_000), 0);
    }
    const lines = await capturedLines('half/');
    // Binomial(400, 0.5): mean 200, sd 10; 5 sd either way.
    assert.ok(lines.length >= 150 && lines.length <= 250, `${lines.length} of 400 captured at 50%`);
    for (const line of lines) {
      const { captureData, eventMetadata, eventVersion } = line;
      assert.equal(eventVersion, '0');
      assert.equal(sent.get(eventMetadata.eventId), captureData.endpointInput.data, 'the request body, as sent');
      assert.deepEqual(
        [captureData.endpointInput.mode, captureData.endpointInput.encoding, captureData.endpointOutput.mode],
        ['INPUT', 'JSON', 'OUTPUT'],
      );
      const output = JSON.parse(captureData.endpointOutput.data) as { model_name: string; outputs: unknown[] };
      assert.equal(output.model_name, 'digits');
      assert.deepEqual(
        [eventMetadata.status, eventMetadata.modelVersion, eventMetadata.path],
        [200, '1', '/v2/models/digits/infer'],
      );
    }
    assert.equal(new Set(lines.map((l) => l.eventMetadata.eventId)).size, lines.length, 'each exchange once');
  });

  test('a stalled S3 never holds a response: requests keep being answered while every upload hangs', async () => {
    let stalledPuts = 0;
    proxy.plan = (request) => {
      if (request.method !== 'PUT') return undefined;
      stalledPuts++;
      return { kind: 'before', run: () => new Promise<void>(() => undefined) };
    };
    const served = await startContainerMain({
      ...proxy.env,
      ARCLIGHT_API_NAME: 'digits',
      ARCLIGHT_MODEL_URI: 's3://models/digits.onnx',
      ARCLIGHT_DATA_CAPTURE_URI: 's3://capture/stalled/',
      ARCLIGHT_WORKERS: '1',
    });
    try {
      // First requests, then wait until an upload of them is hanging in the proxy.
      for (let i = 0; i < 20; i++) assert.equal((await send(served.url, i)).status, 200);
      const deadline = Date.now() + 10_000;
      while (stalledPuts === 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
      assert.ok(stalledPuts > 0, 'an upload reached the stalled S3');
      // With an upload hanging, every request is still answered.
      for (let i = 0; i < 100; i += 4) {
        const replies = await Promise.all([0, 1, 2, 3].map((k) => send(served.url, i + k)));
        assert.deepEqual(
          replies.map((r) => r.status),
          [200, 200, 200, 200],
        );
      }
    } finally {
      // Shutdown waits one upload deadline (5 s) for the stalled S3 at most, then exits.
      const stopping = Date.now();
      assert.equal(await served.stop(20_000), 0);
      assert.ok(Date.now() - stopping < 19_000, 'shutdown is not held by the stalled S3');
      proxy.reset();
    }
  });
});

describe('DataCapture queue', () => {
  test('bounded: past the limit records are dropped and counted, capture never waits', async () => {
    proxy.plan = (request) =>
      request.method === 'PUT' ? { kind: 'before', run: () => new Promise<void>(() => undefined) } : undefined;
    const capture = new DataCapture({
      uri: 's3://capture/bounded/',
      apiName: 'digits',
      logger: createLogger('digits', 'SILENT'),
      env: { ...process.env, ...proxy.env },
      maxQueuedRecords: 5,
      flushIntervalMs: 60_000,
      putTimeoutMs: 200,
    });
    const exchange = {
      requestId: 'r',
      request: { method: 'POST', path: '/', query: {}, headers: {}, body: Buffer.from('{}') },
      response: { status: 200, headers: { 'content-type': 'application/json' }, body: Buffer.from('{}') },
    };
    const started = performance.now();
    for (let i = 0; i < 20; i++) capture.capture(exchange);
    assert.ok(performance.now() - started < 1000);
    assert.deepEqual(capture.stats, { captured: 5, uploaded: 0, dropped: 15, failedUploads: 0 });
    // Closing uploads the queue; the stalled put times out and its records are counted as dropped.
    await capture.close();
    assert.deepEqual(capture.stats, { captured: 5, uploaded: 0, dropped: 20, failedUploads: 1 });
    proxy.reset();
  });
});
