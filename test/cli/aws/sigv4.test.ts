/**
 * SigV4 signing of `arclight predict`: AWS's published Signature Version 4 test vectors, and equality with the AWS
 * SDK's signer (SignatureV4 with the SDK's own hash) for execute-api requests of every shape predict sends.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { SignatureV4 } from '@smithy/signature-v4';
import { regionOfApiUrl, signRequest } from '../../../lib/cli/aws/sigv4.js';
import { SDK_SHA256 } from './sigv4-verify.js';

interface Suite {
  credentials: { accessKeyId: string; secretAccessKey: string };
  region: string;
  service: string;
  signingDate: string;
  vectors: { name: string; method: string; url: string; authz: string }[];
}

const suite = JSON.parse(
  readFileSync(new URL('../../fixtures/aws/sigv4-test-vectors.json', import.meta.url), 'utf8'),
) as Suite;

describe("AWS's Signature Version 4 test suite", () => {
  for (const vector of suite.vectors) {
    test(vector.name, async () => {
      const url = new URL(vector.url);
      // The suite's requests carry Host and X-Amz-Date only; signRequest adds both.
      const headers = await signRequest(
        { method: vector.method, url, headers: {} },
        {
          credentials: suite.credentials,
          region: suite.region,
          service: suite.service,
          signingDate: new Date(suite.signingDate),
        },
      );
      assert.equal(headers['authorization'], vector.authz);
      assert.equal(headers['x-amz-date'], '20150830T123600Z');
      assert.equal(headers['host'], 'example.amazonaws.com');
    });
  }
});

describe("signRequest equals the AWS SDK's signer", () => {
  const credentials = {
    accessKeyId: 'AKIAIOSFODNN7EXAMPLE',
    secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
    sessionToken: 'FQoGZXIvYXdzEXAMPLETOKEN//////////wEaDA==',
  };
  const at = new Date('2026-12-02T07:00:00Z');
  const cases: {
    name: string;
    method: string;
    url: string;
    headers: Record<string, string>;
    body: string | Buffer | undefined;
  }[] = [
    {
      name: 'POST JSON to an HTTP API root',
      method: 'POST',
      url: 'https://abc123defg.execute-api.eu-west-1.amazonaws.com/',
      headers: { 'Content-Type': 'application/json' },
      body: '{"pixels":[0,1,2]}',
    },
    {
      name: 'POST to a REST API stage with a query and a model name to escape',
      method: 'POST',
      url: 'https://abc123defg.execute-api.us-east-2.amazonaws.com/api/v2/models/mobilenet-gpu/infer?b=2&a=1&a=0',
      headers: { 'content-type': 'application/json', 'X-Custom': '  spaced   value ' },
      body: '{"inputs":[]}',
    },
    {
      name: 'GET metadata, a path segment with a space and unicode',
      method: 'GET',
      url: 'https://abc123defg.execute-api.ap-southeast-2.amazonaws.com/v2/models/caf%C3%A9%20model',
      headers: { accept: 'application/json' },
      body: undefined,
    },
    {
      name: 'binary body, a port',
      method: 'POST',
      url: 'http://127.0.0.1:8443/',
      headers: { 'content-type': 'image/png' },
      body: Buffer.from([0x89, 0x50, 0x4e, 0x47, 0, 255, 1, 2]),
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const url = new URL(c.url);
      const region = regionOfApiUrl(url) ?? 'us-east-1';
      const ours = await signRequest(
        { method: c.method, url, headers: c.headers, body: c.body },
        { credentials, region, signingDate: at },
      );
      const sdk = await new SignatureV4({
        service: 'execute-api',
        region,
        credentials,
        sha256: SDK_SHA256,
        // As predict signs (and as the test suite's vectors are): the payload's hash is in the canonical request
        // either way; API Gateway does not need it as an x-amz-content-sha256 header too.
        applyChecksum: false,
      }).sign(
        {
          method: c.method,
          protocol: url.protocol,
          hostname: url.hostname,
          port: url.port === '' ? undefined : Number(url.port),
          path: url.pathname,
          query: Object.fromEntries(
            [...new Set(url.searchParams.keys())].map((k) => {
              const all = url.searchParams.getAll(k);
              return [k, all.length === 1 ? all[0]! : all];
            }),
          ),
          headers: Object.fromEntries([
            ['host', url.host],
            ...Object.entries(c.headers).map(([k, v]) => [k.toLowerCase(), v]),
          ]),
          body: c.body,
        },
        { signingDate: at },
      );
      assert.equal(ours['authorization'], sdk.headers['authorization']);
      assert.equal(ours['x-amz-security-token'], credentials.sessionToken);
      assert.match(ours['authorization']!, new RegExp(`/${region}/execute-api/aws4_request, SignedHeaders=`));
      // Content-Length is left unsigned: fetch sets it, and a signed one would break on any re-framing.
      assert.doesNotMatch(ours['authorization']!, /content-length/);
    });
  }

  test('a different body, time or region changes the signature', async () => {
    const url = new URL('https://abc123defg.execute-api.eu-west-1.amazonaws.com/');
    const sign = async (body: string, when: Date, region: string): Promise<string> =>
      (await signRequest({ method: 'POST', url, headers: {}, body }, { credentials, region, signingDate: when }))[
        'authorization'
      ]!;
    const base = await sign('{"a":1}', at, 'eu-west-1');
    assert.notEqual(await sign('{"a":2}', at, 'eu-west-1'), base);
    assert.notEqual(await sign('{"a":1}', new Date(at.getTime() + 1000), 'eu-west-1'), base);
    assert.notEqual(await sign('{"a":1}', at, 'eu-west-2'), base);
  });
});

test('regionOfApiUrl reads the region of execute-api hosts only', () => {
  assert.equal(regionOfApiUrl(new URL('https://a1b2c3.execute-api.eu-central-1.amazonaws.com/x')), 'eu-central-1');
  assert.equal(regionOfApiUrl(new URL('https://a1b2c3.execute-api.cn-north-1.amazonaws.com.cn/')), 'cn-north-1');
  assert.equal(regionOfApiUrl(new URL('http://127.0.0.1:8080/')), undefined);
  assert.equal(regionOfApiUrl(new URL('https://execute-api.example.com/')), undefined);
});
