/**
 * Tracing, off unless ARCLIGHT_TRACING=on: the phases of a cold start (fetch, session, init) and of a request
 * (decode, run, encode) as X-Ray subsegments. This module is all the request path loads when tracing is off: the
 * X-Ray writer (xray-tracer.ts, a UDP socket) is imported only when it is on, and a phase asks `activeTrace()`, which
 * is `undefined` then, so an untraced request pays one property read per phase.
 */
import type { AsyncLocalStorage } from 'node:async_hooks';
import { ENV } from '../../contract.js';

/** The phases Arclight traces. */
export type TracePhase = 'fetch' | 'session' | 'init' | 'decode' | 'run' | 'encode';

/** One traced request: its phases are added as they end. */
export interface RequestTrace {
  /** Records a phase that ran from `startMs` to `endMs` (`performance.now()` clock). */
  phase(name: TracePhase, startMs: number, endMs: number): void;
}

/** The request being traced on this async path (set only while tracing is on). */
let requests: AsyncLocalStorage<RequestTrace> | undefined;

/** The trace of the request on this async path; `undefined` whenever tracing is off or the request is not sampled. */
export function activeTrace(): RequestTrace | undefined {
  return requests?.getStore();
}

/** Installs the store the tracer runs requests in (xray-tracer.ts). */
export function installRequestStore(store: AsyncLocalStorage<RequestTrace>): void {
  requests = store;
}

/** Whether ARCLIGHT_TRACING asks for tracing. */
export function tracingFromEnv(env: NodeJS.ProcessEnv): boolean {
  return env[ENV.tracing]?.trim().toLowerCase() === 'on';
}
