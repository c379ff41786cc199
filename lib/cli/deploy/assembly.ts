/**
 * Reads a synthesized cloud assembly (`cdk.out`) the way `arclight dev` runs it: every Arclight API (found by its
 * function's `arclight:api` metadata) with its Docker build context, its environment with CloudFormation
 * intrinsics resolved against local placeholder values, and the file assets that environment points at.
 * `synthesize` runs a CDK app command as the CDK CLI does.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { isAbsolute, join, posix, resolve } from 'node:path';
import type { ApiMetadata } from '../../constructs/realtime-api.js';
import { API_METADATA_KEY, ASYNC_ENV, ENV } from '../../contract.js';
import type { VariantMetadata } from '../../variant-split.js';
import { StartupError } from '../../runtime/startup-error.js';

/** What the pseudo parameters stand for locally: no AWS account is involved. */
export const LOCAL_PSEUDO_PARAMETERS: Readonly<Record<string, string>> = {
  'AWS::AccountId': '000000000000',
  'AWS::Region': 'us-east-1',
  'AWS::Partition': 'aws',
  'AWS::URLSuffix': 'amazonaws.com',
};

/** A local file the app deploys to S3, and where it goes. */
export interface FileAsset {
  /** Absolute path of the staged file in the assembly. */
  readonly path: string;
  readonly bucket: string;
  readonly key: string;
  /** `s3://bucket/key` */
  readonly uri: string;
}

/** One Arclight API of a synthesized app, ready to be run locally. */
export interface AssemblyApi {
  readonly apiName: string;
  /** The Node.js architecture the image is built for (`arm64` or `x64`). */
  readonly architecture: ApiMetadata['architecture'];
  /** As Lambda names it: `arm64` or `x86_64`. */
  readonly lambdaArchitecture: string;
  readonly stackName: string;
  /** The function's logical id in its stack's template. */
  readonly logicalId: string;
  /** Absolute path of the function's Docker build context in the assembly. */
  readonly contextDir: string;
  /** The bundle the image's CMD names, relative to the context (`index.mjs`). */
  readonly handlerFile: string;
  /** The export the image's CMD names (`handler`). */
  readonly handlerExport: string;
  /** The function's environment variables, intrinsics resolved. */
  readonly environment: Readonly<Record<string, string>>;
  readonly timeoutSeconds: number;
  readonly memorySize: number;
  /** The file assets the environment points at (the model). */
  readonly assets: readonly FileAsset[];
  /** An AsyncApi's worker: `arclight dev` serves its async routes. */
  readonly async?: boolean;
  /** One of the API's variants run apart (the shadow function); absent for the API's own function. */
  readonly variant?: VariantMetadata;
}

/**
 * An async worker's resources (its bucket, table, queue) exist only once deployed; `arclight dev` puts its own in their
 * place, so these variables are not resolved.
 */
const DEPLOYED_ASYNC_VARIABLES = new Set<string>([
  ASYNC_ENV.bucket,
  ASYNC_ENV.table,
  ASYNC_ENV.queueUrl,
  ASYNC_ENV.topicArn,
  ASYNC_ENV.webhookSecret,
]);
/** Deployed-only variables whose presence `arclight dev` reads (the topic and the webhook key: it has stand-ins). */
const LOCAL_STAND_INS = new Set<string>([ASYNC_ENV.topicArn, ASYNC_ENV.webhookSecret]);

/**
 * Where a shadow variant is reached once deployed (the ALB's shadow listener, the shadow function's alias): locally
 * `arclight dev` copies to the shadow's own process itself, so these are not resolved.
 */
const DEPLOYED_SHADOW_VARIABLES = new Set<string>([ENV.shadowUrl, ENV.shadowFunction]);

/** A value of the template that cannot be known without deploying it. */
export class UnresolvableError extends StartupError {}

/** What intrinsics may refer to. */
interface Scope {
  readonly pseudo: Readonly<Record<string, string>>;
  readonly parameters: Readonly<Record<string, { Type?: string; Default?: unknown }>>;
  /** Where the value sits, for the error message. */
  readonly where: string;
}

