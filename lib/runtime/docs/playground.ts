/**
 * The playground page (`GET /docs`): the model's signature, a request to edit and send, the answer with its status and
 * latency. For an image model (one 4-D float input) it takes an image file and turns it into the tensor in the
 * browser; for a custom predictor it starts from the declared example. One self-contained response (no CDN, works
 * offline and on a private API) whose inline script and style are allowed by their hashes in a strict
 * Content-Security-Policy: nothing else runs, loads or connects anywhere but this API.
 */
import { createHash } from 'node:crypto';
import type { Model, TensorInfo } from '../../predictor.js';
import type { InternalResponse } from '../codec/codec.js';

/** What the page's script reads from its data block. */
export interface PlaygroundData {
  readonly name: string;
  readonly format: string;
  readonly predictor: 'custom' | 'default';
  readonly inputs: readonly Pick<TensorInfo, 'name' | 'datatype' | 'shape'>[];
  readonly outputs: readonly Pick<TensorInfo, 'name' | 'datatype' | 'shape'>[];
  /** Where requests go, relative to the API's root: `''` (POST /) or `v2/models/<name>/infer`. */
  readonly target: string;
  /** The request the page starts with (the declared example, or zeros for small inputs). */
  readonly example: unknown;
  /** The image input, when the model takes one. */
  readonly image: ImageInput | null;
}

/** A 4-D float input read as an image: its layout and the size images are resized to. */
export interface ImageInput {
  readonly name: string;
  readonly datatype: string;
  readonly layout: 'NCHW' | 'NHWC';
  readonly channels: 1 | 3;
  readonly height: number;
  readonly width: number;
}

/** Where a dynamic image dimension is unknown, images are resized to this (ImageNet's usual size). */
const DEFAULT_IMAGE_SIDE = 224;

/** The image input of a model whose only input is a 4-D float tensor with 1 or 3 channels, if it has one. */
export function imageInput(model: Model): ImageInput | null {
  if (model.inputs.length !== 1) return null;
  const input = model.inputs[0]!;
  if (input.asSent || input.shape.length !== 4 || !['FP32', 'FP64'].includes(input.datatype)) return null;
  const [, c1, , c3] = input.shape;
  const side = (d: number | undefined): number => (d !== undefined && d > 0 ? d : DEFAULT_IMAGE_SIDE);
  if (c1 === 1 || c1 === 3) {
    return { ...base(input), layout: 'NCHW', channels: c1, height: side(input.shape[2]), width: side(input.shape[3]) };
  }
  if (c3 === 1 || c3 === 3) {
    return { ...base(input), layout: 'NHWC', channels: c3, height: side(input.shape[1]), width: side(input.shape[2]) };
  }
  return null;
}

function base(input: TensorInfo): { name: string; datatype: string } {
  return { name: input.name, datatype: input.datatype };
}

const STYLE = `
:root{color-scheme:light dark;--fg:#1b1f24;--bg:#fff;--muted:#57606a;--line:#d0d7de;--accent:#0969da;--bad:#cf222e;--ok:#1a7f37}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#8d96a0;--line:#30363d;--accent:#4493f8;--bad:#f85149;--ok:#3fb950}}
*{box-sizing:border-box}body{margin:0 auto;max-width:60rem;padding:1rem 1.5rem 3rem;font:15px/1.5 system-ui,sans-serif;color:var(--fg);background:var(--bg)}
h1{margin:.5rem 0 0;font-size:1.6rem}h2{font-size:1.1rem;margin:1.6rem 0 .5rem;border-bottom:1px solid var(--line)}
header p{margin:.2rem 0;color:var(--muted)}a{color:var(--accent)}code,pre,textarea{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,monospace}
table{border-collapse:collapse}th,td{text-align:left;padding:.2rem .8rem .2rem 0;border-bottom:1px solid var(--line)}
textarea{width:100%;min-height:12rem;padding:.5rem;color:var(--fg);background:var(--bg);border:1px solid var(--line);border-radius:6px}
button{margin-top:.5rem;padding:.4rem 1.2rem;font:inherit;color:#fff;background:var(--accent);border:0;border-radius:6px;cursor:pointer}
button:disabled{opacity:.6;cursor:wait}#image-input{display:flex;gap:1rem;align-items:center;flex-wrap:wrap;margin-bottom:.5rem}
#image-input[hidden]{display:none}canvas{width:112px;height:112px;border:1px solid var(--line);image-rendering:pixelated}
pre{padding:.6rem;overflow:auto;max-height:28rem;border:1px solid var(--line);border-radius:6px}
#status.ok{color:var(--ok)}#status.bad{color:var(--bad)}#summary{font-size:1.2rem;font-weight:600}
`;

