/**
 * Keeps a long-running server (the container server, `arclight serve`) alive through a predictor's stray failures.
 * A predictor may throw from a timer, or leave a promise rejected with no handler, after its request was answered;
 * Node.js would end the process for either, and every request in flight with it. Each is logged as an error instead.
 * Lambda is left alone: its runtime owns these events, reports the invocation failed and starts a fresh sandbox.
 */
import { asError, type Logger } from '../telemetry/logger.js';

let guarded = false;

/** Installs the process-wide handlers once; later calls (a second server in the same process) change nothing. */
export function guardProcess(log: Logger): void {
  if (guarded) return;
  guarded = true;
  process.on('uncaughtException', (error, origin) => {
    log.error('uncaught exception outside any request (a predictor callback?); still serving', {
      origin,
      error: asError(error),
    });
  });
  process.on('unhandledRejection', (reason) => {
    log.error('unhandled promise rejection outside any request (a predictor callback?); still serving', {
      error: asError(reason),
    });
  });
}