const RESOLVABLE =
  'arclight dev resolves Fn::Join, Fn::Sub, Fn::Select, Fn::Split and Ref of AWS::AccountId, AWS::Region, AWS::Partition, AWS::URLSuffix, AWS::StackName and of parameters with a default';

/**
 * Resolves a CloudFormation value to a string: literals, Fn::Join, Fn::Sub, Fn::Select, Fn::Split, and Ref of pseudo
 * parameters (to `pseudo`) or of template parameters with a default. Anything else (a Ref to a resource, Fn::GetAtt,
 * an import) throws an UnresolvableError naming it.
 */
export function resolveIntrinsic(
  value: unknown,
  options: {
    readonly pseudo?: Readonly<Record<string, string>>;
    readonly parameters?: Scope['parameters'];
    readonly where?: string;
  } = {},
): string {
  return resolveString(value, {
    pseudo: options.pseudo ?? LOCAL_PSEUDO_PARAMETERS,
    parameters: options.parameters ?? {},
    where: options.where ?? 'the template',
  });
}

function resolveString(value: unknown, scope: Scope): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  const [name, args] = intrinsic(value, scope);
  switch (name) {
    case 'Ref':
      return resolveRef(args, value, scope);
    case 'Fn::Join': {
      if (!Array.isArray(args) || args.length !== 2 || typeof args[0] !== 'string') throw unresolvable(value, scope);
      return resolveList(args[1], scope).join(args[0]);
    }
    case 'Fn::Sub':
      return resolveSub(args, value, scope);
    case 'Fn::Select': {
      if (!Array.isArray(args) || args.length !== 2) throw unresolvable(value, scope);
      const list = resolveList(args[1], scope);
      const index = Number(resolveString(args[0], scope));
      if (!Number.isInteger(index) || index < 0 || index >= list.length) throw unresolvable(value, scope);
      return list[index]!;
    }
    default:
      throw unresolvable(value, scope);
  }
}

function resolveList(value: unknown, scope: Scope): string[] {
  if (Array.isArray(value)) return value.map((item) => resolveString(item, scope));
  const [name, args] = intrinsic(value, scope);
  if (name === 'Fn::Split' && Array.isArray(args) && args.length === 2 && typeof args[0] === 'string') {
    return resolveString(args[1], scope).split(args[0]);
  }
  throw unresolvable(value, scope);
}

/** The one key of an intrinsic function object and its argument. */
function intrinsic(value: unknown, scope: Scope): [string, unknown] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw unresolvable(value, scope);
  const entries = Object.entries(value);
  if (entries.length !== 1) throw unresolvable(value, scope);
  return entries[0]!;
}

function resolveRef(name: unknown, whole: unknown, scope: Scope): string {
  if (typeof name !== 'string') throw unresolvable(whole, scope);
  const pseudo = scope.pseudo[name];
  if (pseudo !== undefined) return pseudo;
  const parameter = scope.parameters[name];
  if (parameter && parameter.Default !== undefined && !String(parameter.Type ?? '').startsWith('AWS::SSM::')) {
    return resolveString(parameter.Default, scope);
  }
  throw unresolvable(whole, scope);
}

function resolveSub(args: unknown, whole: unknown, scope: Scope): string {
  const [text, variables] = Array.isArray(args) ? args : [args, {}];
  if (typeof text !== 'string' || typeof variables !== 'object' || variables === null) {
    throw unresolvable(whole, scope);
  }
  return text.replace(/\$\{([^}]*)\}/g, (match: string, name: string) => {
    if (name.startsWith('!')) return `\${${name.slice(1)}}`;
    if (Object.hasOwn(variables, name)) return resolveString((variables as Record<string, unknown>)[name], scope);
    return resolveRef(name.trim(), { 'Fn::Sub': match }, scope);
  });
}

function unresolvable(value: unknown, scope: Scope): UnresolvableError {
  let text = JSON.stringify(value) ?? String(value);
  if (text.length > 200) text = `${text.slice(0, 199)}…`;
  return new UnresolvableError(
    `cannot resolve ${text} in ${scope.where} without deploying`,
    `${RESOLVABLE}; give the variable a value known at synth (e.g. ModelSource.fromAsset or fromS3Uri with a literal URI)`,
  );
}

