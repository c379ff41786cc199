/**
 * The container image's entry (`node container-main.js`, bundled; `node --import tsx lib/runtime/transports/container-main.ts`
 * from source): the container server configured from the deployed contract's env vars. A predictor module is loaded
 * from ARCLIGHT_PREDICTOR when set; without it the default (Open Inference Protocol) predictor serves the model.
 * Invalid settings exit 1 with one line saying what to fix; SIGTERM drains in-flight requests and exits 0.
 * CloudWatch metrics (EMF lines on stdout, which the SageMaker and ECS log drivers ship) are on unless
 * ARCLIGHT_METRICS=off: a deployed container is where Latency, Overloaded and ExecutionProviderFallback are watched.
 * With ARCLIGHT_ASYNC_QUEUE_URL set (an AsyncApi on ECS) the container is also its queue's worker
 * (lib/runtime/async/container-worker.ts): SIGTERM then drains or hands back its running jobs first.
 */
import { ASYNC_ENV, ENV } from '../../contract.js';
import { runContainerServer } from './container-server.js';
import { loadPredictor } from '../predictor-loader.js';
import { StartupError } from '../startup-error.js';

if (!process.env[ENV.metrics]) process.env[ENV.metrics] = 'on';

try {
  const entry = process.env[ENV.predictorEntry];
  const predictor = entry ? await loadPredictor(entry) : undefined;
  if (process.env[ASYNC_ENV.queueUrl]) {
    const { runAsyncContainerWorker } = await import('../async/container-worker.js');
    await runAsyncContainerWorker(predictor);
  } else {
    await runContainerServer(predictor);
  }
} catch (error) {
  const message = error instanceof StartupError ? error.oneLine() : String((error as Error)?.stack ?? error);
  process.stderr.write(
    `${JSON.stringify({ level: 'ERROR', message: `container server failed to start: ${message}` })}\n`,
  );
  process.exit(1);
}
