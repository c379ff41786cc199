/**
 * Fresh memory touched: minor page faults (each the first touch of a 4 KiB page) and RSS, read at phase boundaries
 * of a cold start. In a Firecracker VM (Lambda) a first touch is dear, so a cold start costs about what it touches;
 * counting it per phase shows which copy of the model's bytes to cut. The process's count starts at its start.
 */

/** Linux's page size on x86_64 and arm64 (Lambda's two architectures). */
const PAGE_BYTES = 4096;
const MIB = 2 ** 20;

export interface MemoryMark {
  readonly minorFaults: number;
  readonly rss: number;
}

export function memoryMark(): MemoryMark {
  return { minorFaults: process.resourceUsage().minorPageFault, rss: process.memoryUsage.rss() };
}

/** Fresh memory touched between two marks, MiB (every thread of the process: worker threads' sessions included). */
export function freshMiB(from: MemoryMark, to: MemoryMark): number {
  return ((to.minorFaults - from.minorFaults) * PAGE_BYTES) / MIB;
}

/** Fresh memory touched since the process started, MiB. */
export function freshSinceStartMiB(at: MemoryMark): number {
  return (at.minorFaults * PAGE_BYTES) / MIB;
}

export function rssMiB(at: MemoryMark): number {
  return at.rss / MIB;
}