/** A problem with the assembly itself. */
export class AssemblyError extends StartupError {}

interface Manifest {
  readonly artifacts?: Record<string, { type?: string; properties?: Record<string, unknown>; displayName?: string }>;
}

interface Template {
  readonly Resources?: Record<string, Resource>;
  readonly Parameters?: Scope['parameters'];
}

interface Resource {
  readonly Type?: string;
  readonly Properties?: Record<string, unknown>;
  readonly Metadata?: Record<string, unknown>;
}

interface AssetManifest {
  readonly files?: Record<
    string,
    {
      source?: { path?: string; packaging?: string; executable?: unknown };
      destinations?: Record<string, { bucketName?: string; objectKey?: string }>;
    }
  >;
  readonly dockerImages?: Record<
    string,
    {
      source?: { directory?: string; dockerFile?: string; executable?: unknown };
      destinations?: Record<string, { repositoryName?: string; imageTag?: string }>;
    }
  >;
}

interface DockerAsset {
  /** Absolute path of the build context. */
  readonly directory: string;
  readonly dockerFile: string;
  /** `repository:tag` for each destination, placeholders resolved. */
  readonly references: readonly string[];
}

/** Every Lambda-backed Arclight API in the cloud assembly at `dir` (nested assemblies of Stages included). */
export function readAssembly(
  dir: string,
  pseudo: Readonly<Record<string, string>> = LOCAL_PSEUDO_PARAMETERS,
): AssemblyApi[] {
  return readStacks(dir, pseudo, apisOfStack);
}

/** Every container-backed (SageMaker, ECS) Arclight API in the cloud assembly at `dir`. */
export function readContainerApis(
  dir: string,
  pseudo: Readonly<Record<string, string>> = LOCAL_PSEUDO_PARAMETERS,
): AssemblyContainerApi[] {
  return readStacks(dir, pseudo, containerApisOfStack);
}

/** What a stack's APIs are read from beside its template: the assets of its assembly. */
interface StackAssets {
  readonly pseudo: Readonly<Record<string, string>>;
  readonly files: readonly FileAsset[];
  readonly images: readonly DockerAsset[];
}

/** `ofStack` applied to every stack of the assembly at `dir`, nested assemblies included. */
function readStacks<T>(
  dir: string,
  pseudo: Readonly<Record<string, string>>,
  ofStack: (template: Template, stackName: string, assets: StackAssets) => T[],
): T[] {
  const root = resolve(dir);
  const manifestFile = join(root, 'manifest.json');
  if (!existsSync(manifestFile)) {
    throw new AssemblyError(
      `${dir} is not a cloud assembly (no manifest.json)`,
      'Pass the output directory of `cdk synth` (cdk.out), or leave out --assembly to synthesize the app',
    );
  }
  const manifest = readJson<Manifest>(manifestFile);
  const artifacts = Object.entries(manifest.artifacts ?? {});
  const files: FileAsset[] = [];
  const images: DockerAsset[] = [];
  for (const [, artifact] of artifacts) {
    if (artifact.type !== 'cdk:asset-manifest') continue;
    const assets = readAssetManifest(root, String(artifact.properties?.['file']), pseudo);
    files.push(...assets.files);
    images.push(...assets.images);
  }
  const found: T[] = [];
  for (const [id, artifact] of artifacts) {
    if (artifact.type === 'cdk:cloud-assembly') {
      const nested = artifact.properties?.['directoryName'];
      if (typeof nested === 'string') found.push(...readStacks(join(root, nested), pseudo, ofStack));
    } else if (artifact.type === 'aws:cloudformation:stack') {
      const stackName = String(artifact.properties?.['stackName'] ?? artifact.displayName ?? id);
      const template = readJson<Template>(join(root, String(artifact.properties?.['templateFile'])));
      found.push(...ofStack(template, stackName, { pseudo, files, images }));
    }
  }
  return found;
}

