/**
 * The overview's history on this node: every `historySampleSeconds` (10 s)
 * one sample of each series below goes into a ring of HISTORY_CAPACITY
 * samples (8640: 24 h at 10 s), so the console's charts survive a reload
 * and show the last day at once. Memory is fixed when the node starts: one
 * Float64Array of times and one Float32Array per series (about 0.8 MB).
 *
 * Counters (messages, cuts, store time) become rates over the interval
 * between two samples; gauges (connections, memory) are read as they are;
 * the event-loop delay comes from perf_hooks' monitorEventLoopDelay, reset
 * at each sample. A query downsamples to at most ~360 points, averaging
 * (or, for peaks, taking the largest of) the samples of each bucket.
 *
 * Figures are read through the fields of Metrics (prom-client's `get()`),
 * never by metric name, so renaming a metric does not silently empty a chart.
 */
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Metrics } from './metrics.js';

/** Samples kept: 24 h at the default interval of 10 s. */
export const HISTORY_CAPACITY = 8640;
/** The most points a query answers with (about one per pixel of a small chart). */
export const HISTORY_MAX_POINTS = 360;
/** The ranges the console offers, in ms. */
export const HISTORY_RANGES = { '15m': 15 * 60_000, '1h': 3_600_000, '24h': 86_400_000 } as const;
export type HistoryRange = keyof typeof HISTORY_RANGES;

/** One series: its key, what it is in words, its unit, the chart it belongs to, and how a bucket sums it up. */
export interface SeriesInfo {
  key: string;
  label: string;
  unit: string;
  chart: 'connections' | 'messages' | 'problems' | 'store' | 'loop' | 'memory';
  /** Within a downsampled bucket: the mean of its samples, or the largest (peaks). */
  agg: 'mean' | 'max';
}

const PROTOCOLS = ['stomp-ws', 'stomp-tcp', 'json-ws', 'mqtt-tcp', 'mqtt-ws'] as const;

function seriesOf(clustered: boolean): SeriesInfo[] {
  return [
    // Connections as the most held at once within a bucket: a peak, and a whole number.
    ...PROTOCOLS.map((p): SeriesInfo => ({ key: 'conn.' + p, label: p, unit: 'connections', chart: 'connections', agg: 'max' })),
    { key: 'msg.in', label: 'in', unit: 'messages/s', chart: 'messages', agg: 'mean' },
    { key: 'msg.out', label: 'out', unit: 'messages/s', chart: 'messages', agg: 'mean' },
    { key: 'cut.slow', label: 'slow-consumer cuts', unit: 'per minute', chart: 'problems', agg: 'mean' },
    { key: 'err.protocol', label: 'other protocol errors', unit: 'per minute', chart: 'problems', agg: 'mean' },
    ...(clustered ? [{ key: 'drop.bus', label: 'dropped by the bus', unit: 'per minute', chart: 'problems', agg: 'mean' } satisfies SeriesInfo] : []),
    { key: 'store.avg', label: 'average call', unit: 'ms', chart: 'store', agg: 'mean' },
    { key: 'loop.mean', label: 'mean delay', unit: 'ms', chart: 'loop', agg: 'mean' },
    { key: 'loop.max', label: 'worst delay', unit: 'ms', chart: 'loop', agg: 'max' },
    { key: 'mem.rss', label: 'resident (rss)', unit: 'MiB', chart: 'memory', agg: 'mean' },
    { key: 'mem.heap', label: 'JS heap used', unit: 'MiB', chart: 'memory', agg: 'mean' },
  ];
}

/** A fixed ring of samples: a time and one value per series each, the oldest overwritten first. */
export class SampleRing {
  private readonly times: Float64Array;
  private readonly columns: Float32Array[];
  private next = 0;
  private count = 0;

  constructor(
    readonly capacity: number,
    width: number,
  ) {
    this.times = new Float64Array(capacity);
    this.columns = Array.from({ length: width }, () => new Float32Array(capacity));
  }

  get size(): number {
    return this.count;
  }

