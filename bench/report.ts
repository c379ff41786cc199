/**
 * What a scenario hands back, and how it is shown: text tables and PASS/FAIL lines on the terminal,
 * JSON (and an SVG chart when the scenario draws one) under the results folder.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, loadavg, platform, release } from 'node:os';
import { join } from 'node:path';

/** Options every scenario receives from the command line. */
export interface BenchOptions {
  /** A short run (about 15 s per scenario) instead of the full one. */
  readonly quick: boolean;
  /** Where JSON and SVG results go. */
  readonly outDir: string;
  /** onnxruntime intra-op threads for every measured session. */
  readonly threads: number;
  /** `fetch`: the cap of each connection through the throttling proxy, in MB/s. @default 40 */
  readonly bandwidthMBps?: number;
}

export interface Table {
  readonly title: string;
  /** Lines printed under the title: how the numbers were taken. */
  readonly notes: readonly string[];
  readonly columns: readonly string[];
  readonly rows: readonly (readonly string[])[];
  /** Column indexes aligned left (text); the rest align right (numbers). */
  readonly leftAligned?: readonly number[];
}

export type CheckStatus = 'PASS' | 'FAIL' | 'INFO';

/** One line held against a target. INFO lines are comparisons without a target of their own. */
export interface Check {
  readonly status: CheckStatus;
  readonly text: string;
}

export interface ScenarioReport {
  readonly tables: readonly Table[];
  readonly checks: readonly Check[];
  /** Written as `<scenario>.json` alongside the machine description and options. */
  readonly data: unknown;
  /** Written as `<scenario>.svg`. */
  readonly svg?: string;
}

export interface Scenario {
  readonly name: string;
  readonly description: string;
  run(options: BenchOptions, progress: (text: string) => void): Promise<ScenarioReport>;
}

export function renderTable(table: Table): string {
  const left = new Set(table.leftAligned ?? [0]);
  const widths = table.columns.map((title, i) =>
    Math.max(width(title), ...table.rows.map((row) => width(row[i] ?? ''))),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, i) => (left.has(i) ? pad(cell, widths[i]!, 'end') : pad(cell, widths[i]!, 'start')))
      .join('  ')
      .trimEnd();
  const rule = widths.map((w) => '─'.repeat(w)).join('  ');
  return [
    table.title,
    ...table.notes.map((note) => `  ${note}`),
    '',
    line(table.columns),
    rule,
    ...table.rows.map((row) => (row.length === 0 ? '' : line(row))),
  ].join('\n');
}

export function renderChecks(checks: readonly Check[]): string {
  return checks.map((check) => `${check.status.padEnd(4)}  ${check.text}`).join('\n');
}

/** Display width: µ, ×, − and the like are one column each. */
function width(text: string): number {
  return [...text].length;
}

function pad(text: string, to: number, side: 'start' | 'end'): string {
  const fill = ' '.repeat(Math.max(0, to - width(text)));
  return side === 'start' ? fill + text : text + fill;
}

/** The machine a run happened on, so results from different machines are never compared by mistake. */
export function describeMachine(): Record<string, unknown> {
  const cpu = cpus();
  return {
    node: process.version,
    platform: `${platform()} ${release()}`,
    cpus: cpu.length,
    cpuModel: cpu[0]?.model ?? 'unknown',
    loadAverage: loadavg().map((v) => Math.round(v * 100) / 100),
  };
}

/** Writes `<scenario>.json` (and `.svg`) under the results folder; returns the paths written. */
export async function writeResults(
  scenario: string,
  options: BenchOptions,
  report: ScenarioReport,
  startedAt: Date,
): Promise<string[]> {
  await mkdir(options.outDir, { recursive: true });
  const jsonPath = join(options.outDir, `${scenario}.json`);
  const document = {
    scenario,
    startedAt: startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: describeMachine(),
    options: { quick: options.quick, threads: options.threads, bandwidthMBps: options.bandwidthMBps },
    checks: report.checks,
    data: report.data,
  };
  await writeFile(jsonPath, `${JSON.stringify(document, null, 2)}\n`);
  const written = [jsonPath];
  if (report.svg !== undefined) {
    const svgPath = join(options.outDir, `${scenario}.svg`);
    await writeFile(svgPath, report.svg);
    written.push(svgPath);
  }
  return written;
}