/** One Arclight API on a container compute (SageMaker, ECS), ready to be run locally as its image would run it. */
export interface AssemblyContainerApi {
  readonly apiName: string;
  readonly compute: Exclude<ApiMetadata['compute'], 'lambda'>;
  /** Whether the image is the CUDA one. */
  readonly gpu: boolean;
  /** As Lambda names it: `x86_64` or `arm64`. */
  readonly lambdaArchitecture: string;
  readonly stackName: string;
  /** The SageMaker model's or the ECS task definition's logical id. */
  readonly logicalId: string;
  /** Absolute path of the image's Docker build context in the assembly. */
  readonly contextDir: string;
  /** The file the image's ENTRYPOINT runs with node, relative to the context (`server.mjs`). */
  readonly serverFile: string;
  /** Where the image puts the context's files (its WORKDIR): env values under it name files of the context. */
  readonly imageDir: string;
  /** The ENV of the Dockerfile's final stage, as written. */
  readonly imageEnvironment: Readonly<Record<string, string>>;
  /** The container's environment from the template (SageMaker's PrimaryContainer, ECS's container definition). */
  readonly environment: Readonly<Record<string, string>>;
  /** The file assets the environment points at (the model). */
  readonly assets: readonly FileAsset[];
  /** An AsyncApi on SageMaker asynchronous inference (or ECS queue workers). */
  readonly async?: boolean;
  /** One of the API's variants (an ECS service, a SageMaker model); absent for the API's own. */
  readonly variant?: VariantMetadata;
}

function readAssetManifest(
  root: string,
  file: string,
  pseudo: Readonly<Record<string, string>>,
): { files: FileAsset[]; images: DockerAsset[] } {
  const manifest = readJson<AssetManifest>(join(root, file));
  const scope: Scope = { pseudo, parameters: {}, where: `the asset manifest ${file}` };
  const files: FileAsset[] = [];
  for (const asset of Object.values(manifest.files ?? {})) {
    const source = asset.source;
    if (!source?.path || source.executable !== undefined || (source.packaging ?? 'file') !== 'file') continue;
    for (const destination of Object.values(asset.destinations ?? {})) {
      if (destination.bucketName === undefined || destination.objectKey === undefined) continue;
      const bucket = resolveString({ 'Fn::Sub': destination.bucketName }, scope);
      const key = resolveString({ 'Fn::Sub': destination.objectKey }, scope);
      files.push({ path: absolute(root, source.path), bucket, key, uri: `s3://${bucket}/${key}` });
    }
  }
  const images: DockerAsset[] = [];
  for (const asset of Object.values(manifest.dockerImages ?? {})) {
    const source = asset.source;
    if (!source?.directory || source.executable !== undefined) continue;
    const references = Object.values(asset.destinations ?? {})
      .filter((d) => d.repositoryName !== undefined && d.imageTag !== undefined)
      .map(
        (d) =>
          `${resolveString({ 'Fn::Sub': d.repositoryName }, scope)}:${resolveString({ 'Fn::Sub': d.imageTag }, scope)}`,
      );
    images.push({
      directory: absolute(root, source.directory),
      dockerFile: source.dockerFile ?? 'Dockerfile',
      references,
    });
  }
  return { files, images };
}

function apisOfStack(template: Template, stackName: string, assets: StackAssets): AssemblyApi[] {
  const pseudo = { ...assets.pseudo, 'AWS::StackName': stackName };
  const parameters = template.Parameters ?? {};
  const apis: AssemblyApi[] = [];
  for (const [logicalId, resource] of Object.entries(template.Resources ?? {})) {
    const metadata = resource.Metadata?.[API_METADATA_KEY] as ApiMetadata | undefined;
    if (resource.Type !== 'AWS::Lambda::Function' || metadata === undefined) continue;
    const where = (what: string): Scope => ({
      pseudo,
      parameters,
      where: `${what} of the function of API '${metadata.apiName}' (${stackName}/${logicalId})`,
    });
    const properties = resource.Properties ?? {};
    const imageUri = resolveString(
      (properties['Code'] as { ImageUri?: unknown } | undefined)?.ImageUri,
      where('Code.ImageUri'),
    );
    const image = imageAsset(imageUri, assets.images, metadata.apiName, stackName);
    const variables =
      (properties['Environment'] as { Variables?: Record<string, unknown> } | undefined)?.Variables ?? {};
    const environment = {
      ...resolveEnvironment(
        Object.entries(variables).filter(
          ([name]) => !(metadata.async && DEPLOYED_ASYNC_VARIABLES.has(name)) && !DEPLOYED_SHADOW_VARIABLES.has(name),
        ),
        where,
      ),
      ...Object.fromEntries(
        Object.keys(variables)
          .filter((name) => metadata.async && LOCAL_STAND_INS.has(name))
          .map((name) => [name, 'arclight-dev:local']),
      ),
    };
    const { file, exportName } = handlerOf(image);
    apis.push({
      apiName: metadata.apiName,
      architecture: metadata.architecture,
      lambdaArchitecture: resolveString(
        (properties['Architectures'] as unknown[] | undefined)?.[0] ?? 'x86_64',
        where('Architectures'),
      ),
      stackName,
      logicalId,
      contextDir: image.directory,
      handlerFile: file,
      handlerExport: exportName,
      environment,
      timeoutSeconds: Number(resolveString(properties['Timeout'] ?? 3, where('Timeout'))),
      memorySize: Number(resolveString(properties['MemorySize'] ?? 128, where('MemorySize'))),
      assets: assetsReferenced(environment, assets.files),
      async: metadata.async === true,
      ...(metadata.variant ? { variant: metadata.variant } : {}),
    });
  }
  return apis;
}

