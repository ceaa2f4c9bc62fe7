/**
 * Tables from the summaries: Herald's figures (npm run bench) and the
 * side-by-side comparison with Mosquitto with ratios and the goals of
 * issue 16 (npm run bench:compare). Cells are medians over the runs, with
 * the spread (± half the range, in % of the median) when there was more
 * than one run; † marks a figure where the generator saturated in some run
 * (so the server could do more), ‡ one where all cores were busy.
 */
import type { Measurement, Scenario, Summary } from './results.js';
import { fmt, short } from './results.js';

function find(summaries: Summary[], scenario: Scenario, wire: string, server: string, variant?: string): Summary | undefined {
  return summaries.find((s) => s.first.scenario === scenario && s.first.wire === wire && s.first.server === server && (s.first.variant ?? '') === (variant ?? ''));
}

function marks(s: Summary): string {
  const bounds = new Set(s.runs.map((r: Measurement) => r.bound));
  return (bounds.has('generator') ? '†' : '') + (bounds.has('machine') ? '‡' : '');
}

function cell(s: Summary | undefined, figure: string): string {
  const f = s?.figures[figure];
  if (!s || !f || Number.isNaN(f.median)) return '–';
  const pm = s.runs.length > 1 && f.median ? ` ±${((100 * (f.max - f.min)) / 2 / Math.abs(f.median)).toFixed(0)} %` : '';
  return `${short(f.median)}${pm}${marks(s)}`;
}

function med(s: Summary | undefined, figure: string): number {
  return s?.figures[figure]?.median ?? NaN;
}

const LEGEND =
  'Medians over the runs; ± is half the range between runs in % of the median. † the generator saturated in at least one run (the server could do more); ‡ all cores were busy in at least one run.';

/** Herald's figures, one row per scenario and protocol. */
export function heraldTable(summaries: Summary[]): string {
  const rows: string[] = ['| scenario | protocol | figure | median |', '|---|---|---|---|'];
  const add = (s: Summary, label: string, figure: string): void => {
    if (s.figures[figure]) rows.push(`| ${s.first.scenario}${s.first.variant ? ` (${s.first.variant})` : ''} | ${s.first.wire} | ${label} | ${cell(s, figure)} |`);
  };
  for (const s of summaries) {
    if (s.first.server !== 'herald') continue;
    if (!Object.keys(s.first.figures).length) {
      rows.push(`| ${s.first.scenario} | ${s.first.wire} | ${s.first.notes[0] ?? 'no figures'} | |`);
      continue;
    }
    switch (s.first.scenario) {
      case 'fan-out':
      case 'fan-out-cluster':
        if (s.first.variant === 'fixed rate') {
          add(s, 'latency p50 ms', 'latencyP50Ms');
          add(s, 'latency p99 ms', 'latencyP99Ms');
        } else add(s, 'deliveries/s', 'deliveriesPerSecond');
        add(s, 'server µs CPU per delivery', 'serverCpuUsPerDelivery');
        break;
      case 'p2p':
      case 'fan-in':
        add(s, 'deliveries/s', 'deliveriesPerSecond');
        add(s, 'server µs CPU per delivery', 'serverCpuUsPerDelivery');
        add(s, 'lost', 'lost');
        break;
      case 'connections':
        add(s, 'connects/s', 'connectsPerSecond');
        add(s, 'server µs CPU per connect', 'serverCpuUsPerConnect');
        add(s, 'RSS KiB per connection', 'rssKiBPerConnection');
        add(s, '/healthz p99 ms while held', 'healthzP99Ms');
        break;
      case 'durable-send':
        add(s, 'messages/s', 'messagesPerSecond');
        add(s, 'server µs CPU per message', 'serverCpuUsPerMessage');
        add(s, 'lost (acknowledged, not stored)', 'lost');
        break;
    }
  }
  return rows.join('\n') + '\n\n' + LEGEND;
}

interface Row {
  label: string;
  scenario: Scenario;
  variant?: string;
  figure: string;
  /** Ratio goals for Herald ÷ Mosquitto (MQTT, STOMP). */
  ratioGoal?: { mqtt: number; stomp: number; lowerIsBetter?: boolean };
  /** Absolute goals for Herald's own figure. */
  absGoal?: { mqtt?: number; stomp?: number; http?: number; atMost?: boolean; only?: string };
}

