// The hand-written peer: what a user writes without a framework. node:http + onnxruntime-node, the raw float32 body
// straight into a tensor, the first output's raw bytes straight back. No validation, no logging, no worker threads.
// Env: PORT, MODEL, INPUT_NAME, SHAPE (comma-separated), THREADS (intra-op).
import { createServer } from 'node:http';
import ort from 'onnxruntime-node';

const shape = process.env.SHAPE.split(',').map(Number);
const session = await ort.InferenceSession.create(process.env.MODEL, {
  intraOpNumThreads: Number(process.env.THREADS ?? 1),
  interOpNumThreads: 1,
  executionMode: 'sequential',
  graphOptimizationLevel: 'all',
});
const server = createServer((req, res) => {
  if (req.method !== 'POST') {
    res.writeHead(200).end('ok');
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', async () => {
    const body = Buffer.concat(chunks);
    const data = new Float32Array(body.buffer, body.byteOffset, body.length / 4);
    const out = await session.run({ [process.env.INPUT_NAME]: new ort.Tensor('float32', data, shape) });
    const first = out[session.outputNames[0]].data;
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(Buffer.from(first.buffer, first.byteOffset, first.byteLength));
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('listening\n'));
