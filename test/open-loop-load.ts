/**
 * Open-loop load: requests start on a fixed schedule (`ratePerS`) whether or not earlier ones have been answered, as
 * independent clients arrive; a closed loop would slow down with the server and never overload it. Every request's
 * outcome is kept (status, latency, Retry-After, the error body's code), so a test can tell admitted from refused.
 */
import { Agent, request } from 'node:http';

export interface OpenLoopRequest {
  readonly method: 'GET' | 'POST';
  readonly path: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: Buffer;
}

export interface OpenLoopOptions {
  readonly ratePerS: number;
  readonly durationMs: number;
  readonly request: OpenLoopRequest;
  /** A request unanswered after this counts as an error. @default 30 s */
  readonly timeoutMs?: number;
}

export interface Outcome {
  /** 0 when the request failed without an answer (`error` says why). */
  readonly status: number;
  /** From the request's start to the answer's last byte. */
  readonly latencyMs: number;
  readonly retryAfter: string | undefined;
  readonly contentType: string | undefined;
  /** `code` of a JSON error body. */
  readonly errorCode: string | undefined;
  readonly hasRequestId: boolean;
  readonly error: string | undefined;
}

export interface OpenLoop {
  /** Stops starting requests; resolves with every outcome once the started ones have finished. */
  stop(): Promise<OpenLoopResult>;
  /** Resolves when the schedule has run its duration (requests may still be in flight). */
  readonly scheduleDone: Promise<void>;
}

export interface OpenLoopResult {
  readonly outcomes: readonly Outcome[];
  /** How long requests were being started, s. */
  readonly sendingS: number;
}

const TICK_MS = 5;

/** Starts the schedule; call `stop()` (after `scheduleDone`, or early) to collect the outcomes. */
export function openLoop(baseUrl: string, options: OpenLoopOptions): OpenLoop {
  const url = new URL(baseUrl);
  const agent = new Agent({ keepAlive: true, maxSockets: Number.POSITIVE_INFINITY });
  const sent: Promise<Outcome>[] = [];
  const started = performance.now();
  let stoppedAt: number | undefined;
  let finishSchedule: () => void = () => undefined;
  const scheduleDone = new Promise<void>((resolve) => (finishSchedule = resolve));
  const timer = setInterval(() => {
    const elapsed = performance.now() - started;
    if (elapsed >= options.durationMs) {
      clearInterval(timer);
      finishSchedule();
      return;
    }
    const due = Math.floor((elapsed / 1000) * options.ratePerS);
    while (sent.length < due) sent.push(send(url, agent, options.request, options.timeoutMs ?? 30_000));
  }, TICK_MS);
  return {
    scheduleDone,
    async stop() {
      clearInterval(timer);
      finishSchedule();
      stoppedAt ??= performance.now();
      const outcomes = await Promise.all(sent);
      agent.destroy();
      return { outcomes, sendingS: (Math.min(stoppedAt, started + options.durationMs) - started) / 1000 };
    },
  };
}

function send(url: URL, agent: Agent, call: OpenLoopRequest, timeoutMs: number): Promise<Outcome> {
  const started = performance.now();
  return new Promise<Outcome>((resolve) => {
    const failed = (error: Error): void =>
      resolve({
        status: 0,
        latencyMs: performance.now() - started,
        retryAfter: undefined,
        contentType: undefined,
        errorCode: undefined,
        hasRequestId: false,
        error: `${(error as NodeJS.ErrnoException).code ?? ''} ${error.message}`,
      });
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: call.path,
        method: call.method,
        agent,
        timeout: timeoutMs,
        headers: { ...call.headers, ...(call.body ? { 'content-length': String(call.body.length) } : {}) },
      },
      (res) => {
        const chunks: Buffer[] = [];
        // Only error bodies are kept: a 200's tensor bytes are read and dropped.
        res.on('data', (chunk: Buffer) => void (res.statusCode !== 200 && chunks.push(chunk)));
        res.once('error', failed);
        res.once('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            latencyMs: performance.now() - started,
            retryAfter: header(res.headers['retry-after']),
            contentType: header(res.headers['content-type']),
            ...errorBody(Buffer.concat(chunks)),
            error: undefined,
          }),
        );
      },
    );
    req.once('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.once('error', failed);
    req.end(call.body);
  });
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

function errorBody(body: Buffer): { errorCode: string | undefined; hasRequestId: boolean } {
  if (body.length === 0) return { errorCode: undefined, hasRequestId: false };
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: unknown; code?: unknown; requestId?: unknown };
    const isError = typeof parsed.error === 'string';
    return {
      errorCode: isError && typeof parsed.code === 'string' ? parsed.code : undefined,
      hasRequestId: isError && typeof parsed.requestId === 'string' && parsed.requestId !== '',
    };
  } catch {
    return { errorCode: undefined, hasRequestId: false };
  }
}