  /** Appends a sample (NaN for a value not known). */
  push(t: number, values: readonly number[]): void {
    this.times[this.next] = t;
    this.columns.forEach((col, i) => (col[this.next] = values[i] ?? NaN));
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.count + 1, this.capacity);
  }

  /** Calls `fn` with each sample's time and slot from time `from` on, oldest first. */
  forEachFrom(from: number, fn: (t: number, slot: number) => void): void {
    const first = (this.next - this.count + this.capacity) % this.capacity;
    for (let i = 0; i < this.count; i++) {
      const slot = (first + i) % this.capacity;
      const t = this.times[slot]!;
      if (t >= from) fn(t, slot);
    }
  }

  value(series: number, slot: number): number {
    return this.columns[series]![slot]!;
  }

  /** The slot of the newest sample, or undefined when there is none. */
  get newest(): number | undefined {
    return this.count === 0 ? undefined : (this.next - 1 + this.capacity) % this.capacity;
  }

  time(slot: number): number {
    return this.times[slot]!;
  }
}

export interface HistoryAnswer {
  sampleSeconds: number;
  /** Width of a point: the sample interval, or a bucket of several samples (24 h). */
  bucketSeconds: number;
  /** How far back the ring reaches when full. */
  keptSeconds: number;
  series: SeriesInfo[];
  /** Point times (ms since epoch), oldest first. */
  t: number[];
  /** One array per series key, aligned with `t`; null where nothing was known. */
  values: Record<string, (number | null)[]>;
}

/** Three decimals are plenty for a chart, and keep the JSON small. */
const round = (v: number): number | null => (Number.isFinite(v) ? Math.round(v * 1000) / 1000 : null);

/** What the sampler reads: the node's metrics, and in a cluster how many messages its bus dropped so far. */
export interface HistorySources {
  metrics: Metrics;
  busDropped?: () => number;
}

/** A prom-client metric as `get()` returns it, whatever its type. */
type Readable = { get(): Promise<{ values: { value: number; labels: Partial<Record<string, string | number>>; metricName?: string }[] }> };

async function sum(metric: Readable, keep: (v: { labels: Partial<Record<string, string | number>>; metricName?: string }) => boolean = () => true): Promise<number> {
  let total = 0;
  for (const v of (await metric.get()).values) if (keep(v)) total += v.value;
  return total;
}

interface Totals {
  at: number;
  in: number;
  out: number;
  slow: number;
  errors: number;
  dropped: number;
  storeSeconds: number;
  storeCalls: number;
}