const ROWS: Row[] = [
  { label: 'fan-out 1→N, max deliveries/s', scenario: 'fan-out', variant: 'max rate', figure: 'deliveriesPerSecond' },
  { label: 'fan-out, server µs CPU per delivery at max', scenario: 'fan-out', variant: 'max rate', figure: 'serverCpuUsPerDelivery' },
  { label: 'fan-out at a fixed rate, p99 ms', scenario: 'fan-out', variant: 'fixed rate', figure: 'latencyP99Ms' },
  { label: 'p2p, deliveries/s', scenario: 'p2p', figure: 'deliveriesPerSecond', ratioGoal: { mqtt: 1.0, stomp: 0.8 } },
  { label: 'p2p, server µs CPU per delivery', scenario: 'p2p', figure: 'serverCpuUsPerDelivery', absGoal: { mqtt: 6, stomp: 8, atMost: true } },
  { label: 'fan-in, deliveries/s', scenario: 'fan-in', figure: 'deliveriesPerSecond', ratioGoal: { mqtt: 1.0, stomp: 0.8 } },
  { label: 'fan-in, server µs CPU per message', scenario: 'fan-in', figure: 'serverCpuUsPerDelivery', absGoal: { mqtt: 6, stomp: 8, atMost: true } },
  { label: 'connections: connects/s', scenario: 'connections', figure: 'connectsPerSecond', ratioGoal: { mqtt: 1.0, stomp: 0.7 } },
  { label: 'connections: server µs CPU per connect', scenario: 'connections', figure: 'serverCpuUsPerConnect' },
  { label: 'connections: RSS KiB per connection', scenario: 'connections', figure: 'rssKiBPerConnection', absGoal: { mqtt: 8, stomp: 8, atMost: true, only: '100k' } },
  { label: 'connections: /healthz p99 ms while held', scenario: 'connections', figure: 'healthzP99Ms', absGoal: { mqtt: 50, stomp: 50, atMost: true, only: '100k' } },
  { label: 'durable-send on SQLite, messages/s', scenario: 'durable-send', variant: 'sqlite', figure: 'messagesPerSecond', absGoal: { http: 20_000 } },
  { label: 'durable-send on PostgreSQL, messages/s', scenario: 'durable-send', variant: 'postgres', figure: 'messagesPerSecond' },
];

export interface ComparisonRow {
  label: string;
  heraldMqtt: number;
  heraldStomp: number;
  heraldHttp: number;
  mosquitto: number;
  ratioMqtt: number;
  ratioStomp: number;
  goal: string;
}

export function comparisonTable(summaries: Summary[], connections: number): { markdown: string; rows: ComparisonRow[] } {
  const lines = [
    '| scenario, figure | Herald MQTT (durable: HTTP) | Herald STOMP/WS | Mosquitto MQTT | Herald MQTT ÷ Mosquitto | Herald STOMP ÷ Mosquitto | goal (issue 16) |',
    '|---|---|---|---|---|---|---|',
  ];
  const rows: ComparisonRow[] = [];
  for (const r of ROWS) {
    const hm = find(summaries, r.scenario, 'mqtt', 'herald', r.variant);
    const hs = find(summaries, r.scenario, 'stomp', 'herald', r.variant);
    const hh = find(summaries, r.scenario, 'http', 'herald', r.variant);
    const mq = find(summaries, r.scenario, 'mqtt', 'mosquitto', r.variant);
    if (!hm && !hs && !hh && !mq) continue;
    const ratio = (h: Summary | undefined): number => med(h, r.figure) / med(mq, r.figure);
    const rm = ratio(hm);
    const rs = ratio(hs);
    const goals: string[] = [];
    const verdict = (ok: boolean): string => (ok ? 'met' : '**not met**');
    if (r.ratioGoal) {
      if (!Number.isNaN(rm)) goals.push(`MQTT ≥ ${r.ratioGoal.mqtt.toFixed(1)}×: ${verdict(rm >= r.ratioGoal.mqtt)}`);
      if (!Number.isNaN(rs)) goals.push(`STOMP ≥ ${r.ratioGoal.stomp.toFixed(1)}×: ${verdict(rs >= r.ratioGoal.stomp)}`);
    }
    if (r.absGoal) {
      const g = r.absGoal;
      const check = (name: string, s: Summary | undefined, limit: number | undefined): void => {
        const v = med(s, r.figure);
        if (limit === undefined || Number.isNaN(v)) return;
        const ok = g.atMost ? v <= limit : v >= limit;
        const applies = g.only !== '100k' || connections >= 100_000;
        goals.push(`${name}${g.atMost ? ' ≤' : ' ≥'} ${fmt(limit, 0)}${g.only === '100k' ? ' with 100k held' : ''}: ${applies ? verdict(ok) : 'needs BENCH_CONNECTIONS=100000'}`);
      };
      check('MQTT', hm, g.mqtt);
      check('STOMP', hs, g.stomp);
      check('', hh, g.http);
    }
    const herald = (s: Summary | undefined): string => cell(s, r.figure);
    const hCells = hh ? [herald(hh), '–'] : [herald(hm), herald(hs)];
    lines.push(
      `| ${r.label} | ${hCells[0]} | ${hCells[1]} | ${cell(mq, r.figure)} | ${Number.isNaN(rm) ? '–' : rm.toFixed(2) + '×'} | ${Number.isNaN(rs) ? '–' : rs.toFixed(2) + '×'} | ${goals.join('; ').trim()} |`,
    );
    rows.push({ label: r.label, heraldMqtt: med(hm, r.figure), heraldStomp: med(hs, r.figure), heraldHttp: med(hh, r.figure), mosquitto: med(mq, r.figure), ratioMqtt: rm, ratioStomp: rs, goal: goals.join('; ') });
  }
  return { markdown: lines.join('\n') + '\n\n' + LEGEND, rows };
}
