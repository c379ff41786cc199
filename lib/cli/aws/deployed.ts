/**
 * An API's deployed identity: its stack's status and outputs (the URL) from DescribeStacks, and the physical ids of
 * its resources from ListStackResources (every page: DescribeStackResources stops at 100 resources, and one ECS API
 * alone has about 60), for the logical ids the synthesized app names.
 */
import {
  CloudFormationClient,
  DescribeStacksCommand,
  ListStackResourcesCommand,
  type Stack,
  type StackResourceSummary,
} from '@aws-sdk/client-cloudformation';
import { StartupError } from '../../runtime/startup-error.js';
import type { AppApi, ApiResourceIds } from './app-apis.js';
import { awsFailure, type AwsOptions, clientConfig } from './clients.js';

/** An API as it runs in an account. */
export interface DeployedApi {
  readonly app: AppApi;
  readonly region: string;
  /** e.g. `CREATE_COMPLETE`, `UPDATE_ROLLBACK_COMPLETE`. */
  readonly stackStatus: string;
  readonly stackStatusReason?: string;
  readonly url?: string;
  /** Physical ids of the resources `app.ids` names. */
  readonly physical: { readonly [K in keyof ApiResourceIds]?: string };
}

/** A stack that is not deployed in the region looked at. */
export class NotDeployedError extends StartupError {}

/** Looks up each stack once, then every API's URL and physical ids. */
export async function describeDeployed(apis: readonly AppApi[], options: AwsOptions): Promise<DeployedApi[]> {
  const byStack = new Map<string, AppApi[]>();
  for (const api of apis) byStack.set(api.stackName, [...(byStack.get(api.stackName) ?? []), api]);
  const deployed: DeployedApi[] = [];
  for (const [stackName, stackApis] of byStack) {
    const region = options.region ?? stackApis[0]!.region;
    const client = new CloudFormationClient(clientConfig({ ...options, region }));
    try {
      const stack = await describeStack(client, stackName);
      const resources = await stackResources(client, stackName);
      const resolvedRegion = await client.config.region();
      for (const app of stackApis) deployed.push(deployedApi(app, stack, resources, resolvedRegion));
    } finally {
      client.destroy();
    }
  }
  return deployed;
}

async function describeStack(client: CloudFormationClient, stackName: string): Promise<Stack> {
  try {
    const { Stacks } = await client.send(new DescribeStacksCommand({ StackName: stackName }));
    const stack = Stacks?.[0];
    if (stack) return stack;
  } catch (error) {
    if ((error as Error).name === 'ValidationError' && /does not exist/.test((error as Error).message)) {
      throw new NotDeployedError(
        `stack ${stackName} is not deployed in ${await client.config.region()}`,
        'Deploy it first (arclight deploy, or cdk deploy), or pass --region/--profile for where it is',
      );
    }
    throw awsFailure(error, `DescribeStacks ${stackName}`);
  }
  throw new NotDeployedError(`stack ${stackName} is not deployed in ${await client.config.region()}`);
}

/** Every resource of the stack, page by page. */
async function stackResources(client: CloudFormationClient, stackName: string): Promise<StackResourceSummary[]> {
  const resources: StackResourceSummary[] = [];
  let nextToken: string | undefined;
  do {
    try {
      const page = await client.send(new ListStackResourcesCommand({ StackName: stackName, NextToken: nextToken }));
      resources.push(...(page.StackResourceSummaries ?? []));
      nextToken = page.NextToken;
    } catch (error) {
      throw awsFailure(error, `ListStackResources ${stackName}`);
    }
  } while (nextToken);
  return resources;
}

function deployedApi(
  app: AppApi,
  stack: Stack,
  resources: readonly StackResourceSummary[],
  region: string,
): DeployedApi {
  const physical: Record<string, string> = {};
  for (const [key, logicalId] of Object.entries(app.ids)) {
    const id = resources.find((r) => r.LogicalResourceId === logicalId)?.PhysicalResourceId;
    if (id !== undefined) physical[key] = id;
  }
  return {
    app,
    region,
    stackStatus: stack.StackStatus ?? 'UNKNOWN',
    stackStatusReason: stack.StackStatusReason,
    url: stack.Outputs?.find((output) => output.OutputKey === app.urlOutputKey)?.OutputValue,
    physical,
  };
}
