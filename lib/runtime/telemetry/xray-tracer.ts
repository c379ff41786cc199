/**
 * The X-Ray writer, loaded only when ARCLIGHT_TRACING=on (tracing.ts). Segment documents go over UDP to the X-Ray
 * daemon (`AWS_XRAY_DAEMON_ADDRESS`, default 127.0.0.1:2000), as the X-Ray SDKs send them:
 * `{"format": "json", "version": 1}\n<document>`.
 *
 * - On Lambda (active tracing) the service owns the invocation's segment: each traced request is one `arclight`
 *   subsegment under it (`_X_AMZN_TRACE_ID`'s Root and Parent), its phases nested; the cold start's phases (fetch,
 *   session, init, run before the first invocation) ride along with the first traced invocation.
 * - In a container the server owns the segment: one per request, named after the API, joined to the caller's trace
 *   when the `x-amzn-trace-id` header carries one (an ALB's Root, an upstream's Parent), with the cold start sent as
 *   its own segment once the model is ready.
 *
 * Written directly rather than through @aws-lambda-powertools/tracer (aws-xray-sdk-core): its subsegments need an
 * open segment in its context, which the init phase (where the cold start's phases happen) and a plain node:http
 * server do not have, and the wire format is these few lines.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import { createSocket, type Socket } from 'node:dgram';
import { installRequestStore, type RequestTrace, type TracePhase } from './tracing.js';

const HEADER = '{"format": "json", "version": 1}\n';

/** The cold start's figures the tracer places on the clock (`StartupTimings`, `performance.now()` milliseconds). */
export interface ColdStartClock {
  readonly fetchMs: number;
  readonly importWaitMs: number;
  readonly sessionMs: number;
  readonly firstRunMs?: number;
  readonly initMs: number;
  readonly totalMs: number;
  /** `performance.now()` when the model was ready. */
  readonly processMs: number;
}

export interface XRayTracerOptions {
  readonly apiName: string;
  /** Where `AWS_XRAY_DAEMON_ADDRESS` and, on Lambda, `_X_AMZN_TRACE_ID` are read. @default process.env */
  readonly env?: NodeJS.ProcessEnv;
}

interface Subsegment {
  readonly name: string;
  readonly id: string;
  readonly start_time: number;
  readonly end_time: number;
}

/** A trace header (`Root=1-...;Parent=...;Sampled=1`), parsed. */
export interface TraceHeader {
  readonly root?: string;
  readonly parent?: string;
  readonly sampled?: boolean;
}

export function parseTraceHeader(header: string | undefined): TraceHeader {
  const fields: Record<string, string> = {};
  for (const part of (header ?? '').split(';')) {
    const [key, value] = part.split('=');
    if (key && value) fields[key.trim()] = value.trim();
  }
  return {
    ...(fields['Root'] ? { root: fields['Root'] } : {}),
    ...(fields['Parent'] ? { parent: fields['Parent'] } : {}),
    ...(fields['Sampled'] === '1' ? { sampled: true } : fields['Sampled'] === '0' ? { sampled: false } : {}),
  };
}

/** `host:port` of the daemon's UDP listener, from `AWS_XRAY_DAEMON_ADDRESS` (`host:port` or `udp:host:port tcp:...`). */
export function daemonAddress(env: NodeJS.ProcessEnv): { host: string; port: number } {
  const raw = env['AWS_XRAY_DAEMON_ADDRESS']?.trim() ?? '';
  const udp =
    raw
      .split(/\s+/)
      .find((part) => part.startsWith('udp:'))
      ?.slice(4) ??
    raw.split(/\s+/)[0] ??
    '';
  const match = /^(.+):(\d+)$/.exec(udp);
  return match ? { host: match[1]!, port: Number(match[2]) } : { host: '127.0.0.1', port: 2000 };
}

const epochSeconds = (performanceMs: number): number => (performance.timeOrigin + performanceMs) / 1000;
const newId = (): string => randomBytes(8).toString('hex');
const newTraceId = (): string => `1-${Math.floor(Date.now() / 1000).toString(16)}-${randomBytes(12).toString('hex')}`;

