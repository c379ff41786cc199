/**
 * A bandwidth-capping TCP proxy on loopback: each connection's server → client bytes pass through its own token
 * bucket (as S3 limits each connection, about 40 MB/s), client → server bytes pass untouched.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface ThrottleProxy {
  /** `http://127.0.0.1:<port>`: point the S3 endpoint here. */
  readonly endpoint: string;
  /** Connections opened so far. */
  connections(): number;
  close(): Promise<void>;
}

/** Bytes a connection may send at once before the rate applies (a small burst, as TCP windows allow). */
const BURST = 64 * 1024;
/** Largest slice written at once, so pacing is smooth. */
const SLICE = 64 * 1024;

export async function startThrottleProxy(
  target: { host: string; port: number },
  bytesPerSecond: number,
): Promise<ThrottleProxy> {
  let opened = 0;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    opened++;
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    // Token bucket in virtual time: each slice is due when the bucket has refilled for it.
    let nextFree = performance.now() - (BURST / bytesPerSecond) * 1000;
    let queue: Buffer[] = [];
    let timer: NodeJS.Timeout | undefined;
    const drain = (): void => {
      timer = undefined;
      while (queue.length > 0) {
        const now = performance.now();
        nextFree = Math.max(nextFree, now - (BURST / bytesPerSecond) * 1000);
        const slice = queue[0]!;
        const due = nextFree + (slice.length / bytesPerSecond) * 1000;
        if (due > now + (BURST / bytesPerSecond) * 1000) {
          timer = setTimeout(drain, Math.max(1, due - now - (BURST / bytesPerSecond) * 1000));
          return;
        }
        queue.shift();
        nextFree = due;
        client.write(slice);
      }
      upstream.resume();
    };
    upstream.on('data', (chunk: Buffer) => {
      for (let i = 0; i < chunk.length; i += SLICE) queue.push(chunk.subarray(i, i + SLICE));
      upstream.pause();
      if (!timer) drain();
    });
    const finish = (): void => {
      const flushRest = (): void => {
        if (queue.length > 0 || timer) setTimeout(flushRest, 5);
        else client.end();
      };
      flushRest();
    };
    upstream.on('end', finish);
    const destroy = (): void => {
      if (timer) clearTimeout(timer);
      queue = [];
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    upstream.on('error', destroy);
    client.on('error', destroy);
    client.on('close', destroy);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    endpoint: `http://127.0.0.1:${port}`,
    connections: () => opened,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
