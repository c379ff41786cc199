/**
 * The progress of `arclight batch run`: on a terminal one rewritten line (a bar, items/s, failures, ETA); elsewhere
 * (CI, log files) a plain line every 10 % or every 5 s, whichever comes first, and always a last one.
 */
import type { BatchProgress } from '../../runtime/batch/batch-engine.js';
import type { ProgressStream } from '../progress.js';

export interface BatchProgressOptions {
  /** @default process.stderr */
  readonly stream?: ProgressStream;
  /** @default stream.isTTY */
  readonly tty?: boolean;
  /** Plain output: at most one line per this many ms (besides every 10 %). @default 5000 */
  readonly plainIntervalMs?: number;
  /** Terminal: redraw at most this often. @default 100 ms */
  readonly redrawMs?: number;
  /** @default performance.now */
  readonly now?: () => number;
}

export interface BatchProgressView {
  update(progress: BatchProgress): void;
  /** Draws the last state and ends the line. */
  done(): void;
}

const BAR_WIDTH = 24;

export function createBatchProgress(options: BatchProgressOptions = {}): BatchProgressView {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? Boolean(stream.isTTY);
  const plainIntervalMs = options.plainIntervalMs ?? 5000;
  const redrawMs = options.redrawMs ?? 100;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let lastDraw = -Infinity;
  let lastDecile = 0;
  let last: BatchProgress | undefined;
  let finished = false;

  const draw = (progress: BatchProgress, end: boolean): void => {
    const text = line(progress, (now() - started) / 1000, tty);
    if (tty) stream.write(`\r\x1b[K${fit(text, stream.columns)}${end ? '\n' : ''}`);
    else stream.write(`${text}\n`);
  };

  return {
    update(progress) {
      if (finished) return;
      last = progress;
      const t = now();
      if (tty) {
        if (t - lastDraw < redrawMs) return;
        lastDraw = t;
        draw(progress, false);
        return;
      }
      const decile = Math.floor(fractionOf(progress) * 10);
      if (decile > lastDecile || t - lastDraw >= plainIntervalMs) {
        lastDecile = Math.max(lastDecile, decile);
        lastDraw = t;
        draw(progress, false);
      }
    },
    done() {
      if (finished) return;
      finished = true;
      if (last) draw(last, true);
    },
  };
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
  const filled = Math.round(fraction * BAR_WIDTH);
  return `batch [${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}] ${percent.padStart(4)} ${counts}`;
}

function fit(text: string, columns: number | undefined): string {
  return columns !== undefined && columns > 1 && text.length >= columns ? text.slice(0, columns - 1) : text;
}

function formatDuration(seconds: number): string {
  const whole = Math.ceil(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}
