/**
 * `arclight plan`: before deploying, per API of the app its compute and settings, its model's size, the expected cold
 * start, and what a million requests and an idle hour cost, from a price table shipped in the package (dated, for one
 * region; `--prices <file>` overrides it). Every figure says where it comes from.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { packageFile } from '../package-files.js';
import { StartupError } from '../runtime/startup-error.js';
import { type AppApi, type AppSource, findApi, loadAppApis } from './aws/app-apis.js';
import { UsageError } from './fail.js';

/** The price table shipped in the package. */
export const DEFAULT_PRICES_FILE = packageFile('prices', 'aws-us-east-1.json');

const perArch = z.object({ x86_64: z.number().nonnegative(), arm64: z.number().nonnegative() });
const PriceTable = z.object({
  region: z.string(),
  date: z.string(),
  source: z.string(),
  lambda: z.object({
    requestsPerMillion: z.number().nonnegative(),
    gbSecond: perArch,
    provisionedGbSecond: perArch,
    provisionedDurationGbSecond: perArch,
  }),
  apiGateway: z.object({ httpApiPerMillion: z.number().nonnegative(), restApiPerMillion: z.number().nonnegative() }),
  sagemakerInstanceHour: z.record(z.string(), z.number().nonnegative()),
  ec2InstanceHour: z.record(z.string(), z.number().nonnegative()),
  loadBalancerHour: z.number().nonnegative(),
  natGatewayHour: z.number().nonnegative(),
});
export type PriceTable = z.infer<typeof PriceTable>;

/**
 * Cold-start rates when no bench results are at hand: an S3 fetch of about 100 MB/s (Arclight's parallel ranged GETs
 * from Lambda in the bucket's region), onnxruntime session creation of about 100 MB of model per second, and 1.5 s
 * for the runtime itself to start (the sandbox or container process, Node.js, onnxruntime's import): the README's
 * cold-start measurements (init plus first request ≈ 2 s for the 41 kB digits model) rounded.
 */
export const DEFAULT_RATES = { fetchMBps: 100, sessionMBps: 100, runtimeStartMs: 1500 } as const;
/** How long a request is assumed to run on Lambda, for its duration cost. */
export const DEFAULT_REQUEST_MS = 100;

export interface PlanOptions extends AppSource {
  readonly api?: string;
  /** A price table file of the same shape as the shipped one. */
  readonly prices?: string;
  /** The folder `arclight bench`/`npm run bench` wrote results to. @default bench-results */
  readonly benchResults?: string;
  /** Lambda duration per request, milliseconds. @default 100 */
  readonly requestMs?: number;
}

export interface ColdStartRates {
  readonly fetchMBps: number;
  readonly sessionMBps: number;
  readonly runtimeStartMs: number;
  /** Where they come from, in words. */
  readonly source: string;
}

/** One priced line: an amount in USD and how it was reached. */
export interface Cost {
  readonly usd: number;
  readonly parts: readonly { readonly what: string; readonly usd: number }[];
}

export interface ApiPlan {
  readonly name: string;
  readonly compute: AppApi['compute'];
  /** The compute and its settings, in words. */
  readonly settings: string;
  readonly modelBytes?: number;
  readonly modelSource: string;
  /** Expected cold start (ms): runtime start + fetch + session; undefined when the model size is unknown. */
  readonly coldStartMs?: number;
  readonly coldStartParts?: { readonly runtimeStartMs: number; readonly fetchMs: number; readonly sessionMs: number };
  readonly perMillionRequests: Cost;
  readonly perIdleHour: Cost;
  /** Prices the table lacks, and a region unlike the table's. */
  readonly warnings: readonly string[];
}

export interface Plan {
  readonly apis: readonly ApiPlan[];
  readonly sources: { readonly prices: string; readonly coldStart: string; readonly requestMs: string };
}

