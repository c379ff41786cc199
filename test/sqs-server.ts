/**
 * A real SQS API on loopback for tests: fauxqs (an SQS emulator speaking the AWS JSON protocol the SDK uses) in this
 * process, reached by the real @aws-sdk/client-sqs over HTTP. fauxqs imports node:sqlite for its optional on-disk
 * persistence, which Node.js has from 22.5 only; on older Node a resolve hook gives it a stand-in that throws if used
 * (these tests keep every queue in memory, so it never is).
 */
import { register } from 'node:module';
import { SQSClient } from '@aws-sdk/client-sqs';

export interface SqsServer {
  readonly endpoint: string;
  /** A client of this server with the real SDK. */
  client(): SQSClient;
  /** Creates a queue; its URL. */
  createQueue(name: string, attributes?: Record<string, string>): string;
  /** Messages of a queue by state (waiting, delayed, in flight), without receiving them. */
  inspect(name: string): { ready: number; delayed: number; inflight: number };
  stop(): Promise<void>;
}

const SQLITE_STAND_IN = `data:text/javascript,${encodeURIComponent(
  'export class DatabaseSync { constructor() { throw new Error("node:sqlite needs Node.js 22.5"); } }',
)}`;
const HOOK = `data:text/javascript,${encodeURIComponent(`
export async function resolve(specifier, context, next) {
  if (specifier === 'node:sqlite') return { url: ${JSON.stringify(SQLITE_STAND_IN)}, shortCircuit: true };
  return next(specifier, context);
}`)}`;

let hooked = false;

function needsStandIn(): boolean {
  const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
  return major < 22 || (major === 22 && minor < 5);
}

export async function startSqsServer(): Promise<SqsServer> {
  if (needsStandIn() && !hooked) {
    register(HOOK);
    hooked = true;
  }
  const { startFauxqs } = await import('fauxqs');
  const server = await startFauxqs({ port: 0, host: '127.0.0.1', logger: false });
  const endpoint = `http://127.0.0.1:${server.port}`;
  const clients: SQSClient[] = [];
  return {
    endpoint,
    client() {
      const client = new SQSClient({
        region: 'us-east-1',
        endpoint,
        credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
      });
      clients.push(client);
      return client;
    },
    createQueue(name, attributes = {}) {
      // fauxqs names its host as sqs.<region>.<host>; the URL given out names the server itself, as an SQS queue URL
      // names its region's endpoint (the SDK sends a queue's requests to its URL's host).
      return server.createQueue(name, { attributes }).queueUrl.replace(/^https?:\/\/[^/]+/, endpoint);
    },
    inspect(name) {
      const messages = server.inspectQueue(name)?.messages;
      return {
        ready: messages?.ready.length ?? 0,
        delayed: messages?.delayed.length ?? 0,
        inflight: messages?.inflight.length ?? 0,
      };
    },
    async stop() {
      for (const client of clients) client.destroy();
      await server.stop();
    },
  };
}
