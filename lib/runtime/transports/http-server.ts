/**
 * The node:http adapter: sockets → internal requests → the runtime, with a body limit that answers 413 as soon
 * as it is passed, and timeouts that keep slow or stalled clients from holding anything up.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import * as zlib from 'node:zlib';
import { DEFAULTS, REQUEST_ID_HEADER } from '../../contract.js';
import type { HttpError } from '../../predictor.js';
import type { InternalRequest, InternalResponse } from '../codec/codec.js';
import {
  COMPRESS_MIN_BYTES,
  RESPONSE_ZLIB_OPTIONS,
  badlyEncoded,
  decoder,
  requestCoding,
  responseCoding,
  tooLarge,
  type ContentCoding,
} from '../codec/content-encoding.js';
import { BINARY_HEADER } from '../codec/oip.js';
import { ownedBuffer } from '../executors/owned-buffers.js';
import type { BodySlab, BodySlabs } from '../executors/body-slabs.js';
import { errorBodyJson } from '../codec/json.js';
import { isRouted } from '../routes.js';
import { requestIdFrom } from './request-id.js';
import type { Runtime } from '../runtime.js';

export interface HttpServerOptions {
  /** Bodies above this answer 413. @default 6 MiB (Lambda's synchronous payload limit) */
  readonly maxBodyBytes?: number;
  /** Time a client has to send headers and body. @default 30 s */
  readonly clientTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open. @default 5 s */
  readonly keepAliveTimeoutMs?: number;
  /**
   * Load shedding before the body is read: when it returns true for a POST (every POST route is inference), the
   * answer is 503 `overloaded` with Retry-After at once, and the upload is dropped, never buffered. @default never
   */
  readonly overloaded?: () => boolean;
  /**
   * Bodies read at once, and their shared memory (body-slabs.ts): past the slab count, a POST waits with its upload
   * unread until an answered request frees a slab. @default every body read as it comes, into memory of its own
   */
  readonly bodySlabs?: BodySlabs;
  /**
   * Whether plain bodies are read into the slabs' memory (else the slabs only bound how many are read at once). Only
   * for a runtime whose executor reads slabs (the worker pool) and whose predictor keeps nothing of a request past
   * its answer (the default one). @default false
   */
  readonly bodiesInSlabs?: boolean;
  /** The runtime's request timeout: a wait for a slab counts against it. @default DEFAULTS.requestTimeoutMs */
  readonly requestTimeoutMs?: number;
}

const gzip = promisify(zlib.gzip);
const deflate = promisify(zlib.deflate);

/** How long a refused upload may keep sending before its socket is closed (so the client reads our 413, not a reset). */
const LINGER_MS = 1000;

