/**
 * Where a batch job reads its inputs and writes its outputs: a local directory or an S3 prefix, behind one small
 * interface (list, read, write, remove), so the engine runs the same on a laptop, in a Lambda function and over
 * s3rver. Keys are relative to the location and always use `/`.
 */
import { mkdir, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { createS3Client, isS3Uri } from '../model-store/model-store.js';
import { BatchJobError } from './batch-job-error.js';

/** One object under a location. */
export interface StoredObject {
  /** Relative to the location, `/`-separated. */
  readonly key: string;
  readonly size: number;
}

/** A local directory or an S3 prefix. */
export abstract class BatchStore {
  /** `s3://bucket/prefix/` or a local directory path. */
  static fromUri(uri: string, env: NodeJS.ProcessEnv = process.env): BatchStore {
    return isS3Uri(uri) ? new S3Store(uri, createS3Client(env)) : new LocalStore(uri);
  }

  /** An S3 prefix read and written with the given client (the Lambda handler shares one). */
  static fromS3(uri: string, client: S3Client): BatchStore {
    return new S3Store(uri, client);
  }

  /** The location as users write it. */
  abstract readonly uri: string;
  /** Every object under the location, sorted by key; `under` narrows it to a sub-prefix. */
  abstract list(under?: string): AsyncIterable<StoredObject>;
  /** The object's bytes and content type, or undefined when there is none. */
  abstract read(key: string): Promise<{ bytes: Buffer; contentType?: string } | undefined>;
  /** Writes the whole object at once (readers never see half of it). */
  abstract write(key: string, bytes: Buffer, contentType: string): Promise<void>;
  abstract remove(key: string): Promise<void>;
  /** The full URI of a key, for messages and records. */
  abstract uriOf(key: string): string;
  /** Releases the client. */
  close(): void {}
}

class LocalStore extends BatchStore {
  readonly uri: string;

  constructor(private readonly root: string) {
    super();
    this.uri = root;
  }

  async *list(under = ''): AsyncIterable<StoredObject> {
    // `under` is a key prefix, as on S3: list the folder it is in and keep the keys that start with it.
    const start = join(this.root, under.slice(0, under.lastIndexOf('/') + 1));
    const info = await stat(start).catch(() => undefined);
    if (!info) return;
    if (!info.isDirectory()) throw new BatchJobError(`${start} is not a directory`);
    const entries = await readdir(start, { recursive: true, withFileTypes: true });
    const files = entries
      .filter((entry) => entry.isFile() && !entry.name.endsWith('.partial'))
      .map((entry) => relative(this.root, join(entry.parentPath, entry.name)).split(sep).join('/'))
      .filter((key) => key.startsWith(under))
      .sort();
    for (const key of files) {
      const { size } = await stat(join(this.root, key));
      yield { key, size };
    }
  }

  async read(key: string): Promise<{ bytes: Buffer } | undefined> {
    try {
      return { bytes: await readFile(join(this.root, key)) };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
  }

  async write(key: string, bytes: Buffer): Promise<void> {
    const path = join(this.root, key);
    await mkdir(dirname(path), { recursive: true });
    // Written beside, then renamed: a crash never leaves half a results file under its final name.
    const partial = `${path}.${process.pid}.partial`;
    await writeFile(partial, bytes);
    await rename(partial, path);
  }

  async remove(key: string): Promise<void> {
    await rm(join(this.root, key), { force: true });
  }

  uriOf(key: string): string {
    return join(this.root, key);
  }
}

const S3_PREFIX = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:\/(.*))?$/;

class S3Store extends BatchStore {
  readonly uri: string;
  private readonly bucket: string;
  /** Empty, or ending in `/`. */
  private readonly prefix: string;

  constructor(
    uri: string,
    private readonly client: S3Client,
  ) {
    super();
    const match = S3_PREFIX.exec(uri);
    if (!match) throw new BatchJobError(`'${uri}' is not a valid S3 location`, 'Write it as s3://bucket/prefix/');
    this.bucket = match[1]!;
    const path = match[2] ?? '';
    this.prefix = path === '' || path.endsWith('/') ? path : `${path}/`;
    this.uri = `s3://${this.bucket}/${this.prefix}`;
  }

  async *list(under = ''): AsyncIterable<StoredObject> {
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({
          Bucket: this.bucket,
          Prefix: `${this.prefix}${under}`,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      for (const object of page.Contents ?? []) {
        // "Folder" markers that consoles create are no inputs.
        if (object.Key === undefined || object.Key.endsWith('/')) continue;
        yield { key: object.Key.slice(this.prefix.length), size: object.Size ?? 0 };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  async read(key: string): Promise<{ bytes: Buffer; contentType?: string } | undefined> {
    try {
      const object = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
      const bytes = Buffer.from(await object.Body!.transformToByteArray());
      return { bytes, ...(object.ContentType ? { contentType: object.ContentType } : {}) };
    } catch (error) {
      if (error instanceof NoSuchKey || (error as { name?: string }).name === 'NoSuchKey') return undefined;
      throw error;
    }
  }

  async write(key: string, bytes: Buffer, contentType: string): Promise<void> {
    // A Buffer body (not a stream): one PUT with a known length, which every S3-compatible server stores as sent.
    await this.client.send(
      new PutObjectCommand({ Bucket: this.bucket, Key: this.prefix + key, Body: bytes, ContentType: contentType }),
    );
  }

  async remove(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.prefix + key }));
  }

  uriOf(key: string): string {
    return `${this.uri}${key}`;
  }

  override close(): void {
    this.client.destroy();
  }
}
