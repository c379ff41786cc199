/**
 * Several `Set-Cookie` from a predictor's full-control response: each value its own header over node:http (a
 * cookie's `Expires` holds a comma, so a folded header cannot be split back), other list-valued headers joined.
 * The Lambda side (payload 2.0 `cookies`, 1.0 `multiValueHeaders`) is in lambda-adapter.test.ts.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { definePredictor } from '../../../lib/predictor.js';
import { encodeResult } from '../../../lib/runtime/codec/codec.js';
import { DIGITS_ONNX, startRuntime, startServer, type TestServer } from '../../helpers.js';

const COOKIES = ['session=abc; Path=/; HttpOnly', 'seen=1; Expires=Wed, 21 Oct 2037 07:28:00 GMT'];
let server: TestServer | undefined;

after(async () => server?.close());

test('encodeResult: set-cookie (a list or one value) becomes cookies; another list is joined with ", "', () => {
  const encoded = encodeResult({ status: 200, headers: { 'Set-Cookie': COOKIES, Vary: ['accept', 'origin'] } });
  assert.deepEqual(encoded.cookies, COOKIES);
  assert.equal(encoded.headers['set-cookie'], undefined);
  assert.equal(encoded.headers['vary'], 'accept, origin');
  assert.deepEqual(encodeResult({ status: 200, headers: { 'set-cookie': 'a=1' } }).cookies, ['a=1']);
  assert.equal(encodeResult({ status: 200, headers: {} }).cookies, undefined);
  assert.throws(() => encodeResult({ status: 200, headers: { 'set-cookie': ['ok=1', 'bad=\n1'] } }), /header/);
});

test('node:http sends each cookie as its own Set-Cookie header', async () => {
  const runtime = await startRuntime({
    modelUri: DIGITS_ONNX,
    predictor: definePredictor({ predict: async () => ({ status: 201, headers: { 'set-cookie': COOKIES } }) }),
  });
  server = await startServer(runtime);
  const response = await fetch(`${server.url}/`, {
    method: 'POST',
    body: '{}',
    headers: { 'content-type': 'application/json' },
  });
  assert.equal(response.status, 201);
  assert.deepEqual(response.headers.getSetCookie(), COOKIES);
});
