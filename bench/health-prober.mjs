// A health checker in a process of its own, as SageMaker's is: GET /ping every `everyMs` for `durationMs`, then the
// latencies (ms) as one JSON line on stdout. Kept apart from the load generator so its event loop (busy sending
// hundreds of MiB a second) never delays a probe's timing. Plain JavaScript: no loader to start.
import { Agent, request } from 'node:http';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

const [port, everyMs, durationMs] = process.argv.slice(2).map(Number);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });

function ping() {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const req = request({ host: '127.0.0.1', port, path: '/ping', agent }, (res) => {
      res.resume();
      res.once('end', () => resolve({ ms: performance.now() - started, status: res.statusCode }));
    });
    req.once('error', reject);
    req.end();
  });
}

const latencies = [];
let failures = 0;
const until = performance.now() + durationMs;
while (performance.now() < until) {
  const { ms, status } = await ping().catch(() => ({ ms: Number.NaN, status: 0 }));
  if (status === 200) latencies.push(ms);
  else failures++;
  await sleep(everyMs);
}
agent.destroy();
process.stdout.write(`${JSON.stringify({ latencies, failures })}\n`);
