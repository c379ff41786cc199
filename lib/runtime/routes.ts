import { ROUTES } from '../contract.js';
import { httpError } from './codec/http-errors.js';
import { clipText } from './codec/json.js';

/** What a request asks for, once its method and path are matched. */
export type Route =
  | { readonly kind: 'predict' }
  | { readonly kind: 'metadata' }
  | { readonly kind: 'live' }
  | { readonly kind: 'ready' }
  | { readonly kind: 'ping' }
  | { readonly kind: 'server' }
  | ({ readonly kind: 'model' } & ModelRef)
  | ({ readonly kind: 'model-ready' } & ModelRef)
  | ({ readonly kind: 'infer' } & ModelRef)
  | ({ readonly kind: 'stats' } & ModelRef)
  | { readonly kind: 'openapi' }
  | { readonly kind: 'docs' };

/** A model named in the path, and its version when the path gives one (`/v2/models/{name}/versions/{version}`). */
export interface ModelRef {
  readonly model: string;
  readonly version?: string;
}

interface RouteRule {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, (match: RegExpExecArray) => Route>>;
}

const MODEL = '/v2/models/([^/]+)(?:/versions/([^/]+))?';

const RULES: readonly RouteRule[] = [
  { pattern: /^\/$/, methods: { GET: () => ({ kind: 'metadata' }), POST: () => ({ kind: 'predict' }) } },
  { pattern: exact(ROUTES.invocations), methods: { POST: () => ({ kind: 'predict' }) } },
  { pattern: exact(ROUTES.live), methods: { GET: () => ({ kind: 'live' }) } },
  { pattern: exact(ROUTES.ready), methods: { GET: () => ({ kind: 'ready' }) } },
  { pattern: exact(ROUTES.ping), methods: { GET: () => ({ kind: 'ping' }) } },
  { pattern: /^\/v2$/, methods: { GET: () => ({ kind: 'server' }) } },
  { pattern: new RegExp(`^${MODEL}$`), methods: { GET: (m) => ({ kind: 'model', ...modelRef(m) }) } },
  { pattern: new RegExp(`^${MODEL}/ready$`), methods: { GET: (m) => ({ kind: 'model-ready', ...modelRef(m) }) } },
  { pattern: new RegExp(`^${MODEL}/infer$`), methods: { POST: (m) => ({ kind: 'infer', ...modelRef(m) }) } },
  { pattern: new RegExp(`^${MODEL}/stats$`), methods: { GET: (m) => ({ kind: 'stats', ...modelRef(m) }) } },
  { pattern: exact(ROUTES.openapi), methods: { GET: () => ({ kind: 'openapi' }) } },
  { pattern: exact(ROUTES.docs), methods: { GET: () => ({ kind: 'docs' }) } },
];

function modelRef(match: RegExpExecArray): ModelRef {
  return { model: decode(match[1]!), ...(match[2] === undefined ? {} : { version: decode(match[2]) }) };
}

function exact(path: string): RegExp {
  return new RegExp(`^${path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
}

function decode(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    return segment;
  }
}

/** Whether a method and path reach a route (else `matchRoute` answers 404 or 405, before any body matters). */
export function isRouted(method: string, path: string): boolean {
  try {
    matchRoute(method, path);
    return true;
  } catch {
    return false;
  }
}

/** Matches a request to a route: 404 for an unknown path, 405 (with `Allow`) for a known path and wrong method. */
export function matchRoute(method: string, rawPath: string): Route {
  const path = rawPath.length > 1 && rawPath.endsWith('/') ? rawPath.slice(0, -1) : rawPath;
  for (const rule of RULES) {
    const match = rule.pattern.exec(path);
    if (!match) continue;
    const handler = rule.methods[method.toUpperCase()];
    if (handler) return handler(match);
    const allow = Object.keys(rule.methods).join(', ');
    throw httpError(
      'method_not_allowed',
      `${clipText(method, 16)} is not allowed on ${clipText(path, 128)}; use ${allow}`,
      { allow },
    );
  }
  throw httpError('not_found', `no route for ${clipText(path, 128)}`);
}
