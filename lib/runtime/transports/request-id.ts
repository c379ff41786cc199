import { randomUUID } from 'node:crypto';

const SAFE_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The client's request id when it is safe to echo and log, else a fresh one. */
export function requestIdFrom(candidate: string | undefined): string {
  return candidate !== undefined && SAFE_ID.test(candidate) ? candidate : randomUUID();
}
