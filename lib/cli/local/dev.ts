/**
 * `arclight dev`: the whole CDK app, locally, from what synth built. It synthesizes the app (or reads a cloud
 * assembly), puts the synthesized model assets into an embedded S3 at their synthesized bucket and key, and runs each
 * API in a child process with its deployed environment: a Lambda-backed API's bundle in a local Lambda host, a
 * SageMaker or ECS API's container server as its image starts it (on CPU), all behind one front server at
 * `http://HOST:PORT/<apiName>/...`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { buildSync } from 'esbuild';
import { devIndexPage, wantsHtml } from './dev-index.js';
import { ASYNC_HEADERS, DEFAULTS, ENV, REQUEST_ID_HEADER, ROUTES, VARIANT_HEADER } from '../../contract.js';
import type { VariantMetadata } from '../../variant-split.js';
import {
  DevVariantGroup,
  isInferenceRequest,
  memberOf,
  withoutCloudShadow,
  type DevVariantMember,
} from './dev-variants.js';
import { AsyncFront } from '../../runtime/async/async-front.js';
import type { JobRequest } from '../../runtime/async/async-worker.js';
import type { InternalResponse } from '../../runtime/codec/codec.js';
import { createS3Client } from '../../runtime/model-store/model-store.js';
import { DevAsyncApi } from './dev-async.js';
import { packageModule } from '../../package-files.js';
import { errorBodyJson, readErrorBody } from '../../runtime/codec/json.js';
import { requestIdFrom } from '../../runtime/transports/request-id.js';
import { StartupError } from '../../runtime/startup-error.js';
import {
  LOCAL_PSEUDO_PARAMETERS,
  readAssembly,
  readCdkJson,
  readContainerApis,
  synthesize,
  type AssemblyApi,
  type AssemblyContainerApi,
  type FileAsset,
} from '../deploy/assembly.js';
import { containerProcessEnv, freeLoopbackPort, runnableContainerContext } from './dev-container.js';
import { startEmbeddedS3, type EmbeddedS3 } from './embedded-s3.js';
import { UsageError } from '../fail.js';
import type { HostListening, LambdaHostSpec } from './lambda-host.js';

export interface DevOptions {
  /** The CDK app command. @default cdk.json's `app` */
  readonly app?: string;
  /** Serve this cloud assembly instead of synthesizing. */
  readonly assembly?: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly host: string;
  /** Forward the app's synth output. */
  readonly verbose?: boolean;
  /** The CDK project directory. @default process.cwd() */
  readonly cwd?: string;
  /** Where status lines go. @default stderr, prefixed with `arclight: ` */
  readonly log?: (line: string) => void;
  /** Freeze each local Lambda host between requests (SIGSTOP, SIGCONT), as Lambda freezes a sandbox. @default true */
  readonly freezeLambdas?: boolean;
}

export const DEV_DEFAULTS = { port: DEFAULTS.port, host: DEFAULTS.host } as const;

/** One API as `arclight dev` serves it. */
export interface DevApi {
  readonly name: string;
  readonly url: string;
  /** Where it is deployed; locally a local Lambda host, or the container server on CPU. */
  readonly compute: 'lambda' | 'sagemaker' | 'ecs';
  /** As Lambda names it (`arm64`, `x86_64`). */
  readonly architecture: string;
  readonly stack: string;
  readonly status: 'starting' | 'ready' | 'failed';
  /** The playground page (on under `arclight dev`, whatever the deployed setting). */
  readonly docs: string;
  /** The API's OpenAPI document. */
  readonly openapi: string;
  /** The model version it serves (a versioned prefix's folder number, else `1`), once ready. */
  readonly modelVersion?: string;
  /** One of the API's variants run apart (an ECS service, a SageMaker model, the Lambda shadow): its name. */
  readonly variant?: string;
}

/** What `arclight dev` turns on in every API, deployed or not: the playground, and response checks. */
export const DEV_OVERRIDES = { [ENV.docs]: 'on', [ENV.checkResponses]: 'on' } as const;

const require = createRequire(import.meta.url);
const HOST_SCRIPT = packageModule('cli/local/lambda-host');
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'upgrade',
  'proxy-connection',
  'te',
  'trailer',
  // Only the async worker may send it (it lifts API Gateway's limits in the local Lambda host).
  ASYNC_HEADERS.job,
]);

/**
 * The local Lambda host compiled to one plain ESM file in a temp dir: it runs on plain `node`, so the bundle it
 * imports runs as on Lambda, untouched by a TypeScript loader (which would also lose the bundle's source map).
 */
function compileHost(): string {
  const dir = mkdtempSync(join(tmpdir(), 'arclight-host-'));
  const file = join(dir, 'lambda-host.mjs');
  buildSync({
    entryPoints: [HOST_SCRIPT],
    outfile: file,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    logLevel: 'silent',
  });
  return file;
}

/** The environments of API children: the embedded S3 for model assets, else the shell's AWS setup. */
interface ApiEnvironments {
  readonly embedded: NodeJS.ProcessEnv;
  readonly aws: NodeJS.ProcessEnv;
}

/** Thrown by start() when close() was called meanwhile. */
export class DevClosedError extends Error {}

