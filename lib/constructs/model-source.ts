import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Asset } from 'aws-cdk-lib/aws-s3-assets';
import type { Construct } from 'constructs';
import { ENV, MODEL_FORMATS } from '../contract.js';
import { modelFileFormat } from '../model-format.js';
import { attachPrefixPolicy } from './prefix-policy.js';
import { isOrtFormat, ortFormatOfSync, OrtConversionError } from '../ort-conversion.js';
import type { Datatype, ModelFormat, TensorDeclaration } from '../predictor.js';

/** How a model is served: its format and, for torch models, what the file alone cannot say. */
export interface ModelFormatOptions {
  /** `onnx`, `torchscript` or `lightning-checkpoint`. @default read from the file (`fromAsset`), else `onnx` */
  readonly format?: ModelFormat;
  /** Lightning checkpoints: the Python file defining the model's class, copied into the image. @default none */
  readonly module?: string;
  /** Lightning checkpoints: the class in `module`. @default none */
  readonly className?: string;
  /** Torch models: the inputs in `forward`'s order (names, datatypes, shapes). @default names from `forward` */
  readonly inputs?: readonly TensorDeclaration[];
  /** Torch models: output names and metadata in the order `forward` returns them. @default `output`… */
  readonly outputs?: readonly TensorDeclaration[];
}

/** Options for a model file deployed as an asset. */
export interface AssetModelOptions extends ModelFormatOptions {
  /**
   * Deploy the ONNX model converted to onnxruntime's ORT format, at synth, with the onnxruntime-node the runtime
   * uses (no Python needed; cached per model and onnxruntime version under the temp dir). The runtime then creates
   * the session on the downloaded bytes in place instead of parsing and copying every weight: a 256 MiB model's
   * session is ready in tens of milliseconds instead of seconds, and the model's memory is touched once. The trade:
   * the file holds `extended` graph optimizations only (portable across CPUs); onnxruntime's CPU-specific layout
   * transforms, which the ONNX path applies at load, are not applied to an ORT-format model, so convolutional models
   * cost more CPU per request (MobileNetV3-small about 2.5–3×). Best for models whose size, not their convolutions, dominates
   * (embeddings, large MatMul weights). Results are bit for bit the ONNX model's at `extended`. A model already in ORT
   * format is deployed as it is. ONNX models only.
   * @default false
   */
  readonly ortFormat?: boolean;
}

/** A torch model's serving details, as bound. */
export interface TorchModelConfig {
  /** Absolute path of the checkpoint's module file on this machine (copied into the image). */
  readonly module?: string;
  readonly className?: string;
  readonly inputs?: readonly TensorDeclaration[];
  readonly outputs?: readonly TensorDeclaration[];
}

/** Options for a model that already lives in S3. */
export interface ExistingModelOptions extends ModelFormatOptions {
  /** The object's sha256 (hex); the runtime refuses bytes that differ. @default no integrity check */
  readonly sha256?: string;
  /** The object's size in bytes, for synth-time memory and storage checks. @default unknown */
  readonly sizeBytes?: number;
}

/**
 * A versioned model under a prefix: numbered folders (`model/1/`, `model/2/`, …), each holding one model object and
 * optionally its sha256 sidecar (`model.onnx.sha256`); the highest number is the current version.
 */
export interface VersionedModelOptions extends ModelFormatOptions {
  /** The prefix holding the version folders, e.g. `models/digits/` (a trailing slash is added when missing). */
  readonly prefix: string;
  /** Serve this version only (Lambda needs one: its sandboxes load what the deployment pinned). @default the highest */
  readonly version?: number;
  /**
   * Containers (SageMaker, ECS): how often to look for a new version and swap to it under load. Not with `version`.
   * @default 1 minute when no version is pinned
   */
  readonly pollInterval?: Duration;
  /** With `version`: that version's model sha256 (hex); the runtime refuses bytes that differ. @default its sidecar */
  readonly sha256?: string;
  /** The model's size in bytes, for synth-time memory and storage checks. @default unknown */
  readonly sizeBytes?: number;
}

/** A versioned source, as bound: what the runtime needs beyond the prefix URI. */
export interface ModelVersionsConfig {
  /** The pinned version, when one is. */
  readonly version?: number;
  /** Seconds between looks for a new version (containers); absent when pinned. */
  readonly pollSeconds?: number;
}

