/**
 * The `coldstart` scenario's measuring process, in plain JavaScript and run by plain `node` (no tsx loader), as a
 * Lambda container runs the bundle: import the synthesized bundle (Lambda's init phase: with the current entry it
 * resolves once the model is loaded), answer one API Gateway event (the first invocation), report over IPC in
 * bench/child.ts's protocol. Every line written to stdout is kept: the runtime's 'model ready' record carries the
 * breakdown, and EMF lines are counted.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';

const input = JSON.parse(process.argv[2] ?? 'null');
const lines = [];
const write = process.stdout.write.bind(process.stdout);
process.stdout.write = (chunk, ...rest) => {
  lines.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
  return write(chunk, ...rest);
};
const send = (message) => new Promise((resolve) => process.send(message, undefined, {}, () => resolve()));

try {
  const event = JSON.parse(readFileSync(input.eventFile, 'utf8'));
  const t0 = performance.now();
  const { handler } = await import(pathToFileURL(input.bundle).href);
  const t1 = performance.now();
  const deadline = Date.now() + 30_000;
  const context = { awsRequestId: 'coldstart-bench', getRemainingTimeInMillis: () => deadline - Date.now() };
  const result = await handler(event, context);
  const t2 = performance.now();
  const records = lines
    .join('')
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line));
  await send({
    type: 'result',
    value: {
      variant: input.variant,
      model: input.model,
      processToInitMs: t0,
      bundleImportMs: t1 - t0,
      initMs: t1,
      firstPredictionMs: t2 - t0,
      firstRequestMs: t2 - t1,
      status: result.statusCode,
      ready: records.find((r) => r.message === 'model ready'),
      emfLines: records.filter((r) => '_aws' in r).length,
    },
  });
} catch (error) {
  await send({ type: 'error', error: error instanceof Error ? (error.stack ?? error.message) : String(error) });
}
process.exit(0);
