/**
 * Servers on some CPUs, the load on the others (`peers` with ARCLIGHT_BENCH_SERVER_CPUS): a server measured on fewer
 * cores than the machine has, as on a 1-vCPU Fargate task, with the load generator's CPU kept off them. This process
 * (every thread: raw `session.run` runs here) and so every server it starts are pinned with taskset; the load
 * generator and the health prober run on the rest.
 */
import { spawnSync } from 'node:child_process';
import { cpus } from 'node:os';

export const SERVER_CPUS_ENV = 'ARCLIGHT_BENCH_SERVER_CPUS';

export interface CpuPinning {
  /** The servers' CPUs (and this process's), taskset's list syntax. */
  readonly serverCpus: string;
  /** The load generator's CPUs. */
  readonly loadCpus: string;
  /** `[command, args]` that runs `command` on the load generator's CPUs. */
  onLoadCpus(command: string, args: readonly string[]): [string, string[]];
  /** Gives this process every CPU back. */
  release(): void;
}

/** Pins this process to `$ARCLIGHT_BENCH_SERVER_CPUS` when set (undefined otherwise); refuses a list that leaves no CPU for the load. */
export function pinServersFromEnv(env: NodeJS.ProcessEnv = process.env): CpuPinning | undefined {
  const list = env[SERVER_CPUS_ENV];
  if (!list) return undefined;
  const all = cpus().map((_, i) => i);
  const servers = parseCpuList(list, all.length);
  const load = all.filter((cpu) => !servers.includes(cpu));
  if (load.length === 0) {
    throw new Error(`${SERVER_CPUS_ENV}=${list} leaves no CPU for the load generator (this machine has ${all.length})`);
  }
  setAffinity(servers.join(','));
  const loadCpus = load.join(',');
  return {
    serverCpus: servers.join(','),
    loadCpus,
    onLoadCpus: (command, args) => ['taskset', ['-c', loadCpus, command, ...args]],
    release: () => setAffinity(all.join(',')),
  };
}

/** `0`, `0-1`, `0,2-3` as CPU numbers; anything else, or a CPU the machine lacks, is refused. */
export function parseCpuList(list: string, cpuCount: number): number[] {
  const cpusOf = (part: string): number[] => {
    const range = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!range) throw new Error(`${SERVER_CPUS_ENV}: '${part}' is not a CPU or a range (e.g. 0, 0-1, 0,2-3)`);
    const first = Number(range[1]);
    const last = Number(range[2] ?? range[1]);
    if (last < first || last >= cpuCount) {
      throw new Error(`${SERVER_CPUS_ENV}: '${part}' is not within CPUs 0-${cpuCount - 1}`);
    }
    return Array.from({ length: last - first + 1 }, (_, i) => first + i);
  };
  return [...new Set(list.split(',').flatMap(cpusOf))].sort((a, b) => a - b);
}

function setAffinity(cpuList: string): void {
  const result = spawnSync('taskset', ['--all-tasks', '--pid', '--cpu-list', cpuList, String(process.pid)], {
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    throw new Error(`taskset could not pin this process to CPUs ${cpuList}: ${result.stderr || result.error?.message}`);
  }
}
