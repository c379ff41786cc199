/**
 * Versioned models: a prefix (`s3://bucket/model/`, or a local folder, with a trailing slash) whose numbered folders
 * are the versions (`model/1/`, `model/2/`, …), the way Cortex served them; the highest number is the current one.
 * A version folder holds one model object and, optionally, its sha256 sidecar `<model file>.sha256` (the hex digest,
 * alone or as `sha256sum` writes it). Upload the sidecar first: a folder without its model object is not a version
 * yet, so a poll never sees a model before its hash.
 */
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { GetObjectCommand, ListObjectsV2Command, type S3Client } from '@aws-sdk/client-s3';
import { createS3Client, isS3Uri } from './model-store.js';
import { StartupError } from '../startup-error.js';

/** One version of a versioned model, resolved to its model object. */
export interface ModelVersion {
  /** The folder's number, as written (`"2"`). */
  readonly version: string;
  /** The model object: `s3://bucket/prefix/2/model.onnx`, or a local path. */
  readonly uri: string;
  /** From the sidecar, when the version has one. */
  readonly sha256?: string;
  /** Changes whenever the model object or its sidecar is replaced (ETags, or sizes and times locally). */
  readonly fingerprint: string;
}

const SIDECAR = '.sha256';
const VERSION_FOLDER = /^\d{1,15}$/;
const S3_PREFIX = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.*)$/;

/** Whether a model URI names a versioned prefix (a trailing slash) rather than one model object. */
export function isVersionedModelUri(uri: string): boolean {
  return uri.endsWith('/');
}

/**
 * The version to serve under a versioned prefix: `pinned` when given, else the highest numbered folder that holds a
 * model object. Throws a StartupError when there is none (or the pinned one is missing or malformed).
 */
export async function resolveModelVersion(
  prefixUri: string,
  options: { readonly pinned?: string; readonly env?: NodeJS.ProcessEnv } = {},
): Promise<ModelVersion> {
  const store = isS3Uri(prefixUri) ? new S3VersionStore(prefixUri, options.env) : new LocalVersionStore(prefixUri);
  try {
    const candidates = options.pinned === undefined ? await store.versions() : [options.pinned];
    if (options.pinned !== undefined && !VERSION_FOLDER.test(options.pinned)) {
      throw new StartupError(`model version '${options.pinned}' is not a folder number`, 'Pin a version like 3');
    }
    for (const version of candidates) {
      const found = await store.version(version);
      if (found) return found;
      if (options.pinned !== undefined) {
        throw new StartupError(
          `model version ${version} under ${prefixUri} holds no model object`,
          `Upload the model to ${prefixUri}${version}/`,
        );
      }
    }
    throw new StartupError(
      `no model version under ${prefixUri}: no numbered folder (1/, 2/, …) holds a model object`,
      `Upload the model as ${prefixUri}1/model.onnx`,
    );
  } finally {
    store.close();
  }
}

/** Where the numbered folders are listed and read. */
interface VersionStore {
  /** Version folder names, highest first. */
  versions(): Promise<string[]>;
  /** The version's model object and sidecar; undefined while the folder holds no model object. */
  version(version: string): Promise<ModelVersion | undefined>;
  close(): void;
}

class S3VersionStore implements VersionStore {
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly client: S3Client;

  constructor(
    private readonly uri: string,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    const match = S3_PREFIX.exec(uri);
    if (!match) throw new StartupError(`'${uri}' is not a valid S3 prefix`, 'Write it as s3://bucket/prefix/');
    this.bucket = match[1]!;
    this.prefix = match[2]!;
    this.client = createS3Client(env);
  }

