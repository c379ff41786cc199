/**
 * `arclight get [api]`: for each API of the app, its backend, URL, stack status, the state of its function, endpoint
 * or service, the model it serves (URI, version, sha256) and the last hour's traffic from CloudWatch.
 */
import { DescribeServicesCommand, ECSClient } from '@aws-sdk/client-ecs';
import { GetFunctionCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { DescribeEndpointCommand, SageMakerClient } from '@aws-sdk/client-sagemaker';
import { ENV } from '../../contract.js';
import { StartupError } from '../../runtime/startup-error.js';
import { type ApiTraffic, apiTraffic } from './api-metrics.js';
import { type AppApi, type AppSource, findApi, loadAppApis } from './app-apis.js';
import { awsFailure, type AwsOptions, clientConfig } from './clients.js';
import { type DeployedApi, describeDeployed, NotDeployedError } from './deployed.js';

export interface GetOptions extends AwsOptions, AppSource {
  /** One API by name. @default every API of the app */
  readonly api?: string;
  /** The end of the traffic window. @default now */
  readonly now?: Date;
}

/** What `get` reports about one API. */
export interface ApiReport {
  readonly name: string;
  readonly compute: AppApi['compute'];
  readonly auth: AppApi['auth'];
  readonly stack: string;
  readonly region?: string;
  readonly stackStatus: string;
  readonly url?: string;
  /** The function's, endpoint's or service's state, e.g. `Active`, `InService`, `ACTIVE 2/2 running`. */
  readonly state?: string;
  readonly model: {
    readonly uri?: string;
    readonly version?: string;
    readonly sha256?: string;
    readonly source: string;
  };
  /** The last hour's traffic; undefined when not deployed or unknown. */
  readonly traffic?: ApiTraffic;
  /** Why a part could not be read (one line each). */
  readonly problems: readonly string[];
}

const HOUR_MS = 3_600_000;

export async function getApis(options: GetOptions): Promise<ApiReport[]> {
  let apis = await loadAppApis(options);
  if (options.api !== undefined) apis = [findApi(apis, options.api)];
  if (apis.length === 0) throw new StartupError('the app has no Arclight API', 'Add a RealtimeApi to a stack');
  const end = options.now ?? new Date();
  const window = { start: new Date(end.getTime() - HOUR_MS), end };
  const reports: ApiReport[] = [];
  for (const stackApis of groupByStack(apis)) {
    let deployed: DeployedApi[];
    try {
      deployed = await describeDeployed(stackApis, options);
    } catch (error) {
      if (!(error instanceof NotDeployedError)) throw error;
      reports.push(...stackApis.map((api) => notDeployed(api, error)));
      continue;
    }
    for (const api of deployed) reports.push(await reportOf(api, window, options));
  }
  return reports;
}

function groupByStack(apis: readonly AppApi[]): AppApi[][] {
  const groups = new Map<string, AppApi[]>();
  for (const api of apis) groups.set(api.stackName, [...(groups.get(api.stackName) ?? []), api]);
  return [...groups.values()];
}

function notDeployed(api: AppApi, error: NotDeployedError): ApiReport {
  return {
    name: api.apiName,
    compute: api.compute,
    auth: api.auth,
    stack: api.stackName,
    region: api.region,
    stackStatus: 'NOT_DEPLOYED',
    model: { ...modelOfTemplate(api), source: 'synthesized template' },
    problems: [error.message],
  };
}

async function reportOf(api: DeployedApi, window: { start: Date; end: Date }, options: AwsOptions): Promise<ApiReport> {
  const problems: string[] = [];
  const attempt = async <T>(work: () => Promise<T>): Promise<T | undefined> => {
    try {
      return await work();
    } catch (error) {
      problems.push(error instanceof StartupError ? error.message : String(error));
      return undefined;
    }
  };
  const compute = await attempt(() => computeState(api, options));
  const traffic = await attempt(() => apiTraffic(api, window, options));
  const deployedModel = compute?.environment ? modelOfEnvironment(compute.environment) : undefined;
  return {
    name: api.app.apiName,
    compute: api.app.compute,
    auth: api.app.auth,
    stack: api.app.stackName,
    region: api.region,
    stackStatus: api.stackStatus + (api.stackStatusReason ? ` (${api.stackStatusReason})` : ''),
    url: api.url,
    state: compute?.state,
    model: deployedModel
      ? { ...deployedModel, source: 'deployed function' }
      : { ...modelOfTemplate(api.app), source: 'synthesized template' },
    traffic,
    problems,
  };
}

/** The state of what runs the API, and (Lambda) its deployed environment. */
async function computeState(
  api: DeployedApi,
  options: AwsOptions,
): Promise<{ state: string; environment?: Record<string, string> }> {
  const config = clientConfig({ ...options, region: api.region });
  if (api.app.compute === 'lambda') {
    const name = requirePhysical(api, 'function');
    const client = new LambdaClient(config);
    try {
      const { Configuration: c } = await client.send(new GetFunctionCommand({ FunctionName: name }));
      const update =
        c?.LastUpdateStatus && c.LastUpdateStatus !== 'Successful' ? `, last update ${c.LastUpdateStatus}` : '';
      const reason = c?.StateReason ? ` (${c.StateReason})` : '';
      return { state: `${c?.State ?? 'unknown'}${update}${reason}`, environment: c?.Environment?.Variables };
    } catch (error) {
      throw awsFailure(error, `GetFunction ${name}`);
    } finally {
      client.destroy();
    }
  }
  if (api.app.compute === 'sagemaker') {
    const name = requirePhysical(api, 'endpoint');
    const client = new SageMakerClient(config);
    try {
      const endpoint = await client.send(new DescribeEndpointCommand({ EndpointName: name }));
      const variant = endpoint.ProductionVariants?.[0];
      const instances =
        variant?.CurrentInstanceCount === undefined ? '' : `, ${variant.CurrentInstanceCount} instance(s)`;
      const reason = endpoint.FailureReason ? ` (${endpoint.FailureReason})` : '';
      return { state: `${endpoint.EndpointStatus ?? 'unknown'}${instances}${reason}` };
    } catch (error) {
      throw awsFailure(error, `DescribeEndpoint ${name}`);
    } finally {
      client.destroy();
    }
  }
  const service = requirePhysical(api, 'service');
  const client = new ECSClient(config);
  try {
    const { services, failures } = await client.send(
      new DescribeServicesCommand({ cluster: api.physical.cluster, services: [service] }),
    );
    const s = services?.[0];
    if (!s) return { state: `missing (${failures?.[0]?.reason ?? 'not found'})` };
    const rollout = s.deployments?.find((d) => d.status === 'PRIMARY')?.rolloutState;
    return {
      state: `${s.status ?? 'unknown'}, ${s.runningCount ?? 0}/${s.desiredCount ?? 0} tasks running${rollout ? `, rollout ${rollout}` : ''}`,
    };
  } catch (error) {
    throw awsFailure(error, `DescribeServices ${service}`);
  } finally {
    client.destroy();
  }
}

function requirePhysical(api: DeployedApi, key: 'function' | 'endpoint' | 'service'): string {
  const id = api.physical[key];
  if (id === undefined) throw new StartupError(`the stack has no deployed ${key} for API '${api.app.apiName}'`);
  return id;
}

function modelOfEnvironment(environment: Record<string, string>): { uri?: string; version?: string; sha256?: string } {
  const uri = environment[ENV.modelUri];
  return { uri, version: versionOf(uri), sha256: environment[ENV.modelSha256] };
}

function modelOfTemplate(api: AppApi): { uri?: string; version?: string; sha256?: string } {
  return { uri: api.model.uri, version: versionOf(api.model.uri), sha256: api.model.sha256 };
}

/** The model's version as the deployment names it: the object key's file name (an asset's is its content hash). */
function versionOf(uri: string | undefined): string | undefined {
  if (uri === undefined) return undefined;
  const name = uri.split('/').at(-1) ?? uri;
  return name.replace(/\.(onnx|pt|ckpt)$/, '');
}

/** The reports as a table per API. */
export function formatReports(reports: readonly ApiReport[]): string {
  return reports
    .map((r) => {
      const rows: [string, string][] = [
        ['backend', `${r.compute}, auth ${r.auth}`],
        ['stack', `${r.stack}${r.region ? ` (${r.region})` : ''}: ${r.stackStatus}`],
        ['url', r.url ?? '-'],
        ['state', r.state ?? '-'],
        ['model', r.model.uri ?? '-'],
        ['version', r.model.version ?? '-'],
        ['sha256', `${r.model.sha256 ?? '-'} (${r.model.source})`],
        ['last hour', r.traffic ? trafficLine(r.traffic) : '-'],
        ...r.problems.map((problem): [string, string] => ['problem', problem]),
      ];
      return [r.name, ...rows.map(([key, value]) => `  ${key.padEnd(10)} ${value}`)].join('\n');
    })
    .join('\n\n');
}

function trafficLine(t: ApiTraffic): string {
  const p99 = t.p99LatencyMs === undefined ? 'p99 -' : `p99 ${Math.round(t.p99LatencyMs)} ms`;
  return `${t.requests} requests, ${(t.errorRate * 100).toFixed(2)}% errors (${t.serverErrors} 5xx, ${t.clientErrors} 4xx), ${p99}`;
}
