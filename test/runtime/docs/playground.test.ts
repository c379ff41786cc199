/**
 * The playground page (`GET /docs`) in a real browser: Debian's chromium, headless, driven by playwright-core, against
 * the runtime over real sockets. The digits API (a custom predictor with declared schemas) answers its declared
 * example with the digit; the MobileNet API (the Open Inference Protocol, a 4-D float input) takes an image file,
 * which the page turns into the tensor itself, and shows the class index the model gives for that tensor. No console
 * error, nothing but the API reached. Screenshots land in test-artifacts/playground/.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { crc32, deflateSync } from 'node:zlib';
import { chromium, type BrowserContext, type Page, type Request } from 'playwright-core';
import {
  DIGITS_ONNX,
  DIGITS_PREDICTOR,
  MOBILENET_ONNX,
  REPO_ROOT,
  argmax,
  loadTestPredictor,
  startRuntime,
  startServer,
  type TestServer,
} from '../../helpers.js';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = join(REPO_ROOT, 'test-artifacts', 'playground');
/** What CI and this test run chromium with: nothing of its own reaches out (updates, sync, safe browsing, QUIC). */
const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

let digits: TestServer;
let mobilenet: TestServer;
let context: BrowserContext;
let userDataDir: string;
/** Every URL the browser asked for, and every console error or page error, all pages together. */
const requested: string[] = [];
const consoleErrors: string[] = [];

