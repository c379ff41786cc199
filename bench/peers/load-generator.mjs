// A closed-loop HTTP load generator in a process of its own (the server's CPU is then the server's alone):
// `concurrency` keep-alive connections each send the body, wait for the answer, send again, for warm-up + duration.
// Prints one JSON line: requests answered while measuring, req/s, latency quantiles, errors, and every request sent
// (warm-up included) so the caller can divide the server's CPU time by it. Plain JavaScript: no loader to start.
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';

const spec = JSON.parse(process.argv[2]);
const body = readFileSync(spec.bodyFile);
const agent = new Agent({ keepAlive: true, maxSockets: spec.concurrency });

function post() {
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: spec.port,
        path: spec.path,
        method: 'POST',
        agent,
        headers: { ...spec.headers, 'content-length': body.length },
      },
      (res) => {
        let bytes = 0;
        res.on('data', (chunk) => (bytes += chunk.length));
        res.once('end', () => resolve(res.statusCode === 200 && bytes > 0));
      },
    );
    req.once('error', () => resolve(false));
    req.end(body);
  });
}

const latencies = [];
let errors = 0;
let sent = 0;
let measuring = false;
const warmUntil = performance.now() + spec.warmupSeconds * 1000;
let stopAt = Infinity;
async function client() {
  while (performance.now() < stopAt) {
    const started = performance.now();
    sent++;
    const ok = await post();
    if (!measuring) {
      if (performance.now() >= warmUntil) {
        measuring = true;
        stopAt = performance.now() + spec.seconds * 1000;
        measureStart = performance.now();
      }
      continue;
    }
    if (ok) latencies.push(performance.now() - started);
    else errors++;
  }
}
let measureStart = 0;
await Promise.all(Array.from({ length: spec.concurrency }, client));
const elapsed = (performance.now() - measureStart) / 1000;
latencies.sort((a, b) => a - b);
const q = (p) =>
  latencies.length === 0 ? NaN : latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))];
process.stdout.write(
  `${JSON.stringify({ answered: latencies.length, sent, errors, rps: latencies.length / elapsed, p50Ms: q(0.5), p90Ms: q(0.9), p99Ms: q(0.99) })}\n`,
);
agent.destroy();
