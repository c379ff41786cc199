/**
 * An app file as a CDK app: each API one RealtimeApi, in a stack of its own (`<stackName>-<api>`), so deploying or
 * deleting one API never touches another. The file's fields map one to one onto RealtimeApi's props; whatever the
 * file leaves out is left to the construct's default, and the construct's own synth validation has the last word.
 */
import { isAbsolute, resolve } from 'node:path';
import { App, Duration, Size, Stack, Tags } from 'aws-cdk-lib';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import type * as logs from 'aws-cdk-lib/aws-logs';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as sns from 'aws-cdk-lib/aws-sns';
import type { Construct } from 'constructs';
import { ApiAuth } from '../constructs/api-auth.js';
import type { MonitoringProps } from '../constructs/operations/api-monitoring.js';
import { AsyncApi, type AsyncApiProps } from '../constructs/async/async-api.js';
import { Compute } from '../constructs/compute.js';
import { ModelSource } from '../constructs/model-source.js';
import { Predictor } from '../constructs/predictor.js';
import { RealtimeApi, type RealtimeApiProps } from '../constructs/realtime-api.js';
import { Rollout } from '../constructs/operations/rollout.js';
import type { AppFile, AppFileApi, AppFileAsync, AppFileCompute, AppFileModel, AppFileRollout } from './schema.js';

/** A checked app file and the folder its paths are relative to. */
export interface LoadedAppFile {
  /** Absolute path of the file. */
  readonly file: string;
  /** The folder holding it: relative paths in it resolve from here. */
  readonly dir: string;
  readonly app: AppFile;
}

/** The stacks' prefix: the file's stackName, else the folder's name made a valid stack name. */
export function stackPrefix(loaded: LoadedAppFile): string {
  if (loaded.app.stackName !== undefined) return loaded.app.stackName;
  const base = loaded.dir.split(/[\\/]/).filter(Boolean).at(-1) ?? '';
  const name = base.replace(/[^A-Za-z0-9-]+/g, '-').replace(/^[^A-Za-z]+|-+$/g, '');
  return name.length > 0 ? name.slice(0, 100) : 'arclight';
}

/** The CloudFormation stack an API deploys as. */
export function apiStackName(loaded: LoadedAppFile, apiName: string): string {
  return `${stackPrefix(loaded)}-${apiName.replace(/[^A-Za-z0-9-]+/g, '-')}`.slice(0, 128);
}

/** Builds the app's stacks into `app`; returns them by API name. */
export function buildAppFromFile(loaded: LoadedAppFile, app: App = new App()): Map<string, Stack> {
  const stacks = new Map<string, Stack>();
  for (const api of loaded.app.apis) {
    const stackName = apiStackName(loaded, api.name);
    const stack = new Stack(app, stackName, {
      stackName,
      ...(loaded.app.region ? { env: { region: loaded.app.region } } : {}),
      ...(loaded.app.description ? { description: loaded.app.description } : {}),
    });
    for (const [key, value] of Object.entries(loaded.app.tags ?? {})) Tags.of(stack).add(key, value);
    if (api.async !== undefined && api.async !== false) {
      new AsyncApi(stack, api.name, asyncApiProps(api, api.async === true ? {} : api.async, loaded.dir));
    } else {
      new RealtimeApi(stack, api.name, realtimeApiProps(api, loaded.dir, stack));
    }
    stacks.set(api.name, stack);
  }
  return stacks;
}

/** The props RealtimeApi and AsyncApi share, as the file gives them. */
function commonProps(api: AppFileApi, dir: string) {
  return {
    model: modelSource(api.model, dir),
    ...(api.predictor !== undefined ? { predictor: Predictor.fromEntry(resolve(dir, api.predictor)) } : {}),
    ...(api.compute !== undefined ? { compute: computeOf(api.compute) } : {}),
    ...(api.config !== undefined ? { config: api.config } : {}),
    ...(api.auth !== undefined ? { auth: authOf(api.auth) } : {}),
    ...(api.throttle !== undefined ? { throttle: api.throttle } : {}),
    ...(api.logRetention !== undefined ? { logRetention: api.logRetention as logs.RetentionDays } : {}),
  };
}

