/**
 * A small hand-written SVG chart: one panel of horizontal bars (p50, with a p99 tick) per group. Each panel is
 * scaled to its largest bar; a whisker past the panel's edge is cut there and its value is still printed.
 */

export interface Bar {
  readonly label: string;
  readonly value: number;
  /** Drawn as a thin line past the bar, e.g. p99. */
  readonly whisker?: number;
  /** Highlighted, e.g. the baseline. */
  readonly baseline?: boolean;
}

export interface Panel {
  readonly title: string;
  readonly bars: readonly Bar[];
}

export interface ChartOptions {
  readonly title: string;
  readonly subtitle?: string;
  readonly format: (value: number) => string;
}

const WIDTH = 960;
const LABEL_WIDTH = 330;
const VALUE_WIDTH = 160;
const BAR_HEIGHT = 18;
const GAP = 6;

export function barChart(panels: readonly Panel[], options: ChartOptions): string {
  const parts: string[] = [];
  let y = 30;
  parts.push(text(12, y, options.title, 'font-size="16" font-weight="bold"'));
  if (options.subtitle !== undefined) {
    y += 18;
    parts.push(text(12, y, options.subtitle, 'font-size="11" fill="#555"'));
  }
  y += 16;
  const plotWidth = WIDTH - LABEL_WIDTH - VALUE_WIDTH - 24;
  for (const panel of panels) {
    y += 20;
    parts.push(text(12, y, panel.title, 'font-size="13" font-weight="bold"'));
    y += 8;
    const max = 1.25 * Math.max(...panel.bars.map((b) => b.value), Number.MIN_VALUE);
    const scale = (v: number): number => (Number.isFinite(v) ? Math.min(plotWidth, (v / max) * plotWidth) : 0);
    for (const bar of panel.bars) {
      const x0 = LABEL_WIDTH;
      const width = Math.max(1, scale(bar.value));
      parts.push(text(x0 - 8, y + BAR_HEIGHT - 5, bar.label, 'font-size="11" text-anchor="end"'));
      parts.push(
        `<rect x="${x0}" y="${y}" width="${width.toFixed(1)}" height="${BAR_HEIGHT}" fill="${bar.baseline ? '#888' : '#3b6fb6'}"/>`,
      );
      let end = x0 + width;
      if (bar.whisker !== undefined && Number.isFinite(bar.whisker)) {
        const wx = x0 + scale(bar.whisker);
        const mid = y + BAR_HEIGHT / 2;
        parts.push(`<line x1="${end.toFixed(1)}" y1="${mid}" x2="${wx.toFixed(1)}" y2="${mid}" stroke="#333"/>`);
        parts.push(
          `<line x1="${wx.toFixed(1)}" y1="${y + 3}" x2="${wx.toFixed(1)}" y2="${y + BAR_HEIGHT - 3}" stroke="#333"/>`,
        );
        end = Math.max(end, wx);
      }
      const value =
        bar.whisker === undefined
          ? options.format(bar.value)
          : `${options.format(bar.value)} / ${options.format(bar.whisker)}`;
      parts.push(text(Math.round(end + 6), y + BAR_HEIGHT - 5, value, 'font-size="11" fill="#333"'));
      y += BAR_HEIGHT + GAP;
    }
  }
  const height = y + 16;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="system-ui, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    '</svg>',
    '',
  ].join('\n');
}

function text(x: number, y: number, content: string, attributes = ''): string {
  return `<text x="${x}" y="${y}" ${attributes}>${escapeXml(content)}</text>`;
}

function escapeXml(value: string): string {
  return value.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