/** The container of a SageMaker model or an ECS task definition: its image and environment, as the template has them. */
function containerOf(resource: Resource): { image: unknown; environment: [string, unknown][] }[] {
  const properties = resource.Properties ?? {};
  if (resource.Type === 'AWS::SageMaker::Model') {
    const container = properties['PrimaryContainer'] as { Image?: unknown; Environment?: Record<string, unknown> };
    return [{ image: container?.Image, environment: Object.entries(container?.Environment ?? {}) }];
  }
  if (resource.Type === 'AWS::ECS::TaskDefinition') {
    const definitions = (properties['ContainerDefinitions'] ?? []) as {
      Image?: unknown;
      Environment?: { Name?: string; Value?: unknown }[];
    }[];
    return definitions.map((definition) => ({
      image: definition.Image,
      environment: (definition.Environment ?? []).map((variable) => [String(variable.Name), variable.Value]),
    }));
  }
  return [];
}

function containerApisOfStack(template: Template, stackName: string, assets: StackAssets): AssemblyContainerApi[] {
  const pseudo = { ...assets.pseudo, 'AWS::StackName': stackName };
  const parameters = template.Parameters ?? {};
  const apis: AssemblyContainerApi[] = [];
  for (const [logicalId, resource] of Object.entries(template.Resources ?? {})) {
    const metadata = resource.Metadata?.[API_METADATA_KEY] as ApiMetadata | undefined;
    if (metadata === undefined || metadata.compute === 'lambda') continue;
    const where = (what: string): Scope => ({
      pseudo,
      parameters,
      where: `${what} of the container of API '${metadata.apiName}' (${stackName}/${logicalId})`,
    });
    // The container whose image synth built (an ECS task could have sidecars from elsewhere).
    const container = containerOf(resource).find((candidate) =>
      assets.images.some((image) => matchesImage(resolveString(candidate.image, where('Image')), image)),
    );
    if (!container) {
      throw new AssemblyError(
        `no container of API '${metadata.apiName}' (${stackName}/${logicalId}) runs a Docker image asset of this assembly`,
        'arclight dev runs the build contexts that synth generates; synthesize the app again',
      );
    }
    const image = imageAsset(
      resolveString(container.image, where('Image')),
      assets.images,
      metadata.apiName,
      stackName,
    );
    // An async API on ECS: its queue, bucket and table are the deployed ones; `arclight dev` gives it its own.
    const environment = resolveEnvironment(
      container.environment.filter(
        ([name]) => !DEPLOYED_SHADOW_VARIABLES.has(name) && !(metadata.async && DEPLOYED_ASYNC_VARIABLES.has(name)),
      ),
      where,
    );
    const { serverFile, imageDir, imageEnvironment } = entrypointOf(image);
    apis.push({
      apiName: metadata.apiName,
      compute: metadata.compute,
      gpu: metadata.gpu ?? false,
      lambdaArchitecture: metadata.architecture === 'x64' ? 'x86_64' : metadata.architecture,
      stackName,
      logicalId,
      contextDir: image.directory,
      serverFile,
      imageDir,
      imageEnvironment,
      environment,
      assets: assetsReferenced(environment, assets.files),
      async: metadata.async === true,
      ...(metadata.variant ? { variant: metadata.variant } : {}),
    });
  }
  return apis;
}

