/**
 * Cuts an MQTT byte stream into whole packets, in time linear in the bytes
 * received, however the stream is split.
 *
 * mqtt-packet's own stream parser re-reads what it has buffered on every
 * chunk, so a packet that arrives in many tiny pieces (one byte per
 * WebSocket message, say) costs time quadratic in its size. This framer
 * reads each byte of a fixed header once, keeps an incomplete packet in one
 * buffer that grows by doubling (so each byte is copied a bounded number of
 * times), and hands mqtt-packet only runs of whole packets.
 *
 * It also refuses a packet as soon as its fixed header declares it larger
 * than the limit, before any of its body has arrived, and a Remaining Length
 * longer than four bytes (malformed, MQTT 1.5.5).
 */

export type FrameProblem = 'malformed' | 'too_large';

export class MqttFrameError extends Error {
  override name = 'MqttFrameError';
  constructor(
    readonly kind: FrameProblem,
    message: string,
  ) {
    super(message);
  }
}

export class MqttFramer {
  /** Fixed header bytes of the packet being read, when it is incomplete (at most 5). */
  private readonly header = Buffer.alloc(5);
  private headerLength = 0;
  /** Remaining Length decoded so far, and the weight of the next length byte. */
  private remaining = 0;
  private multiplier = 1;
  /** Whole size of the packet being read (header and body), once its header is complete; 0 before. */
  private need = 0;
  /** The incomplete packet so far (header included), and how much of it is filled. */
  private partial: Buffer | undefined;
  private have = 0;
  private failed: MqttFrameError | undefined;
  /** Bytes copied into incomplete packets so far (to show the work stays linear). */
  copied = 0;

  constructor(
    /** Largest whole packet (fixed header included) accepted. */
    private readonly maxPacketBytes: number,
  ) {}

  /** Bytes of an incomplete packet held now (header included). */
  get pending(): number {
    return this.need > 0 ? this.have : this.headerLength;
  }

  /**
   * Takes the next chunk of the stream and calls `emit` with runs of whole
   * packets (one or more, back to back; subarrays of `chunk` where they lie
   * in it whole). Throws MqttFrameError, then again on every later call,
   * when the stream is malformed or a packet is too large (the whole packets
   * before the fault are emitted first).
   */
  feed(chunk: Buffer, emit: (packets: Buffer) => void): void {
    if (this.failed) throw this.failed;
    const end = chunk.length;
    let off = 0;
    // First the packet begun in earlier chunks, if any.
    if (this.headerLength > 0) {
      if (this.need === 0) {
        off = this.readHeader(chunk, 0);
        if (this.need === 0) return; // its header is still incomplete: the chunk is used up
        this.startPartial();
      }
      off = this.fill(chunk, off, emit);
      if (this.need > 0) return; // still incomplete: the chunk is used up
    }
    // Then whole packets lying in the chunk, handed on as one run.
    const runStart = off;
    while (off < end) {
      const start = off;
      try {
        off = this.readHeader(chunk, off);
      } catch (err) {
        if (start > runStart) emit(chunk.subarray(runStart, start));
        throw err;
      }
      if (this.need === 0) {
        // The chunk ends inside a header: its bytes wait in `header`.
        if (start > runStart) emit(chunk.subarray(runStart, start));
        return;
      }
      if (end - start >= this.need) {
        off = start + this.need;
        this.reset();
        continue;
      }
      // The packet goes on in later chunks.
      if (start > runStart) emit(chunk.subarray(runStart, start));
      this.startPartialFrom(chunk, start, end);
      return;
    }
    if (end > runStart) emit(chunk.subarray(runStart, end));
  }

  /**
   * Reads fixed header bytes from `chunk` at `off` (continuing a header
   * begun in an earlier chunk) and keeps them in `header`. Returns the
   * offset after the bytes used; `need` is set once the header is complete.
   */
  private readHeader(chunk: Buffer, off: number): number {
    const end = chunk.length;
    while (off < end) {
      const b = chunk[off++]!;
      this.header[this.headerLength++] = b;
      if (this.headerLength === 1) continue; // packet type and flags: mqtt-packet checks them
      this.remaining += (b & 0x7f) * this.multiplier;
      if ((b & 0x80) === 0) {
        const total = this.headerLength + this.remaining;
        if (total > this.maxPacketBytes) {
          this.fail('too_large', `a packet of ${total} bytes was announced; at most ${this.maxPacketBytes} are accepted`);
        }
        this.need = total;
        return off;
      }
      if (this.headerLength === 5) this.fail('malformed', 'malformed remaining length: longer than 4 bytes');
      this.multiplier *= 128;
    }
    return off;
  }

  private fail(kind: FrameProblem, message: string): never {
    this.failed = new MqttFrameError(kind, message);
    throw this.failed;
  }

  /** An incomplete packet whose header came from earlier chunks: its bytes so far are in `header`. */
  private startPartial(): void {
    this.partial = Buffer.allocUnsafe(Math.min(this.need, 64));
    this.header.copy(this.partial, 0, 0, this.headerLength);
    this.have = this.headerLength;
    this.copied += this.headerLength;
  }

  /** An incomplete packet that begins at `start` in `chunk` (its whole header included). */
  private startPartialFrom(chunk: Buffer, start: number, end: number): void {
    const n = end - start;
    this.partial = Buffer.allocUnsafe(Math.min(this.need, Math.max(64, n)));
    chunk.copy(this.partial, 0, start, end);
    this.have = n;
    this.copied += n;
  }

  /** Copies what the incomplete packet still needs from `chunk`; emits it when whole. Returns the new offset. */
  private fill(chunk: Buffer, off: number, emit: (packets: Buffer) => void): number {
    const take = Math.min(this.need - this.have, chunk.length - off);
    let buf = this.partial!;
    if (buf.length - this.have < take) {
      // Doubling keeps the total copying linear in the packet's size.
      const grown = Buffer.allocUnsafe(Math.min(this.need, Math.max(buf.length * 2, this.have + take)));
      buf.copy(grown, 0, 0, this.have);
      this.copied += this.have;
      buf = this.partial = grown;
    }
    chunk.copy(buf, this.have, off, off + take);
    this.have += take;
    this.copied += take;
    if (this.have === this.need) {
      const whole = buf.length === this.need ? buf : buf.subarray(0, this.need);
      this.reset();
      emit(whole);
    }
    return off + take;
  }

  private reset(): void {
    this.headerLength = 0;
    this.remaining = 0;
    this.multiplier = 1;
    this.need = 0;
    this.partial = undefined;
    this.have = 0;
  }
}
