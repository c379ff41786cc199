/**
 * The container server (SageMaker, ECS, and `arclight dev` for container-backed APIs): one node:http process on port
 * 8080 (or SAGEMAKER_BIND_TO_PORT) serving DESIGN's routes plus SageMaker's `GET /ping` and `POST /invocations`.
 * Inference runs in a pool of worker threads behind a dynamic batcher and a bounded queue, so health routes answer
 * at once however busy the workers are. `shutdown()` stops accepting, drains in-flight requests, then ends the workers.
 */
import { TRANSFORM_RECORDS_ENV, envelopeTransformRecords } from '../batch/transform-records.js';
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DEFAULTS, ENV, REQUEST_ID_HEADER, ROUTES, SAGEMAKER_ROUTE } from '../../contract.js';
import type { DefinedPredictor } from '../../predictor.js';
import { createHttpServer, listen } from './http-server.js';
import { BodySlabs } from '../executors/body-slabs.js';
import { errorBodyJson } from '../codec/json.js';
import { createLogger, type Logger } from '../telemetry/logger.js';
import { guardProcess } from './process-guard.js';
import { requestIdFrom } from './request-id.js';
import { Runtime } from '../runtime.js';
import { settingsFromEnv, type RuntimeSettings } from '../settings.js';
import { DataCapture } from '../telemetry/data-capture.js';
import { Telemetry, metricsModeFromEnv } from '../telemetry/telemetry.js';
import { METRICS } from '../../metric-catalog.js';
import { WorkerPool, defaultWorkerCount } from '../executors/worker-pool.js';
import { answerWithVariant, captureBoth, containerShadowFromEnv } from '../variants/shadow-copy.js';

export interface ContainerServerOptions {
  readonly settings: RuntimeSettings;
  readonly predictor?: DefinedPredictor<unknown>;
  /** @default SAGEMAKER_BIND_TO_PORT, else 8080 */
  readonly port?: number;
  /** @default ARCLIGHT_BIND_HOST, else 0.0.0.0 (every interface: the container's port is mapped from outside) */
  readonly host?: string;
  readonly env?: NodeJS.ProcessEnv;
  readonly logger?: Logger;
  /** Longest a shutdown waits for in-flight requests. @default the request timeout plus 2 s */
  readonly drainTimeoutMs?: number;
}

export interface ContainerServer {
  readonly runtime: Runtime;
  readonly server: Server;
  readonly address: AddressInfo;
  /** Resolves when the model is loaded (rejects if it failed: the server keeps answering /ping with 503). */
  readonly ready: Promise<void>;
  /** The worker pool, once an ONNX model is loaded (torch models run in the torch executor instead). */
  readonly pool: () => WorkerPool | undefined;
  /** The request bodies' slabs (body-slabs.ts): how many are read at once, and their memory. */
  readonly bodySlabs: BodySlabs;
  /** Stops accepting, waits for in-flight requests, ends the workers. */
  shutdown(): Promise<void>;
}

/** The port: an explicit one, else SAGEMAKER_BIND_TO_PORT, else 8080. */
export function containerPort(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env[ENV.sageMakerPort];
  const port = Number(raw);
  return raw !== undefined && raw !== '' && Number.isInteger(port) && port >= 0 && port < 65536
    ? port
    : DEFAULTS.containerPort;
}

