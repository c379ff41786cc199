/**
 * A loopback HTTP server answering the real AWS SDK clients (pointed at it with AWS_ENDPOINT_URL) with recorded
 * responses in the shapes the AWS API references document: CloudFormation's query protocol (XML), the JSON 1.0/1.1
 * protocols of CloudWatch, CloudWatch Logs, SageMaker and ECS (X-Amz-Target), and Lambda's REST JSON. Each
 * operation answers from a queue (its last entry repeats); every call is recorded with its parameters.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface FixtureResponse {
  /** @default 200 */
  readonly status?: number;
  /** XML text (query protocol) or a JSON value. */
  readonly body: string | object;
}

export interface FixtureCall {
  readonly operation: string;
  readonly params: Record<string, unknown>;
  readonly headers: Record<string, string | string[] | undefined>;
}

/** A handler for a path outside AWS's (the API itself, for `predict <api>`). */
export type PathHandler = (request: {
  method: string;
  path: string;
  headers: FixtureCall['headers'];
  body: Buffer;
}) => {
  status: number;
  body: string;
};

export class AwsFixtureServer {
  readonly calls: FixtureCall[] = [];
  private readonly queues = new Map<string, FixtureResponse[]>();
  private readonly paths = new Map<string, PathHandler>();
  private server?: Server;
  url = '';

  /** Answers `operation` with `responses` in turn, the last one from then on. */
  on(operation: string, ...responses: FixtureResponse[]): this {
    this.queues.set(operation, [...responses]);
    return this;
  }

  /** Answers requests under `prefix` (not AWS calls) with `handler`. */
  onPath(prefix: string, handler: PathHandler): this {
    this.paths.set(prefix, handler);
    return this;
  }

  callsOf(operation: string): FixtureCall[] {
    return this.calls.filter((call) => call.operation === operation);
  }

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const body = Buffer.concat(chunks);
        const path = request.url ?? '/';
        const handler = [...this.paths.entries()].find(([prefix]) => path.startsWith(prefix))?.[1];
        if (handler) {
          const answer = handler({ method: request.method ?? 'GET', path, headers: request.headers, body });
          response.writeHead(answer.status, { 'content-type': 'application/json' });
          response.end(answer.body);
          return;
        }
        const { operation, params, json } = this.identify(request.method ?? 'GET', path, request.headers, body);
        this.calls.push({ operation, params, headers: request.headers });
        const queue = this.queues.get(operation);
        const next = queue && queue.length > 1 ? queue.shift()! : queue?.[0];
        if (!next) {
          response.writeHead(400, { 'content-type': 'application/json' });
          response.end(JSON.stringify({ __type: 'UnknownOperationException', message: `no fixture for ${operation}` }));
          return;
        }
        const text = typeof next.body === 'string' ? next.body : JSON.stringify(next.body);
        response.writeHead(next.status ?? 200, {
          'content-type': typeof next.body === 'string' ? 'text/xml' : json,
          'x-amzn-requestid': `fixture-${this.calls.length}`,
        });
        response.end(text);
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  close(): Promise<void> {
    return new Promise((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }

  private identify(
    method: string,
    path: string,
    headers: FixtureCall['headers'],
    body: Buffer,
  ): { operation: string; params: Record<string, unknown>; json: string } {
    const target = headers['x-amz-target'];
    if (typeof target === 'string') {
      const json = String(headers['content-type'] ?? 'application/x-amz-json-1.1');
      return {
        operation: target.split('.').at(-1)!,
        params: body.length === 0 ? {} : (JSON.parse(body.toString()) as Record<string, unknown>),
        json,
      };
    }
    if (String(headers['content-type'] ?? '').startsWith('application/x-www-form-urlencoded')) {
      const form = Object.fromEntries(new URLSearchParams(body.toString()));
      return { operation: String(form['Action']), params: form, json: 'text/xml' };
    }
    const lambda = /^\/2015-03-31\/functions\/([^/?]+)/.exec(path);
    if (method === 'GET' && lambda) {
      return {
        operation: 'GetFunction',
        params: { FunctionName: decodeURIComponent(lambda[1]!) },
        json: 'application/json',
      };
    }
    return { operation: `${method} ${path}`, params: {}, json: 'application/json' };
  }
}

/** CloudFormation's query-protocol error (what Throttling and ValidationError look like on the wire). */
export function queryError(code: string, message: string, status = 400): FixtureResponse {
  return {
    status,
    body: `<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>b0e91dc8-3e1a-4f0a-9d4e-000000000000</RequestId></ErrorResponse>`,
  };
}

/** A JSON-protocol error (`__type`), as CloudWatch Logs, SageMaker and ECS send it. */
export function jsonError(type: string, message: string, status = 400): FixtureResponse {
  return { status, body: { __type: type, message } };
}
