/** `arclight predict`: POSTs a payload to an API and prints the answer; non-zero exit on an HTTP error. */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { readErrorBody } from '../runtime/codec/json.js';
import { StartupError } from '../runtime/startup-error.js';
import { UsageError } from './fail.js';

export interface PredictOptions {
  readonly data?: string;
  readonly file?: string;
  readonly contentType?: string;
  readonly timeoutMs: number;
}

export interface PredictOutcome {
  readonly status: number;
  readonly body: string;
}

export async function predict(url: string, options: PredictOptions): Promise<PredictOutcome> {
  if (options.data !== undefined && options.file !== undefined) throw new UsageError('give --data or --file, not both');
  const target = parseUrl(url);
  const { body, contentType } = await payloadOf(options);
  let response: Response;
  try {
    response = await fetch(target, {
      method: 'POST',
      headers: { 'content-type': options.contentType ?? contentType },
      body,
      signal: AbortSignal.timeout(options.timeoutMs),
    });
  } catch (error) {
    const cause = (error as Error & { cause?: NodeJS.ErrnoException }).cause;
    throw new StartupError(
      `cannot reach ${target.href}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
      'Is the API running? Check the URL',
      {
        cause: error,
      },
    );
  }
  return { status: response.status, body: await response.text() };
}

/** The line a failed call prints: the status, and the contract's error body read when the API sent one. */
export function failureLine(outcome: PredictOutcome): string {
  let parsed: unknown;
  try {
    parsed = JSON.parse(outcome.body);
  } catch {
    parsed = undefined;
  }
  const error = readErrorBody(parsed);
  if (!error) return `arclight: HTTP ${outcome.status}`;
  const code = error.code ? ` ${error.code}` : '';
  const id = error.requestId ? ` (request id ${error.requestId})` : '';
  return `arclight: HTTP ${outcome.status}${code}: ${error.error}${id}`;
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new UsageError(`'${url}' is not a URL`, 'Write it like http://127.0.0.1:8080/');
  }
}

async function payloadOf(options: PredictOptions): Promise<{ body: Buffer | string; contentType: string }> {
  if (options.file !== undefined) {
    const body = await readFile(options.file).catch((error: NodeJS.ErrnoException) => {
      throw new UsageError(`--file ${options.file} cannot be read (${error.code ?? error.message})`);
    });
    return { body, contentType: extname(options.file) === '.json' ? 'application/json' : 'application/octet-stream' };
  }
  if (options.data === undefined) throw new UsageError('nothing to send', 'Pass --data <json> or --file <path>');
  try {
    JSON.parse(options.data);
  } catch (error) {
    throw new UsageError(
      `--data is not valid JSON: ${(error as Error).message}`,
      'Quote it for your shell: --data \'{"pixels": [...]}\'',
    );
  }
  return { body: options.data, contentType: 'application/json' };
}
