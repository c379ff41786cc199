/**
 * The status store on AWS: one DynamoDB item per job (partition key `id`), every write conditional, reads strongly
 * consistent, and `expiresAt` as the table's TTL attribute. Records are stored as one JSON document beside the
 * attributes the conditions test (`status`, `lease`), so the item's shape follows JobRecord without a mapping.
 */
import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import {
  ConditionalCheckFailedException,
  GetItemCommand,
  PutItemCommand,
  UpdateItemCommand,
  type AttributeValue,
} from '@aws-sdk/client-dynamodb';
import type { JobOutcome, JobStore } from './job-store.js';
import type { JobRecord } from './job.js';

type Item = Record<string, AttributeValue>;

export class DynamoDbJobStore implements JobStore {
  constructor(
    private readonly client: DynamoDBClient,
    private readonly table: string,
  ) {}

  async create(record: JobRecord): Promise<{ created: boolean; record: JobRecord }> {
    try {
      await this.client.send(
        new PutItemCommand({
          TableName: this.table,
          Item: toItem(record),
          ConditionExpression: 'attribute_not_exists(id)',
        }),
      );
      return { created: true, record };
    } catch (error) {
      if (!(error instanceof ConditionalCheckFailedException)) throw error;
      const existing = await this.get(record.id);
      if (!existing) throw error;
      return { created: false, record: existing };
    }
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const { Item } = await this.client.send(
      new GetItemCommand({ TableName: this.table, Key: { id: { S: id } }, ConsistentRead: true }),
    );
    return Item ? fromItem(Item) : undefined;
  }

  async claim(id: string, lease: string, now: Date): Promise<JobRecord | undefined> {
    const current = await this.get(id);
    if (!current || current.status === 'succeeded' || current.status === 'failed') return undefined;
    const claimed: JobRecord = {
      ...current,
      status: 'running',
      lease,
      attempts: current.attempts + 1,
      updatedAt: now.toISOString(),
    };
    // Conditional on the attempt count read: two deliveries claiming at once cannot both win.
    return (await this.replace(claimed, '#status IN (:queued, :running) AND attempts = :attempts', {
      ':queued': { S: 'queued' },
      ':running': { S: 'running' },
      ':attempts': { N: String(current.attempts) },
    }))
      ? claimed
      : undefined;
  }

  async finish(id: string, lease: string, outcome: JobOutcome, now: Date): Promise<boolean> {
    const current = await this.get(id);
    if (!current || current.status !== 'running' || current.lease !== lease) return false;
    const ended: JobRecord = {
      ...current,
      status: 'result' in outcome ? 'succeeded' : 'failed',
      ...outcome,
      updatedAt: now.toISOString(),
    };
    return this.replace(ended, '#status = :running AND lease = :lease', {
      ':running': { S: 'running' },
      ':lease': { S: lease },
    });
  }

  private async replace(record: JobRecord, condition: string, values: Item): Promise<boolean> {
    const item = toItem(record);
    const names = Object.keys(item).filter((name) => name !== 'id');
    try {
      await this.client.send(
        new UpdateItemCommand({
          TableName: this.table,
          Key: { id: { S: record.id } },
          UpdateExpression: `SET ${names.map((_name, i) => `#a${i} = :v${i}`).join(', ')}`,
          ConditionExpression: condition,
          ExpressionAttributeNames: {
            '#status': 'status',
            ...Object.fromEntries(names.map((name, i) => [`#a${i}`, name])),
          },
          ExpressionAttributeValues: {
            ...values,
            ...Object.fromEntries(names.map((name, i) => [`:v${i}`, item[name]!])),
          },
        }),
      );
      return true;
    } catch (error) {
      if (error instanceof ConditionalCheckFailedException) return false;
      throw error;
    }
  }
}

function toItem(record: JobRecord): Item {
  return {
    id: { S: record.id },
    status: { S: record.status },
    attempts: { N: String(record.attempts) },
    ...(record.lease ? { lease: { S: record.lease } } : {}),
    expiresAt: { N: String(record.expiresAt) },
    record: { S: JSON.stringify(record) },
  };
}

function fromItem(item: Item): JobRecord {
  return JSON.parse(item['record']?.S ?? '{}') as JobRecord;
}