/** AsyncApi's props for an async API of the file, the file's units (s, MB, KB, days) turned into CDK's types. */
export function asyncApiProps(api: AppFileApi, options: AppFileAsync, dir: string): AsyncApiProps {
  const { timeout, maxBodySize, inlineResultSize, urlExpiry, retention, maxReceiveCount } = options;
  const { maxConcurrentInvocationsPerInstance, targetBacklogPerInstance } = options;
  // The file knows whether compute.minInstances was written: an async API on SageMaker keeps it (else scales to zero).
  const minInstances =
    options.minInstances ?? (api.compute?.kind === 'sagemaker' ? api.compute.minInstances : undefined);
  return {
    ...commonProps(api, dir),
    ...(timeout !== undefined ? { timeout: Duration.seconds(timeout) } : {}),
    ...(maxBodySize !== undefined ? { maxBodySize: Size.mebibytes(maxBodySize) } : {}),
    ...(inlineResultSize !== undefined ? { inlineResultSize: Size.kibibytes(inlineResultSize) } : {}),
    ...(urlExpiry !== undefined ? { urlExpiry: Duration.seconds(urlExpiry) } : {}),
    ...(retention !== undefined ? { retention: Duration.days(retention) } : {}),
    ...(maxReceiveCount !== undefined ? { maxReceiveCount } : {}),
    ...(maxConcurrentInvocationsPerInstance !== undefined ? { maxConcurrentInvocationsPerInstance } : {}),
    ...(targetBacklogPerInstance !== undefined ? { targetBacklogPerInstance } : {}),
    ...(minInstances !== undefined ? { minInstances } : {}),
  };
}

/**
 * RealtimeApi's props for one API of the file: only what the file says. `scope` holds what the file names by ARN or
 * name (the alarm topic, the data-capture bucket).
 */
export function realtimeApiProps(api: AppFileApi, dir: string, scope: Construct): RealtimeApiProps {
  return {
    ...commonProps(api, dir),
    ...(api.batching !== undefined
      ? {
          batching: {
            ...(api.batching.maxBatchSize !== undefined ? { maxBatchSize: api.batching.maxBatchSize } : {}),
            ...(api.batching.maxBatchDelay !== undefined
              ? { maxBatchDelay: Duration.millis(api.batching.maxBatchDelay) }
              : {}),
          },
        }
      : {}),
    ...(api.docs !== undefined ? { docs: api.docs } : {}),
    ...(api.rollout !== undefined ? { rollout: rolloutOf(api.rollout) } : {}),
    ...(api.monitoring !== undefined ? { monitoring: monitoringOf(api.monitoring, scope, api.name) } : {}),
    ...(api.tracing !== undefined ? { tracing: api.tracing } : {}),
    ...(api.variants !== undefined
      ? {
          variants: api.variants.map((variant) => ({
            name: variant.name,
            model: modelSource(variant.model, dir),
            ...(variant.predictor !== undefined
              ? { predictor: Predictor.fromEntry(resolve(dir, variant.predictor)) }
              : {}),
            ...(variant.weight !== undefined ? { weight: variant.weight } : {}),
            ...(variant.shadow !== undefined ? { shadow: variant.shadow } : {}),
            ...(variant.instanceCount !== undefined ? { instanceCount: variant.instanceCount } : {}),
          })),
        }
      : {}),
    ...(api.dataCapture !== undefined
      ? {
          dataCapture: {
            bucket: s3.Bucket.fromBucketName(scope, `${api.name}DataCaptureBucket`, api.dataCapture.bucket),
            ...(api.dataCapture.prefix !== undefined ? { prefix: api.dataCapture.prefix } : {}),
            ...(api.dataCapture.samplingPercentage !== undefined
              ? { samplingPercentage: api.dataCapture.samplingPercentage }
              : {}),
          },
        }
      : {}),
  };
}

type RolloutSpec = Exclude<AppFileRollout, string>;
type RolloutOf<K extends RolloutSpec['kind']> = Omit<Extract<RolloutSpec, { kind: K }>, 'kind'>;

/** A bake interval in the file's seconds, as Rollout's Duration. */
function intervalOf(interval: number | undefined): { interval?: Duration } {
  return interval !== undefined ? { interval: Duration.seconds(interval) } : {};
}

/** Each rollout kind of the file, as its Rollout factory. */
const ROLLOUTS: { readonly [K in RolloutSpec['kind']]: (props: RolloutOf<K>) => Rollout } = {
  allAtOnce: () => Rollout.allAtOnce(),
  canary: ({ interval, ...rest }) => Rollout.canary({ ...rest, ...intervalOf(interval) }),
  linear: ({ interval, ...rest }) => Rollout.linear({ ...rest, ...intervalOf(interval) }),
  rolling: ({ interval, ...rest }) => Rollout.rolling({ ...rest, ...intervalOf(interval) }),
};

