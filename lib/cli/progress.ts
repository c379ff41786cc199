/**
 * Download progress for `arclight serve --model s3://...` (a progress line: a bar, the rate and the time left).
 * Small downloads show nothing: they are over before a bar would be read.
 */
import { bar, createProgressLine, formatDuration, type ProgressLineOptions } from './progress-line.js';

export type { ProgressStream } from './progress-line.js';

export interface DownloadProgressOptions extends ProgressLineOptions {
  /** What is downloading, e.g. `s3://bucket/model.onnx`. */
  readonly label: string;
  /** Downloads smaller than this show nothing. @default 16 MiB */
  readonly minBytes?: number;
}

export interface DownloadProgress {
  /** Bytes received so far of `total`; the signature of LoadModelOptions.onProgress. */
  update(received: number, total: number): void;
  /** The download ended (or failed): ends the bar's line. */
  done(): void;
}

interface Received {
  readonly received: number;
  readonly total: number;
}

export function createDownloadProgress(options: DownloadProgressOptions): DownloadProgress {
  const minBytes = options.minBytes ?? 16 * 1024 * 1024;
  const line = createProgressLine<Received>(
    {
      fraction: ({ received, total }) => (total > 0 ? Math.min(1, received / total) : 0),
      text: ({ received, total }, elapsedS, tty) => text(options.label, received, total, elapsedS, tty),
    },
    options,
  );
  return {
    update(received, total) {
      if (total >= minBytes) line.update({ received, total });
    },
    done: () => line.done(),
  };
}

function text(label: string, received: number, total: number, elapsedS: number, tty: boolean): string {
  const rate = received / Math.max(1e-3, elapsedS);
  const fraction = total > 0 ? Math.min(1, received / total) : 0;
  const eta =
    rate > 0 && received < total ? formatDuration((total - received) / rate) : received >= total ? 'done' : '–';
  const amounts = `${formatMB(received)}/${formatMB(total)} MB`;
  const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
  if (!tty) return `${label}: ${percent.trim()} (${amounts}) ${formatMB(rate)} MB/s, ETA ${eta}`;
  return `${label} ${bar(fraction)} ${percent} ${amounts} ${formatMB(rate)} MB/s ETA ${eta}`;
}

function formatMB(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
