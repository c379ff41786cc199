/**
 * `arclight predict`: POSTs a payload to an API and prints the answer; non-zero exit on an HTTP error. The target is
 * a URL or the name of an API of the app (its deployed URL and auth read from the stack). IAM APIs get SigV4-signed
 * requests (service `execute-api`, the standard credential chain); JWT APIs the bearer token of `--token` or
 * ARCLIGHT_TOKEN. An image (PNG, JPEG) given to an Open Inference Protocol API becomes its input tensor.
 */
import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { readErrorBody } from '../runtime/codec/json.js';
import { StartupError } from '../runtime/startup-error.js';
import { UsageError } from './fail.js';
import { decodeImage, imageKind, imageTensor, type InputSignature, type NormalizeOptions } from './image-tensor.js';
import type { AppSource } from './aws/app-apis.js';
import type { AwsOptions } from './aws/clients.js';
import type { AwsCredentials } from './aws/sigv4.js';

/** How requests prove who sends them. `auto`: the API's own auth when named, else by the URL and the token. */
export const AUTH_MODES = ['auto', 'iam', 'jwt', 'none'] as const;
export type AuthMode = (typeof AUTH_MODES)[number];

export interface PredictOptions extends AwsOptions, AppSource, NormalizeOptions {
  readonly data?: string;
  readonly file?: string;
  readonly contentType?: string;
  readonly timeoutMs: number;
  /** @default 'auto' */
  readonly auth?: AuthMode;
  /** The JWT for `jwt` auth. @default ARCLIGHT_TOKEN */
  readonly token?: string;
  /** Send an image file's bytes as they are, not as a tensor. */
  readonly raw?: boolean;
}

export interface PredictOutcome {
  readonly status: number;
  readonly body: string;
}

/** Sends requests with the chosen auth: signed, with a bearer token, or bare. */
interface Sender {
  send(method: string, url: URL, headers: Record<string, string>, body?: Buffer | string): Promise<Response>;
}

export async function predict(target: string, options: PredictOptions): Promise<PredictOutcome> {
  if (options.data !== undefined && options.file !== undefined) throw new UsageError('give --data or --file, not both');
  const { url, auth, region } = await resolveTarget(target, options);
  const sender = await senderFor(url, auth, { ...options, region: options.region ?? region });
  const file = options.file === undefined ? undefined : await readPayloadFile(options.file);
  if (file !== undefined && imageKind(file) !== undefined && options.raw !== true) {
    const imageCall = await imageRequest(url, file, options, sender);
    const response = await sender.send(
      'POST',
      imageCall.url,
      { 'content-type': imageCall.contentType },
      imageCall.body,
    );
    return { status: response.status, body: await response.text() };
  }
  const { body, contentType } = payloadOf(options, file);
  const response = await sender.send('POST', url, { 'content-type': options.contentType ?? contentType }, body);
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
  if (!error) {
    // API Gateway's own refusals: `{"message":"Forbidden"}` (IAM), `{"message":"Unauthorized"}` (JWT).
    const message = (parsed as { message?: unknown } | undefined)?.message;
    const hint =
      outcome.status === 403
        ? ' (an IAM API: sign with --auth iam and credentials allowed execute-api:Invoke)'
        : outcome.status === 401
          ? ' (a JWT API: pass --token or set ARCLIGHT_TOKEN)'
          : '';
    return `arclight: HTTP ${outcome.status}${typeof message === 'string' ? `: ${message}` : ''}${hint}`;
  }
  const code = error.code ? ` ${error.code}` : '';
  const id = error.requestId ? ` (request id ${error.requestId})` : '';
  return `arclight: HTTP ${outcome.status}${code}: ${error.error}${id}`;
}

async function resolveTarget(
  target: string,
  options: PredictOptions,
): Promise<{ url: URL; auth: Exclude<AuthMode, 'auto'>; region?: string }> {
  const token = tokenOf(options);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(target)) {
    const url = parseUrl(target);
    const { regionOfApiUrl } = await import('./aws/sigv4.js');
    const auth = options.auth ?? 'auto';
    if (auth !== 'auto') return { url, auth };
    if (token !== undefined) return { url, auth: 'jwt' };
    return { url, auth: regionOfApiUrl(url) === undefined ? 'none' : 'iam' };
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_-]*$/.test(target)) {
    throw new UsageError(
      `'${target}' is neither a URL nor an API name`,
      'Write a URL like http://127.0.0.1:8080/ or an API name',
    );
  }
  const { findApi, loadAppApis } = await import('./aws/app-apis.js');
  const { describeDeployed } = await import('./aws/deployed.js');
  const api = findApi(await loadAppApis(options), target);
  const [deployed] = await describeDeployed([api], options);
  if (deployed?.url === undefined) {
    throw new StartupError(
      `the stack ${api.stackName} has no URL output for API '${target}' (status ${deployed?.stackStatus ?? 'unknown'})`,
      'Deploy the app again so its outputs are current',
    );
  }
  const auth = options.auth === undefined || options.auth === 'auto' ? api.auth : options.auth;
  return { url: parseUrl(deployed.url), auth, region: deployed.region };
}

