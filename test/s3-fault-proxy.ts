/**
 * A fault-injecting HTTP proxy in front of s3rver (node:http, loopback): it forwards every request unchanged
 * (the Host header too, so SigV4 signatures still match) and, per request, can answer an error status, cut a
 * body short, alter a byte, stall, or run something first (e.g. replace the object between HEAD and parts).
 *
 * s3rver 3.7.1 honours `Range` on GetObject but ignores `If-Match` (lib/controllers/object.js reads only
 * If-None-Match and If-Modified-Since), so the proxy enforces If-Match as S3 does: when the object's ETag no
 * longer matches, the answer is 412 PreconditionFailed.
 */
import {
  request as httpRequest,
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export type Fault =
  /** Answer this status with an S3 XML error (no body for HEAD). */
  | { readonly kind: 'status'; readonly status: number; readonly code: string }
  /** Send the headers as S3 sent them, then only this many body bytes, then close the connection. */
  | { readonly kind: 'truncate'; readonly afterBytes: number }
  /** Flip the bits of the body byte at this offset (of this response's body). */
  | { readonly kind: 'alter'; readonly at: number }
  /** Send the headers and this many body bytes, then nothing more (the connection stays open). */
  | { readonly kind: 'stall'; readonly afterBytes: number }
  /** Close the connection without any answer (a connection reset). */
  | { readonly kind: 'reset' }
  /** Run this, then forward the request as usual. */
  | { readonly kind: 'before'; readonly run: () => Promise<void> };

/** A request as the proxy saw it. */
export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly range: string | undefined;
  readonly ifMatch: string | undefined;
  /** The fault applied, if any. */
  readonly fault: Fault['kind'] | undefined;
}

export interface FaultProxy {
  /** Env that points the AWS SDK at the proxy (credentials of the s3rver behind it). */
  readonly env: Record<string, string>;
  readonly endpoint: string;
  /** Every request so far. */
  readonly requests: SeenRequest[];
  /** Decides the fault of each request (`index` counts requests from 0); none when it returns undefined. */
  plan: (request: SeenRequest, index: number) => Fault | undefined;
  /** Clears `requests` and the plan. */
  reset(): void;
  close(): Promise<void>;
}

/** Starts the proxy on a free loopback port in front of the S3 server at `upstream` (`http://127.0.0.1:port`). */
export async function startFaultProxy(upstream: string, upstreamEnv: Record<string, string>): Promise<FaultProxy> {
  const target = new URL(upstream);
  const sockets = new Set<Socket>();
  const requests: SeenRequest[] = [];
  const proxy: FaultProxy = {
    env: {},
    endpoint: '',
    requests,
    plan: () => undefined,
    reset() {
      requests.length = 0;
      proxy.plan = () => undefined;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };

  const server: Server = createServer((req, res) => {
    void (async () => {
      const seen: SeenRequest = {
        method: req.method ?? 'GET',
        path: req.url ?? '/',
        range: header(req, 'range'),
        ifMatch: header(req, 'if-match'),
        fault: undefined,
      };
      const fault = proxy.plan(seen, requests.length);
      requests.push({ ...seen, fault: fault?.kind });
      if (fault?.kind === 'status') {
        const body =
          seen.method === 'HEAD'
            ? ''
            : `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${fault.code}</Code><Message>injected ${fault.code}</Message><RequestId>fault</RequestId></Error>`;
        res.writeHead(fault.status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
        res.end(body);
        return;
      }
      if (fault?.kind === 'reset') {
        req.socket.destroy();
        return;
      }
      if (fault?.kind === 'before') await fault.run();
      const upstreamReq = httpRequest(
        {
          host: target.hostname,
          port: target.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
        },
        (upstreamRes) => respond(seen, fault, upstreamRes, res),
      );
      upstreamReq.on('error', () => res.destroy());
      req.pipe(upstreamReq);
    })().catch(() => res.destroy());
  });
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  const endpoint = `http://127.0.0.1:${port}`;
  Object.assign(proxy, { endpoint, env: { ...upstreamEnv, AWS_ENDPOINT_URL_S3: endpoint } });
  return proxy;
}

function respond(seen: SeenRequest, fault: Fault | undefined, upstream: IncomingMessage, res: ServerResponse): void {
  const status = upstream.statusCode ?? 502;
  const etag = upstream.headers.etag;
  // If-Match as S3 does it: the object's current ETag must match, else 412 and no body.
  if (seen.ifMatch !== undefined && status < 300 && etag !== undefined && etag !== seen.ifMatch) {
    upstream.resume();
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you specified did not hold</Message><Condition>If-Match</Condition><RequestId>proxy</RequestId></Error>`;
    res.writeHead(412, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
    res.end(body);
    return;
  }
  res.writeHead(status, upstream.headers);
  if (!fault || fault.kind === 'before' || fault.kind === 'status' || fault.kind === 'reset') {
    upstream.pipe(res);
    return;
  }
  res.flushHeaders();
  let sent = 0;
  upstream.on('data', (chunk: Buffer) => {
    if (fault.kind === 'alter') {
      if (fault.at >= sent && fault.at < sent + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[fault.at - sent] = chunk[fault.at - sent]! ^ 0xff;
      }
      sent += chunk.length;
      res.write(chunk);
      return;
    }
    const room = fault.afterBytes - sent;
    if (room > 0) res.write(chunk.subarray(0, room));
    sent += Math.min(room > 0 ? room : 0, chunk.length);
    if (sent >= fault.afterBytes) {
      upstream.destroy();
      // Truncate: close the connection mid-body. Stall: keep it open and send nothing more.
      if (fault.kind === 'truncate') res.socket?.destroySoon();
    }
  });
  upstream.on('end', () => {
    if (fault.kind === 'alter') res.end();
  });
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}