/** What a bound model source gives the compute. */
export interface ModelSourceConfig {
  readonly bucket: s3.IBucket;
  readonly key: string;
  /** `s3://bucket/key` (tokens resolve at deploy time). */
  readonly uri: string;
  readonly sha256?: string;
  readonly sizeBytes?: number;
  /** The model's format. */
  readonly format: ModelFormat;
  /** Torch formats: module, class, declared inputs and outputs. */
  readonly torch?: TorchModelConfig;
  /** Problems found with the source, reported at synth together with the others. */
  readonly problems: readonly string[];
  /** A versioned prefix (`uri` ends in `/`): the pinned version or the poll interval. @default one object */
  readonly versions?: ModelVersionsConfig;
}

/** Whether a format runs in the torch executor (Python and torch in the image). */
export function isTorchFormat(format: ModelFormat): boolean {
  return format === 'torchscript' || format === 'lightning-checkpoint';
}

/** The model's part of the runtime environment; `moduleDir` is where the image keeps the module file. */
export function modelEnvironment(model: ModelSourceConfig, moduleDir: string): Record<string, string> {
  const torch = model.torch;
  return {
    [ENV.modelFormat]: model.format,
    ...(model.versions?.version !== undefined ? { [ENV.modelVersion]: String(model.versions.version) } : {}),
    ...(model.versions?.pollSeconds !== undefined
      ? { [ENV.modelPollSeconds]: String(model.versions.pollSeconds) }
      : {}),
    ...(torch?.module ? { [ENV.modelModule]: `${moduleDir}/${basename(torch.module)}` } : {}),
    ...(torch?.className ? { [ENV.modelClass]: torch.className } : {}),
    ...(torch?.inputs ? { [ENV.modelInputs]: JSON.stringify(torch.inputs) } : {}),
    ...(torch?.outputs ? { [ENV.modelOutputs]: JSON.stringify(torch.outputs) } : {}),
  };
}

/** Where a model comes from: a local file deployed as an asset, or an object already in S3. */
export abstract class ModelSource {
  /**
   * A local model file, uploaded as an S3 asset; its sha256 travels to the runtime. ONNX, TorchScript (`.pt`) or a
   * Lightning checkpoint (`.ckpt`, with `module` and `className`), told apart by the file's contents.
   */
  static fromAsset(path: string, options: AssetModelOptions = {}): ModelSource {
    return new AssetModelSource(path, options);
  }

  /** An object in a bucket you own. */
  static fromBucket(bucket: s3.IBucket, key: string, options?: ExistingModelOptions): ModelSource;
  /**
   * Versions under a prefix of a bucket you own (`{ prefix: 'models/digits/' }`: folders `1/`, `2/`, …); containers
   * swap to a new version as it appears. The role may list and read that prefix only.
   */
  static fromBucket(bucket: s3.IBucket, versions: VersionedModelOptions): ModelSource;
  static fromBucket(
    bucket: s3.IBucket,
    keyOrVersions: string | VersionedModelOptions,
    options: ExistingModelOptions = {},
  ): ModelSource {
    if (typeof keyOrVersions === 'string') return new BucketModelSource(() => bucket, keyOrVersions, options);
    return new VersionedModelSource(bucket, keyOrVersions);
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
  constructor(
    private readonly path: string,
    private readonly options: AssetModelOptions,
  ) {
    super();
  }

  bind(scope: Construct, grantee: iam.IGrantable): ModelSourceConfig {
    const size = fileSize(this.path);
    if (size === undefined) return invalidSource(scope, `model file ${this.path} does not exist`);
    const format = modelFileFormat(this.path, size, this.options.format);
    const served = formatConfig(format, this.options);
    const problems = [...(size === 0 ? [`model file ${this.path} is empty`] : []), ...served.problems];
    const deployed = this.options.ortFormat ? this.ortFormat(format, problems) : this.path;
    const asset = new Asset(scope, 'ModelAsset', { path: deployed });
    grantReadObject(grantee, asset.bucket, asset.s3ObjectKey);
    return {
      bucket: asset.bucket,
      key: asset.s3ObjectKey,
      uri: asset.s3ObjectUrl,
      // The sha256 of what is uploaded (the ORT file when converted): what the runtime verifies.
      sha256: sha256OfFile(deployed),
      sizeBytes: fileSize(deployed) ?? size,
      ...served.config,
      problems,
    };
  }

  /** The file to deploy for `ortFormat`: the conversion, or the model itself when it cannot be (with the problem). */
  private ortFormat(format: ModelFormat, problems: string[]): string {
    const notOnnx = ortFormatFormatProblem(format);
    if (notOnnx !== undefined) {
      problems.push(notOnnx);
      return this.path;
    }
    if (problems.length > 0) return this.path;
    if (isOrtFormat(readHead(this.path, 8))) return this.path;
    try {
      return ortFormatOfSync(resolve(this.path), sha256OfFile(this.path));
    } catch (error) {
      if (!(error instanceof OrtConversionError)) throw error;
      problems.push(error.message);
      return this.path;
    }
  }
}

/** Why `ortFormat` cannot apply to a model of this format (only ONNX converts); undefined when it can. */
export function ortFormatFormatProblem(format: ModelFormat): string | undefined {
  return format === 'onnx' ? undefined : `ortFormat converts ONNX models; this one is ${format}`;
}

/** The first `length` bytes of a file (fewer when it is shorter). */
function readHead(path: string, length: number): Uint8Array {
  const head = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    return head.subarray(0, readSync(fd, head, 0, length, 0));
  } finally {
    closeSync(fd);
  }
}