/** The rollout the file describes: a kind alone, or a map with its options. */
export function rolloutOf(rollout: AppFileRollout): Rollout {
  const { kind, ...props }: RolloutSpec = typeof rollout === 'string' ? { kind: rollout } : rollout;
  return (ROLLOUTS[kind] as (props: RolloutOf<typeof kind>) => Rollout)(props);
}

function monitoringOf(
  monitoring: NonNullable<AppFileApi['monitoring']>,
  scope: Construct,
  apiName: string,
): MonitoringProps {
  const { alarmTopic, latencyP99Threshold, ...rest } = monitoring;
  return {
    ...rest,
    ...(alarmTopic !== undefined
      ? { alarmTopic: sns.Topic.fromTopicArn(scope, `${apiName}AlarmTopic`, alarmTopic) }
      : {}),
    ...(latencyP99Threshold !== undefined
      ? { latencyP99Threshold: Duration.millis(Math.round(latencyP99Threshold * 1000)) }
      : {}),
  };
}

/** The model as the file gives it: a string, or a map with options. */
export function modelOptions(model: AppFileApi['model']): AppFileModel {
  return typeof model === 'string' ? { path: model } : model;
}

/** Whether a model path names an S3 object rather than a local file. */
export function isS3Uri(path: string): boolean {
  return path.startsWith('s3://');
}

/** The model the file gives as its ModelSource. `ortFormat` is the asset's only (the loader refuses it on s3://). */
function modelSource(model: AppFileApi['model'], dir: string): ModelSource {
  const { path, sha256, sizeBytes, module, ortFormat, ...format } = modelOptions(model);
  const options = { ...format, ...(module !== undefined ? { module: resolveFrom(dir, module) } : {}) };
  if (isS3Uri(path)) {
    return ModelSource.fromS3Uri(path, {
      ...options,
      ...(sha256 !== undefined ? { sha256 } : {}),
      ...(sizeBytes !== undefined ? { sizeBytes } : {}),
    });
  }
  return ModelSource.fromAsset(resolveFrom(dir, path), {
    ...options,
    ...(ortFormat !== undefined ? { ortFormat } : {}),
  });
}

function resolveFrom(dir: string, path: string): string {
  return isAbsolute(path) ? path : resolve(dir, path);
}

type ComputeOf<K extends AppFileCompute['kind']> = Omit<Extract<AppFileCompute, { kind: K }>, 'kind'>;

/** Each compute kind of the file, as its Compute factory with the file's units turned into CDK's types. */
const COMPUTES: { readonly [K in AppFileCompute['kind']]: (props: ComputeOf<K>) => Compute } = {
  lambda: ({ architecture, ephemeralStorageSize, timeout, ...rest }) =>
    Compute.lambda({
      ...rest,
      ...(architecture !== undefined
        ? { architecture: architecture === 'arm64' ? lambda.Architecture.ARM_64 : lambda.Architecture.X86_64 }
        : {}),
      ...(ephemeralStorageSize !== undefined ? { ephemeralStorageSize: Size.mebibytes(ephemeralStorageSize) } : {}),
      ...(timeout !== undefined ? { timeout: Duration.seconds(timeout) } : {}),
    }),
  sagemaker: ({ containerStartupHealthCheckTimeout, ...rest }) =>
    Compute.sageMaker({
      ...rest,
      ...(containerStartupHealthCheckTimeout !== undefined
        ? { containerStartupHealthCheckTimeout: Duration.seconds(containerStartupHealthCheckTimeout) }
        : {}),
    }),
  ecs: (props) => Compute.ecs(props),
};

/** The compute the file describes. */
export function computeOf(compute: AppFileCompute): Compute {
  const { kind, ...props } = compute;
  return (COMPUTES[kind] as (props: ComputeOf<typeof kind>) => Compute)(props);
}

function authOf(auth: NonNullable<AppFileApi['auth']>): ApiAuth {
  const kind = typeof auth === 'string' ? auth : auth.kind;
  if (kind === 'iam') return ApiAuth.iam();
  if (typeof auth === 'object' && auth.kind === 'jwt')
    return ApiAuth.jwt({ issuer: auth.issuer, audience: auth.audience });
  return ApiAuth.none();
}
