/**
 * Unit tests of the codec (request payloads by content type, predictor results to responses), the JSON helpers it
 * relies on, and the float16 conversions of tensor-types.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { isHttpError } from '../../../lib/predictor.js';
import { decodePayload, encodeResult, type InternalRequest } from '../../../lib/runtime/codec/codec.js';
import { previewJson, stringifyJson } from '../../../lib/runtime/codec/json.js';
import { fromFloat16Bits, toFloat16Bits } from '../../../lib/runtime/codec/tensor-types.js';

function request(body: string | Buffer, contentType?: string): InternalRequest {
  return {
    method: 'POST',
    path: '/',
    query: {},
    headers: contentType === undefined ? {} : { 'content-type': contentType },
    body: Buffer.from(body),
  };
}

/** Runs `work` and returns the HttpError it throws. */
function httpErrorOf(work: () => unknown): { status: number; code: string; message: string } {
  try {
    work();
  } catch (error) {
    assert.ok(isHttpError(error), `expected an HttpError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected an HttpError, nothing was thrown');
}

describe('decodePayload', () => {
  test('JSON content types give the parsed value', () => {
    for (const type of [
      'application/json',
      'application/json; charset=utf-8',
      'APPLICATION/JSON',
      ' application/json ;charset=UTF-8',
      'application/vnd.api+json',
    ]) {
      assert.deepEqual(
        decodePayload(request('{"a":[1,2.5,"x",null,true]}', type)),
        { a: [1, 2.5, 'x', null, true] },
        type,
      );
    }
    assert.equal(decodePayload(request('0', 'application/json')), 0);
    assert.equal(decodePayload(request('null', 'application/json')), null);
    assert.equal(decodePayload(request('"é✓"', 'application/json')), 'é✓');
  });

  test('malformed or empty JSON is a 400 malformed_json', () => {
    const malformed = httpErrorOf(() => decodePayload(request('{"a":', 'application/json')));
    assert.equal(malformed.status, 400);
    assert.equal(malformed.code, 'malformed_json');
    assert.match(malformed.message, /^request body is not valid JSON: /);
    const empty = httpErrorOf(() => decodePayload(request('', 'application/json')));
    assert.equal(empty.code, 'malformed_json');
    assert.match(empty.message, /request body is empty/);
    assert.equal(httpErrorOf(() => decodePayload(request('[1,]', 'application/json'))).code, 'malformed_json');
    assert.equal(httpErrorOf(() => decodePayload(request('\u00ff', 'application/json'))).code, 'malformed_json');
  });

  test('deeply nested JSON is parsed, or refused as malformed, never a crash', () => {
    const depth = 100_000;
    const value = decodePayload(request('['.repeat(depth) + ']'.repeat(depth), 'application/json'));
    assert.ok(Array.isArray(value));
    assert.equal(
      httpErrorOf(() => decodePayload(request('['.repeat(depth), 'application/json'))).code,
      'malformed_json',
    );
  });

  test('text types give a UTF-8 string', () => {
    assert.equal(decodePayload(request('héllo ✓', 'text/plain')), 'héllo ✓');
    assert.equal(decodePayload(request('a,b\n1,2', 'text/csv; charset=utf-8')), 'a,b\n1,2');
    assert.equal(decodePayload(request('{"not":"parsed"}', 'text/plain')), '{"not":"parsed"}');
    assert.equal(decodePayload(request('', 'text/plain')), '');
  });

  test('other types, and a body with no content type, give the bytes', () => {
    const bytes = Buffer.from([0, 1, 2, 255]);
    for (const type of ['application/octet-stream', 'image/png', 'application/x-www-form-urlencoded', undefined]) {
      const payload = decodePayload(request(bytes, type));
      assert.ok(Buffer.isBuffer(payload), String(type));
      assert.deepEqual([...payload], [0, 1, 2, 255]);
    }
  });

  test('no content type and no body gives undefined', () => {
    assert.equal(decodePayload(request('')), undefined);
  });
});

describe('encodeResult', () => {
  test('JSON values are application/json with status 200', () => {
    for (const [value, text] of [
      [{ a: 1, b: [true, null, 'x'] }, '{"a":1,"b":[true,null,"x"]}'],
      [[1, 2], '[1,2]'],
      [0, '0'],
      [false, 'false'],
      [null, 'null'],
      [{ skipped: undefined, kept: 1 }, '{"kept":1}'],
    ] as const) {
      const result = encodeResult(value);
      assert.equal(result.status, 200);
      assert.deepEqual(result.headers, { 'content-type': 'application/json' });
      assert.equal(result.body.toString(), text);
    }
  });

  test('BigInt is a number when exact, a decimal string beyond 2^53', () => {
    const result = encodeResult({ small: 12n, edge: 2n ** 53n - 1n, big: 2n ** 53n + 1n, list: [-(2n ** 63n)] });
    assert.equal(
      result.body.toString(),
      '{"small":12,"edge":9007199254740991,"big":"9007199254740993","list":["-9223372036854775808"]}',
    );
    assert.equal(encodeResult(7n).body.toString(), '7');
  });

  test('typed arrays (tensor data) are JSON arrays, not objects keyed by index', () => {
    const result = encodeResult({
      logits: new Float32Array([1.5, -2]),
      ids: new BigInt64Array([1n, 2n ** 60n]),
      counts: new Int32Array([3]),
    });
    assert.equal(result.body.toString(), '{"logits":[1.5,-2],"ids":[1,"1152921504606846976"],"counts":[3]}');
  });

  test('a string is text/plain; charset=utf-8', () => {
    const result = encodeResult('héllo ✓');
    assert.equal(result.status, 200);
    assert.deepEqual(result.headers, { 'content-type': 'text/plain; charset=utf-8' });
    assert.equal(result.body.toString('utf8'), 'héllo ✓');
    assert.equal(encodeResult('').body.length, 0);
  });

  test('bytes are application/octet-stream, exactly the view given', () => {
    const backing = new Uint8Array([9, 8, 7, 6, 5]);
    const result = encodeResult(backing.subarray(1, 4));
    assert.deepEqual(result.headers, { 'content-type': 'application/octet-stream' });
    assert.deepEqual([...result.body], [8, 7, 6]);
    assert.deepEqual([...encodeResult(Buffer.from('abc')).body], [97, 98, 99]);
  });

  test('a full-control response sets status and headers (lower-cased, overriding the default type)', () => {
    const result = encodeResult({
      status: 201,
      headers: { 'X-Custom': 'yes', 'Content-Type': 'application/vnd.test+json' },
      body: { created: true },
    });
    assert.equal(result.status, 201);
    assert.deepEqual(result.headers, { 'content-type': 'application/vnd.test+json', 'x-custom': 'yes' });
    assert.equal(result.body.toString(), '{"created":true}');
    const text = encodeResult({ status: 418, body: 'teapot' });
    assert.equal(text.status, 418);
    assert.equal(text.headers['content-type'], 'text/plain; charset=utf-8');
    const bytes = encodeResult({ status: 200, headers: { 'content-type': 'image/png' }, body: new Uint8Array([1]) });
    assert.equal(bytes.headers['content-type'], 'image/png');
    assert.deepEqual([...bytes.body], [1]);
  });

  test('a full-control response may leave out the body (its type says body is optional)', () => {
    const result = encodeResult({ status: 204, headers: { 'x-a': '1' } });
    assert.equal(result.status, 204);
    assert.deepEqual(result.headers, { 'x-a': '1' });
    assert.equal(result.body.length, 0);
  });

  test('only an object with a valid HTTP status and nothing but status/headers/body is full control', () => {
    for (const value of [
      { status: 'ok', body: 1 },
      { status: 200.5, body: 1 },
      { status: 600, body: 1 },
      { status: 99, body: 1 },
      { status: 200, body: 1, extra: true },
    ]) {
      const result = encodeResult(value);
      assert.equal(result.status, 200, JSON.stringify(value));
      assert.deepEqual(JSON.parse(result.body.toString()), value);
    }
    assert.deepEqual(JSON.parse(encodeResult([{ status: 201 }]).body.toString()), [{ status: 201 }]);
  });

  test('what JSON cannot encode is a 500 predictor_error naming what was returned', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    for (const [value, pattern] of [
      [undefined, /returned nothing \(undefined\)/],
      [cyclic, /returned a value JSON cannot encode \(Converting circular structure to JSON/],
      [deep, /returned a value JSON cannot encode/],
      [() => 1, /returned a function, which JSON cannot encode/],
      [Symbol('s'), /returned a symbol, which JSON cannot encode/],
      [{ status: 200, body: cyclic }, /returned a value JSON cannot encode/],
    ] as const) {
      const error = httpErrorOf(() => encodeResult(value));
      assert.equal(error.status, 500);
      assert.equal(error.code, 'predictor_error');
      assert.match(error.message, pattern);
      assert.ok(!error.message.includes('\n'), 'one line');
    }
  });
});

describe('stringifyJson and previewJson', () => {
  test('stringifyJson keeps plain JSON as JSON.stringify writes it', () => {
    const value = { a: [1, 'two', { three: 3 }], b: null, c: 1e21, d: -0 };
    assert.equal(stringifyJson(value), JSON.stringify(value));
  });

  test('previewJson is short and bounded in depth, whatever the value', () => {
    assert.equal(previewJson('x'), '"x"');
    assert.equal(previewJson(null), 'null');
    assert.equal(previewJson(1.5), '1.5');
    assert.equal(previewJson(true), 'true');
    assert.equal(previewJson({ v: 5 }), '{"v":5}');
    assert.equal(previewJson([1, [2, [3, [4, [5]]]]]), '[1,[2,[3,[…]]]]');
    let deep: unknown[] = [];
    for (let i = 0; i < 100_000; i++) deep = [deep];
    assert.equal(previewJson(deep), '[[[[…]]]]');
    const long = previewJson('y'.repeat(1_000_000));
    assert.ok(long.length <= 64, `${long.length} characters`);
    assert.ok(previewJson(Array.from({ length: 1000 }, (_, i) => i)).length <= 64);
    assert.equal(previewJson(10n), '10');
  });
});

/** The nearest half to a number by search over every finite half (ties to the even bit pattern): an oracle. */
function nearestHalf(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65520) return sign | 0x7c00; // halfway from 65504 to 2^16 and beyond: infinity
  let lo = 0;
  let hi = 0x7bff;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (fromFloat16Bits(mid) <= magnitude) lo = mid;
    else hi = mid - 1;
  }
  const below = fromFloat16Bits(lo);
  const above = lo === 0x7bff ? 65536 : fromFloat16Bits(lo + 1);
  const up = magnitude - below > above - magnitude || (magnitude - below === above - magnitude && lo % 2 === 1);
  return sign | (up ? lo + 1 : lo);
}

describe('float16 conversions', () => {
  test('fromFloat16Bits decodes normals, subnormals, zeros, infinities and NaN', () => {
    for (const [bits, value] of [
      [0x3c00, 1],
      [0xbc00, -1],
      [0x3800, 0.5],
      [0x4000, 2],
      [0x3555, 0.333251953125],
      [0x7bff, 65504],
      [0xfbff, -65504],
      [0x0400, 2 ** -14],
      [0x03ff, 1023 * 2 ** -24],
      [0x0001, 2 ** -24],
      [0x8001, -(2 ** -24)],
      [0x0000, 0],
      [0x7c00, Infinity],
      [0xfc00, -Infinity],
    ] as const) {
      assert.equal(fromFloat16Bits(bits), value, bits.toString(16));
    }
    assert.ok(Object.is(fromFloat16Bits(0x8000), -0));
    assert.ok(Number.isNaN(fromFloat16Bits(0x7e00)));
    assert.ok(Number.isNaN(fromFloat16Bits(0x7c01)));
  });

  test('every half value round-trips exactly: toFloat16Bits(fromFloat16Bits(h)) === h', () => {
    for (let bits = 0; bits <= 0xffff; bits++) {
      const value = fromFloat16Bits(bits);
      if (Number.isNaN(value)) continue;
      if (toFloat16Bits(value) !== bits)
        assert.fail(`0x${bits.toString(16)} (${value}) → 0x${toFloat16Bits(value).toString(16)}`);
    }
  });

  test('exact values, signed zero, infinity and NaN', () => {
    assert.equal(toFloat16Bits(1), 0x3c00);
    assert.equal(toFloat16Bits(-2), 0xc000);
    assert.equal(toFloat16Bits(65504), 0x7bff);
    assert.equal(toFloat16Bits(0), 0x0000);
    assert.equal(toFloat16Bits(-0), 0x8000);
    assert.equal(toFloat16Bits(Infinity), 0x7c00);
    assert.equal(toFloat16Bits(-Infinity), 0xfc00);
    assert.equal(toFloat16Bits(NaN), 0x7e00);
  });

  test('rounds to nearest, ties to even', () => {
    const ulp = 2 ** -10; // at 1
    assert.equal(toFloat16Bits(1 + ulp / 2), 0x3c00, 'tie between 0x3c00 and 0x3c01 goes to even 0x3c00');
    assert.equal(toFloat16Bits(1 + ulp * 1.5), 0x3c02, 'tie between 0x3c01 and 0x3c02 goes to even 0x3c02');
    assert.equal(toFloat16Bits(1 + ulp * 0.4999), 0x3c00);
    assert.equal(toFloat16Bits(1 + ulp * 0.5001), 0x3c01);
    assert.equal(toFloat16Bits(0.1), 0x2e66);
    assert.equal(fromFloat16Bits(toFloat16Bits(0.1)), 0.0999755859375);
    assert.equal(toFloat16Bits(2049), 0x6800, '2049 ties between 2048 and 2050: even is 2048');
    assert.equal(toFloat16Bits(2051), 0x6802, '2051 ties between 2050 and 2052: even is 2052');
  });

  test('a double just past a halfway point rounds up (no double rounding through float32)', () => {
    assert.equal(toFloat16Bits(1 + 2 ** -11 + 2 ** -30), 0x3c01);
    assert.equal(toFloat16Bits(-(1 + 2 ** -11 + 2 ** -40)), 0xbc01);
    assert.equal(toFloat16Bits(2 ** -25 + 2 ** -50), 0x0001, 'just past half the smallest subnormal');
  });

  test('overflow: past 65504 rounds to the largest half until the halfway point to 2^16, then infinity', () => {
    assert.equal(toFloat16Bits(65519.99), 0x7bff);
    assert.equal(toFloat16Bits(65520), 0x7c00);
    assert.equal(toFloat16Bits(-65520), 0xfc00);
    assert.equal(toFloat16Bits(1e10), 0x7c00);
    assert.equal(toFloat16Bits(Number.MAX_VALUE), 0x7c00);
  });

  test('subnormals: rounding at the bottom of the range, and the carry into the smallest normal', () => {
    const tiny = 2 ** -24;
    assert.equal(toFloat16Bits(tiny), 0x0001);
    assert.equal(toFloat16Bits(tiny / 2), 0x0000, 'half the smallest subnormal ties to zero');
    assert.equal(toFloat16Bits(-tiny / 2), 0x8000, 'and keeps its sign');
    assert.equal(toFloat16Bits(tiny * 0.75), 0x0001);
    assert.equal(toFloat16Bits(tiny * 1.5), 0x0002, 'tie between 1 and 2 units goes to even 2');
    assert.equal(toFloat16Bits(tiny * 2.5), 0x0002, 'tie between 2 and 3 units goes to even 2');
    assert.equal(toFloat16Bits(1023.5 * tiny), 0x0400, 'the largest subnormal rounds up into the smallest normal');
    assert.equal(toFloat16Bits(2 ** -14), 0x0400);
    assert.equal(toFloat16Bits(Number.MIN_VALUE), 0x0000, 'a double subnormal is far below any half');
    assert.equal(toFloat16Bits(1e-8), 0x0000);
    assert.equal(toFloat16Bits(6e-8), 0x0001);
  });

  test('matches the nearest-half oracle on many values across the whole range', () => {
    let seed = 42;
    const random = (): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed / 2 ** 31;
    };
    const values: number[] = [];
    for (let i = 0; i < 20_000; i++) {
      const magnitude = 2 ** (random() * 46 - 28); // 2^-28 .. 2^18: below subnormals to past overflow
      values.push(random() < 0.5 ? -magnitude : magnitude);
    }
    // Every halfway point between neighbouring halves, and a hair either side of it.
    for (let bits = 0; bits < 0x7bff; bits += 7) {
      const mid = (fromFloat16Bits(bits) + fromFloat16Bits(bits + 1)) / 2;
      values.push(mid, mid * (1 + 2 ** -40), mid * (1 - 2 ** -40));
    }
    for (const value of values) {
      const got = toFloat16Bits(value);
      if (got !== nearestHalf(value)) {
        assert.fail(`${value}: got 0x${got.toString(16)}, nearest is 0x${nearestHalf(value).toString(16)}`);
      }
    }
  });
});
