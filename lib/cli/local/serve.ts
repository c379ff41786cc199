/**
 * `arclight serve`: one model (and optionally a predictor) at the root of a local port, through the same
 * runtime a Lambda function or container runs.
 */
import { stat } from 'node:fs/promises';
import { basename, extname } from 'node:path';
import type { Server } from 'node:http';
import { DEFAULTS, MODEL_FORMATS } from '../../contract.js';
import type { ModelFormat, TensorDeclaration } from '../../predictor.js';
import { createHttpServer, listen, type HttpServerOptions } from '../../runtime/transports/http-server.js';
import { BodySlabs } from '../../runtime/executors/body-slabs.js';
import { createLogger, type LogLevel } from '../../runtime/telemetry/logger.js';
import { isS3Uri } from '../../runtime/model-store/model-store.js';
import { loadPredictor } from '../../runtime/predictor-loader.js';
import { Runtime, type ReloadOutcome, type RuntimeOptions } from '../../runtime/runtime.js';
import { WorkerPool, defaultWorkerCount } from '../../runtime/executors/worker-pool.js';
import { tensorDeclarations } from '../../runtime/settings.js';
import { StartupError } from '../../runtime/startup-error.js';
import type { TorchModelOptions } from '../../runtime/executors/torch-executor.js';
import { serveFileFromEmbeddedS3, type EmbeddedS3 } from './embedded-s3.js';
import { parseConfigOption } from '../config-option.js';
import { UsageError } from '../fail.js';
import { createDownloadProgress } from '../progress.js';
import { registerTypeScriptFor } from '../typescript-loader.js';

export interface ServeOptions {
  readonly model: string;
  readonly predictor?: string;
  readonly name?: string;
  readonly port: number;
  readonly host: string;
  readonly config?: string;
  readonly sha256?: string;
  readonly threads?: number;
  /**
   * Inference worker threads, as the container server runs them (admission control included); 0 runs the model
   * in the server's own thread. @default the container server's default (one per core, up to 4)
   */
  readonly workers?: number;
  readonly maxBodyBytes: number;
  readonly timeoutMs: number;
  readonly logLevel: LogLevel;
  /** Upload a local model to an embedded S3 server first and load it from there. */
  readonly embeddedS3?: boolean;
  /** `onnx`, `torchscript` or `lightning-checkpoint`; read from the file when absent. */
  readonly format?: string;
  /** Lightning checkpoints: the Python file defining the model's class. */
  readonly module?: string;
  /** Lightning checkpoints: the class in `module`. */
  readonly className?: string;
  /** Torch models: JSON `[{ name, datatype, shape }]` declaring the inputs. */
  readonly inputs?: string;
  /** Torch models: JSON `[{ name, datatype, shape }]` naming the outputs. */
  readonly outputs?: string;
  /** A versioned `model` prefix: seconds between looks for a new version (live reload). @default off */
  readonly pollInterval?: number;
}

/** A running local API. */
export interface ServeHandle {
  readonly url: string;
  readonly runtime: Runtime;
  readonly server: Server;
  /** Whether the model is a versioned prefix (its version is worth showing). */
  readonly versioned: boolean;
  close(): Promise<void>;
}

export async function serve(options: ServeOptions): Promise<ServeHandle> {
  const name = options.name ?? nameFromModel(options.model);
  checkName(name);
  const config = options.config === undefined ? {} : await parseConfigOption(options.config);
  const modelFormat = parseFormat(options);
  const torch = await torchOptions(options);
  if (options.predictor !== undefined) await registerTypeScriptFor(options.predictor);
  const predictor = options.predictor === undefined ? undefined : await loadPredictor(options.predictor);
  let s3: EmbeddedS3 | undefined;
  let modelUri = options.model;
  let modelSha256 = options.sha256;
  if (options.embeddedS3) {
    if (isS3Uri(options.model)) throw new UsageError('--embedded-s3 takes a local model file, not an s3:// URI');
    await requireFile(options.model);
    const embedded = await serveFileFromEmbeddedS3(options.model);
    s3 = embedded.s3;
    modelUri = embedded.uri;
    modelSha256 ??= embedded.sha256;
    Object.assign(process.env, s3.env);
  }
  const engine = serveEngine(options.workers, predictor !== undefined);
  // A bar (or plain lines off a terminal) on stderr while a large model downloads from S3.
  const progress = isS3Uri(modelUri) ? createDownloadProgress({ label: modelUri }) : undefined;
  const runtime = new Runtime({
    apiName: name,
    modelUri,
    modelSha256,
    predictor,
    config,
    intraOpThreads: options.threads,
    requestTimeoutMs: options.timeoutMs,
    logger: createLogger(name, options.logLevel),
    ...(modelFormat ? { modelFormat } : {}),
    torch,
    // The CLI reports a failed start itself, in one line (the stack with --verbose).
    logStartupFailure: false,
    // A local server is where the playground and the response checks help: both on.
    docs: true,
    checkResponses: true,
    ...(progress ? { onProgress: progress.update } : {}),
    ...(options.pollInterval ? { pollIntervalMs: options.pollInterval * 1000, onReload: reportReload } : {}),
    ...engine.runtimeOptions,
  });
  const server = createHttpServer(runtime, {
    maxBodyBytes: options.maxBodyBytes,
    requestTimeoutMs: options.timeoutMs,
    ...engine.httpOptions,
    ...(engine.maxPending === undefined
      ? {}
      : { overloaded: () => runtime.inFlight + (engine.httpOptions.bodySlabs?.waiting ?? 0) >= engine.maxPending! }),
  });
  const close = async (): Promise<void> => {
    await closeServer(server);
    // The model's executor: the torch executor's Python process exits with it.
    await runtime.close().catch(() => undefined);
    runtime.telemetry.close();
    await s3?.close();
  };
  try {
    const address = await listen(server, options.port, options.host).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'EADDRINUSE')
        throw new UsageError(`port ${options.port} on ${options.host} is in use`, 'Pass another --port');
      throw new StartupError(`cannot listen on ${options.host}:${options.port}: ${error.message}`);
    });
    await runtime.start().finally(() => progress?.done());
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const versioned = modelUri.endsWith('/');
    return { url: `http://${host}:${address.port}`, runtime, server, versioned, close };
  } catch (error) {
    await close();
    throw error;
  }
}

