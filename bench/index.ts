/**
 * `npm run bench [-- <scenario...>] [--quick]`: runs benchmark scenarios by name (all when none is named),
 * prints a table and PASS/FAIL lines per scenario, and writes `<out>/<scenario>.json` (and `.svg`).
 * A scenario is one file under bench/ exporting a `Scenario`; add it to SCENARIOS below.
 */
import { Command, InvalidArgumentError } from 'commander';
import { asyncEcs } from './async-ecs.js';
import { coldstart } from './coldstart.js';
import { container } from './container.js';
import { DEFAULT_BANDWIDTH_MBPS, fetchScenario } from './fetch.js';
import { lambdaOverhead } from './lambda-overhead.js';
import { overhead } from './overhead.js';
import { peers } from './peers.js';
import { renderChecks, renderTable, writeResults, type BenchOptions, type Scenario } from './report.js';

const SCENARIOS: readonly Scenario[] = [fetchScenario, coldstart, overhead, lambdaOverhead, container, peers, asyncEcs];

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** Progress on one rewritten line on a terminal; elsewhere (CI logs) one line at most every 10 s. */
function progressLine(scenario: string): { update: (text: string) => void; done: () => void } {
  const tty = process.stderr.isTTY;
  let shown = false;
  let last = 0;
  return {
    update: (text) => {
      if (tty) process.stderr.write(`\r\x1b[K[${scenario}] ${text}`);
      else if (performance.now() - last >= 10_000) {
        process.stderr.write(`[${scenario}] ${text}\n`);
        last = performance.now();
      }
      shown = true;
    },
    done: () => {
      if (tty && shown) process.stderr.write('\r\x1b[K');
    },
  };
}

const program = new Command()
  .name('npm run bench --')
  .description('Arclight benchmarks')
  .argument('[scenarios...]', `scenarios to run: ${SCENARIOS.map((s) => s.name).join(', ')} (all when none is named)`)
  .option('--quick', 'a short run (about 15 s per scenario)', false)
  .option('--threads <n>', 'onnxruntime intra-op threads of every measured session', positiveInt, 1)
  .option(
    '--bandwidth <MBps>',
    'fetch: cap of each connection through the throttling proxy, MB/s',
    positiveInt,
    DEFAULT_BANDWIDTH_MBPS,
  )
  .option('--out <dir>', 'folder for <scenario>.json and .svg results', 'bench-results')
  .option('--strict', 'exit with status 1 when a target is missed', false)
  .option('--list', 'list the scenarios and exit', false)
  .action(
    async (
      names: string[],
      flags: { quick: boolean; threads: number; bandwidth: number; out: string; strict: boolean; list: boolean },
    ) => {
      if (flags.list) {
        for (const s of SCENARIOS) console.log(`${s.name.padEnd(12)} ${s.description}`);
        return;
      }
      const unknown = names.filter((n) => !SCENARIOS.some((s) => s.name === n));
      if (unknown.length > 0) {
        program.error(
          `unknown scenario ${unknown.map((n) => `'${n}'`).join(', ')}; choose from ${SCENARIOS.map((s) => s.name).join(', ')}`,
        );
      }
      const selected = names.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => names.includes(s.name));
      const options: BenchOptions = {
        quick: flags.quick,
        outDir: flags.out,
        threads: flags.threads,
        bandwidthMBps: flags.bandwidth,
      };
      let missed = 0;
      for (const scenario of selected) {
        const startedAt = new Date();
        const progress = progressLine(scenario.name);
        progress.update(`starting${options.quick ? ' (quick)' : ''}`);
        const report = await scenario.run(options, progress.update).finally(progress.done);
        console.log('');
        for (const table of report.tables) console.log(`${renderTable(table)}\n`);
        console.log(`Targets — ${scenario.name}${options.quick ? ' (quick run: fewer samples, noisier)' : ''}`);
        console.log(`${renderChecks(report.checks)}\n`);
        const written = await writeResults(scenario.name, options, report, startedAt);
        console.log(`Wrote ${written.join(', ')}\n`);
        missed += report.checks.filter((c) => c.status === 'FAIL').length;
      }
      if (flags.strict && missed > 0) process.exitCode = 1;
    },
  );

await program.parseAsync();