// The page's script, plain browser JavaScript (no template literals: this is one).
const SCRIPT = String.raw`
(function () {
  'use strict';
  var data = JSON.parse(document.getElementById('api-data').textContent);
  var root = location.pathname.replace(/\/docs\/?$/, '/');
  var $ = function (id) { return document.getElementById(id); };
  var imageTensor = null;
  $('openapi').href = root + 'openapi.json';
  $('target').textContent = 'POST ' + root + data.target;
  $('kind').textContent = data.format + ' model, ' +
    (data.predictor === 'custom' ? 'custom predictor (POST /)' : 'Open Inference Protocol v2');
  function row(t, side) {
    var tr = document.createElement('tr');
    [side, t.name, t.datatype, '[' + t.shape.join(', ') + ']'].forEach(function (v) {
      var td = document.createElement('td'); td.textContent = v; tr.appendChild(td);
    });
    $('tensors').appendChild(tr);
  }
  data.inputs.forEach(function (t) { row(t, 'input'); });
  data.outputs.forEach(function (t) { row(t, 'output'); });
  if (data.example !== null && data.example !== undefined) $('body').value = pretty(data.example, '');

  /** JSON with arrays of numbers, strings or booleans on one line: tensors stay readable. */
  function pretty(value, indent) {
    if (Array.isArray(value)) {
      if (value.every(function (v) { return v === null || typeof v !== 'object'; })) return JSON.stringify(value);
      var inner = indent + '  ';
      return '[\n' + value.map(function (v) { return inner + pretty(v, inner); }).join(',\n') + '\n' + indent + ']';
    }
    if (value !== null && typeof value === 'object') {
      var keys = Object.keys(value);
      if (keys.length === 0) return '{}';
      var nested = indent + '  ';
      return '{\n' + keys.map(function (k) { return nested + JSON.stringify(k) + ': ' + pretty(value[k], nested); })
        .join(',\n') + '\n' + indent + '}';
    }
    return JSON.stringify(value);
  }

  /** The top-level scalars of an answer (\u201cdigit: 7\u201d): what a custom predictor's answer is about. */
  function scalars(value) {
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return '';
    return Object.keys(value).filter(function (k) { return value[k] === null || typeof value[k] !== 'object'; })
      .slice(0, 4).map(function (k) { return k + ': ' + JSON.stringify(value[k]); }).join(', ');
  }

  if (data.image) {
    var img = data.image;
    $('image-input').hidden = false;
    $('image-label').textContent = 'Image for input \u2018' + img.name + '\u2019 (resized to ' + img.width + '\u00d7' +
      img.height + ', ' + (img.channels === 3 ? 'RGB' : 'grey') + ', ' + img.layout + ')';
    $('normalize').value = img.channels === 3 ? 'imagenet' : 'unit';
    var preview = $('preview');
    preview.width = img.width; preview.height = img.height;
    var load = function () {
      var file = $('image-file').files[0];
      if (!file) return;
      createImageBitmap(file).then(function (bitmap) {
        var ctx = preview.getContext('2d', { willReadFrequently: true });
        ctx.drawImage(bitmap, 0, 0, img.width, img.height);
        imageTensor = toTensor(ctx.getImageData(0, 0, img.width, img.height).data, img, $('normalize').value);
        $('body').value = '(the tensor of ' + file.name + ': ' + imageTensor.length + ' values, sent in binary)';
        $('body').disabled = true;
      }, function (error) { show(null, 'bad', 'cannot read that image: ' + error.message, ''); });
    };
    $('image-file').addEventListener('change', load);
    $('normalize').addEventListener('change', load);
  }

  function toTensor(rgba, img, mode) {
    var mean = mode === 'imagenet' ? [0.485, 0.456, 0.406] : [0, 0, 0];
    var std = mode === 'imagenet' ? [0.229, 0.224, 0.225] : [1, 1, 1];
    var pixels = img.width * img.height;
    var out = new Float32Array(pixels * img.channels);
    for (var p = 0; p < pixels; p++) {
      for (var c = 0; c < img.channels; c++) {
        var v = img.channels === 3 ? rgba[p * 4 + c] :
          0.299 * rgba[p * 4] + 0.587 * rgba[p * 4 + 1] + 0.114 * rgba[p * 4 + 2];
        v = mode === 'raw' ? v : mode === 'symmetric' ? v / 127.5 - 1 : (v / 255 - mean[c]) / std[c];
        out[img.layout === 'NCHW' ? c * pixels + p : p * img.channels + c] = v;
      }
    }
    return out;
  }

  function binaryRequest(tensor, img) {
    var shape = img.layout === 'NCHW' ? [1, img.channels, img.height, img.width] : [1, img.height, img.width, img.channels];
    var values = img.datatype === 'FP64' ? new Float64Array(tensor) : tensor;
    var header = new TextEncoder().encode(JSON.stringify({ inputs: [{ name: img.name, datatype: img.datatype,
      shape: shape, parameters: { binary_data_size: values.byteLength } }] }));
    var body = new Uint8Array(header.length + values.byteLength);
    body.set(header, 0);
    body.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), header.length);
    return { body: body, headers: { 'content-type': 'application/octet-stream',
      'inference-header-content-length': String(header.length) } };
  }

  function show(status, kind, summary, text) {
    $('status').className = kind;
    $('status').textContent = status || '';
    $('summary').textContent = summary;
    $('output').textContent = text;
  }

  /** Top classes of a [1, K] or [K] float output (K > 1): what an image classifier answers. */
  function topClasses(outputs) {
    var out = outputs && outputs.length === 1 ? outputs[0] : null;
    if (!out || !/^FP/.test(out.datatype) || !Array.isArray(out.data)) return '';
    var shape = out.shape || [];
    var k = shape[shape.length - 1];
    if (!(k > 1) || out.data.length !== k) return '';
    var order = out.data.map(function (v, i) { return i; }).sort(function (a, b) { return out.data[b] - out.data[a]; });
    return 'class ' + order[0] + ' (score ' + Number(out.data[order[0]]).toPrecision(4) + '); next: ' +
      order.slice(1, 5).join(', ');
  }

  $('send').addEventListener('click', function () {
    var request;
    if (imageTensor) request = binaryRequest(imageTensor, data.image);
    else request = { body: $('body').value, headers: { 'content-type': 'application/json' } };
    $('send').disabled = true;
    show('sending\u2026', '', '', '');
    var started = performance.now();
    fetch(root + data.target, { method: 'POST', headers: request.headers, body: request.body })
      .then(function (response) {
        return response.text().then(function (text) {
          var ms = (performance.now() - started).toFixed(1);
          var status = response.status + ' ' + response.statusText + ' \u00b7 ' + ms + ' ms \u00b7 request id ' +
            (response.headers.get('x-request-id') || '-');
          var value = null;
          try { value = JSON.parse(text); } catch (e) { value = null; }
          var summary = '';
          if (value && response.ok) summary = data.predictor === 'default' ? topClasses(value.outputs) : scalars(value);
          if (value && !response.ok && value.error) {
            summary = typeof value.error === 'string' ? value.error : String(value.error.message || '');
          }
          show(status, response.ok ? 'ok' : 'bad', summary, value === null ? text : pretty(value, ''));
        });
      })
      .catch(function (error) { show('no answer', 'bad', error.message, ''); })
      .finally(function () { $('send').disabled = false; });
  });
})();
`;

