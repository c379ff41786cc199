/**
 * A custom predictor's declared schemas at work: each request's payload is validated before `predict` sees it (a 400
 * naming the first bad field and what was expected), and in dev and test mode each response is checked against the
 * declared response (a 500 saying where it differs, so the mistake shows while the predictor is being written).
 */
import type { DeclaredSchema, DefinedPredictor, PredictRequest, SchemaIssue } from '../../predictor.js';
import { isPredictorResponse } from './codec.js';
import { httpError } from './http-errors.js';
import { clipText } from './json.js';

/** The request as `predict` receives it: its payload replaced by the request schema's output. */
export async function validatedRequest(
  predictor: DefinedPredictor<unknown>,
  request: PredictRequest,
): Promise<PredictRequest> {
  const schema = declared(predictor, 'request');
  if (!schema) return request;
  // Decoding the payload may throw the codec's own 400 (malformed JSON); it stays as it is.
  const payload = request.payload;
  const result = await schema['~standard'].validate(payload);
  if (result.issues === undefined) return withPayload(request, result.value);
  if (payload === undefined || typeof payload === 'string' || Buffer.isBuffer(payload)) {
    const sent = request.headers['content-type'];
    throw httpError(
      'unsupported_media_type',
      `send Content-Type: application/json: this predictor declares a JSON request (${sent ? `got ${clipText(sent, 64)}` : payload === undefined ? 'the body was empty' : 'no content type was sent'}); ${describeIssue(result.issues)}`,
    );
  }
  throw httpError('invalid_input', `invalid request body: ${describeIssue(result.issues)}`);
}

/** Checks a result against the declared response schema; throws a 500 saying where it differs. */
export async function checkResponse(predictor: DefinedPredictor<unknown>, result: unknown): Promise<void> {
  const schema = declared(predictor, 'response');
  if (!schema) return;
  const body = fullControlBody(result);
  if (body === SKIP) return;
  const checked = await schema['~standard'].validate(body);
  if (checked.issues === undefined) return;
  throw httpError(
    'predictor_error',
    `the predictor's response does not match its declared response schema (checked in dev and test mode): ${describeIssue(checked.issues)}`,
  );
}

/** Whether responses are checked: `ARCLIGHT_CHECK_RESPONSES` on/off, else on when NODE_ENV is development or test. */
export function checkResponsesByDefault(value: string | undefined, nodeEnv: string | undefined): boolean {
  if (value === 'on') return true;
  if (value === 'off') return false;
  return nodeEnv === 'development' || nodeEnv === 'test';
}

const SKIP = Symbol('skip');

/** The JSON a result answers with: a full-control response's body when its status is a success, else the result. */
function fullControlBody(result: unknown): unknown {
  if (!isPredictorResponse(result)) return result;
  // Errors and redirects answer with bodies of their own, not the declared response.
  if (result.status < 200 || result.status > 299) return SKIP;
  return ArrayBuffer.isView(result.body) ? SKIP : result.body;
}

function declared(predictor: DefinedPredictor<unknown>, key: 'request' | 'response'): DeclaredSchema | undefined {
  return (predictor as { readonly [k in typeof key]?: DeclaredSchema })[key];
}

function withPayload(request: PredictRequest, payload: unknown): PredictRequest {
  return {
    payload,
    query: request.query,
    headers: request.headers,
    method: request.method,
    path: request.path,
    get body() {
      return request.body;
    },
  };
}

/**
 * The first issue as `at <path>: <what was expected>`, plus how many others there are. A union's issue (zod's
 * `invalid_union`, which says only "Invalid input") is replaced by the deepest issue among its branches, which names
 * the field that is wrong.
 */
export function describeIssue(issues: readonly SchemaIssue[]): string {
  const first = deepest(issues[0]!);
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return `at ${formatPath(first.path)}: ${clipText(first.message, 200)}${more}`;
}

function deepest(issue: SchemaIssue): SchemaIssue {
  const branches = (issue as { errors?: unknown }).errors;
  if (!Array.isArray(branches) || branches.length === 0) return issue;
  // The branch the value came closest to: the fewest issues, then the deepest first issue.
  let best: { readonly issue: SchemaIssue; readonly count: number } | undefined;
  for (const branch of branches) {
    if (!Array.isArray(branch) || branch.length === 0) continue;
    const candidate = { issue: deepest(branch[0] as SchemaIssue), count: branch.length };
    const depth = (i: SchemaIssue): number => i.path?.length ?? 0;
    if (
      !best ||
      candidate.count < best.count ||
      (candidate.count === best.count && depth(candidate.issue) > depth(best.issue))
    ) {
      best = candidate;
    }
  }
  if (!best) return issue;
  return {
    message: best.issue.message,
    // Branch issues are relative to the union's own place.
    path: [...(issue.path ?? []), ...(best.issue.path ?? [])],
  };
}

/** `$.images[2].pixels`: the JSON path of an issue (`$` for the whole body). */
export function formatPath(path: SchemaIssue['path']): string {
  let text = '$';
  for (const segment of path ?? []) {
    const key = typeof segment === 'object' && segment !== null ? segment.key : segment;
    if (typeof key === 'number') text += `[${key}]`;
    else if (typeof key === 'string' && /^[A-Za-z_$][\w$]*$/.test(key)) text += `.${key}`;
    else text += `[${JSON.stringify(String(key))}]`;
  }
  return clipText(text, 200);
}
