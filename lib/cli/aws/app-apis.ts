/**
 * The Arclight APIs of a synthesized app, as deployed commands (`get`, `logs`, `predict <api>`, `plan`) need them:
 * for each its stack, the logical ids of its resources (function, endpoint, service, log group, HTTP or REST API,
 * stage), its auth, the output that carries its URL, its model and its compute settings. Read from the cloud
 * assembly's manifest and templates (`aws:cdk:path` metadata places each resource under its RealtimeApi).
 */
import { existsSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { ApiMetadata } from '../../constructs/realtime-api.js';
import { API_METADATA_KEY, ENV } from '../../contract.js';
import { StartupError } from '../../runtime/startup-error.js';
import { AssemblyError, readCdkJson, readJson, resolveIntrinsic, synthesize } from '../deploy/assembly.js';
import { UsageError } from '../fail.js';

/** Logical ids of an API's resources in its stack's template. */
export interface ApiResourceIds {
  /** The HTTP API (AWS::ApiGatewayV2::Api) or REST API (AWS::ApiGateway::RestApi). */
  readonly api?: string;
  readonly function?: string;
  readonly endpoint?: string;
  readonly service?: string;
  readonly cluster?: string;
  /** The log group the API's own JSON lines go to (function, endpoint or container logs). */
  readonly logGroup?: string;
  /** API Gateway's access log group. */
  readonly accessLogGroup?: string;
}

/** The model an API serves, as synthesized. */
export interface AppModel {
  /** `s3://bucket/key`, with `${AWS::AccountId}`-style placeholders left where the account or region is unknown. */
  readonly uri?: string;
  readonly sha256?: string;
  readonly format?: string;
  /** The staged file of a model asset in the assembly, and its size. */
  readonly assetPath?: string;
  readonly bytes?: number;
}

/** Compute settings as synthesized. */
export interface AppComputeSettings {
  readonly memorySize?: number;
  readonly architecture?: string;
  readonly timeoutSeconds?: number;
  readonly provisionedConcurrency?: number;
  readonly instanceType?: string;
  readonly instanceCount?: number;
  readonly minCapacity?: number;
  readonly maxCapacity?: number;
  /** Load balancers and NAT gateways the API's own VPC runs (ECS). */
  readonly loadBalancers?: number;
  readonly natGateways?: number;
}

/** One Arclight API of a synthesized app. */
export interface AppApi {
  readonly apiName: string;
  readonly compute: ApiMetadata['compute'];
  readonly stackName: string;
  /** The stack's region when the app pins it (`env`), else undefined. */
  readonly region?: string;
  readonly account?: string;
  readonly auth: 'none' | 'iam' | 'jwt';
  /** `http` (API Gateway HTTP API) or `rest` (REST API, SageMaker's front). */
  readonly gateway: 'http' | 'rest';
  /** The stage name as CloudWatch's `Stage` dimension names it. */
  readonly stageName?: string;
  /** The REST API's name (CloudWatch's `ApiName` dimension). */
  readonly restApiName?: string;
  /** The output key (the CfnOutput's logical id) of the API's URL. */
  readonly urlOutputKey?: string;
  readonly ids: ApiResourceIds;
  readonly model: AppModel;
  readonly settings: AppComputeSettings;
}

interface Resource {
  readonly Type?: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
}

interface Template {
  readonly Resources?: Record<string, Resource>;
  readonly Outputs?: Record<string, { Description?: string }>;
}

interface Artifact {
  readonly type?: string;
  readonly environment?: string;
  readonly displayName?: string;
  readonly properties?: Record<string, unknown>;
}

interface StagedFile {
  readonly path: string;
  readonly objectKey: string;
}

/** Every Arclight API of the cloud assembly at `dir` (nested assemblies of Stages included). */
export function readAppApis(dir: string): AppApi[] {
  const root = resolve(dir);
  const manifestFile = join(root, 'manifest.json');
  if (!existsSync(manifestFile)) {
    throw new AssemblyError(`${dir} is not a cloud assembly (no manifest.json)`, 'Pass the output of `cdk synth`');
  }
  const manifest = readJson<{ artifacts?: Record<string, Artifact> }>(manifestFile);
  const artifacts = Object.entries(manifest.artifacts ?? {});
  const staged = artifacts
    .filter(([, artifact]) => artifact.type === 'cdk:asset-manifest')
    .flatMap(([, artifact]) => stagedFiles(root, String(artifact.properties?.['file'])));
  const apis: AppApi[] = [];
  for (const [id, artifact] of artifacts) {
    if (artifact.type === 'cdk:cloud-assembly' && typeof artifact.properties?.['directoryName'] === 'string') {
      apis.push(...readAppApis(join(root, artifact.properties['directoryName'])));
    } else if (artifact.type === 'aws:cloudformation:stack') {
      const stackName = String(artifact.properties?.['stackName'] ?? artifact.displayName ?? id);
      const template = readJson<Template>(join(root, String(artifact.properties?.['templateFile'])));
      const env = /^aws:\/\/([^/]+)\/(.+)$/.exec(artifact.environment ?? '');
      const known = (value: string | undefined): string | undefined =>
        value === undefined || value.startsWith('unknown-') ? undefined : value;
      apis.push(...apisOfTemplate(template, { stackName, account: known(env?.[1]), region: known(env?.[2]), staged }));
    }
  }
  return apis;
}

function stagedFiles(root: string, file: string): StagedFile[] {
  const manifest = readJson<{
    files?: Record<string, { source?: { path?: string }; destinations?: Record<string, { objectKey?: string }> }>;
  }>(join(root, file));
  return Object.values(manifest.files ?? {}).flatMap((entry) =>
    Object.values(entry.destinations ?? {}).flatMap((destination) =>
      entry.source?.path && destination.objectKey
        ? [{ path: join(root, entry.source.path), objectKey: destination.objectKey }]
        : [],
    ),
  );
}

interface StackContext {
  readonly stackName: string;
  readonly account?: string;
  readonly region?: string;
  readonly staged: readonly StagedFile[];
}

const PATH_KEY = 'aws:cdk:path';

function apisOfTemplate(template: Template, stack: StackContext): AppApi[] {
  const resources = Object.entries(template.Resources ?? {}).map(([logicalId, resource]) => ({
    logicalId,
    resource,
    path: typeof resource.Metadata?.[PATH_KEY] === 'string' ? (resource.Metadata[PATH_KEY] as string) : undefined,
  }));
  const apis: AppApi[] = [];
  for (const { logicalId, resource, path } of resources) {
    const metadata = resource.Metadata?.[API_METADATA_KEY] as ApiMetadata | undefined;
    if (metadata === undefined) continue;
    if (path === undefined) {
      throw new AssemblyError(
        `the resource ${stack.stackName}/${logicalId} of API '${metadata.apiName}' has no ${PATH_KEY} metadata`,
        'Synthesize with path metadata on (the CDK CLI default; do not pass --path-metadata false)',
      );
    }
    const prefix = apiPrefix(path, resources);
    const own = resources.filter((r) => r.path?.startsWith(`${prefix}/`));
    const find = (type: string, except: RegExp = /$^/): (typeof own)[number] | undefined =>
      own.find((r) => r.resource.Type === type && !except.test(r.path!.slice(prefix.length)));
    const httpApi = find('AWS::ApiGatewayV2::Api');
    const restApi = find('AWS::ApiGateway::RestApi');
    const stage = find('AWS::ApiGatewayV2::Stage') ?? find('AWS::ApiGateway::Stage');
    const accessLogs = find('AWS::Logs::LogGroup', /^(?!\/AccessLogs\/)/);
    const logGroup = find('AWS::Logs::LogGroup', /^\/(?:AccessLogs|FlowLogs)\//);
    const fn = metadata.compute === 'lambda' ? { logicalId } : undefined;
    const endpoint = find('AWS::SageMaker::Endpoint');
    const service = find('AWS::ECS::Service');
    const cluster = find('AWS::ECS::Cluster');
    const urlOutputKey = Object.entries(template.Outputs ?? {}).find(
      ([, output]) => output.Description === `URL of the ${metadata.apiName} API`,
    )?.[0];
    const environment = environmentOf(resource);
    apis.push({
      apiName: metadata.apiName,
      compute: metadata.compute,
      stackName: stack.stackName,
      region: stack.region,
      account: stack.account,
      auth: authOf(own.map((r) => r.resource)),
      gateway: restApi ? 'rest' : 'http',
      stageName: stringProperty(stage?.resource, 'StageName'),
      restApiName: stringProperty(restApi?.resource, 'Name'),
      urlOutputKey,
      ids: {
        api: (httpApi ?? restApi)?.logicalId,
        function: fn?.logicalId,
        endpoint: endpoint?.logicalId,
        service: service?.logicalId,
        cluster: cluster?.logicalId,
        logGroup: logGroup?.logicalId,
        accessLogGroup: accessLogs?.logicalId,
      },
      model: modelOf(environment, stack),
      settings: settingsOf(metadata.compute, resource, own),
    });
  }
  return apis;
}

/** The RealtimeApi's construct path: the longest prefix of `path` with an `Api` child (its HTTP or REST API). */
function apiPrefix(path: string, resources: readonly { path?: string; resource: Resource }[]): string {
  const parts = path.split('/');
  for (let n = parts.length - 1; n > 0; n--) {
    const prefix = parts.slice(0, n).join('/');
    if (
      resources.some(
        (r) =>
          r.path?.startsWith(`${prefix}/Api/`) &&
          /^AWS::ApiGateway(?:V2)?::(?:Api|RestApi)$/.test(r.resource.Type ?? ''),
      )
    ) {
      return prefix;
    }
  }
  return parts.slice(0, -1).join('/');
}

/** `iam` or `jwt` when the API's predict route asks for it (every route of an API has the same authorizer). */
function authOf(resources: readonly Resource[]): AppApi['auth'] {
  const types = resources
    .filter((r) => r.Type === 'AWS::ApiGatewayV2::Route' || r.Type === 'AWS::ApiGateway::Method')
    .map((r) => String(r.Properties?.['AuthorizationType'] ?? 'NONE'));
  if (types.includes('AWS_IAM')) return 'iam';
  if (types.includes('JWT')) return 'jwt';
  return 'none';
}

function environmentOf(resource: Resource): Record<string, unknown> {
  const properties = resource.Properties ?? {};
  if (resource.Type === 'AWS::Lambda::Function') {
    return ((properties['Environment'] as { Variables?: Record<string, unknown> })?.Variables ?? {}) as Record<
      string,
      unknown
    >;
  }
  if (resource.Type === 'AWS::SageMaker::Model') {
    return ((properties['PrimaryContainer'] as { Environment?: Record<string, unknown> })?.Environment ?? {}) as Record<
      string,
      unknown
    >;
  }
  if (resource.Type === 'AWS::ECS::TaskDefinition') {
    const definitions = (properties['ContainerDefinitions'] ?? []) as {
      Environment?: { Name?: string; Value?: unknown }[];
    }[];
    const withModel = definitions.find((d) => d.Environment?.some((e) => e.Name === ENV.modelUri));
    return Object.fromEntries((withModel?.Environment ?? []).map((e) => [String(e.Name), e.Value]));
  }
  return {};
}

function modelOf(environment: Record<string, unknown>, stack: StackContext): AppModel {
  const pseudo = {
    'AWS::AccountId': stack.account ?? '${AWS::AccountId}',
    'AWS::Region': stack.region ?? '${AWS::Region}',
    'AWS::Partition': 'aws',
    'AWS::URLSuffix': 'amazonaws.com',
    'AWS::StackName': stack.stackName,
  };
  const text = (name: string): string | undefined => {
    const value = environment[name];
    if (value === undefined) return undefined;
    try {
      return resolveIntrinsic(value, { pseudo });
    } catch {
      return undefined;
    }
  };
  const uri = text(ENV.modelUri);
  const staged = uri === undefined ? undefined : stack.staged.find((file) => uri.endsWith(`/${file.objectKey}`));
  const bytes = staged && existsSync(staged.path) ? statSync(staged.path).size : undefined;
  return {
    uri,
    sha256: text(ENV.modelSha256),
    format: text(ENV.modelFormat),
    assetPath: staged?.path,
    bytes,
  };
}

function settingsOf(
  compute: AppApi['compute'],
  resource: Resource,
  own: readonly { resource: Resource }[],
): AppComputeSettings {
  const properties = resource.Properties ?? {};
  const ofType = (type: string): Record<string, unknown> | undefined =>
    own.find((r) => r.resource.Type === type)?.resource.Properties;
  const scaling = ofType('AWS::ApplicationAutoScaling::ScalableTarget');
  const capacity = {
    minCapacity: numberOf(scaling?.['MinCapacity']),
    maxCapacity: numberOf(scaling?.['MaxCapacity']),
  };
  if (compute === 'lambda') {
    const alias = ofType('AWS::Lambda::Alias');
    return {
      memorySize: numberOf(properties['MemorySize']) ?? 128,
      architecture: (properties['Architectures'] as string[] | undefined)?.[0] ?? 'x86_64',
      timeoutSeconds: numberOf(properties['Timeout']) ?? 3,
      provisionedConcurrency:
        numberOf(
          (alias?.['ProvisionedConcurrencyConfig'] as { ProvisionedConcurrentExecutions?: unknown } | undefined)
            ?.ProvisionedConcurrentExecutions,
        ) ?? 0,
    };
  }
  if (compute === 'sagemaker') {
    const variant = (
      ofType('AWS::SageMaker::EndpointConfig')?.['ProductionVariants'] as Record<string, unknown>[] | undefined
    )?.[0];
    return {
      instanceType: typeof variant?.['InstanceType'] === 'string' ? variant['InstanceType'] : undefined,
      instanceCount: numberOf(variant?.['InitialInstanceCount']),
      ...capacity,
    };
  }
  const launch = ofType('AWS::EC2::LaunchTemplate')?.['LaunchTemplateData'] as { InstanceType?: unknown } | undefined;
  const count = (type: string): number => own.filter((r) => r.resource.Type === type).length;
  return {
    instanceType: typeof launch?.InstanceType === 'string' ? launch.InstanceType : undefined,
    instanceCount: numberOf(ofType('AWS::ECS::Service')?.['DesiredCount']),
    ...capacity,
    loadBalancers: count('AWS::ElasticLoadBalancingV2::LoadBalancer'),
    natGateways: count('AWS::EC2::NatGateway'),
  };
}

function numberOf(value: unknown): number | undefined {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : NaN;
  return Number.isFinite(n) ? n : undefined;
}

function stringProperty(resource: Resource | undefined, name: string): string | undefined {
  const value = resource?.Properties?.[name];
  return typeof value === 'string' ? value : undefined;
}

/** Where the app's APIs are read from: a synthesized assembly, or the app command (default: cdk.json's). */
export interface AppSource {
  /** A synthesized cloud assembly (`cdk.out`). */
  readonly assembly?: string;
  /** The CDK app command. @default cdk.json's `app` */
  readonly app?: string;
  /** @default process.cwd() */
  readonly cwd?: string;
  readonly verbose?: boolean;
}

/** The app's APIs: read from `--assembly`, or synthesized from the app command into cdk.json's output folder. */
export async function loadAppApis(source: AppSource): Promise<AppApi[]> {
  const cwd = resolve(source.cwd ?? process.cwd());
  if (source.assembly !== undefined) return readAppApis(resolve(cwd, source.assembly));
  const cdkJson = readCdkJson(cwd);
  const app = source.app ?? cdkJson.app;
  if (app === undefined) {
    throw new UsageError(
      `no CDK app here (${cwd} has no cdk.json with an "app")`,
      'Run it in your CDK app, or pass --app <command> or --assembly <cdk.out>',
    );
  }
  const out = await synthesize(app, cdkJson.output ?? 'cdk.out', { cwd, verbose: source.verbose });
  return readAppApis(out);
}

/** The API named `name`, or a StartupError listing the app's APIs. */
export function findApi(apis: readonly AppApi[], name: string): AppApi {
  const api = apis.find((candidate) => candidate.apiName === name);
  if (api) return api;
  const names = apis.map((candidate) => candidate.apiName);
  throw new StartupError(
    `the app has no API named '${name}'`,
    names.length === 0 ? 'It has no Arclight API at all' : `Its APIs: ${names.join(', ')}`,
  );
}