export async function plan(options: PlanOptions): Promise<Plan> {
  const cwd = resolve(options.cwd ?? process.cwd());
  const pricesFile = options.prices === undefined ? DEFAULT_PRICES_FILE : resolve(cwd, options.prices);
  const prices = readPrices(pricesFile);
  const rates = coldStartRates(resolve(cwd, options.benchResults ?? 'bench-results'));
  let apis = await loadAppApis(options);
  if (options.api !== undefined) apis = [findApi(apis, options.api)];
  if (apis.length === 0) throw new StartupError('the app has no Arclight API', 'Add a RealtimeApi to a stack');
  const requestMs = options.requestMs ?? DEFAULT_REQUEST_MS;
  return {
    apis: apis.map((api) => planApi(api, prices, rates, requestMs)),
    sources: {
      prices: `${options.prices === undefined ? 'the price table shipped with arclight' : 'your price table'} ${pricesFile} (${prices.region}, ${prices.date}; ${prices.source})`,
      coldStart: rates.source,
      requestMs:
        options.requestMs === undefined
          ? `Lambda duration per request: ${requestMs} ms, the default (--request-ms sets yours)`
          : `Lambda duration per request: ${requestMs} ms (--request-ms)`,
    },
  };
}

export function readPrices(file: string): PriceTable {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new UsageError(`cannot read the price table ${file}: ${(error as Error).message}`);
  }
  const parsed = PriceTable.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`);
    throw new UsageError(
      `the price table ${file} is not valid: ${problems.join('; ')}`,
      `Copy the shape of ${DEFAULT_PRICES_FILE}`,
    );
  }
  return parsed.data;
}

/** The fetch and session rates `npm run bench -- fetch` measured, when its results are there; else the defaults. */
export function coldStartRates(benchDir: string): ColdStartRates {
  const file = join(benchDir, 'fetch.json');
  const defaults = {
    ...DEFAULT_RATES,
    source: `cold-start rates: Arclight's defaults (fetch ${DEFAULT_RATES.fetchMBps} MB/s, session ${DEFAULT_RATES.sessionMBps} MB/s, runtime start ${DEFAULT_RATES.runtimeStartMs} ms); no bench results at ${file}`,
  };
  if (!existsSync(file)) return defaults;
  try {
    const document = JSON.parse(readFileSync(file, 'utf8')) as {
      startedAt?: string;
      data?: { runs?: { variant?: string; fetchMs?: number; sessionMs?: number; modelBytes?: number }[] };
    };
    const runs = document.data?.runs ?? [];
    const rate = (variant: string, ms: (run: (typeof runs)[number]) => number | undefined): number | undefined => {
      const rates = runs
        .filter((run) => run.variant === variant && (ms(run) ?? 0) > 0 && (run.modelBytes ?? 0) > 0)
        .map((run) => run.modelBytes! / 1e6 / (ms(run)! / 1000));
      return rates.length === 0 ? undefined : median(rates);
    };
    const fetchMBps = rate('arclight', (run) => run.fetchMs);
    const sessionMBps = rate('local', (run) => run.sessionMs);
    if (fetchMBps === undefined || sessionMBps === undefined) return defaults;
    return {
      fetchMBps,
      sessionMBps,
      runtimeStartMs: DEFAULT_RATES.runtimeStartMs,
      source: `cold-start rates: measured by bench (${file}, ${document.startedAt ?? 'undated'}): fetch ${fetchMBps.toFixed(1)} MB/s, session ${sessionMBps.toFixed(1)} MB/s; runtime start ${DEFAULT_RATES.runtimeStartMs} ms is Arclight's default`,
    };
  } catch {
    return defaults;
  }
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function planApi(api: AppApi, prices: PriceTable, rates: ColdStartRates, requestMs: number): ApiPlan {
  const warnings: string[] = [];
  if (api.region !== undefined && api.region !== prices.region) {
    warnings.push(`the stack deploys to ${api.region}; the prices are ${prices.region}'s`);
  }
  const bytes = api.model.bytes;
  const parts =
    bytes === undefined
      ? undefined
      : {
          runtimeStartMs: rates.runtimeStartMs,
          fetchMs: (bytes / 1e6 / rates.fetchMBps) * 1000,
          sessionMs: (bytes / 1e6 / rates.sessionMBps) * 1000,
        };
  const costs =
    api.compute === 'lambda'
      ? lambdaCosts(api, prices, requestMs)
      : api.compute === 'sagemaker'
        ? sageMakerCosts(api, prices, warnings)
        : ecsCosts(api, prices, warnings);
  return {
    name: api.apiName,
    compute: api.compute,
    settings: settingsLine(api),
    modelBytes: bytes,
    modelSource:
      bytes !== undefined
        ? `the model asset ${api.model.assetPath}`
        : `the model is ${api.model.uri ?? 'not an asset'}; its size is known once fetched`,
    coldStartMs: parts ? parts.runtimeStartMs + parts.fetchMs + parts.sessionMs : undefined,
    coldStartParts: parts,
    ...costs,
    warnings,
  };
}