const DATATYPES: readonly Datatype[] = ['BOOL', 'UINT8', 'INT8', 'INT16', 'INT32', 'INT64', 'FP16', 'FP32', 'FP64'];

/** The format and torch details as bound, with every problem they have. */
function formatConfig(
  format: ModelFormat,
  options: ModelFormatOptions,
): { config: { format: ModelFormat; torch?: TorchModelConfig }; problems: string[] } {
  const problems: string[] = [];
  if (!(MODEL_FORMATS as readonly string[]).includes(format)) {
    problems.push(`format '${String(format)}' is not one of ${MODEL_FORMATS.join(', ')}`);
  }
  const torchOnly = ['module', 'className', 'inputs', 'outputs'].filter(
    (k) => options[k as keyof ModelFormatOptions] !== undefined,
  );
  if (!isTorchFormat(format)) {
    if (torchOnly.length > 0) problems.push(`${torchOnly.join(', ')} apply to torch models, not to ${format}`);
    return { config: { format }, problems };
  }
  const module = options.module === undefined ? undefined : resolve(options.module);
  if (format === 'lightning-checkpoint' && (module === undefined || options.className === undefined)) {
    problems.push('a lightning-checkpoint model needs module (the Python file) and className (the class in it)');
  }
  if (module !== undefined && fileSize(module) === undefined)
    problems.push(`module file ${options.module} does not exist`);
  if (options.className !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(options.className)) {
    problems.push(`className '${options.className}' is not a Python class name`);
  }
  problems.push(...declarationProblems('inputs', options.inputs), ...declarationProblems('outputs', options.outputs));
  const torch: TorchModelConfig = {
    ...(module ? { module } : {}),
    ...(options.className ? { className: options.className } : {}),
    ...(options.inputs ? { inputs: options.inputs } : {}),
    ...(options.outputs ? { outputs: options.outputs } : {}),
  };
  return { config: { format, torch }, problems };
}

function declarationProblems(what: string, declared: readonly TensorDeclaration[] | undefined): string[] {
  if (declared === undefined) return [];
  if (declared.length === 0) return [`${what} must declare at least one tensor`];
  return declared.flatMap((d, i) => {
    const problems: string[] = [];
    if (!d.name) problems.push(`${what}[${i}] has no name`);
    if (!DATATYPES.includes(d.datatype))
      problems.push(`${what}[${i}].datatype '${d.datatype}' is not one of ${DATATYPES.join(', ')}`);
    if (!d.shape.every((n) => Number.isInteger(n) && n >= -1)) {
      problems.push(`${what}[${i}].shape [${d.shape.join(',')}] must hold sizes or -1 (dynamic)`);
    }
    return problems;
  });
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
    const served = formatConfig(this.options.format ?? 'onnx', this.options);
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
      ...served.config,
      problems: [...problems, ...served.problems],
    };
  }
}

/** Versions as numbered folders under a prefix: list and read that prefix (or the pinned version's folder) only. */
class VersionedModelSource extends ModelSource {
  constructor(
    private readonly bucket: s3.IBucket,
    private readonly options: VersionedModelOptions,
  ) {
    super();
  }

