/**
 * The one throttled progress line both `serve`'s download and `batch run` draw: on a terminal one rewritten line,
 * redrawn at most every `redrawMs`; elsewhere (CI, log files) a plain line every 10 % or every `plainIntervalMs`,
 * whichever comes first. The end always shows the last state once, so a log never stops at a stale figure.
 */

/** Where progress goes: stderr, or anything with `write` (tests). */
export interface ProgressStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
}

export interface ProgressLineOptions {
  /** @default process.stderr */
  readonly stream?: ProgressStream;
  /** Rewrite one line (a terminal) or print plain lines. @default stream.isTTY */
  readonly tty?: boolean;
  /** Plain output: at most one line per this many ms (besides every 10 %). @default 5000 */
  readonly plainIntervalMs?: number;
  /** Terminal: redraw at most this often. @default 100 ms */
  readonly redrawMs?: number;
  /** @default performance.now */
  readonly now?: () => number;
}

/** What a progress line shows of one state. */
export interface ProgressView<State> {
  /** Done so far, 0 to 1. */
  fraction(state: State): number;
  /** The line's text, for a terminal (`tty`) or a log. */
  text(state: State, elapsedS: number, tty: boolean): string;
}

export interface ProgressLine<State> {
  update(state: State): void;
  /** Shows the last state if it is not on screen yet and ends the line. */
  done(): void;
}

export function createProgressLine<State>(
  view: ProgressView<State>,
  options: ProgressLineOptions = {},
): ProgressLine<State> {
  const stream = options.stream ?? process.stderr;
  const tty = options.tty ?? Boolean(stream.isTTY);
  const plainIntervalMs = options.plainIntervalMs ?? 5000;
  const redrawMs = options.redrawMs ?? 100;
  const now = options.now ?? (() => performance.now());
  const started = now();
  let lastDraw = -Infinity;
  let lastDecile = 0;
  let last: State | undefined;
  let shown = true;
  let finished = false;

  const draw = (state: State, end: boolean): void => {
    const text = view.text(state, (now() - started) / 1000, tty);
    stream.write(tty ? `\r\x1b[K${fit(text, stream.columns)}${end ? '\n' : ''}` : `${text}\n`);
    shown = true;
  };
  const due = (fraction: number, t: number): boolean => {
    if (tty) return t - lastDraw >= redrawMs || fraction >= 1;
    const decile = Math.floor(fraction * 10);
    if (decile <= lastDecile && t - lastDraw < plainIntervalMs) return false;
    lastDecile = Math.max(lastDecile, decile);
    return true;
  };

  return {
    update(state) {
      if (finished) return;
      last = state;
      shown = false;
      const t = now();
      if (!due(view.fraction(state), t)) return;
      lastDraw = t;
      draw(state, false);
    },
    done() {
      if (finished) return;
      finished = true;
      if (last === undefined) return;
      if (tty) draw(last, true);
      else if (!shown) draw(last, true);
    },
  };
}

/** Cuts a line to the terminal's width, so `\r` rewrites it instead of adding wrapped lines. */
function fit(text: string, columns: number | undefined): string {
  return columns !== undefined && columns > 1 && text.length >= columns ? text.slice(0, columns - 1) : text;
}

/** `42s`, `3m05s`, `2h07m`. */
export function formatDuration(seconds: number): string {
  const whole = Math.ceil(seconds);
  if (whole < 60) return `${whole}s`;
  if (whole < 3600) return `${Math.floor(whole / 60)}m${String(whole % 60).padStart(2, '0')}s`;
  return `${Math.floor(whole / 3600)}h${String(Math.floor((whole % 3600) / 60)).padStart(2, '0')}m`;
}

/** A bar of `width` cells for a fraction from 0 to 1. */
export function bar(fraction: number, width = 24): string {
  const filled = Math.round(fraction * width);
  return `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`;
}
