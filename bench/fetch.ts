/**
 * Scenario `fetch`: a 256 MiB ONNX model in s3rver behind a proxy that caps every connection (as S3 does, about
 * 40 MB/s each), loaded the Arclight way (parallel ranged GETs overlapped with the onnxruntime import, then the
 * session) and the naive way (one GetObject into a Buffer, then the session). Each measurement is a fresh child
 * process; the variants alternate, round after round.
 * Targets: time to first prediction ≥ 4× faster than naive and ≤ 1.25× the floor (bytes ÷ aggregate bandwidth +
 * session create + first run, measured); RSS growth during the fetch ≤ model size + 64 MiB; ORT format ≤ 1.1× the
 * single-touch floor with fresh memory ≤ 1.2× the model beyond the runtime's fixed footprint (its code loading).
 */
import { readFile, stat } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { startEmbeddedS3 } from '../lib/cli/local/embedded-s3.js';
import { bigModel } from './big-model.js';
import { runInChild } from './child.js';
import { deployedNode } from './deployed-node.js';
import type { FetchVariant, FetchWorkerInput, FetchWorkerResult } from './fetch-worker.js';
import type { BenchOptions, Check, Scenario, ScenarioReport, Table } from './report.js';
import { formatMs, formatRatio, median } from './stats.js';
import { barChart } from './svg.js';
import { startThrottleProxy } from './throttle-proxy.js';
import { existsSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { convertToOrtFormat } from '../lib/runtime/executors/ort-format.js';

/** The model converted to ORT format beside it (once; onnxruntime-node does it, the version that loads it). */
async function ortFormatOf(path: string): Promise<string> {
  const ortPath = path.replace(/\.onnx$/, '.ort');
  if (existsSync(ortPath)) return ortPath;
  await convertToOrtFormat(path, `${ortPath}.part.ort`);
  await rename(`${ortPath}.part.ort`, ortPath);
  return ortPath;
}

const BUCKET = 'bench-models';
const RSS_HEADROOM = 64 * 2 ** 20;
const LABELS: Record<FetchVariant, string> = {
  arclight: 'Arclight: ranged parallel fetch ∥ ort import → session → run',
  'arclight-ort': 'Arclight, ORT format: same fetch → session on the bytes in place → run',
  naive: 'naive: one GetObject → Buffer → session → run',
  local: 'bytes already in memory: session → run',
  'local-ort': 'ORT format on this machine: one touch of the bytes → session in place → run',
  transfer: 'the transfer alone: ranged GETs, bodies dropped',
};
/** The model store's defaults (8 MiB parts, 8 at a time), for the `transfer` variant when the store reports none. */
const PART_SIZE = 8 * 2 ** 20;
const CONCURRENCY = 8;

export const DEFAULT_BANDWIDTH_MBPS = 40;

interface Run extends FetchWorkerResult {
  readonly round: number;
  /** Connections the proxy saw open during this run. */
  readonly connections: number;
}

export const fetchScenario: Scenario = {
  name: 'fetch',
  description:
    '256 MiB model through a per-connection bandwidth cap: Arclight vs one GetObject (time to first prediction)',
  async run(options: BenchOptions, progress): Promise<ScenarioReport> {
    const bandwidthMBps = options.bandwidthMBps ?? DEFAULT_BANDWIDTH_MBPS;
    const rounds = options.quick ? 1 : 3;
    progress('generating the 256 MiB model (once, cached)');
    const path = await bigModel(options.outDir);
    progress('starting s3rver and uploading the model');
    const s3 = await startEmbeddedS3([BUCKET]);
    const runs: Run[] = [];
    const loadBefore = loadavg()[0]!;
    try {
      const { uri } = await s3.put(BUCKET, 'gather-256mib.onnx', await readFile(path));
      progress('converting the model to ORT format (once, cached)');
      const ortPath = await ortFormatOf(path);
      const { uri: ortUri } = await s3.put(BUCKET, 'gather-256mib.ort', await readFile(ortPath));
      const port = Number(new URL(s3.endpoint).port);
      const proxy = await startThrottleProxy({ host: '127.0.0.1', port }, bandwidthMBps * 1e6);
      try {
        const env = { ...s3.env, AWS_ENDPOINT_URL_S3: proxy.endpoint };
        const order: FetchVariant[] = ['arclight', 'arclight-ort', 'naive', 'local', 'local-ort', 'transfer'];
        const size = (await stat(path)).size;
        for (let round = 0; round < rounds; round++) {
          const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
          for (const variant of rotated) {
            progress(`round ${round + 1}/${rounds}: ${variant}`);
            const before = proxy.connections();
            // The transfer moves the bytes exactly as the store did: its part size and concurrency.
            const stats = runs.find((r) => r.variant === 'arclight')?.fetchStats as
              { partSize?: number; concurrency?: number } | undefined;
            const input: FetchWorkerInput = {
              variant,
              uri,
              ortUri,
              path,
              ortPath,
              env,
              threads: options.threads,
              size,
              partSize: stats?.partSize ?? PART_SIZE,
              concurrency: stats?.concurrency ?? CONCURRENCY,
            };
            const result = await runInChild<FetchWorkerInput, FetchWorkerResult>(
              new URL('./fetch-worker.ts', import.meta.url),
              input,
              progress,
              { execPath: deployedNode().execPath },
            );
            runs.push({ ...result, round, connections: proxy.connections() - before });
          }
        }
      } finally {
        await proxy.close();
      }
    } finally {
      await s3.close();
    }
    return report(runs, bandwidthMBps, rounds, loadBefore, loadavg()[0]!);
  },
};

function med(runs: readonly Run[], variant: FetchVariant, pick: (run: Run) => number | undefined): number {
  const values = runs
    .filter((r) => r.variant === variant)
    .map(pick)
    .filter((v): v is number => v !== undefined);
  return values.length === 0 ? Number.NaN : median(values);
}

function report(
  runs: readonly Run[],
  bandwidthMBps: number,
  rounds: number,
  loadBefore: number,
  loadAfter: number,
): ScenarioReport {
  const bytes = runs[0]!.modelBytes;
  const ttfp = (v: FetchVariant): number => med(runs, v, (r) => r.firstPredictionMs);
  const connections = med(runs, 'arclight', (r) => r.connections);
  const aggregateBps = bandwidthMBps * 1e6 * Math.max(1, connections);
  const transferFloorMs = (bytes / aggregateBps) * 1000;
  const localMs = ttfp('local');
  const floorMs = transferFloorMs + localMs;
  const measuredTransferMs = med(runs, 'transfer', (r) => r.fetchMs);
  const measuredFloorMs = measuredTransferMs + localMs;
  const ortFloorMs = measuredTransferMs + ttfp('local-ort');
  const ortMs = ttfp('arclight-ort');
  const ortFreshMiB = med(runs, 'arclight-ort', (r) => r.fresh.totalMiB);
  const ortFootprintMiB = med(runs, 'arclight-ort', (r) => r.fresh.footprintMiB);
  const ortModelFreshMiB = ortFreshMiB - ortFootprintMiB;
  const naiveFreshMiB = med(runs, 'naive', (r) => r.fresh.totalMiB);
  const arclightFreshMiB = med(runs, 'arclight', (r) => r.fresh.totalMiB);
  const modelMiB = runs[0]!.modelBytes / 2 ** 20;
  const freshLimitMiB = 1.2 * modelMiB;
  const ofMeasuredFloor = ttfp('arclight') / measuredFloorMs;
  const arclightMs = ttfp('arclight');
  const naiveMs = ttfp('naive');
  const speedup = naiveMs / arclightMs;
  const ofFloor = arclightMs / floorMs;
  const rssLimit = bytes + RSS_HEADROOM;
  const arclightRss = med(runs, 'arclight', (r) => r.peakRssDuringFetch);
  const rssGrowth = (v: FetchVariant): number =>
    med(runs, v, (r) =>
      r.peakRssDuringFetch === undefined || r.rssBeforeFetch === undefined
        ? undefined
        : r.peakRssDuringFetch - r.rssBeforeFetch,
    );
  const arclightRssGrowth = rssGrowth('arclight');
  const naiveRss = med(runs, 'naive', (r) => r.peakRssDuringFetch);
  const mb = (n: number): string => (Number.isFinite(n) ? `${(n / 2 ** 20).toFixed(0)} MiB` : '–');
  const ms = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : formatMs(n));

  const isLocal = (v: FetchVariant): boolean => v === 'local' || v === 'local-ort';
  const fresh = (v: FetchVariant, pick: (f: Run['fresh']) => number | undefined): string => {
    const value = med(runs, v, (r) => pick(r.fresh));
    return Number.isFinite(value) ? `${value.toFixed(0)} MiB` : '';
  };
  const rows = (['naive', 'arclight', 'arclight-ort', 'local', 'local-ort', 'transfer'] as const).map((v) => [
    LABELS[v],
    ms(ttfp(v)),
    isLocal(v) || v === 'transfer' ? '' : ms(med(runs, v, (r) => r.importMs)),
    isLocal(v) ? '' : ms(med(runs, v, (r) => r.fetchMs)),
    v === 'transfer' ? '' : ms(med(runs, v, (r) => r.sessionMs)),
    v === 'transfer' ? '' : ms(med(runs, v, (r) => r.firstRunMs)),
    isLocal(v) || v === 'transfer' ? '' : mb(med(runs, v, (r) => r.peakRssDuringFetch)),
    v === 'transfer' ? '' : fresh(v, (f) => f.footprintMiB),
    v === 'transfer' ? '' : fresh(v, (f) => f.fetchMiB),
    v === 'transfer' ? '' : fresh(v, (f) => f.sessionMiB),
    v === 'transfer' ? '' : fresh(v, (f) => f.totalMiB),
    isLocal(v) ? '' : String(med(runs, v, (r) => r.connections)),
    formatRatio(ttfp(v) / arclightMs),
  ]);
  rows.push([
    `floor: ${(bytes / 1e6).toFixed(0)} MB ÷ (${connections} × ${bandwidthMBps} MB/s) + session + run`,
    ms(floorMs),
    '',
    ms(transferFloorMs),
    ms(med(runs, 'local', (r) => r.sessionMs)),
    ms(med(runs, 'local', (r) => r.firstRunMs)),
    '',
    '',
    '',
    '',
    '',
    '',
    formatRatio(floorMs / arclightMs),
  ]);
  rows.push([
    'floor on this machine: the transfer alone (measured) + session + run',
    ms(measuredFloorMs),
    '',
    ms(measuredTransferMs),
    ms(med(runs, 'local', (r) => r.sessionMs)),
    ms(med(runs, 'local', (r) => r.firstRunMs)),
    '',
    '',
    '',
    '',
    '',
    '',
    formatRatio(measuredFloorMs / arclightMs),
  ]);
  rows.push([
    'floor, single touch: the transfer alone (measured) + one touch of the bytes + session in place + run',
    ms(ortFloorMs),
    '',
    ms(measuredTransferMs),
    ms(med(runs, 'local-ort', (r) => r.sessionMs)),
    ms(med(runs, 'local-ort', (r) => r.firstRunMs)),
    '',
    '',
    '',
    '',
    '',
    '',
    formatRatio(ortFloorMs / arclightMs),
  ]);
  const table: Table = {
    title: `fetch · ${(bytes / 2 ** 20).toFixed(0)} MiB ONNX model (Gather over a 65536×1024 float table) from s3rver, ${bandwidthMBps} MB/s per connection`,
    notes: [
      `Medians of ${rounds} round(s); each measurement a fresh child process of Node ${deployedNode().version} (imports included), variants alternating.`,
      'Arclight: loadModelBytes (the model store as deployed) while onnxruntime-node imports, then OnnxExecutor.load and one run.',
      'import: Arclight\'s overlaps the fetch (its "fetch" column starts at the clock, imports of the store included); naive imports first, then fetches.',
      `Floor: the transfer at the aggregate cap of the connections Arclight opened (${connections}), plus session create and first run measured from bytes in memory.`,
      'Floor on this machine: the same ranged GETs with their bodies dropped, through the same proxy and s3rver (which share the CPUs with the measured process), instead of the nominal cap.',
      'fresh: memory touched for the first time (minor page faults × 4 KiB, process.resourceUsage) from the clock to the first prediction, and in the code-loading (footprint: the model store and the S3 client, the same whatever the model), fetch and session phases; in a Firecracker VM every first touch is dear. For local-ort, fetch is the one touch of the bytes and session includes it in time.',
      `Peak RSS sampled every 5 ms while the fetch ran (the process's RSS before it, node + tsx + the S3 client, included); target for its growth ≤ model + 64 MiB = ${mb(rssLimit)}. 1-min load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after (a shared, noisy machine).`,
    ],
    columns: [
      'variant',
      'first prediction',
      'import',
      'fetch',
      'session',
      'first run',
      'peak RSS (fetch)',
      'fresh: footprint',
      'fresh: fetch',
      'fresh: session',
      'fresh: total',
      'conns',
      '÷ Arclight',
    ],
    rows,
  };
  const checks: Check[] = [
    {
      status: speedup >= 4 ? 'PASS' : 'FAIL',
      text: `time to first prediction: Arclight ${formatMs(arclightMs)} vs naive ${formatMs(naiveMs)} = ${speedup.toFixed(2)}× faster (target ≥ 4×)`,
    },
    {
      status: ofFloor <= 1.25 ? 'PASS' : 'FAIL',
      text: `Arclight vs floor: ${formatMs(arclightMs)} vs ${formatMs(floorMs)} = ${formatRatio(ofFloor)} (target ≤ 1.250×)`,
    },
    {
      status: 'INFO',
      text: `Arclight vs the floor measured on this machine (transfer alone ${formatMs(measuredTransferMs)} + session + run): ${formatRatio(ofMeasuredFloor)}`,
    },
    {
      status: arclightRssGrowth <= rssLimit ? 'PASS' : 'FAIL',
      text: `RSS growth during the fetch (onnxruntime-node's import included): Arclight ${mb(arclightRssGrowth)} = model + ${mb(arclightRssGrowth - bytes)} (target ≤ ${mb(rssLimit)}); naive ${mb(rssGrowth('naive'))}`,
    },
    {
      status: 'INFO',
      text: `peak RSS during the fetch: Arclight ${mb(arclightRss)}, of which ${mb(med(runs, 'arclight', (r) => r.rssBeforeFetch))} before it began (node, the tsx loader, the S3 client); naive ${mb(naiveRss)}`,
    },
  ];
  checks.push(
    {
      status: naiveMs / ortMs >= 4 ? 'PASS' : 'FAIL',
      text: `ORT format: time to first prediction ${formatMs(ortMs)} vs naive ${formatMs(naiveMs)} = ${(naiveMs / ortMs).toFixed(2)}× faster (target ≥ 4×)`,
    },
    {
      status: ortMs / ortFloorMs <= 1.1 ? 'PASS' : 'FAIL',
      text: `ORT format vs the single-touch floor (transfer measured ${formatMs(measuredTransferMs)} + one touch + session in place + run ${formatMs(ttfp('local-ort'))}): ${formatRatio(ortMs / ortFloorMs)} (target ≤ 1.1×)`,
    },
    {
      status: ortModelFreshMiB <= freshLimitMiB ? 'PASS' : 'FAIL',
      text: `fresh memory touched, clock → first prediction, beyond the runtime's fixed footprint (${ortFootprintMiB.toFixed(0)} MiB of code loading): ORT format ${ortModelFreshMiB.toFixed(0)} MiB = ${(ortModelFreshMiB / modelMiB).toFixed(2)}× the model (target ≤ 1.2× = ${freshLimitMiB.toFixed(0)} MiB); in all ${ortFreshMiB.toFixed(0)} MiB (${(ortFreshMiB / modelMiB).toFixed(2)}×); ONNX ${arclightFreshMiB.toFixed(0)} MiB (${(arclightFreshMiB / modelMiB).toFixed(2)}×); naive ${naiveFreshMiB.toFixed(0)} MiB (${(naiveFreshMiB / modelMiB).toFixed(2)}×)`,
    },
  );
  const stats = runs.find((r) => r.variant === 'arclight')?.fetchStats;
  if (stats !== undefined) checks.push({ status: 'INFO', text: `model store fetch stats: ${JSON.stringify(stats)}` });
  const node = deployedNode();
  if (node.note) checks.push({ status: 'INFO', text: node.note });
  const data = {
    bandwidthMBpsPerConnection: bandwidthMBps,
    modelBytes: bytes,
    rounds,
    connections,
    floor: { transferMs: transferFloorMs, sessionAndRunMs: localMs, totalMs: floorMs },
    measuredFloor: { transferMs: measuredTransferMs, sessionAndRunMs: localMs, totalMs: measuredFloorMs },
    medians: {
      arclightMs,
      naiveMs,
      localMs,
      speedup,
      ofFloor,
      arclightPeakRss: arclightRss,
      naivePeakRss: naiveRss,
      arclightRssGrowth,
    },
    ortFormat: {
      firstPredictionMs: ortMs,
      singleTouchFloorMs: ortFloorMs,
      speedupVsNaive: naiveMs / ortMs,
      ofFloor: ortMs / ortFloorMs,
      freshMiB: ortFreshMiB,
      footprintMiB: ortFootprintMiB,
      freshBeyondFootprintMiB: ortModelFreshMiB,
      freshLimitMiB,
    },
    freshMiB: { arclight: arclightFreshMiB, arclightOrt: ortFreshMiB, naive: naiveFreshMiB },
    rssLimit,
    loadAverage1m: { before: loadBefore, after: loadAfter },
    runs,
  };
  const svg = barChart(
    [
      {
        title: 'time to first prediction (median; tick: slowest round)',
        bars: [
          ...(['naive', 'arclight', 'arclight-ort'] as const).map((v) => ({
            label:
              v === 'naive' ? 'naive (one GetObject)' : v === 'arclight' ? 'Arclight (ONNX)' : 'Arclight (ORT format)',
            value: ttfp(v),
            whisker: Math.max(...runs.filter((r) => r.variant === v).map((r) => r.firstPredictionMs)),
          })),
          { label: 'floor (nominal cap)', value: floorMs, baseline: true },
          { label: 'floor (transfer measured here)', value: measuredFloorMs },
          { label: 'single-touch floor (ORT format)', value: ortFloorMs },
        ],
      },
    ],
    {
      title: `Cold fetch of a ${(bytes / 2 ** 20).toFixed(0)} MiB model at ${bandwidthMBps} MB/s per connection`,
      subtitle: `s3rver behind a per-connection token bucket; ${rounds} round(s), fresh process each`,
      format: formatMs,
    },
  );
  return { tables: [table], checks, data, svg };
}