function matchesImage(imageUri: string, image: DockerAsset): boolean {
  return image.references.some((ref) => imageUri.endsWith(`/${ref}`));
}

/** The Docker image asset an image URI of the template names, its build context present. */
function imageAsset(imageUri: string, images: readonly DockerAsset[], apiName: string, stackName: string): DockerAsset {
  const image = images.find((candidate) => matchesImage(imageUri, candidate));
  if (!image) {
    throw new AssemblyError(
      `the image ${imageUri} of API '${apiName}' (${stackName}) is not a Docker image asset of this assembly`,
      'arclight dev runs the build contexts that synth generates; synthesize the app again',
    );
  }
  if (!existsSync(image.directory)) {
    throw new AssemblyError(
      `the build context ${image.directory} of API '${apiName}' is missing`,
      'Synthesize the app again',
    );
  }
  return image;
}

function resolveEnvironment(
  variables: readonly (readonly [string, unknown])[],
  where: (what: string) => Scope,
): Record<string, string> {
  const environment: Record<string, string> = {};
  for (const [name, value] of variables) {
    environment[name] = resolveString(value, where(`environment variable ${name}`));
  }
  return environment;
}

/** The file assets whose bucket and key an environment value names (the model). */
function assetsReferenced(environment: Readonly<Record<string, string>>, files: readonly FileAsset[]): FileAsset[] {
  const values = Object.values(environment);
  return unique(files.filter((file) => values.some((value) => value.includes(`${file.bucket}/${file.key}`))));
}

/** A Dockerfile's instructions, continuation lines joined and comments dropped, from its final stage (last FROM). */
function finalStage(dockerfile: string): { instruction: string; args: string }[] {
  const text = existsSync(dockerfile) ? readFileSync(dockerfile, 'utf8') : '';
  const lines = text
    .replace(/\\\r?\n/g, ' ')
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^(\S+)\s*(.*)$/.exec(line)!;
      return { instruction: match[1]!.toUpperCase(), args: match[2]!.trim() };
    });
  const from = lines.findLastIndex((line) => line.instruction === 'FROM');
  return lines.slice(from + 1);
}

/**
 * What the image runs: the ENTRYPOINT (exec form, `["node", "/opt/arclight/server.mjs"]`) as a file of the build
 * context, the WORKDIR the context is copied to, and the ENV the image sets.
 */
function entrypointOf(image: DockerAsset): {
  serverFile: string;
  imageDir: string;
  imageEnvironment: Record<string, string>;
} {
  const dockerfile = join(image.directory, image.dockerFile);
  const stage = finalStage(dockerfile);
  const imageDir = stage.findLast((line) => line.instruction === 'WORKDIR')?.args ?? '/';
  const imageEnvironment: Record<string, string> = {};
  for (const line of stage.filter((l) => l.instruction === 'ENV')) {
    for (const [, name, value] of line.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
      imageEnvironment[name!] = value!.startsWith('"') ? (JSON.parse(value!) as string) : value!;
    }
  }
  const entrypoint = stage.findLast((line) => line.instruction === 'ENTRYPOINT')?.args;
  let command: unknown;
  try {
    command = entrypoint === undefined ? undefined : JSON.parse(entrypoint);
  } catch {
    command = undefined;
  }
  const args = Array.isArray(command) ? command.filter((arg): arg is string => typeof arg === 'string') : [];
  const script =
    args[0] !== undefined && /(^|\/)node$/.test(args[0]) ? args.slice(1).find((a) => !a.startsWith('-')) : undefined;
  const relativePath =
    script === undefined ? undefined : posix.isAbsolute(script) ? posix.relative(imageDir, script) : script;
  if (relativePath === undefined || relativePath.startsWith('..') || !existsSync(join(image.directory, relativePath))) {
    throw new AssemblyError(
      `the Dockerfile of ${image.directory} does not start a file of its build context with node (ENTRYPOINT ${entrypoint ?? 'missing'})`,
      'Synthesize the app again',
    );
  }
  return { serverFile: relativePath, imageDir, imageEnvironment };
}