/** A build context made runnable on this machine. */
export interface RunnableContext {
  /** Where to run the bundle from. */
  readonly dir: string;
  /** `platform/arch` of the natives added to a copy of the context; undefined when the context runs as it is. */
  readonly addedNatives?: string;
  /** A difference between the context's onnxruntime-node and the installed one, worth a warning. */
  readonly versionMismatch?: string;
  /** Removes the copy, if one was made. */
  cleanup(): void;
}

/**
 * The build context as it is when its onnxruntime-node has this machine's native files (or it has no
 * onnxruntime-node); otherwise a temporary copy with this machine's natives, from the installed onnxruntime-node,
 * added beside the ones synth put there (an arm64 function on an x64 laptop).
 */
export function runnableContext(
  contextDir: string,
  platform: string = process.platform,
  arch: string = process.arch,
): RunnableContext {
  const natives = join('bin', 'napi-v6', platform, arch);
  const ort = join(contextDir, 'node_modules', 'onnxruntime-node');
  if (!existsSync(ort) || existsSync(join(ort, natives, 'onnxruntime_binding.node'))) {
    return { dir: contextDir, cleanup: () => undefined };
  }
  const installed = dirname(require.resolve('onnxruntime-node/package.json'));
  if (!existsSync(join(installed, natives, 'onnxruntime_binding.node'))) {
    throw new StartupError(
      `the installed onnxruntime-node has no native files for ${platform}/${arch}, and the build context ${contextDir} has none either`,
      'Reinstall onnxruntime-node on this machine',
    );
  }
  const version = (dir: string): string =>
    (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string }).version ?? '?';
  const built = version(ort);
  const local = version(installed);
  const dir = mkdtempSync(join(tmpdir(), 'arclight-dev-'));
  try {
    cpSync(contextDir, dir, { recursive: true });
    cpSync(join(installed, natives), join(dir, 'node_modules', 'onnxruntime-node', natives), { recursive: true });
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return {
    dir,
    addedNatives: `${platform}/${arch}`,
    ...(built === local
      ? {}
      : { versionMismatch: `the build context has onnxruntime-node ${built}, this machine ${local}` }),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** A child process that serves one API, once started; `listening` resolves with its port once it accepts requests. */
interface Launched {
  readonly child: ChildProcess;
  readonly listening: Promise<{ port: number; initError?: string }>;
}

/** How one API's child process is started: a local Lambda host, or the container server its image runs. */
interface Launcher {
  /** What the child is, for messages. */
  readonly kind: 'local Lambda host' | 'container server';
  /** The route polled until the API is ready (the Lambda handler waits for its cold start before it answers). */
  readonly readyPath: string;
  /** Whether the child is frozen between requests, as Lambda freezes a sandbox between invocations. */
  readonly freezes: boolean;
  launch(): Promise<Launched>;
}

/** One API's child process: spawned at start, and again on the next request if it died (a new cold start). */
class ApiProcess {
  status: DevApi['status'] = 'starting';
  /** The model version, read from the API's `GET /` once ready. */
  modelVersion: string | undefined;
  child: ChildProcess | undefined;
  /** How many times the child was spawned. */
  spawns = 0;
  private port: Promise<number> | undefined;
  private stopping = false;
  private watching = false;
  /** Requests in the child now (proxied ones and readiness polls). */
  private inFlight = 0;
  /** The child while it is stopped (SIGSTOP) between requests. */
  private frozen: ChildProcess | undefined;

  constructor(
    readonly info: Omit<DevApi, 'url' | 'status' | 'docs' | 'openapi'>,
    private readonly launcher: Launcher,
    private readonly log: (line: string) => void,
  ) {}

  get name(): string {
    return this.info.name;
  }

  get kind(): Launcher['kind'] {
    return this.launcher.kind;
  }

  /** The child's port, spawning the child first if it is not running. */
  ensure(): Promise<number> {
    this.port ??= this.spawn().catch((error: unknown) => {
      this.port = undefined;
      throw error;
    });
    return this.port;
  }

  private async spawn(): Promise<number> {
    this.spawns += 1;
    const { child, listening } = await this.launcher.launch();
    this.child = child;
    return new Promise<number>((resolve, reject) => {
      listening.then(({ port, initError }) => {
        if (initError !== undefined) {
          this.status = 'failed';
          this.log(`'${this.name}' failed to initialize: ${initError}`);
        }
        // Init is over: with no request waiting, Lambda freezes the sandbox.
        this.freezeIfIdle();
        resolve(port);
      }, reject);
      child.once('error', reject);
      child.once('exit', (code, signal) => {
        this.child = undefined;
        this.port = undefined;
        if (this.frozen === child) this.frozen = undefined;
        reject(new StartupError(`the ${this.kind} of '${this.name}' exited (${signal ?? code}) before listening`));
        if (!this.stopping) {
          this.status = 'starting';
          this.log(`'${this.name}' exited (${signal ?? `code ${code}`}); the next request starts it again`);
        }
      });
    });
  }

  /** A request goes into the child: a frozen one is continued first (SIGCONT), as Lambda thaws a sandbox to invoke it. */
  enter(): void {
    this.inFlight += 1;
    const frozen = this.frozen;
    this.frozen = undefined;
    if (frozen && frozen.exitCode === null && frozen.signalCode === null) frozen.kill('SIGCONT');
  }

  /** A request is answered: with none left in the child, it is frozen (SIGSTOP) until the next. */
  leave(): void {
    this.inFlight = Math.max(0, this.inFlight - 1);
    this.freezeIfIdle();
  }

  private freezeIfIdle(): void {
    const child = this.child;
    if (!this.launcher.freezes || this.inFlight > 0 || this.stopping || this.frozen) return;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.frozen = child;
    child.kill('SIGSTOP');
  }

  /** Follows a child started again by a request (after it exited) until it is ready or failed. */
  watch(isClosed: () => boolean): void {
    if (this.status === 'starting' && !this.watching) void this.waitReady(isClosed);
  }

  /** Resolves once the model is loaded: 'ready', or 'failed' with the reason logged. */
  async waitReady(isClosed: () => boolean): Promise<DevApi['status']> {
    this.watching = true;
    try {
      return await this.pollReady(isClosed);
    } finally {
      this.watching = false;
    }
  }

  private async pollReady(isClosed: () => boolean): Promise<DevApi['status']> {
    while (!isClosed()) {
      if (this.spawns > 3) {
        this.status = 'failed';
        this.log(`'${this.name}' keeps exiting while it starts; see its log above`);
        return this.status;
      }
      let port: number;
      try {
        port = await this.ensure();
      } catch (error) {
        this.status = 'failed';
        this.log((error as Error).message);
        return this.status;
      }
      if (this.status === 'failed') return this.status;
      this.enter();
      try {
        const response = await fetch(`http://127.0.0.1:${port}${this.launcher.readyPath}`, {
          signal: AbortSignal.timeout(600_000),
        });
        if (response.status === 200) {
          await response.arrayBuffer();
          this.modelVersion = await modelVersionAt(port);
          this.spawns = 0;
          return (this.status = 'ready');
        }
        const message = readErrorBody(await response.json().catch(() => undefined))?.error;
        if (/fail/.test(message ?? '')) {
          this.status = 'failed';
          this.log(`'${this.name}' failed to start: ${message ?? `HTTP ${response.status}`}`);
          return this.status;
        }
      } catch {
        // The child is (re)starting; try again.
      } finally {
        this.leave();
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    return this.status;
  }

  /** SIGTERM (a container server drains its in-flight requests), then SIGKILL after `graceMs`. */
  stop(graceMs = 5000): Promise<void> {
    this.stopping = true;
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    // A stopped process would hold SIGTERM until continued.
    if (this.frozen === child) child.kill('SIGCONT');
    this.frozen = undefined;
    return new Promise((resolve) => {
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}

/** The local Lambda host running an API's bundle with its function's environment. */
function lambdaLauncher(
  api: AssemblyApi,
  hostScript: string,
  runDir: string,
  env: NodeJS.ProcessEnv,
  freezes: boolean,
): Launcher {
  return {
    kind: 'local Lambda host',
    readyPath: ROUTES.ready,
    freezes,
    launch() {
      const functionName = `${api.stackName}-${api.logicalId}`.slice(0, 64);
      const spec: LambdaHostSpec = {
        apiName: api.apiName,
        bundle: join(runDir, api.handlerFile),
        handlerExport: api.handlerExport,
        timeoutSeconds: api.timeoutSeconds,
        memorySize: api.memorySize,
        functionName,
        accountId: LOCAL_PSEUDO_PARAMETERS['AWS::AccountId']!,
        region: LOCAL_PSEUDO_PARAMETERS['AWS::Region']!,
      };
      const child = spawn(process.execPath, ['--enable-source-maps', hostScript, JSON.stringify(spec)], {
        cwd: runDir,
        env: {
          ...env,
          AWS_LAMBDA_FUNCTION_NAME: functionName,
          AWS_LAMBDA_FUNCTION_VERSION: '$LATEST',
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: String(api.memorySize),
          LAMBDA_TASK_ROOT: runDir,
          // Lambda runs Node.js 22; the SDK's warning about an older Node.js is the parent's to give, once.
          AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
          ...api.environment,
          ...inTaskRoot(api.environment, runDir),
          ...DEV_OVERRIDES,
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      const listening = new Promise<{ port: number; initError?: string }>((resolve) => {
        child.once('message', (message: HostListening) =>
          resolve({ port: message.port, ...(message.initError === undefined ? {} : { initError: message.initError }) }),
        );
      });
      return Promise.resolve({ child, listening });
    },
  };
}

/**
 * The container server of a SageMaker or ECS API, started as its image's ENTRYPOINT starts it (`node server.mjs`), on a
 * free loopback port. It listens at once and answers `/ping` 503 while the model loads: ready is `/ping` 200.
 */
function containerLauncher(api: AssemblyContainerApi, runDir: string, env: NodeJS.ProcessEnv): Launcher {
  return {
    kind: 'container server',
    readyPath: ROUTES.ping,
    freezes: false,
    async launch() {
      const port = await freeLoopbackPort();
      const child = spawn(process.execPath, [join(runDir, api.serverFile)], {
        cwd: runDir,
        env: containerProcessEnv(api, runDir, port, env),
        stdio: ['ignore', 'inherit', 'inherit'],
      });
      return { child, listening: whenListening(child, port).then(() => ({ port })) };
    },
  };
}

/** Resolves once `port` accepts HTTP requests (the liveness route answers); never while the child is gone. */
async function whenListening(child: ChildProcess, port: number): Promise<void> {
  while (child.exitCode === null && child.signalCode === null) {
    try {
      const response = await fetch(`http://127.0.0.1:${port}${ROUTES.live}`, { signal: AbortSignal.timeout(5000) });
      await response.arrayBuffer();
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  // The exit handler reports it; this promise just never settles for a dead child.
  await new Promise<never>(() => undefined);
}

/** The dev server: start() brings everything up, close() takes it all down (at any time). */
export class DevServer {
  private readonly log: (line: string) => void;
  private readonly processes = new Map<string, ApiProcess>();
  /** The async APIs' fronts and queues, by API name. */
  private readonly asyncApis = new Map<string, DevAsyncApi>();
  private readonly cleanups: (() => void)[] = [];
  private readonly agent = new Agent({ keepAlive: true });
  private server: Server | undefined;
  private s3: EmbeddedS3 | undefined;
  private closing: Promise<void> | undefined;
  /** Stops a synth under way. */
  private readonly abort = new AbortController();
  /** Set once every API host is spawned. */
  private started = false;
  private baseUrl = '';

  constructor(private readonly options: DevOptions) {
    this.log = options.log ?? ((line) => process.stderr.write(`arclight: ${line}\n`));
  }

  /** `http://host:port`, once listening. */
  get url(): string {
    return this.baseUrl;
  }

  get apis(): DevApi[] {
    return [...this.processes.values()].map((p) => ({
      ...p.info,
      url: `${this.baseUrl}/${p.name}`,
      status: p.status,
      docs: `${this.baseUrl}/${p.name}${ROUTES.docs}`,
      openapi: `${this.baseUrl}/${p.name}${ROUTES.openapi}`,
      ...(p.modelVersion === undefined ? {} : { modelVersion: p.modelVersion }),
    }));
  }

  /** The process ids of the APIs' children (local Lambda hosts, container servers). */
  get pids(): number[] {
    return [...this.processes.values()].flatMap((p) => (p.child?.pid === undefined ? [] : [p.child.pid]));
  }

  /** Synthesizes (unless given an assembly), starts S3, the front and every API; resolves when each is ready or failed. */
  async start(): Promise<void> {
    const cwd = this.options.cwd ?? process.cwd();
    // Listen first: a port in use is reported before a synth's wait; until the APIs run, the front answers 503.
    await this.listen();
    this.checkOpen();
    const assemblyDir = this.options.assembly ?? (await this.synthesize(cwd));
    this.checkOpen();
    const apis = readAssembly(assemblyDir);
    const containers = readContainerApis(assemblyDir);
    if (apis.length + containers.length === 0) {
      throw new StartupError(
        `the app has no Arclight API (no resource in ${relative(cwd, assemblyDir) || '.'} carries RealtimeApi's arclight:api metadata)`,
        'Add a RealtimeApi to a stack of the app',
      );
    }
    // An API's variants share its name: they are served together, under it.
    checkNames([...apis, ...containers].filter((api) => !api.variant));
    const asyncApis = [...apis, ...containers].filter((api) => api.async);
    const env = await this.startS3([...apis, ...containers], asyncApis.length > 0);
    this.checkOpen();
    if (apis.length > 0) this.addLambdaApis(apis, env);
    for (const api of containers) this.addContainerApi(api, env);
    await this.addAsyncApis(asyncApis);
    this.groupVariants([...apis, ...containers]);
    this.started = true;
    const statuses = await Promise.all([...this.processes.values()].map((p) => p.waitReady(() => !!this.closing)));
    this.checkOpen();
    const failed = statuses.filter((s) => s === 'failed').length;
    const nameWidth = Math.max(...this.apis.map((api) => api.name.length));
    const urlWidth = Math.max(...this.apis.map((api) => api.url.length));
    const lines = this.apis.map(
      (api) =>
        `  ${api.name.padEnd(nameWidth)}  ${api.url.padEnd(urlWidth)}  ${api.compute} ${api.architecture}${api.compute === 'lambda' ? '' : ', on CPU'}${api.variant === undefined ? '' : `, variant ${api.variant}`}${api.modelVersion === undefined ? '' : `, model version ${api.modelVersion}`}${api.status === 'ready' ? '' : ` (${api.status})`}`,
    );
    this.log(
      `serving ${this.processes.size} API${this.processes.size === 1 ? '' : 's'} on ${this.baseUrl}/ (${failed === 0 ? 'ready' : `${failed} failed to start; see the log above`})\n${lines.join('\n')}`,
    );
  }

  private addLambdaApis(apis: readonly AssemblyApi[], env: ApiEnvironments): void {
    const hostScript = compileHost();
    this.cleanups.push(() => rmSync(dirname(hostScript), { recursive: true, force: true }));
    for (const api of apis) {
      const context = runnableContext(api.contextDir);
      this.cleanups.push(context.cleanup);
      if (context.addedNatives) {
        this.log(
          `'${api.apiName}' is built for linux/${api.architecture}: running it from a copy of its build context with this machine's onnxruntime-node natives (${context.addedNatives}) added`,
        );
      }
      if (context.versionMismatch) this.log(`warning: '${api.apiName}': ${context.versionMismatch}`);
      const info = {
        name: api.apiName,
        compute: 'lambda',
        architecture: api.lambdaArchitecture,
        stack: api.stackName,
        ...(api.variant ? { variant: api.variant.name } : {}),
      } as const;
      const launcher = lambdaLauncher(
        { ...api, environment: withoutCloudShadow(api.environment) },
        hostScript,
        context.dir,
        this.environmentFor(api, env),
        this.options.freezeLambdas !== false,
      );
      this.processes.set(processKey(api), new ApiProcess(info, launcher, this.log));
    }
  }

  private addContainerApi(api: AssemblyContainerApi, env: ApiEnvironments): void {
    const context = runnableContainerContext(api.contextDir);
    this.cleanups.push(context.cleanup);
    const deployed = api.environment[ENV.executionProviders] ?? api.imageEnvironment[ENV.executionProviders] ?? 'cpu';
    this.log(
      `'${api.apiName}' runs on ${api.compute}: its container server (node ${api.serverFile}, as its image starts it) runs from a copy of its build context with this machine's onnxruntime-node, on CPU (${ENV.executionProviders}=cpu; deployed: ${deployed}), as there is no GPU here`,
    );
    const info = {
      name: api.apiName,
      compute: api.compute,
      architecture: api.lambdaArchitecture,
      stack: api.stackName,
      ...(api.variant ? { variant: api.variant.name } : {}),
    };
    const launcher = containerLauncher(
      { ...api, environment: withoutCloudShadow(api.environment) },
      context.dir,
      this.environmentFor(api, env),
    );
    this.processes.set(processKey(api), new ApiProcess(info, launcher, this.log));
  }

  /** The embedded S3 for an API whose model is an asset of the app; otherwise AWS, as the shell is set up for it. */
  private environmentFor(
    api: {
      readonly apiName: string;
      readonly assets: readonly unknown[];
      readonly environment: Readonly<Record<string, string>>;
    },
    env: ApiEnvironments,
  ): NodeJS.ProcessEnv {
    if (api.assets.length > 0) return env.embedded;
    this.log(
      `'${api.apiName}' loads ${api.environment[ENV.modelUri] ?? 'its model'}, which is not an asset of the app: from AWS, with this shell's credentials`,
    );
    return env.aws;
  }

  private async synthesize(cwd: string): Promise<string> {
    const cdkJson = readCdkJson(cwd);
    const app = this.options.app ?? cdkJson.app;
    if (!app) {
      throw new UsageError(
        `there is no cdk.json with an "app" in ${cwd}`,
        'Run arclight dev in a CDK project, or pass --app "<command>" or --assembly <cdk.out>',
      );
    }
    const outdir = cdkJson.output ?? 'cdk.out';
    this.log(`synthesizing the app (${app}) into ${outdir}`);
    const started = performance.now();
    const dir = await synthesize(app, outdir, {
      cwd,
      verbose: this.options.verbose,
      signal: this.abort.signal,
    }).catch((error: unknown) => {
      this.checkOpen();
      throw error;
    });
    this.log(`synthesized in ${((performance.now() - started) / 1000).toFixed(1)} s`);
    return dir;
  }

  /** The env for API children: one pointing the AWS SDK at the embedded S3, one left to the shell's AWS setup. */
  private async startS3(
    apis: readonly { readonly assets: readonly FileAsset[] }[],
    forAsync = false,
  ): Promise<ApiEnvironments> {
    const region = LOCAL_PSEUDO_PARAMETERS['AWS::Region']!;
    const aws = { AWS_REGION: region, AWS_DEFAULT_REGION: region, ...process.env };
    const assets = new Map(apis.flatMap((api) => api.assets.map((asset) => [asset.uri, asset] as const)));
    if (assets.size === 0 && !forAsync) return { embedded: aws, aws };
    const buckets = [...new Set([...assets.values()].map((asset) => asset.bucket))];
    this.s3 = await startEmbeddedS3(buckets);
    let bytes = 0;
    for (const asset of assets.values()) {
      const content = readFileSync(asset.path);
      bytes += content.length;
      await this.s3.put(asset.bucket, asset.key, content);
    }
    this.log(
      `embedded S3 on ${this.s3.endpoint} holds ${assets.size} model asset${assets.size === 1 ? '' : 's'} (${(bytes / 2 ** 20).toFixed(1)} MB) at their synthesized bucket and key`,
    );
    // The shell's AWS identity and endpoint would point the SDK elsewhere than the embedded S3.
    const shell = Object.fromEntries(
      Object.entries(process.env).filter(
        ([name]) => !['AWS_PROFILE', 'AWS_SESSION_TOKEN', 'AWS_ENDPOINT_URL'].includes(name),
      ),
    );
    return { embedded: { ...shell, AWS_DEFAULT_REGION: region, ...this.s3.env }, aws };
  }

  private async listen(): Promise<void> {
    const server = createServer((req, res) => this.route(req, res));
    server.keepAliveTimeout = 5000;
    this.server = server;
    const { host, port } = this.options;
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => {
        if (error.code === 'EADDRINUSE')
          reject(new UsageError(`port ${port} on ${host} is in use`, 'Pass another --port'));
        else reject(new StartupError(`cannot listen on ${host}:${port}: ${error.message}`));
      });
      server.listen(port, host, resolve);
    });
    const address = server.address() as AddressInfo;
    const shown = address.address === '0.0.0.0' ? '127.0.0.1' : address.address === '::' ? '::1' : address.address;
    this.baseUrl = `http://${address.family === 'IPv6' ? `[${shown}]` : shown}:${address.port}`;
  }

  private route(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    const queryAt = url.indexOf('?');
    const path = queryAt < 0 ? url : url.slice(0, queryAt);
    const query = queryAt < 0 ? '' : url.slice(queryAt);
    if (path === '/' || path === '') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        return sendError(res, 405, 'method_not_allowed', `${req.method} / is not allowed; GET / lists the APIs`, {
          allow: 'GET',
        });
      }
      if (wantsHtml(req.headers.accept)) return sendPage(res, devIndexPage(this.apis));
      return sendJson(res, 200, { apis: this.apis });
    }
    if (!this.started) {
      return sendError(res, 503, 'not_ready', 'arclight dev is starting: synthesizing the app and loading its APIs', {
        'retry-after': String(DEFAULTS.retryAfterSeconds),
      });
    }
    const match = /^\/([^/]+)(\/.*)?$/.exec(path);
    const target = match ? this.processes.get(match[1]!) : undefined;
    if (!match || !target) {
      const names = [...this.processes.keys()].map((name) => `/${name}`).join(', ');
      return sendError(res, 404, 'not_found', `no API at ${path}; this app serves ${names} (GET / lists them)`);
    }
    const asyncApi = this.asyncApis.get(target.name);
    if (asyncApi) {
      // Deployed, an async API has only its async routes.
      const own = match[2] ?? '/';
      if (AsyncFront.serves(own)) return asyncApi.serve(req, res, own);
      req.resume();
      return sendError(
        res,
        404,
        'not_found',
        `'${target.name}' is an async API: POST /${target.name}/async, POST /${target.name}/async/uploads, GET /${target.name}/async/{id}`,
      );
    }
    const group = this.variantGroups.get(target.name);
    if (group) return this.proxyToVariant(group, req, res, (match[2] ?? '/') + query);
    this.proxy(target, req, res, (match[2] ?? '/') + query);
  }

  /** The processes of each API with variants run apart, by API name. */
  private readonly variantGroups = new Map<string, DevVariantGroup<ApiProcess>>();

  private groupVariants(apis: readonly (AssemblyApi | AssemblyContainerApi)[]): void {
    for (const api of apis.filter((a) => a.variant)) {
      if (this.variantGroups.has(api.apiName)) continue;
      const members = [undefined, ...apis.filter((a) => a.apiName === api.apiName && a.variant).map((a) => a.variant)];
      // A Lambda function splits between its weighted variants itself (and answers pins to them), as deployed.
      const inProcess = !('compute' in api);
      const group = new DevVariantGroup(
        api.apiName,
        inProcess,
        members.map((variant) => ({
          ...memberOf(variant),
          process: this.processes.get(processKey({ apiName: api.apiName, ...(variant ? { variant } : {}) }))!,
        })),
      );
      this.variantGroups.set(api.apiName, group);
      const split = group.production.map((m) => `${m.name} ${m.weight}`).join(', ');
      this.log(
        `'${api.apiName}' serves variants: ${split} (split in turn by weight; ${VARIANT_HEADER} pins one)${group.shadow ? `; shadow ${group.shadow.name} gets ${Math.round(Math.min(1, group.shadow.weight) * 100)}% of inference requests as copies, its answers logged, never returned` : ''}`,
      );
    }
  }

  /** A request to an API with variants: the chosen (or pinned) production variant answers; the shadow gets a copy. */
  private proxyToVariant(
    group: DevVariantGroup<ApiProcess>,
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
  ): void {
    const pinned = req.headers[VARIANT_HEADER];
    const pick = group.pick(typeof pinned === 'string' ? pinned : undefined);
    if (pick.error !== undefined) {
      req.resume();
      return sendError(res, 400, 'invalid_input', pick.error);
    }
    const shadow = group.shadow && isInferenceRequest(req.method, path) && group.takeCopy() ? group.shadow : undefined;
    if (!shadow) return this.proxy(pick.member.process, req, res, path, { variant: pick.member.name });
    // The same request id for the answer and the copy, so that their log lines meet.
    const requestId =
      typeof req.headers[REQUEST_ID_HEADER] === 'string' ? req.headers[REQUEST_ID_HEADER] : randomUUID();
    req.headers[REQUEST_ID_HEADER] = requestId;
    const chunks: Buffer[] = [];
    let answeredHeaders: Readonly<Record<string, string | string[]>> | undefined;
    res.once('finish', () => {
      // The id the caller got (a Lambda host answers with its own, as API Gateway's request id does).
      const answered = answeredHeaders?.[REQUEST_ID_HEADER];
      const copy = {
        method: req.method ?? 'POST',
        path,
        body: Buffer.concat(chunks),
        requestId: typeof answered === 'string' ? answered : requestId,
      };
      void this.sendShadowCopy(group.apiName, shadow, copy, req.headers['content-type'], res.statusCode);
    });
    this.proxy(pick.member.process, req, res, path, {
      variant: pick.member.name,
      onChunk: (chunk) => chunks.push(chunk),
      onAnswer: (headers) => (answeredHeaders = headers),
    });
  }

  /** One copy to the shadow's process, after the answer went out; its answer is logged, never returned. */
  private async sendShadowCopy(
    apiName: string,
    shadow: DevVariantMember<ApiProcess>,
    copy: { method: string; path: string; body: Buffer; requestId: string },
    contentType: string | undefined,
    primaryStatus: number,
  ): Promise<void> {
    const started = performance.now();
    const target = shadow.process;
    try {
      const port = await target.ensure();
      target.enter();
      try {
        const status = await new Promise<number>((resolve, reject) => {
          const upstream = request(
            {
              host: '127.0.0.1',
              port,
              method: copy.method,
              path: copy.path,
              headers: {
                [REQUEST_ID_HEADER]: copy.requestId,
                'content-length': copy.body.length,
                ...(contentType ? { 'content-type': contentType } : {}),
              },
              agent: this.agent,
            },
            (response) => {
              response.resume();
              response.on('end', () => resolve(response.statusCode ?? 0));
              response.on('error', reject);
            },
          );
          upstream.on('error', reject);
          upstream.end(copy.body);
        });
        this.shadowAnswers.push({ apiName, variant: shadow.name, requestId: copy.requestId, status, primaryStatus });
        this.log(
          `shadow ${shadow.name} of '${apiName}' answered ${status} in ${(performance.now() - started).toFixed(0)} ms (request ${copy.requestId}; the answer returned: ${primaryStatus})`,
        );
      } finally {
        target.leave();
      }
    } catch (error) {
      this.shadowAnswers.push({ apiName, variant: shadow.name, requestId: copy.requestId, primaryStatus });
      this.log(
        `shadow ${shadow.name} of '${apiName}' failed the copy of request ${copy.requestId}: ${(error as Error).message}`,
      );
    }
  }

  /** The shadows' answers so far (status undefined: the copy failed), oldest first. */
  readonly shadowAnswers: {
    readonly apiName: string;
    readonly variant: string;
    readonly requestId: string;
    readonly status?: number;
    readonly primaryStatus: number;
  }[] = [];

  private proxy(
    target: ApiProcess,
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    options: {
      readonly variant?: string;
      readonly onChunk?: (chunk: Buffer) => void;
      readonly onAnswer?: (headers: Readonly<Record<string, string | string[]>>) => void;
    } = {},
  ): void {
    const unavailable = (why: string): void => {
      if (res.headersSent) return void res.destroy();
      sendError(res, 503, 'not_ready', `the ${target.kind} of '${target.name}' ${why}`, {
        'retry-after': String(DEFAULTS.retryAfterSeconds),
      });
    };
    target.ensure().then(
      (port) => {
        if (this.started) target.watch(() => !!this.closing);
        target.enter();
        res.once('close', () => target.leave());
        const headers: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(req.headers)) {
          if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value;
        }
        const forwardedFor = req.headers['x-forwarded-for'];
        const client = req.socket.remoteAddress ?? '127.0.0.1';
        headers['x-forwarded-for'] = forwardedFor ? `${String(forwardedFor)}, ${client}` : client;
        headers['x-forwarded-proto'] = 'http';
        headers['x-forwarded-port'] = String(req.socket.localPort ?? '');
        const upstream = request(
          { host: '127.0.0.1', port, method: req.method, path, headers, agent: this.agent },
          (response) => {
            const out: Record<string, string | string[]> = {};
            for (const [name, value] of Object.entries(response.headers)) {
              if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
            }
            // Which variant answered, where the process does not say itself (a SageMaker model's container).
            if (options.variant !== undefined) out[VARIANT_HEADER] ??= options.variant;
            options.onAnswer?.(out);
            res.writeHead(response.statusCode ?? 502, out);
            response.pipe(res);
          },
        );
        upstream.on('error', (error) => unavailable(`is not answering (${error.message})`));
        res.on('close', () => {
          if (!res.writableFinished) upstream.destroy();
        });
        // A copy of the body (for the shadow) is taken as it streams to the answering process.
        if (options.onChunk) req.on('data', options.onChunk);
        req.pipe(upstream);
      },
      (error: Error) => {
        req.resume();
        unavailable(`cannot start: ${error.message}`);
      },
    );
  }

  /** The async APIs: a front and an in-process queue each, the worker handing jobs to the API's own process. */
  private async addAsyncApis(apis: readonly (AssemblyApi | AssemblyContainerApi)[]): Promise<void> {
    if (apis.length === 0) return;
    const s3 = this.s3!;
    const client = createS3Client(s3.env);
    this.cleanups.push(() => client.destroy());
    for (const [index, api] of apis.entries()) {
      const target = this.processes.get(api.apiName)!;
      const path = 'compute' in api && api.compute === 'sagemaker' ? ROUTES.invocations : ROUTES.predict;
      const asyncApi = new DevAsyncApi({
        apiName: api.apiName,
        environment: api.environment,
        s3: client,
        bucket: `arclight-async-${index}`,
        baseUrl: `${this.baseUrl}/${api.apiName}`,
        invoke: (job) => this.invokeJob(target, path, job),
        log: this.log,
      });
      await asyncApi.start();
      this.asyncApis.set(api.apiName, asyncApi);
      this.log(
        `'${api.apiName}' is an async API: jobs queue in this process, their bodies and results in the embedded S3`,
      );
    }
  }

  /** Hands one job to the API's process, as the deployed worker hands it to the predictor. */
  private async invokeJob(target: ApiProcess, path: string, job: JobRequest): Promise<InternalResponse> {
    const port = await target.ensure();
    if (this.started) target.watch(() => !!this.closing);
    target.enter();
    try {
      return await new Promise<InternalResponse>((resolve, reject) => {
        const upstream = request(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path,
            headers: { ...job.headers, 'content-length': job.body.length },
            agent: this.agent,
          },
          (response) => {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.on('error', reject);
            response.on('end', () => {
              const headers: Record<string, string> = {};
              for (const [name, value] of Object.entries(response.headers)) {
                if (typeof value === 'string') headers[name] = value;
              }
              resolve({ status: response.statusCode ?? 502, headers, body: Buffer.concat(chunks) });
            });
          },
        );
        upstream.on('error', reject);
        upstream.end(job.body);
      });
    } finally {
      target.leave();
    }
  }

  /** The env pointing the AWS SDK at the embedded S3, once it runs. */
  get embeddedS3Env(): Record<string, string> | undefined {
    return this.s3?.env;
  }

  /** The process id of an API's child (its local Lambda host or container server), while it runs. */
  pidOf(name: string): number | undefined {
    return this.processes.get(name)?.child?.pid;
  }

  /** An async API of this server (tests read its store and queue). */
  asyncApi(name: string): DevAsyncApi | undefined {
    return this.asyncApis.get(name);
  }

  private checkOpen(): void {
    if (this.closing) throw new DevClosedError('arclight dev was stopped');
  }

  /** Stops the front, every API host (SIGTERM), the embedded S3, and removes temporary copies. Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.abort.abort();
      const server = this.server;
      if (server?.listening) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
      }
      for (const asyncApi of this.asyncApis.values()) asyncApi.close();
      this.agent.destroy();
      await Promise.all([...this.processes.values()].map((p) => p.stop()));
      await this.s3?.close();
      for (const cleanup of this.cleanups) cleanup();
    })();
    return this.closing;
  }
}

/** The key of an API's process: its name, or its name and variant for a variant run apart. */
function processKey(api: { readonly apiName: string; readonly variant?: VariantMetadata }): string {
  return api.variant ? `${api.apiName}#${api.variant.name}` : api.apiName;
}

function checkNames(apis: readonly { readonly apiName: string; readonly stackName: string }[]): void {
  const seen = new Map<string, string>();
  for (const api of apis) {
    const other = seen.get(api.apiName);
    if (other !== undefined) {
      throw new UsageError(
        `two APIs are named '${api.apiName}' (in ${other} and ${api.stackName}); arclight dev serves each at /<apiName>`,
        'Give them distinct apiName props',
      );
    }
    seen.set(api.apiName, api.stackName);
  }
}

function sendPage(res: ServerResponse, page: { headers: Record<string, string>; body: string }): void {
  res.writeHead(200, { ...page.headers, 'content-length': Buffer.byteLength(page.body) });
  res.end(page.body);
}

function sendJson(res: ServerResponse, status: number, value: unknown, headers: Record<string, string> = {}): void {
  sendJsonText(res, status, JSON.stringify(value), headers);
}

function sendJsonText(res: ServerResponse, status: number, body: string, headers: Record<string, string>): void {
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** An error in the HTTP contract's format: `{"error":"<message>","code","requestId"}`. */
function sendError(
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const requestId = requestIdFrom(undefined);
  sendJsonText(res, status, errorBodyJson(code, message, requestId), { [REQUEST_ID_HEADER]: requestId, ...headers });
}

/** The image's task root is /var/task; here it is the run folder: a torch checkpoint's module file lies under it. */
function inTaskRoot(environment: Readonly<Record<string, string>>, runDir: string): Record<string, string> {
  const module = environment[ENV.modelModule];
  return module?.startsWith('/var/task/') ? { [ENV.modelModule]: `${runDir}${module.slice('/var/task'.length)}` } : {};
}

/** The model version an API reports at `GET /` (undefined if it cannot say). */
async function modelVersionAt(port: number): Promise<string | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}${ROUTES.metadata}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await response.json()) as { version?: unknown };
    return typeof body.version === 'string' ? body.version : undefined;
  } catch {
    return undefined;
  }
}