export async function startContainerServer(options: ContainerServerOptions): Promise<ContainerServer> {
  const env = options.env ?? process.env;
  const settings = options.settings;
  const log = options.logger ?? createLogger(settings.apiName, settings.logLevel);
  const telemetry = new Telemetry({
    apiName: settings.apiName,
    mode: metricsModeFromEnv(env),
    logger: log,
    variant: env[ENV.variant] || undefined,
  });
  // A torch model runs in one Python process (torch's threads inside it) instead of the worker-thread pool.
  const torch = settings.modelFormat === 'torchscript' || settings.modelFormat === 'lightning-checkpoint';
  const workers = torch ? 1 : (settings.workers ?? defaultWorkerCount());
  let pool: WorkerPool | undefined;
  const bodySlabs = new BodySlabs(bodiesAtOnce(workers, settings.maxBatchSize));
  const onFallback = (reason: string): void => {
    log.warn('EXECUTION PROVIDER FALLBACK: serving on CPU, not on the GPU; inference will be much slower', {
      requested: settings.executionProviders,
      using: ['cpu'],
      reason,
    });
    telemetry.event(METRICS.executionProviderFallback.name);
  };
  const dataCapture = settings.dataCaptureUri
    ? new DataCapture({
        uri: settings.dataCaptureUri,
        ...(settings.dataCapturePercent === undefined ? {} : { samplePercent: settings.dataCapturePercent }),
        apiName: settings.apiName,
        logger: log,
        telemetry,
        env,
      })
    : undefined;
  const shadow = containerShadowFromEnv(env, log, telemetry);
  const captures = captureBoth(dataCapture, shadow);
  const runtime = new Runtime({
    ...(captures ? { dataCapture: captures } : {}),
    apiName: settings.apiName,
    modelUri: settings.modelUri,
    ...(settings.modelSha256 === undefined ? {} : { modelSha256: settings.modelSha256 }),
    ...(settings.modelVersion === undefined ? {} : { modelVersion: settings.modelVersion }),
    ...(settings.modelPollSeconds ? { pollIntervalMs: settings.modelPollSeconds * 1000 } : {}),
    config: settings.config,
    ...(options.predictor ? { predictor: options.predictor } : {}),
    ...(settings.intraOpThreads === undefined ? {} : { intraOpThreads: settings.intraOpThreads }),
    executionProviders: settings.executionProviders,
    requestTimeoutMs: settings.requestTimeoutMs,
    logger: log,
    env,
    telemetry,
    batching: { maxBatchSize: settings.maxBatchSize, maxBatchDelayMs: settings.maxBatchDelayMs },
    // Running (a batch per worker) plus the queue: beyond that, 503 rather than memory without bound.
    maxPending: workers * settings.maxBatchSize + settings.maxQueueLength,
    ...(settings.modelFormat ? { modelFormat: settings.modelFormat } : {}),
    ...(settings.torch ? { torch: settings.torch } : {}),
    onFallback,
    docs: settings.docs,
    checkResponses: settings.checkResponses,
    createExecutor: async (model, source, executorOptions) => {
      pool = await WorkerPool.start(model, source, {
        workers,
        ...(executorOptions.intraOpThreads === undefined ? {} : { intraOpThreads: executorOptions.intraOpThreads }),
        ...(executorOptions.executionProviders ? { executionProviders: executorOptions.executionProviders } : {}),
        logger: log,
        onFallback,
        bodySlabs,
      });
      return pool;
    },
  });
  const maxPending = workers * settings.maxBatchSize + settings.maxQueueLength;
  // Requests past the bound are refused before their bodies are read: memory stays bounded however many arrive.
  const server = createHttpServer(runtime, {
    maxBodyBytes: settings.maxBodyBytes,
    // Requests whose bodies wait in their sockets are queued too.
    overloaded: () => runtime.inFlight + bodySlabs.waiting >= maxPending,
    requestTimeoutMs: settings.requestTimeoutMs,
    bodySlabs,
    // The worker pool reads slabs; a predictor of the user's may keep a body past its answer, and a torch model's
    // Python process does not read them: their bodies take memory of their own (the slabs still bound how many).
    bodiesInSlabs: !torch && !options.predictor,
  });
  routeInvocations(server, log);
  answerWithVariant(server, env);
  // Inside a SageMaker batch transform (BatchJob): each record answered with its outcome, so no error stops the job.
  if (env[TRANSFORM_RECORDS_ENV] === 'on') envelopeTransformRecords(server);
  const address = await listen(
    server,
    options.port ?? containerPort(env),
    options.host ?? (env[ENV.bindHost] || '0.0.0.0'),
  );
  log.info('container server listening', {
    port: address.port,
    workers,
    maxBatchSize: settings.maxBatchSize,
    maxBatchDelayMs: settings.maxBatchDelayMs,
    maxQueueLength: settings.maxQueueLength,
    executionProviders: settings.executionProviders,
  });
  const ready = runtime.start().then(() => undefined);
  ready.catch(() => undefined);

  let shuttingDown: Promise<void> | undefined;
  const drainTimeoutMs = options.drainTimeoutMs ?? settings.requestTimeoutMs + 2000;
  const shutdown = (): Promise<void> =>
    (shuttingDown ??= (async () => {
      log.info('shutting down: no new connections, draining in-flight requests', { inFlight: runtime.inFlight });
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      // Keep-alive connections go as soon as they are idle (their in-flight response sent).
      const sweeper = setInterval(() => server.closeIdleConnections(), 20);
      const timeout = new Promise<'timeout'>((resolve) => setTimeout(() => resolve('timeout'), drainTimeoutMs).unref());
      const outcome = await Promise.race([
        Promise.all([runtime.drained(), closed]).then(() => 'drained' as const),
        timeout,
      ]);
      clearInterval(sweeper);
      if (outcome === 'timeout') {
        log.warn('drain timed out; closing remaining connections', { inFlight: runtime.inFlight });
        server.closeAllConnections();
      }
      await runtime.close().catch(() => undefined);
      shadow?.close();
      await dataCapture?.close();
      telemetry.close();
      log.info('shut down', { outcome });
    })());
  return { runtime, server, address, ready, pool: () => pool, bodySlabs, shutdown };
}

