/**
 * Checks of API Gateway REST methods as API Gateway applies them, for any synthesized template: integration responses
 * are keyed by status code (a second one with the same status silently replaces the first), every status a method
 * can answer (an integration response's, or a mapping template's override) must be declared as a method response
 * with the headers mapped onto it, and selection patterns must not overlap. Plus the README's table of how the
 * SageMaker front maps InvokeEndpoint's statuses, read back as data.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Template } from 'aws-cdk-lib/assertions';
import { resourcesOf } from '../cdk-helpers.js';

export interface IntegrationResponse {
  SelectionPattern?: string;
  StatusCode: string;
  ResponseTemplates?: Record<string, string>;
  ResponseParameters?: Record<string, string>;
}

interface MethodResponse {
  StatusCode: string;
  ResponseParameters?: Record<string, boolean>;
}

/** The statuses a response template can override to: the contract statuses it matches against. */
export function overrideStatuses(template: string): string[] {
  if (!/responseOverride\.status/.test(template)) return [];
  const match = /\.matches\('([\d|]+)'\)/.exec(template);
  assert.ok(match, `a status override without a list of the statuses it allows:\n${template}`);
  return match[1]!.split('|');
}

/** Whether an integration status selects a response, as API Gateway matches the pattern (the whole status). */
export function selects(pattern: string, status: number): boolean {
  return new RegExp(`^(?:${pattern})$`).test(String(status));
}

/**
 * Asserts every REST method of the template is sound (see the file's comment) and returns how many methods and
 * integration responses were checked, so that a caller can tell the check saw something.
 */
export function assertIntegrationResponsesSound(template: Template): { methods: number; responses: number } {
  let responses = 0;
  const methods = resourcesOf(template, 'AWS::ApiGateway::Method');
  for (const [id, method] of methods) {
    const integration = method['Integration'] as { IntegrationResponses?: IntegrationResponse[] } | undefined;
    const integrationResponses = integration?.IntegrationResponses ?? [];
    const declared = new Map(
      ((method['MethodResponses'] as MethodResponse[] | undefined) ?? []).map((r) => [r.StatusCode, r]),
    );
    const statuses = integrationResponses.map((r) => r.StatusCode);
    assert.equal(
      new Set(statuses).size,
      statuses.length,
      `${id}: two integration responses share a status (${statuses})`,
    );
    for (const response of integrationResponses) {
      responses++;
      const methodResponse = declared.get(response.StatusCode);
      assert.ok(methodResponse, `${id}: status ${response.StatusCode} is not a method response`);
      for (const target of Object.keys(response.ResponseParameters ?? {})) {
        assert.ok(
          target in (methodResponse.ResponseParameters ?? {}),
          `${id}: ${target} is mapped on ${response.StatusCode} but not declared there`,
        );
      }
      for (const body of Object.values(response.ResponseTemplates ?? {})) {
        for (const status of overrideStatuses(body)) {
          assert.ok(declared.has(status), `${id}: the template may answer ${status}, which is not a method response`);
        }
      }
    }
    const patterns = integrationResponses.flatMap((r) => (r.SelectionPattern === undefined ? [] : [r]));
    for (let status = 100; status < 600; status++) {
      const selecting = patterns.filter((r) => selects(r.SelectionPattern!, status));
      assert.ok(selecting.length <= 1, `${id}: integration status ${status} selects ${selecting.length} responses`);
    }
    const defaults = integrationResponses.filter((r) => r.SelectionPattern === undefined || r.SelectionPattern === '');
    assert.ok(defaults.length <= 1, `${id}: ${defaults.length} default integration responses`);
  }
  return { methods: methods.length, responses };
}

/** One row of the README's table: the InvokeEndpoint statuses it covers, the client status and the code. */
export interface InvokeRow {
  readonly statuses: number[];
  readonly clientStatus: string;
  readonly code?: string;
  readonly text: string;
}

/**
 * The README's "How the SageMaker front maps InvokeEndpoint's answers" table. `2xx` is a range; `other 4xx` is what
 * the other rows leave of the 400s.
 */
export function readmeInvokeTable(): InvokeRow[] {
  const readme = readFileSync(join(import.meta.dirname, '..', '..', 'README.md'), 'utf8');
  const section = readme.split("### How the SageMaker front maps InvokeEndpoint's answers")[1];
  assert.ok(section, 'the README has the InvokeEndpoint table');
  const tableStart = section.split('\n').findIndex((line) => line.startsWith('| '));
  const table = section.split('\n').slice(tableStart);
  const tableEnd = table.findIndex((line) => !line.startsWith('|'));
  const lines = table.slice(0, tableEnd).filter((line) => !/^\| (-|InvokeEndpoint status)/.test(line));
  const cells = lines.map((line) =>
    line
      .split('|')
      .slice(1, -1)
      .map((cell) => cell.trim()),
  );
  const explicit = new Set<number>();
  const rows = cells.map((row) => {
    const [statusText, clientStatus, code] = row as [string, string, string];
    const statuses = [...statusText.matchAll(/\b(\d)(xx|\d\d)\b/g)].flatMap(([, hundred, rest]) =>
      rest === 'xx' ? [] : [Number(`${hundred}${rest}`)],
    );
    for (const status of statuses) explicit.add(status);
    return { statusText, clientStatus, code: /`(\w+)`/.exec(code)?.[1], statuses };
  });
  return rows.map(({ statusText, clientStatus, code, statuses }) => {
    const ranges = [...statusText.matchAll(/\b(\d)xx\b/g)].map(([, hundred]) => Number(hundred));
    const others = /^other /.test(statusText);
    const expanded = ranges.flatMap((hundred) =>
      Array.from({ length: 100 }, (_, i) => hundred * 100 + i).filter((s) => !others || !explicit.has(s)),
    );
    return { statuses: [...statuses, ...expanded], clientStatus, ...(code ? { code } : {}), text: statusText };
  });
}
