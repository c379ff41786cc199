/**
 * Fixtures for the CDK tests: apps that synthesize into temp folders, the problems a construct threw, and IAM
 * statements with their CloudFormation intrinsics flattened to strings so resources can be compared exactly.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { App } from 'aws-cdk-lib';
import type { Template } from 'aws-cdk-lib/assertions';

/**
 * Points TMPDIR at a fresh folder for this test file's process (node's runner gives each file its own) and removes
 * it when the file is done: synth writes each Lambda image context (30–50 MB) under the temp folder.
 */
export function useScratchTmpdir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'arclight-cdk-test-'));
  process.env['TMPDIR'] = dir;
  after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** An App whose cloud assembly goes to a fresh temp folder, never the repository's cdk.out. */
export function tempApp(context: Record<string, unknown> = {}): App {
  return new App({ outdir: mkdtempSync(join(tmpdir(), 'cdk-out-')), context });
}

/** The problems listed by the one error a construct threw (`... has invalid props:\n  - a\n  - b`). */
export function thrownProblems(work: () => unknown): string[] {
  let error: unknown;
  try {
    work();
  } catch (caught) {
    error = caught;
  }
  assert.ok(error instanceof Error, 'expected the construct to throw');
  assert.match(error.message, /has invalid props:\n/);
  return error.message
    .split('\n')
    .filter((line) => line.startsWith('  - '))
    .map((line) => line.slice(4));
}

/** Asserts that exactly one problem was reported and that it matches `pattern`. */
export function assertOneProblem(work: () => unknown, pattern: RegExp): void {
  const problems = thrownProblems(work);
  assert.equal(problems.length, 1, `expected one problem, got:\n${problems.join('\n')}`);
  assert.match(problems[0]!, pattern);
}

export function sha256(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/**
 * A CloudFormation value as one string: `Fn::Join` joined, `Fn::Sub` kept as written, `{Ref:X}`, `{GetAtt:X.Y}`.
 * Lets an ARN built from intrinsics be compared with an exact expected string.
 */
export function flatten(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  if (value && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const join = record['Fn::Join'] as [string, unknown[]] | undefined;
    if (join) return join[1].map(flatten).join(join[0]);
    if ('Ref' in record) return `{Ref:${String(record['Ref'])}}`;
    if ('Fn::Sub' in record) return flatten(record['Fn::Sub']);
    const getAtt = record['Fn::GetAtt'] as string[] | undefined;
    if (getAtt) return `{GetAtt:${getAtt.join('.')}}`;
  }
  return JSON.stringify(value);
}

export interface FlatStatement {
  /** Logical id of the resource holding the statement. */
  readonly holder: string;
  readonly effect: string;
  readonly actions: string[];
  readonly resources: string[];
  /** The statement's Condition block, as written. */
  readonly conditions?: unknown;
}

/** Every policy statement in the template (identity policies, managed policies, inline role policies, bucket policies). */
export function policyStatements(template: Template): FlatStatement[] {
  const out: FlatStatement[] = [];
  const resources = template.toJSON()['Resources'] as Record<
    string,
    { Type: string; Properties?: Record<string, unknown> }
  >;
  const documents = (type: string, props: Record<string, unknown>): unknown[] => {
    if (type === 'AWS::IAM::Policy' || type === 'AWS::IAM::ManagedPolicy' || type === 'AWS::S3::BucketPolicy') {
      return [props['PolicyDocument']];
    }
    if (type === 'AWS::IAM::Role' || type === 'AWS::IAM::User' || type === 'AWS::IAM::Group') {
      return ((props['Policies'] as { PolicyDocument: unknown }[] | undefined) ?? []).map((p) => p.PolicyDocument);
    }
    return [];
  };
  for (const [id, resource] of Object.entries(resources)) {
    for (const document of documents(resource.Type, resource.Properties ?? {})) {
      for (const statement of (document as { Statement: Record<string, unknown>[] }).Statement) {
        out.push({
          holder: id,
          effect: String(statement['Effect']),
          actions: asArray(statement['Action']).map(flatten),
          resources: asArray(statement['Resource']).map(flatten),
          ...(statement['Condition'] ? { conditions: statement['Condition'] } : {}),
        });
      }
    }
  }
  return out;
}

/** The S3 object ARN a `s3://bucket/key` URI names, in `flatten`'s notation. */
export function objectArnOf(uri: string): string {
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(uri);
  assert.ok(match, `not an S3 URI: ${uri}`);
  return `arn:{Ref:AWS::Partition}:s3:::${match[1]}/${match[2]}`;
}

/**
 * Asserts no Allow statement grants an S3 action (or `*`) on anything but single objects: no `*` resource, no bucket ARN,
 * no `bucket/*`, no wildcard in a key, no wildcard S3 action.
 */
export function assertNoBroadS3Grant(template: Template): void {
  for (const statement of policyStatements(template)) {
    if (statement.effect !== 'Allow') continue; // a Deny (e.g. a bucket's SSL-only policy on bucket/*) grants nothing
    const s3Actions = statement.actions.filter((a) => a === '*' || a.toLowerCase().startsWith('s3:'));
    if (s3Actions.length === 0) continue;
    for (const action of s3Actions) assert.doesNotMatch(action, /\*/, `wildcard S3 action in ${statement.holder}`);
    for (const resource of statement.resources) {
      assert.notEqual(resource, '*', `${statement.holder} grants ${s3Actions.join(',')} on *`);
      assert.doesNotMatch(resource, /\*/, `${statement.holder} grants ${s3Actions.join(',')} on ${resource}`);
      assert.match(
        resource,
        /^(arn:\{Ref:AWS::Partition\}:s3:::[^/]+|\{GetAtt:[A-Za-z0-9]+\.Arn\})\/[^*?]+$/,
        `${statement.holder} grants ${s3Actions.join(',')} on ${resource}, which is not one object`,
      );
    }
  }
}

export function asArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}

/** Resources of one type whose logical id starts with `prefix` (a construct id), as `[logicalId, properties]`. */
export function resourcesOf(template: Template, type: string, prefix = ''): [string, Record<string, unknown>][] {
  return Object.entries(template.findResources(type))
    .filter(([id]) => id.startsWith(prefix))
    .map(([id, resource]) => [id, (resource as { Properties?: Record<string, unknown> }).Properties ?? {}]);
}

/** The one resource of a type (under `prefix`), failing when there are none or several. */
export function onlyResource(template: Template, type: string, prefix = ''): [string, Record<string, unknown>] {
  const found = resourcesOf(template, type, prefix);
  assert.equal(found.length, 1, `expected one ${type}${prefix ? ` under ${prefix}` : ''}, found ${found.length}`);
  return found[0]!;
}

/** The cdk-nag plugin reports a synth wrote: each plugin's violations, each with its rule and constructs. */
interface ValidationReportFile {
  readonly pluginReports: readonly {
    readonly pluginName: string;
    readonly violations: readonly { readonly ruleName: string; readonly violatingConstructs: readonly unknown[] }[];
  }[];
}

/**
 * Asserts that the validation report in a cloud assembly's folder lists no violation. A pack that passes writes a
 * report with no plugin entry; one that fails throws at synth unless the report is only written, so both are read.
 */
export function assertNoNagViolations(outdir: string): void {
  const report = JSON.parse(readFileSync(join(outdir, 'validation-report.json'), 'utf8')) as ValidationReportFile;
  for (const plugin of report.pluginReports) {
    assert.deepEqual(
      plugin.violations.map((v) => `${v.ruleName} ${JSON.stringify(v.violatingConstructs)}`),
      [],
      plugin.pluginName,
    );
  }
}
