/** `arclight dev`'s index page: each API linked to its playground and OpenAPI document, escaped, under a strict CSP. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { devIndexPage, wantsHtml } from '../../../lib/cli/local/dev-index.js';

const api = (name: string) => ({
  name,
  url: `http://127.0.0.1:8080/${name}`,
  compute: 'lambda',
  architecture: 'arm64',
  status: 'ready',
  docs: `http://127.0.0.1:8080/${name}/docs`,
  openapi: `http://127.0.0.1:8080/${name}/openapi.json`,
});

test('lists every API with links to its playground and OpenAPI document', () => {
  const { body } = devIndexPage([api('digits'), api('mobilenet')]);
  for (const name of ['digits', 'mobilenet']) {
    assert.ok(body.includes(`<a href="http://127.0.0.1:8080/${name}/docs">playground</a>`), name);
    assert.ok(body.includes(`<a href="http://127.0.0.1:8080/${name}/openapi.json">OpenAPI</a>`), name);
  }
});

test('escapes what it shows', () => {
  const { body } = devIndexPage([{ ...api('x'), name: '<script>alert(1)</script>' }]);
  assert.ok(!body.includes('<script>'));
  assert.ok(body.includes('&#60;script&#62;'));
});

test('runs no script, and its CSP allows exactly its own style', () => {
  const { headers, body } = devIndexPage([api('digits')]);
  const style = /<style>([^<]*)<\/style>/.exec(body)![1]!;
  const hash = createHash('sha256').update(style).digest('base64');
  assert.equal(
    headers['content-security-policy'],
    `default-src 'none'; style-src 'sha256-${hash}'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`,
  );
  assert.equal(headers['content-type'], 'text/html; charset=utf-8');
});

test('a browser gets the page; curl, fetch and programs get the JSON list', () => {
  assert.equal(wantsHtml('text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8'), true);
  assert.equal(wantsHtml('*/*'), false);
  assert.equal(wantsHtml('application/json'), false);
  assert.equal(wantsHtml(undefined), false);
});
