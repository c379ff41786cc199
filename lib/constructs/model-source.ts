import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import type { Construct } from 'constructs';

/** Options for a model that already lives in S3. */
export interface ExistingModelOptions {
  /** The object's sha256 (hex); the runtime refuses bytes that differ. @default no integrity check */
  readonly sha256?: string;
  /** The object's size in bytes, for synth-time memory and storage checks. @default unknown */
  readonly sizeBytes?: number;
}

/** What a bound model source gives the compute. */
export interface ModelSourceConfig {
  readonly bucket: s3.IBucket;
  readonly key: string;
  /** `s3://bucket/key` (tokens resolve at deploy time). */
  readonly uri: string;
  readonly sha256?: string;
  readonly sizeBytes?: number;
  /** Problems found with the source, reported at synth together with the others. */
  readonly problems: readonly string[];
}

/** Where a model comes from: a local file deployed as an asset, or an object already in S3. */
export abstract class ModelSource {
  /** A local model file, uploaded as an S3 asset; its sha256 travels to the runtime. */
  static fromAsset(path: string): ModelSource {
    return new AssetModelSource(path);
  }

  /** An object in a bucket you own. */
  static fromBucket(bucket: s3.IBucket, key: string, options: ExistingModelOptions = {}): ModelSource {
    return new BucketModelSource(() => bucket, key, options);
  }

  /** An object named by `s3://bucket/key`. */
  static fromS3Uri(uri: string, options: ExistingModelOptions = {}): ModelSource {
    const match = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/(.+)$/.exec(uri);
    if (!match) return new InvalidModelSource(`model URI '${uri}' is not a valid S3 URI (s3://bucket/key)`);
    const [, bucketName, key] = match;
    return new BucketModelSource((scope) => s3.Bucket.fromBucketName(scope, 'ModelBucket', bucketName!), key!, options);
  }

  /** Sets the source up under `scope` and grants `grantee` read of exactly the model object. */
  abstract bind(scope: Construct, grantee: iam.IGrantable): ModelSourceConfig;
}

/** Grants `s3:GetObject` on one object: never the bucket, never a wildcard. */
export function grantReadObject(grantee: iam.IGrantable, bucket: s3.IBucket, key: string): void {
  grantee.grantPrincipal.addToPrincipalPolicy(
    new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [bucket.arnForObjects(key)] }),
  );
}

class AssetModelSource extends ModelSource {
  constructor(private readonly path: string) {
    super();
  }

  bind(scope: Construct, grantee: iam.IGrantable): ModelSourceConfig {
    const size = fileSize(this.path);
    if (size === undefined) return invalidSource(scope, `model file ${this.path} does not exist`);
    const asset = new Asset(scope, 'ModelAsset', { path: this.path });
    grantReadObject(grantee, asset.bucket, asset.s3ObjectKey);
    return {
      bucket: asset.bucket,
      key: asset.s3ObjectKey,
      uri: asset.s3ObjectUrl,
      sha256: sha256OfFile(this.path),
      sizeBytes: size,
      problems: size === 0 ? [`model file ${this.path} is empty`] : [],
    };
  }
}

class InvalidModelSource extends ModelSource {
  constructor(private readonly problem: string) {
    super();
  }

  bind(scope: Construct): ModelSourceConfig {
    return invalidSource(scope, this.problem);
  }
}

class BucketModelSource extends ModelSource {
  constructor(
    private readonly bucketIn: (scope: Construct) => s3.IBucket,
    private readonly key: string,
    private readonly options: ExistingModelOptions,
  ) {
    super();
  }

  bind(scope: Construct, grantee: iam.IGrantable): ModelSourceConfig {
    const bucket = this.bucketIn(scope);
    const problems: string[] = [];
    if (this.options.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(this.options.sha256)) {
      problems.push(`sha256 '${this.options.sha256}' is not 64 hex digits`);
    }
    // IAM reads * and ? in a resource ARN as wildcards: such a key would grant every object it matches.
    if (/[*?]/.test(this.key)) {
      problems.push(`model key '${this.key}' holds an IAM wildcard (* or ?); name exactly one object`);
    } else {
      grantReadObject(grantee, bucket, this.key);
    }
    return {
      bucket,
      key: this.key,
      uri: `s3://${bucket.bucketName}/${this.key}`,
      sha256: this.options.sha256?.toLowerCase(),
      sizeBytes: this.options.sizeBytes,
      problems,
    };
  }
}

/** The config of a source already known to be invalid: synth fails with its problem, reported beside the others. */
function invalidSource(scope: Construct, problem: string): ModelSourceConfig {
  const bucket = s3.Bucket.fromBucketName(scope, 'ModelBucket', 'invalid-model-source');
  return { bucket, key: 'invalid', uri: 's3://invalid-model-source/invalid', problems: [problem] };
}

function fileSize(path: string): number | undefined {
  try {
    const info = statSync(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** sha256 of a file, read in chunks so a multi-GB model does not sit in memory at synth. */
function sha256OfFile(path: string): string {
  const hash = createHash('sha256');
  const buffer = Buffer.alloc(8 * 1024 * 1024);
  const fd = openSync(path, 'r');
  try {
    let read: number;
    while ((read = readSync(fd, buffer, 0, buffer.length, null)) > 0) hash.update(buffer.subarray(0, read));
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}