function subsegment(name: string, startMs: number, endMs: number): Subsegment {
  return { name, id: newId(), start_time: epochSeconds(startMs), end_time: epochSeconds(endMs) };
}

class PhaseList implements RequestTrace {
  readonly phases: Subsegment[] = [];
  phase(name: TracePhase, startMs: number, endMs: number): void {
    this.phases.push(subsegment(name, startMs, endMs));
  }
}

export class XRayTracer {
  private readonly socket: Socket;
  private readonly host: string;
  private readonly port: number;
  private readonly env: NodeJS.ProcessEnv;
  private readonly onLambda: boolean;
  private readonly store = new AsyncLocalStorage<RequestTrace>();
  /** Lambda: the cold start's phases, waiting for the first traced invocation. */
  private coldStartPhases: Subsegment[] = [];
  /** When those phases began (`performance.now()` clock). */
  private coldStartFrom = Infinity;

  constructor(private readonly options: XRayTracerOptions) {
    this.env = options.env ?? process.env;
    this.onLambda = Boolean(this.env['AWS_LAMBDA_FUNCTION_NAME']);
    ({ host: this.host, port: this.port } = daemonAddress(this.env));
    this.socket = createSocket(this.host.includes(':') ? 'udp6' : 'udp4');
    this.socket.unref();
    // A daemon that is not there must not take the process down (ICMP port unreachable surfaces as an error).
    this.socket.on('error', () => undefined);
    installRequestStore(this.store);
  }

  /** Places the cold start's phases on the clock: sent now in a container, with the next invocation on Lambda. */
  coldStart(clock: ColdStartClock): void {
    const start = clock.processMs - clock.totalMs;
    const fetchEnd = start + clock.fetchMs;
    const sessionStart = fetchEnd + clock.importWaitMs;
    const phases = [
      subsegment('fetch', start, fetchEnd),
      subsegment('session', sessionStart, sessionStart + clock.sessionMs),
      subsegment('init', clock.processMs - clock.initMs, clock.processMs),
    ];
    if (this.onLambda) {
      this.coldStartPhases = phases;
      this.coldStartFrom = start;
      return;
    }
    this.send(this.segment(`${this.options.apiName} cold start`, {}, start, clock.processMs, phases));
  }

  /** Runs one request with its trace open; `header` is the request's `x-amzn-trace-id` (containers). */
  async traceRequest<T extends { readonly status: number }>(
    header: string | undefined,
    work: () => Promise<T>,
  ): Promise<T> {
    const caller = parseTraceHeader(this.onLambda ? this.env['_X_AMZN_TRACE_ID'] : header);
    // Lambda decides sampling (no Parent or Sampled=0: not traced); a container follows the caller's decision.
    if (caller.sampled === false || (this.onLambda && (!caller.root || !caller.parent))) return work();
    const trace = new PhaseList();
    const started = performance.now();
    const response = await this.store.run(trace, work);
    const ended = performance.now();
    if (this.onLambda) {
      const phases = [...this.coldStartPhases, ...trace.phases];
      const from = Math.min(started, this.coldStartFrom);
      this.coldStartPhases = [];
      this.coldStartFrom = Infinity;
      this.send({
        ...subsegment('arclight', from, ended),
        type: 'subsegment',
        trace_id: caller.root,
        parent_id: caller.parent,
        subsegments: phases,
      });
    } else {
      this.send({
        ...this.segment(this.options.apiName, caller, started, ended, trace.phases),
        http: { response: { status: response.status } },
        ...(response.status >= 500 ? { fault: true } : response.status >= 400 ? { error: true } : {}),
      });
    }
    return response;
  }

  close(): void {
    this.socket.close();
  }

  private segment(
    name: string,
    caller: TraceHeader,
    startMs: number,
    endMs: number,
    phases: Subsegment[],
  ): Record<string, unknown> {
    return {
      ...subsegment(name, startMs, endMs),
      trace_id: caller.root ?? newTraceId(),
      ...(caller.parent ? { parent_id: caller.parent } : {}),
      subsegments: phases,
    };
  }

  private send(document: Record<string, unknown>): void {
    this.socket.send(Buffer.from(HEADER + JSON.stringify(document)), this.port, this.host);
  }
}
