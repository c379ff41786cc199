/** The progress of `arclight batch run`: a progress line with a bar, items/s, failures and the time left. */
import type { BatchProgress } from '../../runtime/batch/batch-engine.js';
import {
  bar,
  createProgressLine,
  formatDuration,
  type ProgressLine,
  type ProgressLineOptions,
} from '../progress-line.js';

export type BatchProgressOptions = ProgressLineOptions;
export type BatchProgressView = ProgressLine<BatchProgress>;

export function createBatchProgress(options: BatchProgressOptions = {}): BatchProgressView {
  return createProgressLine({ fraction: fractionOf, text: line }, options);
}

/** Done so far, 0 to 1: by items when their number is known up front, else by input bytes. */
function fractionOf(progress: BatchProgress): number {
  if (progress.itemsTotal !== undefined)
    return progress.itemsTotal > 0 ? Math.min(1, progress.processed / progress.itemsTotal) : 1;
  return progress.bytesTotal > 0 ? Math.min(1, progress.bytesDone / progress.bytesTotal) : 1;
}

export function line(progress: BatchProgress, elapsedS: number, tty: boolean): string {
  const fraction = fractionOf(progress);
  const rate = progress.processed / Math.max(1e-3, elapsedS);
  const eta = fraction >= 1 ? 'done' : fraction > 0 ? formatDuration((elapsedS * (1 - fraction)) / fraction) : '–';
  const total = progress.itemsTotal === undefined ? '' : `/${progress.itemsTotal}`;
  const percent = `${Math.floor(fraction * 100)}%`;
  const counts = `${progress.processed}${total} items, ${progress.failed} failed, ${rate.toFixed(1)} items/s, ETA ${eta}`;
  if (!tty) return `batch: ${percent} ${counts}`;
  return `batch ${bar(fraction)} ${percent.padStart(4)} ${counts}`;
}
