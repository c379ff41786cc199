/**
 * An S3 server on loopback (s3rver, a real S3 REST implementation) for running locally exactly what is
 * deployed: the model is uploaded with the AWS SDK and read back through the same model store as on AWS.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { PutObjectCommand } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { createS3Client } from '../../runtime/model-store/model-store.js';

/** s3rver's built-in account. */
const ACCESS_KEY = 'S3RVER';

export interface EmbeddedS3 {
  /** Env that points the AWS SDK at this server with valid credentials. */
  readonly env: Record<string, string>;
  readonly endpoint: string;
  /** Uploads bytes and returns their `s3://` URI and sha256. */
  put(bucket: string, key: string, bytes: Uint8Array): Promise<{ uri: string; sha256: string }>;
  close(): Promise<void>;
}

/** Starts s3rver on 127.0.0.1 (a free port unless given) with the named buckets. */
export async function startEmbeddedS3(buckets: readonly string[], port = 0): Promise<EmbeddedS3> {
  const directory = await mkdtemp(join(tmpdir(), 'arclight-s3-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port,
    silent: true,
    directory,
    configureBuckets: buckets.map((name) => ({ name })),
  });
  const address = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  const env = {
    AWS_ENDPOINT_URL_S3: endpoint,
    AWS_ACCESS_KEY_ID: ACCESS_KEY,
    AWS_SECRET_ACCESS_KEY: ACCESS_KEY,
    AWS_REGION: 'us-east-1',
  };
  const client = createS3Client(env);
  return {
    env,
    endpoint,
    async put(bucket, key, bytes) {
      // A Buffer body, not a stream: s3rver would store aws-chunked stream encoding verbatim.
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: Buffer.from(bytes) }));
      return { uri: `s3://${bucket}/${key}`, sha256: createHash('sha256').update(bytes).digest('hex') };
    },
    async close() {
      client.destroy();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}

/** Starts an embedded S3 holding one local model file. */
export async function serveFileFromEmbeddedS3(
  path: string,
  bucket = 'arclight-models',
): Promise<{ s3: EmbeddedS3; uri: string; sha256: string }> {
  const s3 = await startEmbeddedS3([bucket]);
  try {
    const { uri, sha256 } = await s3.put(bucket, basename(path), await readFile(path));
    return { s3, uri, sha256 };
  } catch (error) {
    await s3.close();
    throw error;
  }
}
