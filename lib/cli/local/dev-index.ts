/**
 * `arclight dev`'s index as a page, for a browser at `GET /` (`Accept: text/html`): each API with its compute and
 * status, linked to its playground and its OpenAPI document. Programs asking for anything else get the JSON list.
 */
import { createHash } from 'node:crypto';

/** What the index shows of each API (a `DevApi`). */
export interface IndexedApi {
  readonly name: string;
  readonly url: string;
  readonly compute: string;
  readonly architecture: string;
  readonly status: string;
  readonly docs: string;
  readonly openapi: string;
}

const STYLE =
  'body{margin:0 auto;max-width:60rem;padding:1rem 1.5rem;font:15px/1.5 system-ui,sans-serif}' +
  'th,td{text-align:left;padding:.3rem 1rem .3rem 0;border-bottom:1px solid #d0d7de}';

const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  // No script at all; only its own style, and no way to be framed.
  'content-security-policy': `default-src 'none'; style-src 'sha256-${createHash('sha256').update(STYLE).digest('base64')}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
} as const;

/** Whether a request's Accept header prefers a page (a browser's does; curl's and fetch's do not). */
export function wantsHtml(accept: string | undefined): boolean {
  return accept !== undefined && /(^|,)\s*text\/html\b/.test(accept);
}

/** The index page and its headers. */
export function devIndexPage(apis: readonly IndexedApi[]): { headers: Record<string, string>; body: string } {
  const rows = apis
    .map(
      (api) =>
        `<tr><td>${escape(api.name)}</td><td><a href="${escape(api.url)}">${escape(api.url)}</a></td>` +
        `<td>${escape(api.compute)} ${escape(api.architecture)}</td><td>${escape(api.status)}</td>` +
        `<td><a href="${escape(api.docs)}">playground</a></td><td><a href="${escape(api.openapi)}">OpenAPI</a></td></tr>`,
    )
    .join('\n');
  const body = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>arclight dev</title><style>${STYLE}</style></head>
<body><h1>arclight dev</h1>
<table><thead><tr><th>API</th><th>URL</th><th>compute</th><th>status</th><th></th><th></th></tr></thead>
<tbody>
${rows}
</tbody></table></body></html>
`;
  return { headers: { ...HEADERS }, body };
}

function escape(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
