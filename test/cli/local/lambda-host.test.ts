/**
 * The local Lambda host's translation (lib/cli/local/lambda-host.ts): HTTP requests into API Gateway HTTP API payload 2.0
 * events, handler results back into HTTP responses by API Gateway's rules, and a Lambda-like context.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { httpApiEvent, httpResponse, isTextContentType, lambdaContext } from '../../../lib/cli/local/lambda-host.js';

const options = { requestId: 'req-1', accountId: '000000000000', now: new Date(Date.UTC(2020, 2, 12, 19, 3, 58)) };

describe('httpApiEvent', () => {
  test('a JSON POST: path, query, headers, cookies and requestContext as API Gateway sends them', () => {
    const event = httpApiEvent(
      {
        method: 'POST',
        url: '/v2/models/digits/infer?a=1&a=2&b=x%20y',
        headers: {
          host: '127.0.0.1:8080',
          'content-type': 'application/json',
          'user-agent': 'curl/8',
          cookie: 'session=abc; theme=dark',
          'x-forwarded-for': '10.0.0.7, 127.0.0.1',
        },
        httpVersion: '1.1',
        sourceIp: '127.0.0.1',
      },
      Buffer.from('{"inputs":[]}'),
      options,
    );
    assert.deepEqual(event, {
      version: '2.0',
      routeKey: '$default',
      rawPath: '/v2/models/digits/infer',
      rawQueryString: 'a=1&a=2&b=x%20y',
      cookies: ['session=abc', 'theme=dark'],
      headers: {
        host: '127.0.0.1:8080',
        'content-type': 'application/json',
        'user-agent': 'curl/8',
        'x-forwarded-for': '10.0.0.7, 127.0.0.1',
      },
      queryStringParameters: { a: '1,2', b: 'x y' },
      requestContext: {
        accountId: '000000000000',
        apiId: 'local',
        domainName: '127.0.0.1:8080',
        domainPrefix: '127',
        http: {
          method: 'POST',
          path: '/v2/models/digits/infer',
          protocol: 'HTTP/1.1',
          sourceIp: '10.0.0.7',
          userAgent: 'curl/8',
        },
        requestId: 'req-1',
        routeKey: '$default',
        stage: '$default',
        time: '12/Mar/2020:19:03:58 +0000',
        timeEpoch: Date.UTC(2020, 2, 12, 19, 3, 58),
      },
      body: '{"inputs":[]}',
      isBase64Encoded: false,
    });
  });

  test('binary bodies (and text that is not UTF-8) are base64; no body means none', () => {
    const bytes = Buffer.from([0, 159, 146, 150]);
    const binary = httpApiEvent(
      { method: 'POST', url: '/', headers: { 'content-type': 'application/octet-stream' } },
      bytes,
      options,
    );
    assert.equal(binary.isBase64Encoded, true);
    assert.deepEqual(Buffer.from(binary.body!, 'base64'), bytes);
    const latin1 = httpApiEvent(
      { method: 'POST', url: '/', headers: { 'content-type': 'text/plain' } },
      bytes,
      options,
    );
    assert.equal(latin1.isBase64Encoded, true);
    const empty = httpApiEvent({ method: 'GET', url: '/', headers: {} }, Buffer.alloc(0), options);
    assert.equal(empty.body, undefined);
    assert.equal(empty.isBase64Encoded, false);
    assert.equal(empty.queryStringParameters, undefined);
    assert.equal(empty.cookies, undefined);
  });

  test('text content types', () => {
    for (const type of [
      'application/json',
      'application/json; charset=utf-8',
      'application/vnd.api+json',
      'text/plain',
      'text/csv',
      'application/xml',
      'application/x-www-form-urlencoded',
    ]) {
      assert.equal(isTextContentType(type), true, type);
    }
    for (const type of [undefined, '', 'application/octet-stream', 'image/png', 'application/x-protobuf']) {
      assert.equal(isTextContentType(type), false, String(type));
    }
  });
});

describe('httpResponse', () => {
  test('a structured result: status, headers (lower-cased, as strings), cookies, base64 body decoded', () => {
    const response = httpResponse({
      statusCode: 201,
      headers: { 'Content-Type': 'application/octet-stream', 'X-Count': 3 },
      cookies: ['a=1', 'b=2'],
      body: Buffer.from([1, 2, 3]).toString('base64'),
      isBase64Encoded: true,
    });
    assert.equal(response.status, 201);
    assert.deepEqual(response.headers, {
      'content-type': 'application/octet-stream',
      'x-count': '3',
      'set-cookie': ['a=1', 'b=2'],
    });
    assert.deepEqual(response.body, Buffer.from([1, 2, 3]));
    assert.deepEqual(httpResponse({ statusCode: 204 }).body, Buffer.alloc(0));
    assert.equal(httpResponse({ statusCode: 200, body: 'héllo' }).body.toString('utf8'), 'héllo');
  });

  test('anything else is inferred as a 200 JSON body', () => {
    for (const [result, body] of [
      [{ digit: 3 }, '{"digit":3}'],
      ['hello', '"hello"'],
      [undefined, 'null'],
    ] as const) {
      const response = httpResponse(result);
      assert.equal(response.status, 200);
      assert.equal(response.headers['content-type'], 'application/json');
      assert.equal(response.body.toString('utf8'), body);
    }
  });
});

describe('lambdaContext', () => {
  test("names the function and counts down to the invocation's deadline", async () => {
    const spec = {
      apiName: 'digits',
      bundle: '/x/index.mjs',
      handlerExport: 'handler',
      timeoutSeconds: 29,
      memorySize: 1769,
      functionName: 'ArclightExamples-digitsFunction',
      accountId: '000000000000',
      region: 'us-east-1',
    };
    const context = lambdaContext(spec, Date.now() + 29_000);
    assert.equal(context.functionName, 'ArclightExamples-digitsFunction');
    assert.equal(context.memoryLimitInMB, '1769');
    assert.equal(
      context.invokedFunctionArn,
      'arn:aws:lambda:us-east-1:000000000000:function:ArclightExamples-digitsFunction',
    );
    assert.match(context.awsRequestId, /^[0-9a-f-]{36}$/);
    const first = context.getRemainingTimeInMillis();
    assert.ok(first > 28_000 && first <= 29_000, String(first));
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.ok(context.getRemainingTimeInMillis() < first);
    assert.equal(lambdaContext(spec, Date.now() - 5).getRemainingTimeInMillis(), 0);
  });
});