/** The module file and export the Dockerfile's `CMD ["file.export"]` names, as the Lambda Node.js runtime finds them. */
function handlerOf(image: DockerAsset): { file: string; exportName: string } {
  const dockerfile = join(image.directory, image.dockerFile);
  const text = existsSync(dockerfile) ? readFileSync(dockerfile, 'utf8') : '';
  const commands = [...text.matchAll(/^\s*CMD\s+(.+)$/gim)].map((m) => m[1]!.trim());
  let handler = 'index.handler';
  const last = commands.at(-1);
  if (last !== undefined) {
    try {
      const parsed: unknown = last.startsWith('[') ? JSON.parse(last) : [last];
      if (Array.isArray(parsed) && typeof parsed[0] === 'string') handler = parsed[0];
    } catch {
      // Not the exec form: keep the default.
    }
  }
  const dot = handler.lastIndexOf('.');
  const base = dot > 0 ? handler.slice(0, dot) : handler;
  const exportName = dot > 0 ? handler.slice(dot + 1) : 'handler';
  for (const extension of ['.mjs', '.js', '.cjs']) {
    if (existsSync(join(image.directory, base + extension))) return { file: base + extension, exportName };
  }
  throw new AssemblyError(
    `the build context ${image.directory} has no ${base}.mjs, ${base}.js or ${base}.cjs for its handler '${handler}'`,
    'Synthesize the app again',
  );
}

function unique(files: readonly FileAsset[]): FileAsset[] {
  const seen = new Map<string, FileAsset>();
  for (const file of files) seen.set(file.uri, file);
  return [...seen.values()];
}

function absolute(root: string, path: string): string {
  return isAbsolute(path) ? path : join(root, path);
}

/** A JSON file of the assembly; unreadable: an AssemblyError saying to synthesize again. */
export function readJson<T>(file: string): T {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as T;
  } catch (error) {
    throw new AssemblyError(`cannot read ${file}: ${(error as Error).message}`, 'Synthesize the app again', {
      cause: error,
    });
  }
}

/** What cdk.json says about the app. */
export interface CdkJson {
  /** The command that synthesizes the app. */
  readonly app?: string;
  /** Where the CDK CLI writes the assembly. @default cdk.out */
  readonly output?: string;
  readonly context?: Record<string, unknown>;
}

/** cdk.json in `dir` ({} when there is none). */
export function readCdkJson(dir: string): CdkJson {
  const file = join(dir, 'cdk.json');
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as CdkJson;
  } catch (error) {
    throw new StartupError(`cannot read ${file}: ${(error as Error).message}`, 'Fix the JSON in cdk.json');
  }
}

/** The context the CDK CLI hands every app on top of the project's (path and asset metadata on). */
const CLI_CONTEXT = {
  'aws:cdk:enable-path-metadata': true,
  'aws:cdk:enable-asset-metadata': true,
  'aws:cdk:version-reporting': true,
  'aws:cdk:bundling-stacks': ['**'],
};

export interface SynthesizeOptions {
  /** Where the app runs (and cdk.json / cdk.context.json are read). @default process.cwd() */
  readonly cwd?: string;
  /** The app's context. @default cdk.json's and cdk.context.json's */
  readonly context?: Record<string, unknown>;
  /** Forward the app's output as it runs. @default false */
  readonly verbose?: boolean;
  /** Stops the app (its whole process group) when aborted. */
  readonly signal?: AbortSignal;
}

/** A CDK app that did not synthesize. */
export class SynthError extends StartupError {}

/**
 * Runs a CDK app command as the CDK CLI does (through a shell, `CDK_OUTDIR` and `CDK_CONTEXT_JSON` set) and returns
 * the absolute path of the cloud assembly it wrote. A failure is a SynthError in one line: the app's error message.
 */
