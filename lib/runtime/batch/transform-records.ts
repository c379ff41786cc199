/**
 * The container's answers inside a SageMaker batch transform: a transform job stops at the first record its container
 * answers with an error, so with `ARCLIGHT_TRANSFORM_RECORDS=on` (set on the BatchJob's model) every `POST
 * /invocations` is answered 200 with one line of JSON, the record's outcome: `{"ok":true,"status","contentType",
 * "output"|"outputBase64"}` or `{"ok":false,"status","error":{error,code,requestId}}` (the contract's error). A
 * failing record is then a line of the output like any other, and the split step (transform-split.ts) turns the
 * lines into results and the failures manifest. The envelope is one line (no newline inside), as `AssembleWith: Line`
 * joins records with newlines.
 */
import type { IncomingMessage, RequestListener, Server, ServerResponse } from 'node:http';
import { ENV, REQUEST_ID_HEADER, ROUTES } from '../../contract.js';
import { errorBodyOf, resultRecord } from './batch-item-runner.js';
import type { FailureRecord, ResultRecord } from './batch-layout.js';

/** The env var that turns the envelope on (the BatchJob's SageMaker model sets it). */
export const TRANSFORM_RECORDS_ENV = ENV.transformRecords;

/** One record's outcome, as the transform output holds it. */
export type TransformRecord =
  | ({ readonly ok: true } & Omit<ResultRecord, 'id' | 'source' | 'line'>)
  | ({ readonly ok: false } & Omit<FailureRecord, 'id' | 'source' | 'line'>);

/** The envelope line for an answer of the runtime. */
export function transformRecord(status: number, contentType: string, body: Buffer, requestId: string): TransformRecord {
  if (status >= 200 && status < 300) {
    const result = resultRecord({ id: '', source: '' }, status, contentType, body);
    return {
      ok: true,
      status: result.status,
      contentType: result.contentType,
      ...('output' in result ? { output: result.output } : {}),
      ...(result.outputBase64 !== undefined ? { outputBase64: result.outputBase64 } : {}),
    };
  }
  return { ok: false, status, error: errorBodyOf(body, contentType, requestId) };
}

/** Wraps the server's request listeners so that `POST /invocations` answers are enveloped. Install it last. */
export function envelopeTransformRecords(server: Server): void {
  const serve = server.listeners('request') as RequestListener[];
  server.removeAllListeners('request');
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const url = req.url ?? '';
    if (req.method === 'POST' && (url === ROUTES.invocations || url.startsWith(`${ROUTES.invocations}?`))) {
      captureInto(res);
    }
    for (const listener of serve) listener(req, res);
  });
}

/** Buffers what the handler writes, then sends its envelope as a 200 JSON line instead. */
function captureInto(res: ServerResponse): void {
  const writeHead = res.writeHead.bind(res);
  const end = res.end.bind(res);
  const chunks: Buffer[] = [];
  let status = 200;
  const headers: Record<string, string> = {};
  const toBuffer = (chunk: unknown): Buffer =>
    Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk instanceof Uint8Array ? chunk : String(chunk));
  res.writeHead = ((code: number, ...rest: unknown[]) => {
    status = code;
    const given = rest.find((r) => typeof r === 'object' && r !== null) as
      Record<string, string | number | string[]> | undefined;
    for (const [name, value] of Object.entries(given ?? {})) headers[name.toLowerCase()] = String(value);
    return res;
  }) as ServerResponse['writeHead'];
  res.write = ((chunk: unknown) => {
    chunks.push(toBuffer(chunk));
    return true;
  }) as ServerResponse['write'];
  res.end = ((chunk?: unknown) => {
    if (chunk !== undefined && typeof chunk !== 'function') chunks.push(toBuffer(chunk));
    const header = (name: string): string | undefined => headers[name] ?? (res.getHeader(name) as string | undefined);
    const record = transformRecord(
      status,
      header('content-type') ?? 'application/octet-stream',
      Buffer.concat(chunks),
      header(REQUEST_ID_HEADER) ?? '',
    );
    // No newline of its own: AssembleWith Line puts one after each record.
    const body = JSON.stringify(record);
    res.removeHeader('content-length');
    writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    return end(body);
  }) as ServerResponse['end'];
}
