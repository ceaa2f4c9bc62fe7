/**
 * One STOMP connection (over WebSocket or TCP): frames in, core calls out,
 * MESSAGE frames back. This file reads and dispatches frames; the state the
 * handlers share is in state.ts, and each group of frames has its file
 * (connect.ts, send.ts, subscriptions.ts, transactions.ts).
 *
 * Frames are handled strictly in arrival order; a frame whose handling waits
 * (CONNECT's authentication, a queue SEND's disk write) holds back the
 * frames behind it. A frame with nothing before it and nothing to wait for
 * (most SENDs to topics) is handled as soon as it is parsed, with no
 * promise.
 */
import { loopTurn, turnNow } from '../../clock.js';
import { storeUnavailable, type StoreUnavailableError } from '../../store/store.js';
import { TURN_MESSAGES } from '../../transports/read-budget.js';
import { header, StompSyntaxError, type ParseEvent, type StompFrame } from './codec.js';
import { onConnect } from './connect.js';
import { StompError } from './errors.js';
import { onSend } from './send.js';
import { frameSize, StompState } from './state.js';
import { onAck, onSubscribe, onUnsubscribe, removeSubscription } from './subscriptions.js';
import { inTransaction, onAbort, onBegin, onCommit } from './transactions.js';

export type { StompLimits } from './state.js';

/** Bytes parsed at a time, so that parsing stops soon after the iteration's share of frames is used. */
const PARSE_SLICE = 16 * 1024;

