/**
 * `arclight logs <api>`: the API's log group (its function's, endpoint's or containers'), read with FilterLogEvents
 * page by page, our JSON lines pretty-printed (colour on a terminal only), optionally one request's lines, and with
 * `--follow` polled for new events until stopped.
 */
import { CloudWatchLogsClient, FilterLogEventsCommand, type FilteredLogEvent } from '@aws-sdk/client-cloudwatch-logs';
import { StartupError } from '../../runtime/startup-error.js';
import { type AppSource, findApi, loadAppApis } from './app-apis.js';
import { awsFailure, type AwsOptions, clientConfig } from './clients.js';
import { describeDeployed } from './deployed.js';
import { UsageError } from '../fail.js';

export interface LogsOptions extends AwsOptions, AppSource {
  /** How far back: `30s`, `10m`, `2h`, `1d`, or an ISO 8601 time. @default 10m */
  readonly since?: string;
  /** Only the lines of this request id. */
  readonly requestId?: string;
  /** Keep polling for new events. */
  readonly follow?: boolean;
  /** Between polls with `follow`. @default 2000 */
  readonly pollMs?: number;
  /** Colour the levels. @default whether stdout is a terminal (and NO_COLOR unset) */
  readonly color?: boolean;
  /** Where lines go. @default process.stdout */
  readonly write?: (line: string) => void;
  /** Stops following. */
  readonly signal?: AbortSignal;
  /** @default Date.now */
  readonly now?: () => number;
}

/** `10m` → milliseconds before now, or an ISO time → its epoch milliseconds. */
export function parseSince(since: string, now: number): number {
  const relative = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)$/.exec(since.trim());
  if (relative) {
    const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[relative[2] as 's' | 'm' | 'h' | 'd'];
    return now - Number(relative[1]) * unit;
  }
  const time = Date.parse(since);
  if (Number.isNaN(time)) {
    throw new UsageError(
      `--since '${since}' is neither a duration nor a time`,
      'Write it like 30s, 10m, 2h, 1d or 2026-12-02T07:00:00Z',
    );
  }
  return time;
}

/** The filter pattern matching our JSON lines of one request (and nothing else). */
export function requestIdPattern(requestId: string): string {
  if (!/^[A-Za-z0-9_.:-]+$/.test(requestId)) {
    throw new UsageError(`--request-id '${requestId}' has characters no request id has`);
  }
  return `{ $.requestId = "${requestId}" }`;
}

export async function logs(api: string, options: LogsOptions): Promise<number> {
  const now = options.now ?? Date.now;
  const start = parseSince(options.since ?? '10m', now());
  const filterPattern = options.requestId === undefined ? undefined : requestIdPattern(options.requestId);
  const app = findApi(await loadAppApis(options), api);
  const [deployed] = await describeDeployed([app], options);
  const logGroupName = deployed?.physical.logGroup;
  if (logGroupName === undefined) {
    throw new StartupError(`API '${api}' has no deployed log group in stack ${app.stackName}`, 'Deploy the app again');
  }
  const write = options.write ?? ((line: string) => process.stdout.write(`${line}\n`));
  const color = options.color ?? (process.stdout.isTTY === true && !process.env['NO_COLOR']);
  const client = new CloudWatchLogsClient(clientConfig({ ...options, region: deployed!.region }));
  const seen = new Set<string>();
  let from = start;
  let printed = 0;
  try {
    for (;;) {
      const events = await filterAll(client, { logGroupName, startTime: from, filterPattern });
      for (const event of events) {
        if (event.eventId !== undefined && seen.has(event.eventId)) continue;
        if (event.eventId !== undefined) seen.add(event.eventId);
        write(formatEvent(event, color));
        printed++;
        // Events at the same millisecond may still arrive: poll from the last one's time, skip those seen.
        from = Math.max(from, event.timestamp ?? from);
      }
      if (!options.follow || options.signal?.aborted) break;
      await sleep(options.pollMs ?? 2_000, options.signal);
      if (options.signal?.aborted) break;
    }
  } finally {
    client.destroy();
  }
  return printed;
}

/** Every page of FilterLogEvents, in order. */
async function filterAll(
  client: CloudWatchLogsClient,
  query: { logGroupName: string; startTime: number; filterPattern?: string },
): Promise<FilteredLogEvent[]> {
  const events: FilteredLogEvent[] = [];
  let nextToken: string | undefined;
  do {
    try {
      const page = await client.send(new FilterLogEventsCommand({ ...query, nextToken }));
      events.push(...(page.events ?? []));
      nextToken = page.nextToken;
    } catch (error) {
      throw awsFailure(error, `FilterLogEvents ${query.logGroupName}`);
    }
  } while (nextToken);
  return events.sort((a, b) => (a.timestamp ?? 0) - (b.timestamp ?? 0));
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        resolve();
      },
      { once: true },
    );
  });
}

const COLORS: Readonly<Record<string, string>> = { ERROR: '31', WARN: '33', INFO: '32', DEBUG: '90' };
/** Fields the line's head already shows. */
const SHOWN = new Set(['level', 'timestamp', 'message', 'service', 'requestId']);

/**
 * One event as a line: our JSON records as `time LEVEL [requestId] message key=value…` (an error's stack on the lines
 * below), anything else (Lambda's START/REPORT lines, a library's output) as it was written, after its time.
 */
export function formatEvent(event: FilteredLogEvent, color: boolean): string {
  const text = (event.message ?? '').trimEnd();
  const time = new Date(event.timestamp ?? 0).toISOString();
  let record: Record<string, unknown> | undefined;
  try {
    const parsed: unknown = JSON.parse(text);
    if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed))
      record = parsed as Record<string, unknown>;
  } catch {
    record = undefined;
  }
  if (record === undefined || typeof record['message'] !== 'string') return `${time} ${text}`;
  const level = String(record['level'] ?? 'INFO').toUpperCase();
  const paint = (code: string | undefined, value: string): string =>
    color && code ? `\u001b[${code}m${value}\u001b[0m` : value;
  const when = typeof record['timestamp'] === 'string' ? record['timestamp'] : time;
  const id = typeof record['requestId'] === 'string' ? ` [${record['requestId']}]` : '';
  const stacks: string[] = [];
  const fields = Object.entries(record)
    .filter(([key]) => !SHOWN.has(key))
    .map(([key, value]) => {
      if (typeof value === 'object' && value !== null && typeof (value as { stack?: unknown }).stack === 'string') {
        stacks.push((value as { stack: string }).stack);
      }
      return `${key}=${typeof value === 'string' ? value : JSON.stringify(value)}`;
    });
  const head = `${paint('90', when)} ${paint(COLORS[level], level.padEnd(5))}${id} ${record['message']}`;
  const line = fields.length === 0 ? head : `${head} ${paint('90', fields.join(' '))}`;
  return [line, ...stacks.map((stack) => stack.replace(/^/gm, '    '))].join('\n');
}
