/**
 * What one receiver got, message by message: a bit per sequence number and
 * publisher, so loss, duplicates and reordering are exact, and a latency
 * sample (reservoir of bounded size, so a long run keeps a fair sample).
 */
class SeqSet {
  private bits = new Uint8Array(1024);
  last = -1;

  /** Marks `seq`; true when it was not seen before. */
  add(seq: number): boolean {
    const byte = seq >>> 3;
    if (byte >= this.bits.length) {
      let n = this.bits.length * 2;
      while (n <= byte) n *= 2;
      const grown = new Uint8Array(n);
      grown.set(this.bits);
      this.bits = grown;
    }
    const mask = 1 << (seq & 7);
    if (this.bits[byte]! & mask) return false;
    this.bits[byte]! |= mask;
    return true;
  }
}

export class Tally {
  private readonly sets: (SeqSet | undefined)[] = [];
  /** Distinct messages received, per publisher id. */
  readonly uniqueByPub: number[] = [];
  unique = 0;
  duplicates = 0;
  reordered = 0;
  /** Bodies that were not ours (wrong length, no stamp). */
  malformed = 0;

  /** Records one message; returns true when it is new. */
  add(pub: number, seq: number): boolean {
    let set = this.sets[pub];
    if (!set) {
      set = this.sets[pub] = new SeqSet();
      while (this.uniqueByPub.length <= pub) this.uniqueByPub.push(0);
    }
    if (!set.add(seq)) {
      this.duplicates++;
      return false;
    }
    if (seq < set.last) this.reordered++;
    else set.last = seq;
    this.unique++;
    this.uniqueByPub[pub]!++;
    return true;
  }
}

/** Latencies in µs; keeps at most `cap` of them, each message equally likely to be kept. */
export class LatencySample {
  readonly values: Float64Array;
  length = 0;
  private seen = 0;
  recording = false;

  constructor(private readonly cap = 500_000) {
    this.values = new Float64Array(cap);
  }

  add(us: number): void {
    if (!this.recording) return;
    this.seen++;
    if (this.length < this.cap) this.values[this.length++] = us;
    else {
      const j = Math.floor(Math.random() * this.seen);
      if (j < this.cap) this.values[j] = us;
    }
  }

  take(): Float64Array {
    return this.values.slice(0, this.length);
  }
}

/** p-th quantile (0…1) of sorted values, in the values' unit; NaN when empty. */
export function quantile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}