before(async () => {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium (scripts/setup-chromium.sh)`);
  digits = await startServer(
    await startRuntime({
      apiName: 'digits',
      modelUri: DIGITS_ONNX,
      predictor: await loadTestPredictor(DIGITS_PREDICTOR),
      docs: true,
      checkResponses: true,
    }),
  );
  mobilenet = await startServer(await startRuntime({ apiName: 'mobilenet', modelUri: MOBILENET_ONNX, docs: true }));
  userDataDir = mkdtempSync(join(tmpdir(), 'arclight-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    viewport: { width: 1100, height: 1000 },
  });
  const local = new Set([new URL(digits.url).origin, new URL(mobilenet.url).origin]);
  // Anything bound elsewhere is recorded and refused: the page must work with no network but its API.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    requested.push(url);
    return local.has(new URL(url).origin) ? route.continue() : route.abort();
  });
  mkdirSync(ARTIFACTS, { recursive: true });
});

after(async () => {
  await context?.close();
  if (userDataDir) rmSync(userDataDir, { recursive: true, force: true });
  await digits?.close();
  await mobilenet?.close();
  await digits?.runtime.close();
  await mobilenet?.runtime.close();
});

async function open(url: string): Promise<Page> {
  const page = await context.newPage();
  page.on('console', (message) => {
    if (message.type() === 'error') consoleErrors.push(`${page.url()}: ${message.text()}`);
  });
  page.on('pageerror', (error) => consoleErrors.push(`${page.url()}: ${error.message}`));
  const response = await page.goto(url);
  assert.equal(response?.status(), 200);
  return page;
}

async function sendAndWait(page: Page): Promise<string> {
  await page.click('#send');
  await page.locator('#status', { hasText: /^\d{3} / }).waitFor();
  return (await page.textContent('#status')) ?? '';
}

describe('the digits playground (custom predictor, declared schemas)', () => {
  test('shows the signature, sends the declared example and shows the digit with its latency', async () => {
    const page = await open(`${digits.url}/docs`);
    const signature = await page.textContent('#tensors');
    assert.match(signature ?? '', /input\s*image\s*FP32\s*\[-1, 1, 8, 8\]/);
    assert.match(signature ?? '', /output\s*logits\s*FP32\s*\[-1, 10\]/);
    assert.match((await page.textContent('#target')) ?? '', /^POST \/$/);
    const example = JSON.parse(await page.inputValue('#body')) as { image: number[][] };
    assert.equal(example.image.length, 8);

    const status = await sendAndWait(page);
    assert.match(status, /^200 OK · \d+(\.\d)? ms · request id [0-9a-f-]{36}$/);
    const shown = JSON.parse((await page.textContent('#output')) ?? '') as { digit: number; probabilities: number[] };
    // The declared example is the first image of scikit-learn's set, a zero; the page shows what the API answers.
    assert.equal(shown.digit, 0);
    assert.equal(await page.textContent('#summary'), 'digit: 0');
    const direct = await fetch(`${digits.url}/`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(example),
    });
    assert.deepEqual(shown, await direct.json());
    await page.screenshot({ path: join(ARTIFACTS, 'digits.png'), fullPage: true });
    assert.deepEqual(consoleErrors, []);
    await page.close();
  });

  test('a request that breaks the declared schema shows the 400 and the field it names', async () => {
    const page = await open(`${digits.url}/docs`);
    await page.fill('#body', JSON.stringify({ pixels: [1, 2, 3] }));
    assert.match(await sendAndWait(page), /^400 Bad Request/);
    assert.match((await page.textContent('#summary')) ?? '', /\$\.pixels: an image has 64 pixels/);
    // Chrome reports any 4xx answer to fetch on the console; that one line is expected here, nothing else.
    const unexpected = consoleErrors.splice(0).filter((line) => !/status of 400/.test(line));
    assert.deepEqual(unexpected, []);
    await page.close();
  });
});

describe('the MobileNet playground (default predictor, an image input)', () => {
  test('an uploaded image becomes the tensor in the browser, and the page shows the class index', async () => {
    const page = await open(`${mobilenet.url}/docs`);
    assert.equal(await page.isVisible('#image-input'), true);
    assert.match((await page.textContent('#image-label')) ?? '', /input ‘input’ \(resized to 224×224, RGB, NCHW\)/);
    const sent: Request[] = [];
    page.on('request', (request) => {
      if (request.method() === 'POST') sent.push(request);
    });
    await page.setInputFiles('#image-file', {
      name: 'red.png',
      mimeType: 'image/png',
      buffer: solidPng(40, 30, [255, 0, 0]),
    });
    await page.waitForFunction('document.getElementById("body").value.startsWith("(the tensor")');
    const status = await sendAndWait(page);
    assert.match(status, /^200 OK · \d+(\.\d)? ms/);
    const summary = (await page.textContent('#summary')) ?? '';
    const shownClass = Number(/^class (\d+) \(score /.exec(summary)?.[1]);
    assert.ok(Number.isInteger(shownClass) && shownClass >= 0 && shownClass < 1000, summary);

    // The tensor the page made: the binary extension, [1,3,224,224] FP32, each channel the red pixel under
    // ImageNet's mean and std.
    assert.equal(sent.length, 1);
    const body = sent[0]!.postDataBuffer()!;
    const headerLength = Number(await sent[0]!.headerValue('inference-header-content-length'));
    const header = JSON.parse(body.subarray(0, headerLength).toString()) as {
      inputs: { name: string; datatype: string; shape: number[] }[];
    };
    assert.deepEqual(
      header.inputs.map(({ name, datatype, shape }) => ({ name, datatype, shape })),
      [{ name: 'input', datatype: 'FP32', shape: [1, 3, 224, 224] }],
    );
    const tensor = new Float32Array(body.buffer.slice(body.byteOffset + headerLength, body.byteOffset + body.length));
    assert.equal(tensor.length, 3 * 224 * 224);
    const plane = 224 * 224;
    const expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (0 - 0.406) / 0.225];
    expected.forEach((value, c) => {
      const channel = tensor.subarray(c * plane, (c + 1) * plane);
      const center = channel[112 * 224 + 112]!;
      assert.ok(Math.abs(center - value) < 1e-4, `channel ${c}: ${center} vs ${value}`);
      const mean = channel.reduce((a, b) => a + b, 0) / plane;
      assert.ok(Math.abs(mean - value) < 1e-2, `channel ${c} mean ${mean} vs ${value}`);
    });

    // The class shown is the model's answer for that tensor.
    const direct = await fetch(`${mobilenet.url}/v2/models/mobilenet/infer`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(headerLength) },
      body,
    });
    const { outputs } = (await direct.json()) as { outputs: { data: number[] }[] };
    assert.equal(shownClass, argmax(outputs[0]!.data));
    await page.screenshot({ path: join(ARTIFACTS, 'mobilenet.png'), fullPage: true });
    assert.deepEqual(consoleErrors, []);
    await page.close();
  });
});

describe('what the browser did', () => {
  test('every request went to the APIs on loopback; none left the machine', () => {
    assert.ok(requested.length >= 4, `requests: ${requested.join(', ')}`);
    const origins = new Set([new URL(digits.url).origin, new URL(mobilenet.url).origin]);
    assert.deepEqual(
      requested.filter((url) => !origins.has(new URL(url).origin)),
      [],
    );
  });

  test('the page is served with a strict Content-Security-Policy', async () => {
    const response = await fetch(`${digits.url}/docs`);
    const csp = response.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'sha256-[A-Za-z0-9+/=]+'(;|$)/);
    assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval|https?:/);
    assert.match(csp, /connect-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
  });
});

/** A PNG of one colour (8-bit RGB, no filter), made here so the test needs no image file. */
function solidPng(width: number, height: number, rgb: readonly [number, number, number]): Buffer {
  const row = Buffer.alloc(1 + width * 3);
  for (let x = 0; x < width; x++) row.set(rgb, 1 + x * 3);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  const chunk = (type: string, data: Buffer): Buffer => {
    const length = Buffer.alloc(4);
    length.writeUInt32BE(data.length);
    const typed = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(typed));
    return Buffer.concat([length, typed, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