  bind(scope: Construct, grantee: iam.IGrantable): ModelSourceConfig {
    const { version, pollInterval, sha256 } = this.options;
    const prefix = this.options.prefix.endsWith('/') ? this.options.prefix : `${this.options.prefix}/`;
    const served = formatConfig(this.options.format ?? 'onnx', this.options);
    const problems = [...versionProblems(prefix, this.options), ...served.problems];
    if (problems.length === 0) {
      grantReadPrefix(scope, grantee, this.bucket, version === undefined ? prefix : `${prefix}${version}/`);
    }
    const pollSeconds =
      version === undefined ? (pollInterval ?? Duration.minutes(1)).toSeconds({ integral: false }) : undefined;
    return {
      bucket: this.bucket,
      key: prefix,
      uri: `s3://${this.bucket.bucketName}/${prefix}`,
      sha256: sha256?.toLowerCase(),
      sizeBytes: this.options.sizeBytes,
      ...served.config,
      versions: {
        ...(version === undefined ? {} : { version }),
        ...(pollSeconds === undefined ? {} : { pollSeconds }),
      },
      problems,
    };
  }
}

function versionProblems(prefix: string, options: VersionedModelOptions): string[] {
  const problems: string[] = [];
  if (prefix === '/' || prefix.startsWith('/'))
    problems.push(`prefix '${options.prefix}' must name a folder, without a leading /`);
  // IAM reads * and ? in a resource ARN or an s3:prefix condition as wildcards.
  if (/[*?]/.test(prefix)) problems.push(`prefix '${options.prefix}' holds an IAM wildcard (* or ?)`);
  const { version, pollInterval, sha256 } = options;
  if (version !== undefined && !(Number.isSafeInteger(version) && version >= 0)) {
    problems.push(`version ${version} must be a folder number (a non-negative integer)`);
  }
  if (version !== undefined && pollInterval !== undefined) {
    problems.push('pollInterval watches for new versions; a pinned version never changes: drop one of them');
  }
  const seconds = pollInterval?.toSeconds({ integral: false });
  if (seconds !== undefined && !(seconds >= 1 && seconds <= 86_400)) {
    problems.push(`pollInterval must be from 1 second to 1 day, got ${seconds} s`);
  }
  if (sha256 !== undefined && version === undefined) {
    problems.push('sha256 names one object: pin a version with it, or give each version a .sha256 sidecar');
  }
  if (sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(sha256))
    problems.push(`sha256 '${sha256}' is not 64 hex digits`);
  return problems;
}

/**
 * Grants reading one prefix: `s3:GetObject` on its objects and `s3:ListBucket` on the bucket only for listings of
 * that prefix (the `s3:prefix` condition), which finding the newest version needs; never the bucket's other objects.
 * A role gets them in a policy of their own, so cdk-nag's wildcard finding is acknowledged on exactly these two.
 */
export function grantReadPrefix(scope: Construct, grantee: iam.IGrantable, bucket: s3.IBucket, prefix: string): void {
  const statements = [
    new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: [bucket.arnForObjects(`${prefix}*`)] }),
    new iam.PolicyStatement({
      actions: ['s3:ListBucket'],
      resources: [bucket.bucketArn],
      conditions: { StringLike: { 's3:prefix': [prefix, `${prefix}*`] } },
    }),
  ];
  attachPrefixPolicy(
    scope,
    'ModelVersionsRead',
    grantee,
    statements,
    bucket.arnForObjects(`${prefix}*`),
    'A versioned model is every object under its prefix (new versions appear there): read and list that prefix only, nothing else in the bucket.',
  );
}

/** The config of a source already known to be invalid: synth fails with its problem, reported beside the others. */
function invalidSource(scope: Construct, problem: string): ModelSourceConfig {
  const bucket = s3.Bucket.fromBucketName(scope, 'ModelBucket', 'invalid-model-source');
  return { bucket, key: 'invalid', uri: 's3://invalid-model-source/invalid', format: 'onnx', problems: [problem] };
}

/** A regular file's size; undefined when the path is missing or not a file. */
export function fileSize(path: string): number | undefined {
  try {
    const info = statSync(path);
    return info.isFile() ? info.size : undefined;
  } catch {
    return undefined;
  }
}

/** sha256 of a file, read in chunks so a multi-GB model does not sit in memory at synth. */
export function sha256OfFile(path: string): string {
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