async function senderFor(url: URL, auth: Exclude<AuthMode, 'auto'>, options: PredictOptions): Promise<Sender> {
  const send = async (
    method: string,
    target: URL,
    headers: Record<string, string>,
    body?: Buffer | string,
  ): Promise<Response> => {
    try {
      return await fetch(target, { method, headers, body, signal: AbortSignal.timeout(options.timeoutMs) });
    } catch (error) {
      const cause = (error as Error & { cause?: NodeJS.ErrnoException }).cause;
      throw new StartupError(
        `cannot reach ${target.href}: ${cause?.code ?? cause?.message ?? (error as Error).message}`,
        'Is the API running? Check the URL',
        { cause: error },
      );
    }
  };
  if (auth === 'none') return { send };
  if (auth === 'jwt') {
    const token = tokenOf(options);
    if (token === undefined) {
      throw new UsageError('the API takes a JWT and none was given', 'Pass --token <jwt> or set ARCLIGHT_TOKEN');
    }
    const bearer = `Bearer ${token.trim().replace(/^Bearer\s+/i, '')}`;
    return {
      send: (method, target, headers, body) => send(method, target, { ...headers, authorization: bearer }, body),
    };
  }
  const { loadCredentials, regionOfApiUrl, signRequest } = await import('./aws/sigv4.js');
  const region =
    options.region ??
    regionOfApiUrl(url) ??
    (process.env['AWS_REGION'] || process.env['AWS_DEFAULT_REGION'] || undefined);
  if (region === undefined) {
    throw new UsageError(`cannot tell the region of ${url.host} to sign for`, 'Pass --region <region>');
  }
  const credentials: AwsCredentials = await loadCredentials(options.profile);
  return {
    send: async (method, target, headers, body) =>
      send(method, target, await signRequest({ method, url: target, headers, body }, { credentials, region }), body),
  };
}

/** `--token`, else ARCLIGHT_TOKEN; an empty one is none. */
function tokenOf(options: PredictOptions): string | undefined {
  const token = (options.token ?? process.env['ARCLIGHT_TOKEN'])?.trim();
  return token === undefined || token === '' ? undefined : token;
}

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new UsageError(`'${url}' is not a URL`, 'Write it like http://127.0.0.1:8080/');
  }
}

async function readPayloadFile(file: string): Promise<Buffer> {
  return readFile(file).catch((error: NodeJS.ErrnoException) => {
    throw new UsageError(`--file ${file} cannot be read (${error.code ?? error.message})`);
  });
}

function payloadOf(options: PredictOptions, file: Buffer | undefined): { body: Buffer | string; contentType: string } {
  if (file !== undefined) {
    const kind = imageKind(file);
    const contentType =
      extname(options.file!) === '.json' ? 'application/json' : kind ? `image/${kind}` : 'application/octet-stream';
    return { body: file, contentType };
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

/**
 * An image for an API: to a custom predictor its bytes as they are (`image/png`, `image/jpeg`), since its code decodes
 * them; to the Open Inference Protocol predictor the tensor the model's metadata asks for, at `/v2/models/{name}/infer`.
 */
async function imageRequest(
  url: URL,
  bytes: Buffer,
  options: PredictOptions,
  sender: Sender,
): Promise<{ url: URL; body: Buffer | string; contentType: string }> {
  const base = new URL(url.pathname.replace(/v2\/models\/[^/]+\/infer\/?$/, '').replace(/\/?$/, '/'), url);
  const identity = (await getJson(sender, base, options)) as { name?: unknown; predictor?: unknown };
  if (identity.predictor === 'custom') {
    return { url, body: bytes, contentType: options.contentType ?? `image/${imageKind(bytes)}` };
  }
  if (typeof identity.name !== 'string') {
    throw new StartupError(
      `${base.href} did not describe an Arclight API (no "name")`,
      'Pass --raw to send the file as it is',
    );
  }
  const modelPath = `v2/models/${encodeURIComponent(identity.name)}`;
  const metadata = (await getJson(sender, new URL(modelPath, base), options)) as { inputs?: InputSignature[] };
  const inputs = metadata.inputs ?? [];
  if (inputs.length !== 1) {
    throw new UsageError(
      `the model takes ${inputs.length} inputs (${inputs.map((i) => i.name).join(', ')}); an image fills one`,
      'Send an Open Inference Protocol request with --data or --file <request.json>',
    );
  }
  const tensor = imageTensor(decodeImage(bytes, options.file!), inputs[0]!, options);
  return {
    url: new URL(`${modelPath}/infer`, base),
    body: JSON.stringify({ inputs: [tensor] }),
    contentType: 'application/json',
  };
}

async function getJson(sender: Sender, url: URL, options: PredictOptions): Promise<unknown> {
  const response = await sender.send('GET', url, { accept: 'application/json' });
  const text = await response.text();
  if (!response.ok) {
    throw new StartupError(
      `GET ${url.href} answered ${response.status}, so the model's input is unknown: ${text.slice(0, 200)}`,
      options.raw ? undefined : 'Pass --raw to send the file as it is',
    );
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new StartupError(`GET ${url.href} did not answer JSON`, 'Pass --raw to send the file as it is');
  }
}
