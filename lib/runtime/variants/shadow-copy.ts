/**
 * Shadow copies: a share of inference requests copied to the API's shadow variant, whose answers are logged and
 * counted, never returned. Off the request's path: `offer` samples and queues (a bounded queue, a bounded number in
 * flight) and returns at once; a full queue drops the copy and counts it. A stalled or failing shadow costs copies,
 * never a primary request's time. Bodies never reach the logs: an answer is logged as its status and latency.
 *
 * Containers (ECS) copy each answered exchange over HTTP to the shadow service (`HttpShadowTarget`); Lambda copies the
 * invocation event with an asynchronous Invoke (lambda-variants.ts).
 */
import { Agent, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { DEFAULTS, ENV, REQUEST_ID_HEADER, VARIANT_HEADER } from '../../contract.js';
import { DeterministicShare } from '../../variant-split.js';
import type { CapturedExchange } from '../telemetry/data-capture.js';
import { asError, type Logger } from '../telemetry/logger.js';
import type { Telemetry } from '../telemetry/telemetry.js';

/** Where copies go. */
export interface ShadowTarget<T> {
  /** The shadow's name, for the log. */
  readonly name: string;
  /** Sends one copy; resolves with the shadow's status (an asynchronous Invoke's 202 on Lambda). */
  send(copy: T): Promise<number>;
  /** Why a copy cannot be sent at all (too large for the target), if it cannot: it is dropped and counted. */
  refuse?(copy: T): string | undefined;
}

export interface ShadowCopyOptions<T> {
  readonly target: ShadowTarget<T>;
  /** The percentage of offered requests copied, taken deterministically (50: every second one). @default 100 */
  readonly percent?: number;
  /** Copies sent at once at most. @default 16 */
  readonly maxInFlight?: number;
  /** Copies waiting beyond those in flight at most; beyond, new ones are dropped and counted. @default 64 */
  readonly maxQueued?: number;
  readonly logger: Logger;
  readonly telemetry?: Telemetry;
  /**
   * Makes a sampled copy independent of memory the transport reuses once the primary has answered (a request body
   * in a body slab), as it is offered. @default the copy as offered
   */
  readonly keep?: (copy: T) => T;
}

/** Counts since start, for tests and the log. */
export interface ShadowCopyCounts {
  readonly offered: number;
  readonly sent: number;
  readonly answered: number;
  readonly dropped: number;
  readonly failed: number;
}

/** One copy offered: its request id (for the log) and the primary's status (compared in the log line). */
export interface ShadowOffer<T> {
  readonly copy: T;
  readonly requestId: string;
  readonly primaryStatus?: number;
}

export class ShadowCopy<T> {
  private readonly share: DeterministicShare;
  private readonly maxInFlight: number;
  private readonly maxQueued: number;
  private readonly queue: { offer: ShadowOffer<T>; done: (sent: boolean) => void }[] = [];
  private inFlight = 0;
  private closed = false;
  private counts = { offered: 0, sent: 0, answered: 0, dropped: 0, failed: 0 };
  private readonly idleWaiters: (() => void)[] = [];

  constructor(private readonly options: ShadowCopyOptions<T>) {
    this.share = new DeterministicShare(Math.min(100, Math.max(0, options.percent ?? 100)) / 100);
    this.maxInFlight = Math.max(1, options.maxInFlight ?? 16);
    this.maxQueued = Math.max(0, options.maxQueued ?? 64);
  }

  get stats(): ShadowCopyCounts {
    return { ...this.counts };
  }

  /**
   * Samples one request and queues its copy; never throws, never waits. Resolves (for whoever wants to know, as a
   * Lambda handler before its sandbox freezes) once the copy was handed over (true) or dropped, failed or skipped.
   */
  offer(offer: ShadowOffer<T>): Promise<boolean> {
    if (this.closed || !this.share.take()) return Promise.resolve(false);
    this.counts.offered++;
    const refusal = this.options.target.refuse?.(offer.copy);
    if (refusal !== undefined) {
      this.drop(offer.requestId, refusal);
      return Promise.resolve(false);
    }
    // Only a copy that will be sent is made independent of the transport's memory.
    if (this.options.keep) offer = { ...offer, copy: this.options.keep(offer.copy) };
    if (this.inFlight < this.maxInFlight) return this.send(offer);
    if (this.queue.length >= this.maxQueued) {
      this.drop(offer.requestId, 'queue full');
      return Promise.resolve(false);
    }
    return new Promise((done) => this.queue.push({ offer, done }));
  }

  /** Counts a copy that could not be made (too large for the target) as dropped. */
  drop(requestId: string, reason: string): void {
    this.counts.dropped++;
    this.options.telemetry?.shadow('dropped');
    this.options.logger.warn('shadow copy dropped', { requestId, shadow: this.options.target.name, reason });
  }

  /** Resolves once nothing is queued or in flight. */
  idle(): Promise<void> {
    if (this.inFlight === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops taking copies; what is queued is dropped (and counted). */
  close(): void {
    this.closed = true;
    for (const { offer, done } of this.queue.splice(0)) {
      this.drop(offer.requestId, 'shutting down');
      done(false);
    }
    this.wakeIfIdle();
  }

  private async send(offer: ShadowOffer<T>): Promise<boolean> {
    this.inFlight++;
    this.counts.sent++;
    this.options.telemetry?.shadow('sent');
    const started = performance.now();
    let ok = false;
    try {
      const status = await this.options.target.send(offer.copy);
      ok = status < 500;
      this.counts.answered++;
      if (!ok) this.fail();
      this.options.logger.info('shadow answer', {
        requestId: offer.requestId,
        shadow: this.options.target.name,
        status,
        ...(offer.primaryStatus === undefined ? {} : { primaryStatus: offer.primaryStatus }),
        latencyMs: Math.round((performance.now() - started) * 1000) / 1000,
      });
    } catch (error) {
      this.fail();
      this.options.logger.warn('shadow copy failed', {
        requestId: offer.requestId,
        shadow: this.options.target.name,
        error: asError(error).message,
        latencyMs: Math.round(performance.now() - started),
      });
    } finally {
      this.inFlight--;
      this.next();
    }
    return ok;
  }

  private fail(): void {
    this.counts.failed++;
    this.options.telemetry?.shadow('failed');
  }

  private next(): void {
    const waiting = this.queue.shift();
    if (waiting) void this.send(waiting.offer).then(waiting.done);
    else this.wakeIfIdle();
  }

  private wakeIfIdle(): void {
    if (this.inFlight === 0 && this.queue.length === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }
}

/** Request headers a copy carries: what the shadow needs to decode the body the same way, and the request id. */
const COPIED_HEADERS = ['content-type', 'accept'] as const;

/**
 * The shadow service over HTTP (its own ALB listener on ECS): each copy is the inference request as the primary got
 * it, its body decoded, with the same request id, on a keep-alive agent of its own.
 */
export class HttpShadowTarget implements ShadowTarget<CapturedExchange> {
  private readonly url: URL;
  private readonly agent: Agent;

  constructor(
    readonly name: string,
    url: string,
    private readonly timeoutMs: number = DEFAULTS.requestTimeoutMs + 2000,
    maxSockets = 16,
  ) {
    this.url = new URL(url);
    if (this.url.protocol !== 'http:') throw new Error(`shadow URL '${url}' is not http://host:port`);
    this.agent = new Agent({ keepAlive: true, maxSockets });
  }

  send({ request, requestId }: CapturedExchange): Promise<number> {
    const query = new URLSearchParams(request.query).toString();
    const headers: Record<string, string> = { [REQUEST_ID_HEADER]: requestId };
    for (const name of COPIED_HEADERS) {
      const value = request.headers[name];
      if (value !== undefined) headers[name] = value;
    }
    headers['content-length'] = String(request.body.length);
    return new Promise((resolve, reject) => {
      const req = httpRequest(
        {
          host: this.url.hostname,
          port: this.url.port || 80,
          method: request.method,
          path: `${this.url.pathname.replace(/\/$/, '')}${request.path}${query ? `?${query}` : ''}`,
          headers,
          agent: this.agent,
          timeout: this.timeoutMs,
        },
        (response) => {
          // The answer is drained, never read into the log.
          response.resume();
          response.on('end', () => resolve(response.statusCode ?? 0));
          response.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${this.timeoutMs} ms`)));
      req.on('error', reject);
      req.end(request.body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Data capture and the shadow copy, both handed each answered inference exchange. */
export function captureBoth(
  ...captures: ({ capture(exchange: CapturedExchange): void } | undefined)[]
): { capture(exchange: CapturedExchange): void } | undefined {
  const present = captures.filter((c): c is { capture(exchange: CapturedExchange): void } => c !== undefined);
  if (present.length <= 1) return present[0];
  return { capture: (exchange) => present.forEach((c) => c.capture(exchange)) };
}

/** Every answer of this server names the variant that gave it (`x-arclight-variant`), when it serves one. */
export function answerWithVariant(server: Server, env: NodeJS.ProcessEnv): void {
  const variant = env[ENV.variant];
  if (variant)
    server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) =>
      res.setHeader(VARIANT_HEADER, variant),
    );
}

/** The exchange with its request body copied out of shared memory (a body slab the server reuses after the answer). */
function withOwnBody(exchange: CapturedExchange): CapturedExchange {
  const { body } = exchange.request;
  if (!(body.buffer instanceof SharedArrayBuffer)) return exchange;
  return { ...exchange, request: { ...exchange.request, body: Buffer.from(body) } };
}

/** The shadow percentage from the environment, 100 when unset. */
export function shadowPercentFromEnv(env: NodeJS.ProcessEnv): number {
  const raw = env[ENV.shadowPercent];
  const percent = Number(raw);
  return raw === undefined || raw === '' || !Number.isFinite(percent) ? 100 : Math.min(100, Math.max(0, percent));
}

/**
 * The container server's shadow copy, when `ARCLIGHT_SHADOW_URL` names the shadow: each answered inference exchange
 * offered to it (`capture`), its copy sent over HTTP.
 */
export function containerShadowFromEnv(
  env: NodeJS.ProcessEnv,
  logger: Logger,
  telemetry: Telemetry | undefined,
):
  | { capture(exchange: CapturedExchange): void; close(): void; readonly copies: ShadowCopy<CapturedExchange> }
  | undefined {
  const url = env[ENV.shadowUrl];
  if (!url) return undefined;
  const target = new HttpShadowTarget('shadow', url);
  const copies = new ShadowCopy<CapturedExchange>({
    target,
    keep: withOwnBody,
    percent: shadowPercentFromEnv(env),
    logger,
    ...(telemetry ? { telemetry } : {}),
  });
  logger.info('shadow copies on', { shadowUrl: url, percent: shadowPercentFromEnv(env) });
  return {
    copies,
    capture: (exchange) =>
      void copies.offer({ copy: exchange, requestId: exchange.requestId, primaryStatus: exchange.response.status }),
    close: () => {
      copies.close();
      target.close();
    },
  };
}