export function createHttpServer(runtime: Runtime, options: HttpServerOptions = {}): Server {
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULTS.maxBodyBytes;
  const clientTimeoutMs = options.clientTimeoutMs ?? 30_000;
  const limits: BodyLimits = {
    maxBodyBytes,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    ...(options.bodySlabs ? { slabs: options.bodySlabs, bodiesInSlabs: options.bodiesInSlabs ?? false } : {}),
  };
  const server = createServer(
    {
      requestTimeout: clientTimeoutMs,
      headersTimeout: Math.min(clientTimeoutMs, 10_000),
      // Node checks both timeouts only this often (30 s by default), which would let a stalled client hold its
      // connection for up to 30 s past clientTimeoutMs.
      connectionsCheckingInterval: Math.max(10, Math.min(1000, Math.floor(clientTimeoutMs / 4))),
      keepAliveTimeout: options.keepAliveTimeoutMs ?? 5000,
    },
    (req, res) => {
      if (req.method === 'POST' && options.overloaded?.()) {
        refuse(req, res, 503, 'overloaded', 'the server is at capacity; retry shortly', {
          'retry-after': String(DEFAULTS.retryAfterSeconds),
        });
        return;
      }
      void serve(runtime, req, res, limits);
    },
  );
  // A client that half-closes after its request (a raw socket's end(), some proxies) still gets its answer: node's
  // default aborts the request on the client's FIN and ends the socket, so an answer that waits on I/O (a
  // compressed body's inflation, a worker thread's run) was lost. The socket is ended once that answer is written.
  (server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
  server.on('clientError', (error: NodeJS.ErrnoException, socket) => {
    if (!socket.writable || error.code === 'ECONNRESET') return socket.destroy();
    const status = error.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const code = status === 408 ? 'request_timeout' : 'invalid_input';
    const message = status === 408 ? 'the request was not received in time' : 'malformed HTTP request';
    const body = errorBodyJson(code, message, requestIdFrom(undefined));
    socket.end(
      `HTTP/1.1 ${status} ${status === 408 ? 'Request Timeout' : 'Bad Request'}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });
  return server;
}

interface BodyLimits {
  readonly maxBodyBytes: number;
  readonly requestTimeoutMs: number;
  readonly slabs?: BodySlabs;
  readonly bodiesInSlabs?: boolean;
}

async function serve(runtime: Runtime, req: IncomingMessage, res: ServerResponse, limits: BodyLimits): Promise<void> {
  let slab: BodySlab | undefined;
  try {
    const url = requestUrl(req.url);
    if (url === undefined) return refuse(req, res, 400, 'invalid_input', 'the request target is not a valid path');
    // A request no route takes is answered 404/405 whatever its body is coded in.
    let coding: ContentCoding = 'identity';
    try {
      if (isRouted(req.method ?? 'GET', url.pathname)) coding = requestCoding(header(req.headers['content-encoding']));
    } catch (error) {
      return refuseWith(req, res, error as HttpError);
    }
    const arrived = performance.now();
    const declared = Number(req.headers['content-length']);
    if (declared > limits.maxBodyBytes) return refuseWith(req, res, tooLarge(limits.maxBodyBytes, false));
    if (limits.slabs && req.method === 'POST') {
      const taken = await takeSlab(req, limits.slabs, limits.requestTimeoutMs);
      if (taken === 'gone') return;
      if (taken === 'timed out') {
        return refuse(req, res, 503, 'overloaded', 'the server is at capacity; retry shortly', {
          'retry-after': String(DEFAULTS.retryAfterSeconds),
        });
      }
      slab = taken;
    }
    const waited = performance.now() - arrived;
    const plain = coding === 'identity' && Number.isSafeInteger(declared) && declared > 0;
    const read =
      slab && limits.bodiesInSlabs && plain
        ? await readIntoSlab(req, slab, declared)
        : await readBody(req, limits.maxBodyBytes, coding);
    if ('refused' in read) return refuseWith(req, res, read.refused);
    // A wait for a slab is part of the request's time: the runtime gets what is left of it.
    const handleOptions = waited >= 1 ? { timeoutMs: limits.requestTimeoutMs - waited } : undefined;
    const response = await runtime.handle(toInternal(req, url, read.body), handleOptions);
    await send(res, response, responseCoding(header(req.headers['accept-encoding'])));
  } catch (error) {
    runtime.log.warn('connection failed', { error: error as Error });
    res.destroy();
  } finally {
    slab?.release();
  }
}

/** A slab for the body, waiting at most the request timeout; 'gone' when the client left meanwhile. */
async function takeSlab(
  req: IncomingMessage,
  slabs: BodySlabs,
  timeoutMs: number,
): Promise<BodySlab | 'gone' | 'timed out'> {
  // The common case, a slab free at once, costs no abort signal or listener.
  const free = slabs.tryAcquire();
  if (free) return free;
  const gone = new AbortController();
  const onClose = (): void => gone.abort();
  req.once('close', onClose);
  const slab = await slabs.acquire({ timeoutMs, signal: gone.signal });
  req.off('close', onClose);
  if (slab) return slab;
  return gone.signal.aborted ? 'gone' : 'timed out';
}

/**
 * A plain body of declared length, copied chunk by chunk into its slab as it arrives (node's parser stops at the
 * declared length), placed as `readBody` places it.
 */
function readIntoSlab(req: IncomingMessage, slab: BodySlab, length: number): Promise<{ readonly body: Buffer }> {
  const pad = binaryPad(req);
  const body = slab.bytes(pad + length).subarray(pad);
  return new Promise((resolve, reject) => {
    let received = 0;
    req.on('data', (chunk: Buffer) => {
      if (chunk.length === 0) return;
      if (received + chunk.length > body.length) return reject(new Error('the body is longer than its content-length'));
      // fill copies with memcpy; Buffer#copy into shared memory copies word by word.
      body.fill(chunk, received, received + chunk.length);
      received += chunk.length;
    });
    req.once('end', () => resolve({ body: body.subarray(0, received) }));
    req.once('error', reject);
  });
}

/** Bytes before the body so that an OIP binary part starts 8-byte aligned (its tensors are then views). */
function binaryPad(req: IncomingMessage): number {
  const binaryAt = Number(req.headers[BINARY_HEADER]);
  return Number.isSafeInteger(binaryAt) && binaryAt >= 0 ? (8 - (binaryAt % 8)) % 8 : 0;
}

/**
 * Reads the whole body, inflating it as it arrives when it is compressed, or refuses it as soon as it (or what it
 * inflates to) passes the limit (a declared length past it is refused before, by `serve`). The body lands in memory of its own (never Node's shared pool), placed so that an
 * OIP binary part starts 8-byte aligned: tensors decode as views into it, and the worker pool moves it to a worker
 * instead of copying.
 */
function readBody(
  req: IncomingMessage,
  maxBodyBytes: number,
  coding: ContentCoding,
): Promise<{ readonly body: Buffer } | { readonly refused: HttpError }> {
  const pad = binaryPad(req);
  const inflate = decoder(coding);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let length = 0;
    let received = 0;
    let settled = false;
    const finish = (result: { readonly body: Buffer } | { readonly refused: HttpError }): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      if (inflate) {
        inflate.off('data', onDecoded);
        inflate.destroy();
      }
      resolve(result);
    };
    const onDecoded = (chunk: Buffer): void => {
      length += chunk.length;
      if (length > maxBodyBytes) return finish({ refused: tooLarge(maxBodyBytes, inflate !== undefined) });
      chunks.push(chunk);
    };
    const onData = (chunk: Buffer): void => {
      received += chunk.length;
      if (received > maxBodyBytes) return finish({ refused: tooLarge(maxBodyBytes, false) });
      if (inflate) inflate.write(chunk);
      else onDecoded(chunk);
    };
    const done = (): void => {
      if (!settled) finish({ body: ownedCopy(chunks, length, pad) });
    };
    if (inflate) {
      inflate.on('data', onDecoded);
      inflate.once('end', done);
      inflate.once('error', (error) => finish({ refused: badlyEncoded(coding, error) }));
    }
    req.on('data', onData);
    req.once('end', () => (inflate ? inflate.end() : done()));
    req.once('error', (error) => {
      if (settled) return;
      settled = true;
      inflate?.destroy();
      reject(error);
    });
  });
}

function ownedCopy(chunks: readonly Buffer[], length: number, pad: number): Buffer {
  const body = Buffer.from(ownedBuffer(pad + length), pad, length);
  let offset = 0;
  for (const chunk of chunks) offset += chunk.copy(body, offset);
  return body;
}

function header(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(', ') : value;
}

/** An HttpError answered before (or while) the body is read: the rest of the upload is dropped, never buffered. */
function refuseWith(req: IncomingMessage, res: ServerResponse, error: HttpError): void {
  refuse(req, res, error.status, error.code, error.message, { ...error.headers });
}

/** An error answer without reading the body, with `connection: close`; the upload is dropped, never buffered. */
function refuse(
  req: IncomingMessage,
  res: ServerResponse,
  status: number,
  code: string,
  message: string,
  headers: Record<string, string> = {},
): void {
  const requestId = requestIdFrom(req.headers[REQUEST_ID_HEADER] as string | undefined);
  const body = errorBodyJson(code, message, requestId);
  res.shouldKeepAlive = false;
  const socket = req.socket;
  // Once a closing response is written, node destroys the socket (destroySoon). A client still uploading then gets
  // a reset, and its TCP stack drops the 413 it has not read yet. Half-close instead: send FIN, keep reading (and
  // dropping) the upload until the client closes its side or LINGER_MS pass.
  socket.destroySoon = () => {
    socket.end();
  };
  res.writeHead(status, {
    ...headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    connection: 'close',
    [REQUEST_ID_HEADER]: requestId,
  });
  res.end(body);
  req.on('data', () => undefined);
  const timer = setTimeout(() => socket.destroy(), LINGER_MS);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
}

/**
 * The request target as a URL. An origin-form target is read as a path even when it starts with `//` (which URL
 * would take for a host, so `//v2/...` routed elsewhere and `//` threw); an absolute-form one as it is; else undefined.
 */
function requestUrl(target: string | undefined): URL | undefined {
  const raw = target ?? '/';
  try {
    return raw.startsWith('/') ? new URL(`http://localhost${raw}`) : new URL(raw, 'http://localhost');
  } catch {
    return undefined;
  }
}

function toInternal(req: IncomingMessage, url: URL, body: Buffer): InternalRequest {
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(req.headers)) {
    if (value !== undefined) headers[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  // The body was decoded as it arrived: what the runtime sees is the plain body.
  delete headers['content-encoding'];
  return {
    method: req.method ?? 'GET',
    path: url.pathname,
    query: Object.fromEntries(url.searchParams),
    headers,
    body,
  };
}

/** Sends a response, compressed when the client accepts it, it is large enough to gain, and not compressed already. */
async function send(
  res: ServerResponse,
  response: InternalResponse,
  coding: 'gzip' | 'deflate' | undefined,
): Promise<void> {
  let { body } = response;
  const headers: Record<string, string | number | string[]> = { ...response.headers };
  if (coding && body.length >= COMPRESS_MIN_BYTES && headers['content-encoding'] === undefined) {
    body = await (coding === 'gzip' ? gzip : deflate)(body, RESPONSE_ZLIB_OPTIONS);
    headers['content-encoding'] = coding;
    headers['vary'] = headers['vary'] ? `${String(headers['vary'])}, accept-encoding` : 'accept-encoding';
  }
  if (response.cookies) headers['set-cookie'] = [...response.cookies];
  res.writeHead(response.status, { ...headers, 'content-length': body.length });
  res.end(body);
}

/** Listens and resolves with the bound address. */
export function listen(server: Server, port: number, host: string): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
