import { Logger } from '@aws-lambda-powertools/logger';
import type { PredictorLogger } from '../predictor.js';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'SILENT';

export const LOG_LEVELS: readonly LogLevel[] = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT'];

/** The runtime's structured JSON logger (one line per record, stdout; errors to stderr). */
export function createLogger(serviceName: string, level: LogLevel = 'INFO'): Logger {
  return new Logger({ serviceName, logLevel: level });
}

/** A predictor's view of the logger: every record carries the request id. */
export function requestLogger(logger: Logger, requestId: string): PredictorLogger {
  const tag = { requestId };
  return {
    debug: (message, ...extra) => logger.debug(message, tag, ...extra),
    info: (message, ...extra) => logger.info(message, tag, ...extra),
    warn: (message, ...extra) => logger.warn(message, tag, ...extra),
    error: (message, ...extra) =>
      logger.error(message, tag, ...extra.map((item) => (item instanceof Error ? { error: item } : item))),
  };
}

export type { Logger };