/**
 * Bodies in memory at once: each worker's batch running and the next one ready, and one being read. The rest wait in
 * their sockets (body-slabs.ts).
 */
function bodiesAtOnce(workers: number, maxBatchSize: number): number {
  return 2 * workers * maxBatchSize + 1;
}

/**
 * SageMaker's REST API reaches every route through `POST /invocations` (InvokeEndpoint knows no other path), naming
 * the route in the custom attributes (`arclight-route=GET /v2/health/ready`). Such a request is rewritten to that
 * method and path before anything else sees it, so it meets the very handler, admission control included, that the
 * route reaches directly. Without the attribute, `/invocations` is `POST /` as ever; a malformed one is a 400.
 */
function routeInvocations(server: Server, log: Logger): void {
  const serve = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const problem = rewriteInvocation(req);
    if (problem === undefined) {
      for (const listener of serve) listener(req, res);
      return;
    }
    const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER] as string | undefined);
    const body = errorBodyJson('invalid_input', problem, requestId);
    req.resume();
    res.writeHead(400, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(body),
      [REQUEST_ID_HEADER]: requestId,
    });
    res.end(body);
    log.info('request', { requestId, method: 'POST', route: 'none', path: ROUTES.invocations, status: 400 });
  });
}

/** Applies a `POST /invocations` request's `arclight-route` attribute to it; returns what is wrong with a malformed one. */
function rewriteInvocation(req: IncomingMessage): string | undefined {
  const url = req.url ?? '';
  if (req.method !== 'POST' || (url !== ROUTES.invocations && !url.startsWith(`${ROUTES.invocations}?`))) return;
  const header = req.headers[SAGEMAKER_ROUTE.header.toLowerCase()];
  if (typeof header !== 'string') return;
  const prefix = `${SAGEMAKER_ROUTE.attribute}=`;
  const attribute = header
    .split(/[;,]/)
    .map((part) => part.trim())
    .find((part) => part.startsWith(prefix));
  if (attribute === undefined) return;
  const route = /^([A-Z]+) +(\/\S*)$/.exec(attribute.slice(prefix.length).trim());
  if (!route) {
    return `malformed ${SAGEMAKER_ROUTE.header} attribute '${attribute.slice(0, 200)}': expected '${prefix}<METHOD> /<path>'`;
  }
  req.method = route[1]!;
  req.url = route[2]!;
  return undefined;
}

/** The entry a Dockerfile runs: settings from the deployed contract's env vars; SIGTERM drains and exits 0. */
export async function runContainerServer(
  predictor?: DefinedPredictor<unknown>,
  env: NodeJS.ProcessEnv = process.env,
): Promise<ContainerServer> {
  const settings = settingsFromEnv(env);
  const container = await startContainerServer({ settings, ...(predictor ? { predictor } : {}), env });
  guardProcess(container.runtime.log);
  const stop = (signal: string): void => {
    container.runtime.log.info('signal received', { signal });
    container.shutdown().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  return container;
}
