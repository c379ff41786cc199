/**
 * `arclight deploy [api…]`: checks the AWS credentials and region first (one line when they are missing), synthesizes
 * and validates the app, deploys the APIs' stacks with the CDK CLI's event progress, and prints each API's URL from
 * the stack outputs. A failed deployment exits non-zero naming the failing resource and CloudFormation's reason.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { failureLine } from './assembly.js';
import { assemblyApis, apiStacks, cdkArguments, runCdk, stacksOf, type Project } from './cdk-cli.js';
import { UsageError } from '../fail.js';
import { CdkCliError, synth } from './synth.js';

/** The AWS setup a deploy needs is missing: told in one line, with what to do. */
export class AwsSetupError extends UsageError {}

/**
 * Resolves the shell's AWS credentials and region as the AWS SDK (and so the CDK CLI) would; throws an
 * AwsSetupError in one line when either is missing. Returns the region.
 */
export async function checkAwsAccess(region: string | undefined): Promise<string> {
  // The SDK's multi-line notice about its future Node.js versions would bury the one line this check prints.
  process.env['AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED'] ??= 'true';
  const { S3Client } = await import('@aws-sdk/client-s3');
  const client = new S3Client(region ? { region } : {});
  try {
    let resolvedRegion: string;
    try {
      resolvedRegion = await client.config.region();
    } catch {
      throw new AwsSetupError(
        'no AWS region: set region: in arclight.yaml, or AWS_REGION, or a region in your AWS profile',
      );
    }
    try {
      await client.config.credentials();
    } catch (error) {
      throw new AwsSetupError(
        `no AWS credentials (${firstLine((error as Error).message)}): run aws configure or aws sso login, or set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY`,
      );
    }
    return resolvedRegion;
  } finally {
    client.destroy();
  }
}

function firstLine(text: string): string {
  return text.split('\n')[0]!.replace(/\.$/, '');
}

export interface DeployOptions {
  /** APIs to deploy (all when empty). */
  readonly apis: readonly string[];
  readonly file?: string;
  readonly cwd?: string;
  /** Passed to `cdk deploy --require-approval`. */
  readonly requireApproval?: string;
  /** Where the CDK CLI's output goes. @default stderr */
  readonly echo?: (chunk: string) => void;
}

/** One deployed API and its URL. */
export interface DeployedApi {
  readonly apiName: string;
  readonly stackName: string;
  readonly url?: string;
}

export async function deploy(options: DeployOptions): Promise<DeployedApi[]> {
  const { project, assembly } = await synthForAws(options);
  const stacks = stacksOf(options.apis, apiStacks(assembly));
  const outDir = mkdtempSync(join(tmpdir(), 'arclight-deploy-'));
  const outputsFile = join(outDir, 'outputs.json');
  try {
    const run = await runCdk(
      project,
      cdkArguments('deploy', project, { stacks, requireApproval: options.requireApproval, outputsFile }),
      options.echo,
    );
    if (run.code !== 0) throw new CdkCliError(`deploy failed: ${deployFailure(run.output)}`);
    const outputs = readOutputs(outputsFile);
    const wanted = new Set(stacks);
    return assemblyApis(assembly)
      .filter((api) => wanted.has(api.artifactId))
      .map((api) => ({
        apiName: api.apiName,
        stackName: api.stackName,
        url: outputs[api.stackName]?.[api.urlOutput],
      }));
  } finally {
    rmSync(outDir, { recursive: true, force: true });
  }
}

/** Checks the AWS setup, then synthesizes (the app file is checked on the way). */
export async function synthForAws(options: {
  readonly file?: string;
  readonly cwd?: string;
  readonly echo?: (chunk: string) => void;
}): Promise<{ project: Project; assembly: string }> {
  const { findProject } = await import('./cdk-cli.js');
  const project = findProject(options.cwd ?? process.cwd(), options.file);
  await checkAwsAccess(project.kind === 'app-file' ? project.loaded.app.region : undefined);
  return await synth({ ...options, file: project.kind === 'app-file' ? project.loaded.file : undefined });
}

function readOutputs(file: string): Record<string, Record<string, string>> {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Record<string, Record<string, string>>;
  } catch {
    return {};
  }
}

/** CloudFormation's events mark the resource that failed first; the later ones were cancelled because of it. */
const FAILED_EVENT = /\|\s*(CREATE_FAILED|UPDATE_FAILED|DELETE_FAILED)\s*\|\s*(\S+)\s*\|\s*(.+)$/;
const CANCELLED = /cancell?ed|Resource update cancelled|Resource creation cancelled/i;

/**
 * The first failing resource and its reason, from the CDK CLI's event progress
 * (`stack | 3/12 | 10:01:02 AM | CREATE_FAILED | AWS::Lambda::Function | digits/Function (digitsFn12) reason`),
 * else the CLI's own error line.
 */
export function deployFailure(output: string): string {
  const failed = output
    .split('\n')
    .map((line) => FAILED_EVENT.exec(line))
    .filter((match): match is RegExpExecArray => match !== null);
  const first = failed.find((match) => !CANCELLED.test(match[3]!)) ?? failed[0];
  if (first) {
    const [, status, type, rest] = first;
    return `${status} ${type} ${rest!.trim()}`.replace(/\s+/g, ' ').slice(0, 600);
  }
  const cross = output.split('\n').find((line) => line.includes('❌'));
  return cross ? cross.replace('❌', '').trim().replace(/\s+/g, ' ') : failureLine(output);
}
