/**
 * Download progress for `arclight serve --model s3://...`: on a terminal one rewritten line with a bar, the rate and
 * the time left; elsewhere (CI, log files) a plain line every 10 % or every 5 s, whichever comes first.
 * Small downloads show nothing: they are over before a bar would be read.
 */

/** Where progress goes: stderr, or anything with `write` (tests). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface DownloadProgressOptions {
  /** What is downloading, e.g. `s3://bucket/model.onnx`. */
  readonly label: string;
  /** @default process.stderr */
  readonly stream?: ProgressStream;
  /** Draw a bar (a terminal) or print plain lines. @default stream.isTTY */
  readonly tty?: boolean;
  /** Downloads smaller than this show nothing. @default 16 MiB */
  readonly minBytes?: number;
  /** Plain output: at most one line per this many ms (besides every 10 %). @default 5000 */
  readonly plainIntervalMs?: number;
  /** Terminal: redraw at most this often. @default 100 ms */
  readonly redrawMs?: number;
  /** @default performance.now */
  readonly now?: () => number;
}

export interface DownloadProgress {
  /** Bytes received so far of `total`; the signature of LoadModelOptions.onProgress. */
  update(received: number, total: number): void;
  /** The download ended (or failed): ends the bar's line. */
  done(): void;
}

const BAR_WIDTH = 24;

export function createDownloadProgress(options: DownloadProgressOptions): DownloadProgress {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? Boolean(stream.isTTY);
  const minBytes = options.minBytes ?? 16 * 1024 * 1024;
  const plainIntervalMs = options.plainIntervalMs ?? 5000;
  const redrawMs = options.redrawMs ?? 100;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let lastDraw = -Infinity;
  let lastDecile = 0;
  let drawn = false;
  let finished = false;
  let last = { received: 0, total: 0 };

  const line = (received: number, total: number): string => {
    const elapsedS = Math.max(1e-3, (now() - started) / 1000);
    const rate = received / elapsedS;
    const fraction = total > 0 ? Math.min(1, received / total) : 0;
    const eta =
      rate > 0 && received < total ? formatDuration((total - received) / rate) : received >= total ? 'done' : '–';
    const amounts = `${formatMB(received)}/${formatMB(total)} MB`;
    const percent = `${Math.floor(fraction * 100)}%`.padStart(4);
    if (!tty) return `${options.label}: ${percent.trim()} (${amounts}) ${formatMB(rate)} MB/s, ETA ${eta}`;
    const filled = Math.round(fraction * BAR_WIDTH);
    const bar = `[${'#'.repeat(filled)}${'-'.repeat(BAR_WIDTH - filled)}]`;
    return `${options.label} ${bar} ${percent} ${amounts} ${formatMB(rate)} MB/s ETA ${eta}`;
  };

  return {
    update(received, total) {
      if (finished || total < minBytes) return;
      last = { received, total };
      const t = now();
      if (tty) {
        if (t - lastDraw < redrawMs && received < total) return;
        lastDraw = t;
        drawn = true;
        stream.write(`\r\x1b[K${fit(line(received, total), stream.columns)}`);
        return;
      }
      const decile = Math.floor((received / total) * 10);
      if (decile > lastDecile || t - lastDraw >= plainIntervalMs) {
        lastDecile = Math.max(lastDecile, decile);
        lastDraw = t;
        stream.write(`${line(received, total)}\n`);
      }
    },
    done() {
      if (finished) return;
      finished = true;
      if (tty && drawn) stream.write(`\r\x1b[K${fit(line(last.received, last.total), stream.columns)}\n`);
    },
  };
}

/** Cuts a line to the terminal's width, so `\r` rewrites it instead of adding wrapped lines. */
function fit(text: string, columns: number | undefined): string {
  return columns !== undefined && columns > 1 && text.length >= columns ? text.slice(0, columns - 1) : text;
}

function formatMB(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function formatDuration(seconds: number): string {
  const whole = Math.ceil(seconds);
  if (whole < 60) return `${whole}s`;
  return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
}
