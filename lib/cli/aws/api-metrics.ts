/**
 * An API's traffic over a window from CloudWatch GetMetricData: API Gateway's request count, 4xx and 5xx counts and
 * p99 latency (HTTP APIs: `ApiId` + `Stage`; REST APIs: `ApiName` + `Stage`), every page of the answer read.
 */
import { CloudWatchClient, GetMetricDataCommand, type MetricDataQuery } from '@aws-sdk/client-cloudwatch';
import type { DeployedApi } from './deployed.js';
import { awsFailure, type AwsOptions, clientConfig } from './clients.js';

export interface ApiTraffic {
  readonly requests: number;
  readonly clientErrors: number;
  readonly serverErrors: number;
  /** Server errors per request (0 with no requests). */
  readonly errorRate: number;
  /** Milliseconds; undefined with no requests. */
  readonly p99LatencyMs?: number;
}

type Series = 'requests' | 'clientErrors' | 'serverErrors' | 'p99';

/** The metric names of each API Gateway flavour (HTTP APIs name them differently from REST APIs). */
const METRICS: Readonly<Record<'http' | 'rest', Readonly<Record<Exclude<Series, 'p99'>, string>>>> = {
  http: { requests: 'Count', clientErrors: '4xx', serverErrors: '5xx' },
  rest: { requests: 'Count', clientErrors: '4XXError', serverErrors: '5XXError' },
};

/** The dimensions CloudWatch files the API's metrics under, or undefined when the deployment lacks what they need. */
function dimensionsOf(api: DeployedApi): { Name: string; Value: string }[] | undefined {
  const stage = api.app.stageName;
  if (stage === undefined) return undefined;
  if (api.app.gateway === 'rest') {
    const name = api.app.restApiName;
    return name === undefined
      ? undefined
      : [
          { Name: 'ApiName', Value: name },
          { Name: 'Stage', Value: stage },
        ];
  }
  const id = api.physical.api;
  return id === undefined
    ? undefined
    : [
        { Name: 'ApiId', Value: id },
        { Name: 'Stage', Value: stage },
      ];
}

/** Request count, errors and p99 latency of `api` over `[start, end)`; undefined when its dimensions are unknown. */
export async function apiTraffic(
  api: DeployedApi,
  window: { start: Date; end: Date },
  options: AwsOptions,
): Promise<ApiTraffic | undefined> {
  const dimensions = dimensionsOf(api);
  if (dimensions === undefined) return undefined;
  const period = Math.max(60, Math.ceil((window.end.getTime() - window.start.getTime()) / 60_000) * 60);
  const names = METRICS[api.app.gateway];
  const query = (id: Series, metricName: string, stat: string): MetricDataQuery => ({
    Id: id.toLowerCase(),
    MetricStat: {
      Metric: { Namespace: 'AWS/ApiGateway', MetricName: metricName, Dimensions: dimensions },
      Period: period,
      Stat: stat,
    },
    ReturnData: true,
  });
  const queries = [
    query('requests', names.requests, 'Sum'),
    query('clientErrors', names.clientErrors, 'Sum'),
    query('serverErrors', names.serverErrors, 'Sum'),
    query('p99', 'Latency', 'p99'),
  ];
  const client = new CloudWatchClient(clientConfig({ ...options, region: api.region }));
  const values = new Map<string, number[]>();
  try {
    let nextToken: string | undefined;
    do {
      const page = await client.send(
        new GetMetricDataCommand({
          MetricDataQueries: queries,
          StartTime: window.start,
          EndTime: window.end,
          NextToken: nextToken,
        }),
      );
      for (const result of page.MetricDataResults ?? []) {
        values.set(result.Id ?? '', [...(values.get(result.Id ?? '') ?? []), ...(result.Values ?? [])]);
      }
      nextToken = page.NextToken;
    } while (nextToken);
  } catch (error) {
    throw awsFailure(error, `GetMetricData for API '${api.app.apiName}'`);
  } finally {
    client.destroy();
  }
  const sum = (id: string): number => (values.get(id) ?? []).reduce((total, value) => total + value, 0);
  const requests = sum('requests');
  const serverErrors = sum('servererrors');
  // One p99 per period: over several periods the largest is the honest bound (percentiles do not average).
  const p99s = values.get('p99') ?? [];
  return {
    requests,
    clientErrors: sum('clienterrors'),
    serverErrors,
    errorRate: requests === 0 ? 0 : serverErrors / requests,
    p99LatencyMs: p99s.length === 0 ? undefined : Math.max(...p99s),
  };
}