  async versions(): Promise<string[]> {
    const folders: string[] = [];
    let token: string | undefined;
    do {
      const input = { Bucket: this.bucket, Prefix: this.prefix, Delimiter: '/', ContinuationToken: token };
      const page = await this.guard(() => this.client.send(new ListObjectsV2Command(input)));
      for (const common of page.CommonPrefixes ?? []) {
        const name = common.Prefix?.slice(this.prefix.length, -1) ?? '';
        if (VERSION_FOLDER.test(name)) folders.push(name);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return byNumberDescending(folders);
  }

  async version(version: string): Promise<ModelVersion | undefined> {
    const folder = `${this.prefix}${version}/`;
    const input = { Bucket: this.bucket, Prefix: folder, MaxKeys: 100 };
    const page = await this.guard(() => this.client.send(new ListObjectsV2Command(input)));
    const objects = (page.Contents ?? []).filter((o) => o.Key !== undefined && !o.Key.endsWith('/'));
    const keys = objects.map((o) => o.Key!.slice(folder.length));
    const model = modelObjectOf(keys, `${this.uri}${version}/`);
    if (model === undefined) return undefined;
    const sidecar = objects.find((o) => o.Key === `${folder}${model}${SIDECAR}`);
    const sha256 = sidecar ? parseSidecar(await this.read(sidecar.Key!), `${this.uri}${version}/${model}`) : undefined;
    const etags = [model, `${model}${SIDECAR}`].map((k) => objects.find((o) => o.Key === `${folder}${k}`)?.ETag);
    return {
      version,
      uri: `s3://${this.bucket}/${folder}${model}`,
      ...(sha256 ? { sha256 } : {}),
      fingerprint: etags.join(','),
    };
  }

  close(): void {
    this.client.destroy();
  }

  private async read(key: string): Promise<string> {
    const object = await this.guard(() => this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key })));
    return (await object.Body?.transformToString('utf8')) ?? '';
  }

  private async guard<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (error) {
      const name = (error as Error).name;
      const hint =
        name === 'AccessDenied'
          ? `Grant s3:ListBucket (on the prefix) and s3:GetObject on ${this.uri}*`
          : 'Check the bucket, the prefix and AWS_ENDPOINT_URL_S3';
      throw new StartupError(`cannot list the model versions under ${this.uri}: ${name}`, hint, { cause: error });
    }
  }
}

class LocalVersionStore implements VersionStore {
  constructor(private readonly folder: string) {}

  async versions(): Promise<string[]> {
    const entries = await readdir(this.folder, { withFileTypes: true }).catch((error: unknown) => {
      throw new StartupError(`model folder ${this.folder} cannot be read`, 'Check the --model path', { cause: error });
    });
    return byNumberDescending(entries.filter((e) => e.isDirectory() && VERSION_FOLDER.test(e.name)).map((e) => e.name));
  }

  async version(version: string): Promise<ModelVersion | undefined> {
    const folder = join(this.folder, version);
    const names = await readdir(folder).catch(() => [] as string[]);
    const model = modelObjectOf(names, `${folder}/`);
    if (model === undefined) return undefined;
    const path = join(folder, model);
    const sidecarPath = `${path}${SIDECAR}`;
    const sidecar = names.includes(`${model}${SIDECAR}`) ? await readFile(sidecarPath, 'utf8') : undefined;
    const sha256 = sidecar === undefined ? undefined : parseSidecar(sidecar, path);
    const stamps = await Promise.all(
      [path, sidecarPath].map((p) =>
        stat(p).then(
          (s) => `${s.size}:${s.mtimeMs}`,
          () => '',
        ),
      ),
    );
    return { version, uri: path, ...(sha256 ? { sha256 } : {}), fingerprint: stamps.join(',') };
  }

  close(): void {}
}

/** The one model object among a folder's names (sidecars aside); several are ambiguous. */
function modelObjectOf(names: readonly string[], where: string): string | undefined {
  const models = names.filter((n) => !n.endsWith(SIDECAR) && !n.includes('/'));
  if (models.length > 1) {
    throw new StartupError(
      `model version ${where} holds ${models.length} model objects (${models.slice(0, 5).join(', ')})`,
      'Keep one model object (and its .sha256 sidecar) per version folder',
    );
  }
  return models[0];
}

/** A sidecar's digest: 64 hex digits, alone or followed by the file name as `sha256sum` writes it. */
function parseSidecar(text: string, model: string): string {
  const digest = /^\s*([0-9a-fA-F]{64})(?:\s|$)/.exec(text)?.[1];
  if (!digest) {
    throw new StartupError(
      `the sha256 sidecar of ${model} does not hold a sha256 (64 hex digits)`,
      `Write it with: sha256sum model.onnx > model.onnx${SIDECAR}`,
    );
  }
  return digest.toLowerCase();
}

function byNumberDescending(folders: readonly string[]): string[] {
  return [...folders].sort((a, b) => Number(b) - Number(a));
}
