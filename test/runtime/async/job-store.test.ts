/**
 * The status store's contract, run against both stores: `MemoryJobStore` (what `arclight dev` uses) and
 * `DynamoDbJobStore` through the real AWS SDK against dynalite, a DynamoDB implementation on loopback, with the
 * table keyed and TTL'd as the AsyncApi construct creates it. Every write is conditional: a job is created once,
 * ended once, only by its current lease, and never reopened.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { CreateTableCommand, DynamoDBClient, GetItemCommand, waitUntilTableExists } from '@aws-sdk/client-dynamodb';
import dynalite from 'dynalite';
import { DynamoDbJobStore } from '../../../lib/runtime/async/dynamodb-job-store.js';
import { MemoryJobStore, type JobStore } from '../../../lib/runtime/async/job-store.js';
import type { JobRecord } from '../../../lib/runtime/async/job.js';

const TABLE = 'arclight-jobs';
const NOW = new Date('2026-12-02T12:00:00Z');

let server: ReturnType<typeof dynalite> | undefined;
let client: DynamoDBClient | undefined;

before(async () => {
  server = dynalite({ createTableMs: 0 });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  client = new DynamoDBClient({
    endpoint: `http://127.0.0.1:${port}`,
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  // The construct's table (lib/constructs/async/async-storage.ts): partition key `id` (S), TTL on `expiresAt`.
  await client.send(
    new CreateTableCommand({
      TableName: TABLE,
      KeySchema: [{ AttributeName: 'id', KeyType: 'HASH' }],
      AttributeDefinitions: [{ AttributeName: 'id', AttributeType: 'S' }],
      BillingMode: 'PAY_PER_REQUEST',
    }),
  );
  await waitUntilTableExists({ client, maxWaitTime: 30 }, { TableName: TABLE });
});

after(async () => {
  client?.destroy();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
});

function queued(id = randomUUID().replaceAll('-', '')): JobRecord {
  return {
    id,
    status: 'queued',
    createdAt: NOW.toISOString(),
    updatedAt: NOW.toISOString(),
    requestKey: `requests/${id}/abc`,
    contentType: 'application/json',
    fingerprint: 'sha256-of-body',
    attempts: 0,
    expiresAt: Math.floor(NOW.getTime() / 1000) + 86_400,
  };
}

const RESULT = { result: { key: 'results/x/lease', contentType: 'application/json', bytes: 12, status: 200 } };
const ERROR = { error: { error: 'predictor failed', code: 'predictor_error', requestId: 'req-1', status: 500 } };

const stores: [string, () => JobStore][] = [
  ['MemoryJobStore', () => new MemoryJobStore()],
  ['DynamoDbJobStore (dynalite, real AWS SDK)', () => new DynamoDbJobStore(client!, TABLE)],
];

for (const [name, makeStore] of stores) {
  describe(name, () => {
    test('create: once per id; a second create returns the first record untouched', async () => {
      const store = makeStore();
      const record = queued();
      assert.deepEqual(await store.create(record), { created: true, record });
      const replay = await store.create({ ...record, fingerprint: 'another body', requestKey: 'requests/other' });
      assert.equal(replay.created, false);
      assert.deepEqual(replay.record, record);
      assert.deepEqual(await store.get(record.id), record);
      assert.equal(await store.get('0'.repeat(32)), undefined);
    });

    test('claim → running under the lease; a later delivery takes it over with attempts + 1', async () => {
      const store = makeStore();
      const record = queued();
      await store.create(record);
      const first = await store.claim(record.id, 'lease-1', NOW);
      assert.equal(first?.status, 'running');
      assert.equal(first?.lease, 'lease-1');
      assert.equal(first?.attempts, 1);
      const second = await store.claim(record.id, 'lease-2', NOW);
      assert.equal(second?.lease, 'lease-2');
      assert.equal(second?.attempts, 2);
      assert.deepEqual(await store.get(record.id), second);
      assert.equal(await store.claim('f'.repeat(32), 'lease-3', NOW), undefined, 'an unknown job is not claimed');
    });

    test('finish: only by the current lease, only once; an ended job is never claimed again', async () => {
      const store = makeStore();
      const record = queued();
      await store.create(record);
      await store.claim(record.id, 'old', NOW);
      await store.claim(record.id, 'new', NOW);
      assert.equal(await store.finish(record.id, 'old', RESULT, NOW), false, 'a taken-over lease cannot end it');
      assert.equal(await store.finish(record.id, 'new', RESULT, NOW), true);
      assert.equal(await store.finish(record.id, 'new', ERROR, NOW), false, 'ended once');
      const ended = await store.get(record.id);
      assert.equal(ended?.status, 'succeeded');
      assert.deepEqual(ended?.result, RESULT.result);
      assert.equal(ended?.error, undefined);
      assert.equal(await store.claim(record.id, 'late', NOW), undefined);
      assert.equal((await store.get(record.id))?.status, 'succeeded');
    });

    test('a failed outcome keeps the contract error and its status', async () => {
      const store = makeStore();
      const record = queued();
      await store.create(record);
      await store.claim(record.id, 'lease', NOW);
      assert.equal(await store.finish(record.id, 'lease', ERROR, NOW), true);
      const ended = await store.get(record.id);
      assert.equal(ended?.status, 'failed');
      assert.deepEqual(ended?.error, ERROR.error);
    });

    test('a job never claimed cannot be finished', async () => {
      const store = makeStore();
      const record = queued();
      await store.create(record);
      assert.equal(await store.finish(record.id, 'nobody', RESULT, NOW), false);
      assert.equal((await store.get(record.id))?.status, 'queued');
    });

    test('racing: 8 creates of one id make one job; 8 racing claims leave exactly one lease able to end it', async () => {
      const store = makeStore();
      const record = queued();
      const creates = await Promise.all(Array.from({ length: 8 }, () => store.create(record)));
      assert.equal(creates.filter((c) => c.created).length, 1);
      const leases = Array.from({ length: 8 }, (_, i) => `racer-${i}`);
      const claims = await Promise.all(leases.map((lease) => store.claim(record.id, lease, NOW)));
      assert.ok(
        claims.some((c) => c !== undefined),
        'some claim won',
      );
      const finishes = await Promise.all(leases.map((lease) => store.finish(record.id, lease, RESULT, NOW)));
      assert.equal(finishes.filter(Boolean).length, 1, `finishes: ${finishes.join(',')}`);
      const ended = await store.get(record.id);
      assert.equal(ended?.status, 'succeeded');
      assert.equal(ended?.lease, leases[finishes.indexOf(true)]);
    });
  });
}

test('DynamoDB items carry the TTL attribute the table expires on, as a number of epoch seconds', async () => {
  const store = new DynamoDbJobStore(client!, TABLE);
  const record = queued();
  await store.create(record);
  const { Item } = await client!.send(new GetItemCommand({ TableName: TABLE, Key: { id: { S: record.id } } }));
  assert.deepEqual(Item?.['expiresAt'], { N: String(record.expiresAt) });
  assert.deepEqual(Item?.['status'], { S: 'queued' });
});
