// The hand-written peer, one process per core: node:cluster forks PROCESSES copies of hand-written-server.mjs (each
// HTTP and inference on its one thread, as FastAPI's uvicorn workers are), the primary handing connections round-robin.
// Prints `listening` once every copy listens. Env: hand-written-server.mjs's, plus PROCESSES.
import cluster from 'node:cluster';

if (cluster.isPrimary) {
  const processes = Number(process.env.PROCESSES ?? 2);
  let listening = 0;
  cluster.on('listening', () => {
    if (++listening === processes) process.stdout.write('listening\n');
  });
  // One copy gone (a crash) ends the peer: a measurement never runs on fewer processes than it names.
  cluster.on('exit', (_worker, code) => process.exit(code ?? 1));
  process.once('SIGTERM', () => {
    cluster.removeAllListeners('exit');
    let running = Object.keys(cluster.workers ?? {}).length;
    cluster.on('exit', () => --running === 0 && process.exit(0));
    for (const worker of Object.values(cluster.workers ?? {})) worker?.process.kill('SIGTERM');
  });
  for (let i = 0; i < processes; i++) cluster.fork({ ...process.env });
} else {
  // The server's own `listening` line would reach the primary's stdout once per copy: only the primary's counts.
  process.stdout.write = () => true;
  await import('./hand-written-server.mjs');
}