const nextIteration = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class StompConnection extends StompState {
  private readonly inbox: StompFrame[] = [];
  /** Bytes of the frames in `inbox`: reading pauses past maxInboxBytes, whatever their count. */
  private inboxBytes = 0;
  private busy = false;
  /** The event-loop iteration frames were last counted in, and how many (see spend). */
  private turn = -1;
  private turnFrames = 0;
  /** The stream broke (a syntax error) while frames before the break waited in the inbox: the ERROR, for after them. */
  private afterInbox: (() => void) | undefined;
  /** Bytes read past this iteration's share, parsed in the next (see parse). */
  private deferredInput: Buffer[] | undefined;

  // ---- input -----------------------------------------------------------------

  /** Bytes from the transport (a WebSocket message or a TCP chunk). */
  receive(data: Buffer): void {
    if (this.closed || this.state === 'closing' || this.afterInbox) return;
    this.lastRead = turnNow();
    if (this.deferredInput) this.deferredInput.push(data);
    else this.parse(data);
  }

  /**
   * Parses `data` PARSE_SLICE bytes at a time while this connection's share
   * of the event-loop iteration lasts (see spend); what is left waits,
   * reading paused, for the next iteration. A 64 KiB read of tiny SENDs is
   * 2,500 frames: parsing it all at once would cost the other clients
   * several milliseconds every iteration.
   */
  private parse(data: Buffer): void {
    for (let at = 0; at < data.length; at += PARSE_SLICE) {
      if (this.shareUsed()) {
        this.deferredInput = [at === 0 ? data : data.subarray(at)];
        this.pauseReading('turn');
        setImmediate(this.parseDeferred);
        return;
      }
      const slice = data.length <= PARSE_SLICE ? data : data.subarray(at, Math.min(at + PARSE_SLICE, data.length));
      try {
        this.parser.feed(slice, this.onParse);
      } catch (err) {
        if (!(err instanceof StompSyntaxError)) throw err;
        const fail = (): void => {
          this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'syntax' });
          this.sendError(err.message, undefined, err.receipt);
          this.shutdown(1002, 'protocol error');
        };
        // The frames before the bad bytes are handled first, those waiting in the inbox too.
        if (this.busy || this.inbox.length > 0) {
          this.afterInbox = fail;
          if (!this.busy) this.startDrain();
        } else fail();
        return;
      }
      if (this.closed || this.state === 'closing') return;
    }
  }

  private readonly parseDeferred = (): void => {
    const runs = this.deferredInput ?? [];
    this.deferredInput = undefined;
    for (let i = 0; i < runs.length; i++) {
      if (this.closed || this.state === 'closing' || this.afterInbox) return;
      this.parse(runs[i]!);
      const left = this.deferredInput as Buffer[] | undefined; // parse may have deferred again
      if (left) {
        for (let j = i + 1; j < runs.length; j++) left.push(runs[j]!);
        return;
      }
    }
    this.resumeReading('turn');
  };

  private readonly onParse = (ev: ParseEvent): void => {
    if (ev.type === 'heartbeat') return;
    const frame = ev.frame;
    if (!this.busy && this.inbox.length === 0 && this.spend()) {
      // Nothing waits before it: handled now, in this turn. Only a frame that must wait queues the ones behind it.
      if (this.closed || this.state === 'closing') return;
      let pending: void | Promise<void>;
      try {
        pending = this.handle(frame);
      } catch (err) {
        this.frameFailed(frame, err);
        return;
      }
      if (pending) this.startDrain(frame, pending);
      return;
    }
    this.inbox.push(frame);
    this.inboxBytes += frameSize(frame);
    if (this.inbox.length > 1000 || this.inboxBytes > this.limits.maxInboxBytes) this.pauseReading('inbox');
    if (!this.busy) this.startDrain();
  };

  /** Handles the inbox in order, after the frame whose handling is `pending`, if any. */
  private startDrain(frame?: StompFrame, pending?: Promise<void>): void {
    this.busy = true;
    void this.drainInbox(frame, pending).catch((err: unknown) => {
      this.busy = false;
      this.ctx.log.error({ err, session: this.id }, 'STOMP inbox failed');
    });
  }

  private async drainInbox(first?: StompFrame, pending?: Promise<void>): Promise<void> {
    let failed = false;
    if (first && pending) {
      try {
        await pending;
      } catch (err) {
        this.frameFailed(first, err);
        failed = true;
      }
    }
    while (!failed && this.inbox.length > 0 && !this.closed && this.state !== 'closing') {
      if (!this.spend()) {
        await nextIteration();
        continue;
      }
      const frame = this.inbox.shift()!;
      this.inboxBytes -= frameSize(frame);
      // The CONNECT frame negotiates the version, which decides header escaping for what follows.
      try {
        const r = this.handle(frame);
        if (r) await r;
      } catch (err) {
        this.frameFailed(frame, err);
        break;
      }
    }
    this.busy = false;
    const after = this.afterInbox;
    if (after && this.inbox.length === 0) {
      this.afterInbox = undefined;
      if (!failed && !this.closed && this.state !== 'closing') after();
      return;
    }
    if (this.readingPausedFor('inbox') && this.inbox.length < 100 && this.inboxBytes <= this.limits.maxInboxBytes / 4) this.resumeReading('inbox');
  }

  /**
   * Counts a frame against this connection's share of the event-loop
   * iteration (TURN_MESSAGES): past it, frames wait in the inbox for the
   * next iteration, so a client flooding tiny frames does not hold every
   * other client for as long as its read takes.
   */
  private spend(): boolean {
    return !this.shareUsed() && ++this.turnFrames <= TURN_MESSAGES;
  }

  /** Whether this iteration's TURN_MESSAGES frames have been handled. */
  private shareUsed(): boolean {
    const turn = loopTurn();
    if (turn !== this.turn) {
      this.turn = turn;
      this.turnFrames = 0;
    }
    return this.turnFrames >= TURN_MESSAGES;
  }

  /** A frame could not be carried out: the client is told why (ERROR) and the connection ends. */
  private frameFailed(frame: StompFrame, err: unknown): void {
    let down: StoreUnavailableError | undefined;
    if (err instanceof StompError) {
      if (err.metric) this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: err.metric });
      this.sendError(err.message, err.detail, header(frame, 'receipt'));
      this.shutdown(1002, 'protocol error');
    } else if ((down = storeUnavailable(err))) {
      // No RECEIPT for what could not be stored: the client knows to send it again.
      this.ctx.log.warn({ err: down.message, command: frame.command, session: this.id }, 'store unavailable; frame refused');
      this.ctx.metrics.protocolErrors.inc({ protocol: this.protocol, reason: 'store_unavailable' });
      this.sendError('service unavailable', `the message store is unavailable, so this ${frame.command} was not carried out; connect again and repeat it later`, header(frame, 'receipt'));
      this.shutdown(1013, 'store unavailable');
    } else {
      this.ctx.log.error({ err, command: frame.command, session: this.id }, 'STOMP frame handling failed');
      this.sendError('internal error', 'the server could not handle this frame; the server log has the details', header(frame, 'receipt'));
      this.shutdown(1011, 'internal error');
    }
  }

  private handle(frame: StompFrame): void | Promise<void> {
    const cmd = frame.command;
    if (this.state === 'awaiting-connect') {
      if (cmd === 'CONNECT' || cmd === 'STOMP') return onConnect(this, frame);
      throw new StompError(`${cmd} before CONNECT`, 'the first frame on a connection must be CONNECT (or STOMP)');
    }
    switch (cmd) {
      case 'SEND':
        return inTransaction(this, frame) ? undefined : onSend(this, frame);
      case 'SUBSCRIBE':
        return onSubscribe(this, frame);
      case 'UNSUBSCRIBE':
        return onUnsubscribe(this, frame);
      case 'ACK':
      case 'NACK':
        return inTransaction(this, frame) ? undefined : onAck(this, frame);
      case 'BEGIN':
        return onBegin(this, frame);
      case 'COMMIT':
        return onCommit(this, frame);
      case 'ABORT':
        return onAbort(this, frame);
      case 'DISCONNECT':
        return this.onDisconnect(frame);
      case 'CONNECT':
      case 'STOMP':
        throw new StompError('already connected', 'a connection sends CONNECT once');
      default:
        throw new StompError(`unknown command "${cmd.slice(0, 32)}"`, 'STOMP commands are SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, BEGIN, COMMIT, ABORT, DISCONNECT');
    }
  }

  private onDisconnect(frame: StompFrame): void {
    this.transactions.clear();
    this.transactionBytes = 0;
    this.receipt(frame);
    this.endReason = 'client disconnected';
    this.shutdown(1000, 'disconnect');
  }

  /** Bytes received and not yet handled: frames waiting in order, and the part of a frame still coming in. */
  get pendingInput(): number {
    return this.inboxBytes + this.parser.buffered;
  }

  /** The transport is gone (either side closed it). */
  onTransportClosed(): void {
    this.cleanup();
  }

  protected cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sendTimer);
    clearInterval(this.readTimer);
    clearTimeout(this.readTimer);
    for (const sub of [...this.subscriptions.values()]) removeSubscription(this, sub);
    this.window.clear();
    this.transactions.clear();
    this.transactionBytes = 0;
    this.inbox.length = 0;
    this.inboxBytes = 0;
    if (this.registered) this.ctx.sessions.remove(this, this.endReason);
  }
}
