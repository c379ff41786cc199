/**
 * Fresh memory a session costs, per phase, for each way of handing onnxruntime the model: one fresh process per
 * variant (`npx tsx bench/session-memory.ts <model.onnx> [variant]`); prints one JSON line per variant with minor
 * page faults (× 4 KiB = fresh memory touched) and RSS growth for read, session create and first run, and their times.
 * Variants: bytes (a Buffer read from disk, as the model store hands it), path (onnxruntime reads the file itself),
 * bytes-no-prepack / path-no-prepack (session.disable_prepacking), bytes-no-arena (enableCpuMemArena off).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { importOnnxRuntime } from '../lib/runtime/executors/onnx-executor.js';

const PAGE = 4096;
const VARIANTS = ['bytes', 'path', 'bytes-no-prepack', 'path-no-prepack', 'bytes-no-arena'] as const;
/** For a model in ORT format (.ort): onnxruntime reads the caller's bytes in place (initializers included). */
const ORT_VARIANTS = ['bytes', 'bytes-direct', 'bytes-direct-no-prepack'] as const;

function mark(): { faults: number; rss: number; at: number } {
  return { faults: process.resourceUsage().minorPageFault, rss: process.memoryUsage.rss(), at: performance.now() };
}

function phase(
  a: ReturnType<typeof mark>,
  b: ReturnType<typeof mark>,
): { freshMiB: number; rssMiB: number; ms: number } {
  const r = (x: number): number => Math.round(x * 10) / 10;
  return {
    freshMiB: r(((b.faults - a.faults) * PAGE) / 2 ** 20),
    rssMiB: r((b.rss - a.rss) / 2 ** 20),
    ms: r(b.at - a.at),
  };
}

async function measure(model: string, variant: string): Promise<void> {
  const { ort } = await importOnnxRuntime();
  const m0 = mark();
  const bytes = variant.startsWith('bytes') ? readFileSync(model) : undefined;
  const m1 = mark();
  const options: Record<string, unknown> = {
    graphOptimizationLevel: 'all',
    executionMode: 'sequential',
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
  };
  if (variant.endsWith('no-prepack')) options['extra'] = { session: { disable_prepacking: '1' } };
  if (variant.endsWith('no-arena')) options['enableCpuMemArena'] = false;
  if (variant.startsWith('bytes-direct')) {
    options['extra'] = {
      session: {
        use_ort_model_bytes_directly: '1',
        use_ort_model_bytes_for_initializers: '1',
        ...(variant.endsWith('no-prepack') ? { disable_prepacking: '1' } : {}),
      },
    };
  }
  const session = bytes
    ? await ort.InferenceSession.create(bytes, options)
    : await ort.InferenceSession.create(model, options);
  const m2 = mark();
  const feeds: Record<string, InstanceType<typeof ort.Tensor>> = {};
  const meta = session.inputMetadata as unknown as {
    name: string;
    type: string;
    shape: (number | string)[];
    isTensor: boolean;
  }[];
  for (const [i, name] of session.inputNames.entries()) {
    const info = Array.isArray(meta) ? meta[i] : undefined;
    const dims = (info?.shape ?? [1]).map((d) => (typeof d === 'number' && d > 0 ? d : 1));
    const count = dims.reduce((a, b) => a * b, 1);
    feeds[name] =
      info?.type === 'int64'
        ? new ort.Tensor('int64', new BigInt64Array(count), dims)
        : new ort.Tensor('float32', new Float32Array(count), dims);
  }
  await session.run(feeds);
  const m3 = mark();
  const modelMiB = Math.round((statSync(model).size / 2 ** 20) * 10) / 10;
  console.log(
    JSON.stringify({
      variant,
      modelMiB,
      read: phase(m0, m1),
      session: phase(m1, m2),
      firstRun: phase(m2, m3),
      total: phase(m0, m3),
    }),
  );
}

const [model, variant] = process.argv.slice(2);
if (!model) throw new Error('usage: session-memory.ts <model.onnx> [variant]');
if (variant) await measure(model, variant);
else {
  for (const v of model.endsWith('.ort') ? ORT_VARIANTS : VARIANTS) {
    const run = spawnSync(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), model, v], {
      encoding: 'utf8',
    });
    process.stdout.write(run.stdout || `{"variant":"${v}","error":${JSON.stringify(run.stderr.slice(-300))}}\n`);
  }
}