/** Live reload's swaps and refusals, one line each on stderr beside the status line (the JSON log has the details). */
function reportReload(outcome: ReloadOutcome): void {
  if (outcome.kind === 'swapped') process.stderr.write(`arclight: model version ${outcome.to} (was ${outcome.from})\n`);
  if (outcome.kind === 'refused') {
    process.stderr.write(`arclight: model version ${outcome.version} refused: ${outcome.error.oneLine()}\n`);
  }
}

/** Requests queued beyond those running before serve answers 503, as the container server's default. */
const SERVE_QUEUE_LENGTH = 64;

/**
 * The container server's engine (ONNX models in worker threads, a bounded queue, 503 past it, bodies in shared slabs
 * read only when one is free) unless `workers` is 0: then the model runs in the server's thread, as Lambda runs it.
 * Torch models run in their Python process either way.
 */
function serveEngine(
  workers: number | undefined,
  customPredictor: boolean,
): {
  runtimeOptions: Pick<RuntimeOptions, 'createExecutor' | 'maxPending'>;
  httpOptions: Pick<HttpServerOptions, 'bodySlabs' | 'bodiesInSlabs'>;
  maxPending?: number;
} {
  if (workers === 0) return { runtimeOptions: {}, httpOptions: {} };
  const count = workers ?? defaultWorkerCount();
  const maxPending = count + SERVE_QUEUE_LENGTH;
  const bodySlabs = new BodySlabs(2 * count + 1);
  return {
    maxPending,
    // A predictor of the user's may keep a body past its answer: its bodies take memory of their own.
    httpOptions: { bodySlabs, bodiesInSlabs: !customPredictor },
    runtimeOptions: {
      maxPending,
      createExecutor: (model, source, executorOptions) =>
        WorkerPool.start(model, source, {
          workers: count,
          bodySlabs,
          ...(executorOptions.intraOpThreads === undefined ? {} : { intraOpThreads: executorOptions.intraOpThreads }),
          ...(executorOptions.executionProviders ? { executionProviders: executorOptions.executionProviders } : {}),
        }),
    },
  };
}

function parseFormat(options: ServeOptions): ModelFormat | undefined {
  const format = options.format;
  if (format === undefined) return undefined;
  if (!(MODEL_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--format '${format}' is not one of ${MODEL_FORMATS.join(', ')}`);
  }
  return format as ModelFormat;
}

/** --module/--class (checkpoints) and --inputs/--outputs (torch models), each checked before anything starts. */
async function torchOptions(options: ServeOptions): Promise<TorchModelOptions> {
  if ((options.module === undefined) !== (options.className === undefined)) {
    throw new UsageError('--module and --class go together', 'Name the Python file and the class in it');
  }
  if (options.module !== undefined) {
    const info = await stat(options.module).catch(() => undefined);
    if (!info?.isFile()) throw new UsageError(`--module ${options.module} does not exist`, 'Check the path');
  }
  const inputs = options.inputs === undefined ? undefined : parseDeclarations('--inputs', options.inputs);
  const outputs = options.outputs === undefined ? undefined : parseDeclarations('--outputs', options.outputs);
  return {
    ...(options.module === undefined ? {} : { module: options.module }),
    ...(options.className === undefined ? {} : { className: options.className }),
    ...(inputs ? { inputs } : {}),
    ...(outputs ? { outputs } : {}),
  };
}

function parseDeclarations(flag: string, text: string): TensorDeclaration[] {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new UsageError(`${flag} is not valid JSON: ${(error as Error).message}`, EXAMPLE_INPUTS);
  }
  const parsed = tensorDeclarations.safeParse(value);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || 'value'} ${i.message}`).join('; ');
    throw new UsageError(`${flag} is not a list of tensors: ${problems}`, EXAMPLE_INPUTS);
  }
  return parsed.data;
}

const EXAMPLE_INPUTS = `For example '[{"name":"image","datatype":"FP32","shape":[-1,1,8,8]}]'`;

function nameFromModel(model: string): string {
  return basename(model, extname(model)).replace(/[^A-Za-z0-9_.-]/g, '-') || 'model';
}

function checkName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name)) {
    throw new UsageError(`--name '${name}' is not URL-safe`, 'Use letters, digits, _ . and -');
  }
}

async function requireFile(path: string): Promise<void> {
  const info = await stat(path).catch(() => undefined);
  if (!info?.isFile()) throw new StartupError(`model file ${path} does not exist`, 'Check the --model path');
}

/** Stops accepting, lets in-flight requests finish (up to a grace period), then closes idle sockets. */
function closeServer(server: Server, graceMs = 5000): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    const timer = setTimeout(() => server.closeAllConnections(), graceMs);
    timer.unref();
    server.close(() => {
      clearTimeout(timer);
      resolve();
    });
    server.closeIdleConnections();
  });
}

export const SERVE_DEFAULTS = {
  port: DEFAULTS.port,
  host: DEFAULTS.host,
  maxBodyBytes: DEFAULTS.maxBodyBytes,
  timeoutMs: DEFAULTS.requestTimeoutMs,
} as const;
