/**
 * The runtime's structured logger: one JSON line per record on stdout, written synchronously so nothing is lost
 * when Lambda freezes the sandbox. pino, because a request's log line must cost microseconds, not tens of them.
 */
import pino from 'pino';
import type { LogAttributes, PredictorLogger } from '../../predictor.js';

export type LogLevel = 'DEBUG' | 'INFO' | 'WARN' | 'ERROR' | 'SILENT';

export const LOG_LEVELS: readonly LogLevel[] = ['DEBUG', 'INFO', 'WARN', 'ERROR', 'SILENT'];

/** A logger: `info('message', { key: value })`; Errors under any key are serialized with their stack. */
export interface Logger {
  debug(message: string, attributes?: LogAttributes): void;
  info(message: string, attributes?: LogAttributes): void;
  warn(message: string, attributes?: LogAttributes): void;
  error(message: string, attributes?: LogAttributes): void;
}

const errorSerializer = pino.stdSerializers.err;

/** `{"level":"INFO","timestamp":"…","service":"…","message":"…",…}` lines on stdout. */
export function createLogger(serviceName: string, level: LogLevel = 'INFO'): Logger {
  const base = pino(
    {
      level: level.toLowerCase(),
      base: { service: serviceName },
      messageKey: 'message',
      timestamp: isoTimestamp,
      formatters: { level: (label) => ({ level: label.toUpperCase() }) },
      serializers: { error: errorSerializer, cause: errorSerializer },
    },
    process.stdout,
  );
  return {
    debug: (message, attributes) => base.debug(attributes ?? {}, message),
    info: (message, attributes) => base.info(attributes ?? {}, message),
    warn: (message, attributes) => base.warn(attributes ?? {}, message),
    error: (message, attributes) => base.error(attributes ?? {}, message),
  };
}

let lastMs = 0;
let lastTimestamp = '';

/** `,"timestamp":"<ISO 8601>"`, formatted once per millisecond however many lines share it. */
function isoTimestamp(): string {
  const now = Date.now();
  if (now !== lastMs) {
    lastMs = now;
    lastTimestamp = `,"timestamp":"${new Date(now).toISOString()}"`;
  }
  return lastTimestamp;
}

/** A predictor's view of the logger: every record carries the request id. */
export function requestLogger(logger: Logger, requestId: string): PredictorLogger {
  const tagged = (extra: readonly (LogAttributes | Error)[]): LogAttributes =>
    Object.assign({ requestId }, ...extra.map((item) => (item instanceof Error ? { error: item } : item)));
  return {
    debug: (message, ...extra) => logger.debug(message, tagged(extra)),
    info: (message, ...extra) => logger.info(message, tagged(extra)),
    warn: (message, ...extra) => logger.warn(message, tagged(extra)),
    error: (message, ...extra) => logger.error(message, tagged(extra)),
  };
}

/**
 * A thrown value as an Error the logger can record. A predictor may throw anything, including a value that cannot be
 * turned into a string (`Object.create(null)`, a throwing `toString`); that must not break the error path itself.
 */
export function asError(value: unknown): Error {
  if (value instanceof Error) return value;
  try {
    return new Error(`non-Error thrown: ${String(value)}`);
  } catch {
    return new Error('non-Error thrown (it cannot be turned into a string)');
  }
}