function settingsLine(api: AppApi): string {
  const s = api.settings;
  if (api.compute === 'lambda') {
    return `Lambda ${s.architecture}, ${s.memorySize} MB, timeout ${s.timeoutSeconds} s, provisioned concurrency ${s.provisionedConcurrency ?? 0}; HTTP API, auth ${api.auth}`;
  }
  const scaling = s.minCapacity === undefined ? '' : `, autoscaling ${s.minCapacity}–${s.maxCapacity}`;
  const what = api.compute === 'sagemaker' ? 'SageMaker endpoint' : 'ECS service on EC2';
  const front = api.gateway === 'rest' ? 'REST API' : 'HTTP API';
  return `${what}, ${s.instanceCount ?? 1} × ${s.instanceType ?? 'unknown instance'}${scaling}; ${front}, auth ${api.auth}`;
}

function gatewayPart(api: AppApi, prices: PriceTable): { what: string; usd: number } {
  return api.gateway === 'rest'
    ? { what: 'REST API requests', usd: prices.apiGateway.restApiPerMillion }
    : { what: 'HTTP API requests', usd: prices.apiGateway.httpApiPerMillion };
}

function total(parts: { what: string; usd: number }[]): Cost {
  return { usd: parts.reduce((sum, part) => sum + part.usd, 0), parts };
}

function lambdaCosts(
  api: AppApi,
  prices: PriceTable,
  requestMs: number,
): Pick<ApiPlan, 'perMillionRequests' | 'perIdleHour'> {
  const arch = api.settings.architecture === 'arm64' ? 'arm64' : 'x86_64';
  const gb = (api.settings.memorySize ?? 128) / 1024;
  const provisioned = api.settings.provisionedConcurrency ?? 0;
  // Requests on provisioned concurrency pay its lower duration rate.
  const durationRate = provisioned > 0 ? prices.lambda.provisionedDurationGbSecond[arch] : prices.lambda.gbSecond[arch];
  const perMillionRequests = total([
    { what: 'Lambda requests', usd: prices.lambda.requestsPerMillion },
    {
      what: `Lambda duration (${requestMs} ms × ${gb.toFixed(3)} GB, ${arch})`,
      usd: 1e6 * (requestMs / 1000) * gb * durationRate,
    },
    gatewayPart(api, prices),
  ]);
  const perIdleHour = total(
    provisioned > 0
      ? [
          {
            what: `provisioned concurrency (${provisioned} × ${gb.toFixed(3)} GB)`,
            usd: provisioned * gb * 3600 * prices.lambda.provisionedGbSecond[arch],
          },
        ]
      : [{ what: 'nothing: Lambda scales to zero', usd: 0 }],
  );
  return { perMillionRequests, perIdleHour };
}