export async function synthesize(appCommand: string, outdir: string, options: SynthesizeOptions = {}): Promise<string> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const out = resolve(cwd, outdir);
  mkdirSync(out, { recursive: true });
  const context = options.context ?? {
    ...readContextFile(join(cwd, 'cdk.context.json')),
    ...(readCdkJson(cwd).context ?? {}),
  };
  // The CDK CLI runs a bare .js file with node.
  const command =
    /\.m?js$/.test(appCommand.trim()) && existsSync(resolve(cwd, appCommand.trim()))
      ? `"${process.execPath}" ${appCommand}`
      : appCommand;
  const manifest = join(out, 'manifest.json');
  const before = existsSync(manifest) ? statSync(manifest).mtimeMs : -1;
  const output: string[] = [];
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((done, fail) => {
    const child = spawn(command, {
      cwd,
      shell: true,
      // Its own process group, so that stopping it stops the app under the shell too.
      detached: process.platform !== 'win32',
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        CDK_OUTDIR: out,
        CDK_CONTEXT_JSON: JSON.stringify({ ...context, ...CLI_CONTEXT }),
      },
    });
    for (const stream of [child.stdout, child.stderr]) {
      stream.setEncoding('utf8').on('data', (chunk: string) => {
        if (output.length < 10_000) output.push(chunk);
        if (options.verbose) process.stderr.write(chunk);
      });
    }
    const stop = (): void => {
      try {
        if (child.pid !== undefined) process.kill(process.platform === 'win32' ? child.pid : -child.pid, 'SIGTERM');
      } catch {
        // Already gone.
      }
    };
    options.signal?.addEventListener('abort', stop, { once: true });
    child.once('error', fail);
    child.once('close', (exitCode, exitSignal) => {
      options.signal?.removeEventListener('abort', stop);
      done({ code: exitCode, signal: exitSignal });
    });
  }).catch((error: Error) => {
    throw new SynthError(`cannot run the CDK app '${appCommand}': ${error.message}`, 'Check the app command');
  });
  if (options.signal?.aborted) throw new SynthError(`synthesizing the CDK app '${appCommand}' was stopped`);
  if (code !== 0) {
    const how = signal ? `was killed by ${signal}` : `exited with code ${code}`;
    throw new SynthError(
      `the CDK app '${appCommand}' ${how}: ${failureLine(output.join(''))}`,
      options.verbose ? undefined : 'Run with --verbose for its output',
    );
  }
  if (!existsSync(manifest) || statSync(manifest).mtimeMs === before) {
    throw new SynthError(
      `the CDK app '${appCommand}' wrote no cloud assembly to ${out}`,
      'The app must call app.synth() (the CDK CLI runs it with CDK_OUTDIR set)',
    );
  }
  return out;
}

function readContextFile(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
}

/**
 * The app's error message from its output, on one line: the first `…Error: …` (or aws-cdk-lib's `«Code» …`) and
 * what follows up to its stack, then the first of the `ERROR` annotations the CDK printed (cdk-nag's findings), if
 * any; else the last line that is not Node.js's version footer.
 */
export function failureLine(output: string): string {
  const lines = output
    .split('\n')
    .map((line) => line.trimEnd())
    .filter((line) => line.trim() !== '');
  const start = lines.findIndex((line) => /(?:^|\s)(?:[A-Z]\w*)?Error(?: \[\w+\])?: |^«\w+» /.test(line));
  const block: string[] = [];
  if (start < 0) {
    block.push(
      lines
        .filter((line) => !/^Node\.js v\d/.test(line))
        .at(-1)
        ?.trim() ?? 'it printed nothing',
    );
  } else {
    for (const line of lines.slice(start)) {
      if (/^\s+(?:at\s|\.\.\.)/.test(line) || block.length >= 20) break;
      block.push(line.trim());
    }
  }
  const annotations = lines.flatMap((line, i) => (/^ERROR /.test(line) ? [i] : []));
  if (annotations.length > 0) {
    const first = annotations[0]!;
    const path = lines[first + 1]?.trim().split(' ')[0];
    block.push(
      `(${annotations.length} error annotation${annotations.length === 1 ? '' : 's'}; the first: ${lines[first]!.slice(6).trim()}${path ? ` at ${path}` : ''})`,
    );
  }
  const text = block.join(' ').replace(/\s+/g, ' ');
  return text.length > 600 ? `${text.slice(0, 599)}…` : text;
}
