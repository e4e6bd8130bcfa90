// A bar chart drawn as SVG elements (no canvas, no library, no inline style): one bar
// per label, negative values below the axis, each bar titled with its exact value.

import { h } from './ui.js';

const WIDTH = 720;
const HEIGHT = 260;
const PAD = { top: 16, right: 12, bottom: 48, left: 64 };
/** Width of a label character at most (the chart's font), and the room around a label. */
const CHAR_W = 8;
const LABEL_PAD = 14;

/**
 * @param {string} title what the chart shows (its accessible name)
 * @param {{label: string, value: string}[]} points values are decimal strings
 * @param {string} unit appended to value labels (a currency code)
 */
export function barChart(title, points, unit = '') {
  if (!points.length) return h('p', { class: 'empty' }, 'No data for this period.');
  const numbers = points.map((p) => Number(p.value));
  const max = Math.max(0, ...numbers);
  const min = Math.min(0, ...numbers);
  const span = max - min || 1;
  // The value labels sit left of the plot, right-aligned: the plot starts after the
  // longest of them ("4337.26 EUR" was cut to "37.26 EUR" with a fixed margin).
  const axisLabels = [`${format(max)} ${unit}`.trim(), min < 0 ? `${format(min)} ${unit}`.trim() : '', '0'];
  const left = Math.max(PAD.left, LABEL_PAD + CHAR_W * Math.max(...axisLabels.map((l) => l.length)));
  const plotW = WIDTH - left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const y = (v) => PAD.top + ((max - v) / span) * plotH;
  const slot = plotW / points.length;
  const barW = Math.max(2, Math.min(48, slot * 0.7));
  const labelEvery = Math.ceil(points.length / 14);
  const svg = h('svg:svg', {
    class: 'chart', viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: 'img', 'aria-label': title,
    preserveAspectRatio: 'xMidYMid meet',
  },
  h('svg:title', {}, title),
  h('svg:line', { class: 'axis', x1: left, x2: WIDTH - PAD.right, y1: y(0), y2: y(0) }),
  h('svg:text', { x: left - 6, y: y(max) + 4, 'text-anchor': 'end', class: 'axis-max' }, axisLabels[0]),
  min < 0 ? h('svg:text', { x: left - 6, y: y(min) + 4, 'text-anchor': 'end' }, axisLabels[1]) : null,
  h('svg:text', { x: left - 6, y: y(0) + 4, 'text-anchor': 'end' }, '0'),
  points.map((p, i) => {
    const v = numbers[i];
    const x = left + i * slot + (slot - barW) / 2;
    const top = y(Math.max(v, 0));
    const height = Math.max(v === 0 ? 0 : 1, Math.abs(y(v) - y(0)));
    return h('svg:g', {},
      h('svg:rect', { class: v < 0 ? 'bar negative' : 'bar', x, y: top, width: barW, height },
        h('svg:title', {}, `${p.label}: ${p.value} ${unit}`.trim())),
      i % labelEvery === 0
        ? h('svg:text', { x: x + barW / 2, y: HEIGHT - PAD.bottom + 16, 'text-anchor': 'middle' }, shorten(p.label))
        : null);
  }));
  return svg;
}

function format(v) {
  const abs = Math.abs(v);
  if (abs >= 1e6) return `${(v / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
  return String(Math.round(v * 100) / 100);
}

function shorten(label) {
  const text = String(label);
  // Days as MM-DD; anything else cut to fit under a bar.
  if (/^\d{4}-\d{2}-\d{2}$/.test(text)) return text.slice(5);
  return text.length > 12 ? `${text.slice(0, 11)}…` : text;
}