function instanceHour(
  table: Readonly<Record<string, number>>,
  type: string | undefined,
  warnings: string[],
  kind: string,
): number {
  const price = type === undefined ? undefined : table[type];
  if (price === undefined) {
    warnings.push(
      `the price table has no ${kind} price for ${type ?? 'an unknown instance type'}: counted as $0 (add it with --prices)`,
    );
    return 0;
  }
  return price;
}

function sageMakerCosts(
  api: AppApi,
  prices: PriceTable,
  warnings: string[],
): Pick<ApiPlan, 'perMillionRequests' | 'perIdleHour'> {
  const count = api.settings.minCapacity ?? api.settings.instanceCount ?? 1;
  const hour = instanceHour(prices.sagemakerInstanceHour, api.settings.instanceType, warnings, 'SageMaker');
  return {
    perMillionRequests: total([gatewayPart(api, prices)]),
    perIdleHour: total([
      {
        what: `${count} × ${api.settings.instanceType} (SageMaker real-time, never below ${count})`,
        usd: count * hour,
      },
    ]),
  };
}

function ecsCosts(
  api: AppApi,
  prices: PriceTable,
  warnings: string[],
): Pick<ApiPlan, 'perMillionRequests' | 'perIdleHour'> {
  const count = api.settings.minCapacity ?? api.settings.instanceCount ?? 1;
  const hour = instanceHour(prices.ec2InstanceHour, api.settings.instanceType, warnings, 'EC2');
  const parts = [{ what: `${count} × ${api.settings.instanceType} (EC2, one task per instance)`, usd: count * hour }];
  const albs = api.settings.loadBalancers ?? 0;
  const nats = api.settings.natGateways ?? 0;
  if (albs > 0) parts.push({ what: `${albs} × Application Load Balancer`, usd: albs * prices.loadBalancerHour });
  if (nats > 0) parts.push({ what: `${nats} × NAT gateway`, usd: nats * prices.natGatewayHour });
  return { perMillionRequests: total([gatewayPart(api, prices)]), perIdleHour: total(parts) };
}

/** The plan as text: a block per API, then the sources. */
export function formatPlan(result: Plan): string {
  const usd = (n: number): string => `$${n < 0.01 && n > 0 ? n.toFixed(4) : n.toFixed(2)}`;
  const cost = (c: Cost): string =>
    `${usd(c.usd)}${c.parts.length > 1 || c.parts[0]?.usd !== c.usd || c.usd > 0 ? ` = ${c.parts.map((p) => `${p.what} ${usd(p.usd)}`).join(' + ')}` : ` (${c.parts[0]?.what})`}`;
  const blocks = result.apis.map((api) => {
    const cold = api.coldStartParts
      ? `≈ ${(api.coldStartMs! / 1000).toFixed(2)} s = runtime start ${Math.round(api.coldStartParts.runtimeStartMs)} ms + fetch ${Math.round(api.coldStartParts.fetchMs)} ms + session ${Math.round(api.coldStartParts.sessionMs)} ms`
      : 'unknown (model size unknown)';
    const rows: [string, string][] = [
      ['compute', api.settings],
      ['model', api.modelBytes === undefined ? api.modelSource : `${formatBytes(api.modelBytes)} (${api.modelSource})`],
      ['cold start', api.compute === 'lambda' ? cold : `${cold}, once the instance and image are up`],
      ['per 1M req', cost(api.perMillionRequests)],
      ['idle hour', cost(api.perIdleHour)],
      ...api.warnings.map((warning): [string, string] => ['warning', warning]),
    ];
    return [api.name, ...rows.map(([key, value]) => `  ${key.padEnd(10)} ${value}`)].join('\n');
  });
  return [
    ...blocks,
    [
      'Sources:',
      `  prices: ${result.sources.prices}`,
      `  ${result.sources.coldStart}`,
      `  ${result.sources.requestMs}`,
    ].join('\n'),
  ].join('\n\n');
}

function formatBytes(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${(bytes / 1e3).toFixed(1)} kB`;
}