const CSP = [
  "default-src 'none'",
  `script-src '${hash(SCRIPT)}'`,
  `style-src '${hash(STYLE)}'`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

/** The playground page's response, with its Content-Security-Policy and other protective headers. */
export function playgroundResponse(data: PlaygroundData): InternalResponse {
  return {
    status: 200,
    headers: {
      'content-type': 'text/html; charset=utf-8',
      'content-security-policy': CSP,
      'x-content-type-options': 'nosniff',
      'referrer-policy': 'no-referrer',
      'cross-origin-opener-policy': 'same-origin',
      'cache-control': 'no-cache',
    },
    body: Buffer.from(page(data)),
  };
}

function page(data: PlaygroundData): string {
  const title = escapeHtml(data.name);
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · Arclight playground</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>${title}</h1>
<p id="kind"></p>
<p><a id="openapi" href="openapi.json">OpenAPI document</a></p>
</header>
<h2>Signature</h2>
<table><thead><tr><th></th><th>name</th><th>datatype</th><th>shape</th></tr></thead><tbody id="tensors"></tbody></table>
<h2>Request</h2>
<div id="image-input" hidden>
<label><span id="image-label"></span><br><input id="image-file" type="file" accept="image/*"></label>
<label>normalization <select id="normalize">
<option value="imagenet">ImageNet mean/std</option><option value="unit">0 to 1</option>
<option value="symmetric">-1 to 1</option><option value="raw">0 to 255</option>
</select></label>
<canvas id="preview" width="1" height="1"></canvas>
</div>
<p><code id="target"></code></p>
<textarea id="body" spellcheck="false" aria-label="request body"></textarea>
<button id="send" type="button">Send</button>
<h2>Response</h2>
<p id="status"></p>
<p id="summary"></p>
<pre id="output"></pre>
<script type="application/json" id="api-data">${jsonForScript(data)}</script>
<script>${SCRIPT}</script>
</body>
</html>
`;
}

function hash(text: string): string {
  return `sha256-${createHash('sha256').update(text).digest('base64')}`;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** JSON that cannot end its script element or open a comment inside it. */
function jsonForScript(value: unknown): string {
  return JSON.stringify(value)
    .replace(/</g, '\\u003c')
    .replace(/>/g, '\\u003e')
    .replace(/&/g, '\\u0026')
    .replace(/\u2028/g, '\\u2028')
    .replace(/\u2029/g, '\\u2029');
}