/** The history of this node's overview series (see the top of this file). */
export class MetricHistory {
  readonly series: SeriesInfo[];
  private readonly ring: SampleRing;
  private readonly loop: IntervalHistogram;
  private readonly loopResolutionMs = 20;
  private last: Totals | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly sources: HistorySources,
    readonly sampleMs: number,
    private readonly now: () => number = Date.now,
  ) {
    this.series = seriesOf(sources.busDropped !== undefined);
    this.ring = new SampleRing(HISTORY_CAPACITY, this.series.length);
    this.loop = monitorEventLoopDelay({ resolution: this.loopResolutionMs });
  }

  /** Takes the first reading now (the baseline of the rates) and samples every interval after. */
  start(onError: (err: unknown) => void): void {
    this.loop.enable();
    const run = (): void => void this.sample().catch(onError);
    run();
    this.timer = setInterval(run, this.sampleMs);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
    this.loop.disable();
  }

  private async totals(): Promise<Totals> {
    const m = this.sources.metrics;
    return {
      at: this.now(),
      in: await sum(m.messagesIn),
      out: await sum(m.messagesOut),
      slow: await sum(m.protocolErrors, (v) => v.labels['reason'] === 'slow_consumer'),
      errors: await sum(m.protocolErrors, (v) => v.labels['reason'] !== 'slow_consumer'),
      dropped: this.sources.busDropped?.() ?? 0,
      storeSeconds: await sum(m.storeSeconds, (v) => v.metricName?.endsWith('_sum') === true),
      storeCalls: await sum(m.storeSeconds, (v) => v.metricName?.endsWith('_count') === true),
    };
  }

  /** One sample: rates since the last one, gauges as they are now. The first call only sets the baseline. */
  async sample(): Promise<void> {
    const now = await this.totals();
    const before = this.last;
    this.last = now;
    if (!before) return;
    const seconds = Math.max(0.001, (now.at - before.at) / 1000);
    const perSecond = (a: number, b: number): number => Math.max(0, a - b) / seconds;
    const connections = new Map<string, number>();
    for (const v of (await this.sources.metrics.connections.get()).values) connections.set(String(v.labels.protocol), v.value);
    const calls = now.storeCalls - before.storeCalls;
    const loopCount = this.loop.count;
    const lag = (ns: number): number => (loopCount > 0 ? Math.max(0, ns / 1e6 - this.loopResolutionMs) : NaN);
    const mem = process.memoryUsage();
    const byKey: Record<string, number> = {
      'msg.in': perSecond(now.in, before.in),
      'msg.out': perSecond(now.out, before.out),
      'cut.slow': perSecond(now.slow, before.slow) * 60,
      'err.protocol': perSecond(now.errors, before.errors) * 60,
      'drop.bus': perSecond(now.dropped, before.dropped) * 60,
      'store.avg': calls > 0 ? ((now.storeSeconds - before.storeSeconds) / calls) * 1000 : NaN,
      'loop.mean': lag(this.loop.mean),
      'loop.max': lag(this.loop.max),
      'mem.rss': mem.rss / 1_048_576,
      'mem.heap': mem.heapUsed / 1_048_576,
    };
    this.loop.reset();
    for (const p of PROTOCOLS) byKey['conn.' + p] = connections.get(p) ?? 0;
    this.ring.push(now.at, this.series.map((s) => byKey[s.key] ?? NaN));
  }

  /** The newest sample (the console's node health: the event-loop delay over the last interval), or undefined before the first. */
  latest(): { at: number; values: Record<string, number | null> } | undefined {
    const slot = this.ring.newest;
    if (slot === undefined) return undefined;
    return { at: this.ring.time(slot), values: Object.fromEntries(this.series.map((s, i) => [s.key, round(this.ring.value(i, slot))])) };
  }

  /**
   * The last `range` of history, at most ~HISTORY_MAX_POINTS points: the
   * samples themselves when they fit, else buckets aligned on multiples of
   * their width (so the same bucket has the same time in every answer).
   * With `since`, only points from that time on (a console appending to
   * what it has: it drops its own points from `since` on, since the last
   * bucket may have grown).
   */
  query(range: HistoryRange, since?: number): HistoryAnswer {
    const rangeMs = HISTORY_RANGES[range];
    const now = this.now();
    const bucketMs = Math.max(1, Math.ceil(rangeMs / HISTORY_MAX_POINTS / this.sampleMs)) * this.sampleMs;
    const raw = bucketMs === this.sampleMs;
    // The range reaches back `rangeMs`, that moment itself excluded (a 1 h range of 10 s samples is 360, not 361).
    const from = Math.max(now - rangeMs + 1, since ?? -Infinity);
    const t: number[] = [];
    const values: Record<string, (number | null)[]> = Object.fromEntries(this.series.map((s) => [s.key, []]));
    const columns = this.series.map((s) => values[s.key]!);
    // The bucket being filled: its start, and per series a sum, a count and a largest value.
    let bucket = NaN;
    const acc = this.series.map(() => ({ sum: 0, n: 0, max: -Infinity }));
    const flush = (): void => {
      if (Number.isNaN(bucket)) return;
      t.push(bucket);
      this.series.forEach((s, i) => {
        const a = acc[i]!;
        columns[i]!.push(a.n === 0 ? null : round(s.agg === 'max' ? a.max : a.sum / a.n));
        a.sum = 0;
        a.n = 0;
        a.max = -Infinity;
      });
    };
    // A bucket that starts before `from` but reaches into it is answered whole.
    this.ring.forEachFrom(raw ? from : Math.floor(from / bucketMs) * bucketMs, (time, slot) => {
      if (raw) {
        t.push(time);
        this.series.forEach((_, i) => columns[i]!.push(round(this.ring.value(i, slot))));
        return;
      }
      const start = Math.floor(time / bucketMs) * bucketMs;
      if (start !== bucket) (flush(), (bucket = start));
      this.series.forEach((_, i) => {
        const v = this.ring.value(i, slot);
        if (!Number.isFinite(v)) return;
        const a = acc[i]!;
        a.sum += v;
        a.n++;
        if (v > a.max) a.max = v;
      });
    });
    if (!raw) flush();
    return {
      sampleSeconds: this.sampleMs / 1000,
      bucketSeconds: bucketMs / 1000,
      keptSeconds: (HISTORY_CAPACITY * this.sampleMs) / 1000,
      series: this.series,
      t,
      values,
    };
  }
}
