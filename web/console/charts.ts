/**
 * A time chart in a card (uPlot): a title, a legend that names every series
 * and shows its latest value without hovering (the hovered one while the
 * pointer is over the plot), and a plot that follows its card's width
 * (ResizeObserver), so it fits a phone as well as a wide screen.
 *
 * Series that draw the same line stay apart: each has its own colour, its
 * own dash pattern and its own width (thinner on top), so one on top of
 * another still shows both. The
 * time axis is labelled in hours and minutes (seconds only over a span of
 * a few minutes), never in milliseconds.
 */
import uPlot from 'uplot';
import { h } from './dom.js';
import { onLeave } from './live.js';

export interface ChartSeries {
  key: string;
  label: string;
  unit: string;
}

const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2'];
const DASHES: number[][] = [[], [8, 4], [2, 3], [10, 3, 2, 3], [4, 4], [1, 5]];
/**
 * Each series is drawn thinner than the one before it, on top of it: where
 * lines coincide, the earlier ones show as coloured edges around the later.
 */
const widthOf = (i: number): number => Math.max(1.25, 3.5 - i * 0.6);
const HEIGHT = 170;

const pad = (n: number): string => String(n).padStart(2, '0');

/** An axis label: HH:MM, or HH:MM:SS when asked (spans of a few minutes). */
function timeLabel(seconds: number, withSeconds: boolean): string {
  const d = new Date(seconds * 1000);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}${withSeconds ? ':' + pad(d.getSeconds()) : ''}`;
}

/** A value as the legend and axis show it: integers as they are, else up to three significant digits. */
export function formatValue(v: number | null | undefined): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (Number.isInteger(v) || Math.abs(v) >= 100) return String(Math.round(v));
  return String(Number(v.toPrecision(3)));
}

/** A swatch with the series' colour and dash, so the legend matches the line. */
function swatch(i: number): SVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('width', '28');
  svg.setAttribute('height', '10');
  svg.setAttribute('aria-hidden', 'true');
  const line = document.createElementNS(ns, 'line');
  for (const [k, v] of Object.entries({ x1: '1', y1: '5', x2: '27', y2: '5', stroke: COLORS[i % COLORS.length]!, 'stroke-width': String(Math.min(4, widthOf(i))) })) line.setAttribute(k, v);
  const dash = DASHES[i % DASHES.length]!;
  if (dash.length) line.setAttribute('stroke-dasharray', dash.join(' '));
  svg.append(line);
  return svg;
}

export interface TimeChart {
  readonly element: HTMLElement;
  /** Replaces the data: times in ms, one array per series (null where nothing is known), and the window [from, to] in ms. */
  setData(t: number[], values: (number | null)[][], from: number, to: number): void;
}

export function timeChart(id: string, title: string, series: ChartSeries[]): TimeChart {
  const plotEl = h('div', { class: 'plot' });
  const legendValues = series.map(() => h('span', { class: 'value' }, '–'));
  const at = h('span', { class: 'at' });
  const legend = h(
    'ul',
    { class: 'legend', 'aria-label': `${title}: latest values` },
    ...series.map((s, i) => h('li', { 'data-series': s.key }, swatch(i), h('span', { class: 'label' }, s.label), legendValues[i]!, s.unit ? h('span', { class: 'unit' }, s.unit) : null)),
    h('li', {}, at),
  );
  const element = h('section', { class: 'chart', id, 'aria-label': title }, h('h2', {}, title), legend, plotEl);

  let t: number[] = [];
  /** The time labels last drawn, also on the element (data-x-ticks) for whoever checks what the axis says. */
  let ticks: string[] = [];
  let values: (number | null)[][] = series.map(() => []);
  let span = 3600;
  /** The legend's values: the hovered point's, else each series' latest known value. */
  const showValues = (index: number | null): void => {
    series.forEach((_, i) => {
      const col = values[i]!;
      let v: number | null | undefined;
      if (index !== null) v = col[index];
      else for (let j = col.length - 1; j >= 0 && (v === undefined || v === null); j--) v = col[j];
      legendValues[i]!.textContent = formatValue(v);
    });
    const when = index !== null ? t[index] : t[t.length - 1];
    at.textContent = when === undefined ? 'no data yet' : `${index !== null ? 'at' : 'latest'} ${timeLabel(when / 1000, true)}`;
  };

  const options: uPlot.Options = {
    width: 300,
    height: HEIGHT,
    legend: { show: false },
    cursor: { y: false, points: { size: 6 } },
    scales: { x: { time: true }, y: { range: (_u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    series: [
      {},
      // Intervals with nothing to measure (no store call) are gaps; the line joins the measured points across them.
      ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length]!, width: widthOf(i), dash: DASHES[i % DASHES.length]!, spanGaps: true, points: { show: false } })),
    ],
    axes: [
      { values: (_u, splits) => (ticks = splits.map((v) => timeLabel(v, span < 300))), space: 70 },
      { values: (_u, splits) => splits.map((v) => formatValue(v)), size: 50 },
    ],
    hooks: {
      setCursor: [(u) => showValues(u.cursor.idx ?? null)],
      draw: [() => (element.dataset['xTicks'] = ticks.join(' '))],
    },
  };
  const plot = new uPlot(options, [[], ...series.map(() => [])] as uPlot.AlignedData, plotEl);
  const fit = (): void => {
    const width = Math.floor(plotEl.clientWidth);
    if (width > 0 && width !== plot.width) plot.setSize({ width, height: HEIGHT });
  };
  const observer = new ResizeObserver(fit);
  observer.observe(plotEl);
  requestAnimationFrame(fit);
  onLeave(() => {
    observer.disconnect();
    plot.destroy();
  });

  return {
    element,
    setData(nt, nv, from, to) {
      t = nt;
      values = nv;
      // How much is drawn and from when, for a person's screen reader and a test alike.
      element.dataset['points'] = String(nt.length);
      element.dataset['first'] = nt.length ? String(nt[0]) : '';
      span = (to - from) / 1000;
      plot.setData([nt.map((x) => x / 1000), ...nv] as uPlot.AlignedData, true);
      plot.setScale('x', { min: from / 1000, max: to / 1000 });
      showValues(null);
    },
  };
}
