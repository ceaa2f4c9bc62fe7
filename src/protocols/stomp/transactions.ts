/**
 * BEGIN, COMMIT and ABORT: SEND, ACK and NACK frames that name a
 * transaction wait in memory (bounded in bytes) until COMMIT carries them
 * out in order, or ABORT drops them.
 */
import { header, type StompFrame } from './codec.js';
import { StompError } from './errors.js';
import { onSend } from './send.js';
import { frameSize, type StompState } from './state.js';
import { onAck } from './subscriptions.js';

/** What a transaction pins besides its frames (the map entry, its name). */
const TRANSACTION_ALLOWANCE = 256;

/** Holds a SEND/ACK/NACK that names a transaction until COMMIT; false when it names none. */
export function inTransaction(c: StompState, frame: StompFrame): boolean {
  const tx = header(frame, 'transaction');
  if (tx === undefined) return false;
  const list = c.transactions.get(tx);
  if (!list) throw new StompError(`unknown transaction "${tx}"`, 'BEGIN it first');
  holdForTransaction(c, frameSize(frame));
  list.push({ ...frame, headers: frame.headers.filter(([k]) => k !== 'transaction') });
  c.receipt(frame);
  return true;
}

/** Frames wait in memory until COMMIT: bounded in bytes like everything else a connection holds. */
function holdForTransaction(c: StompState, bytes: number): void {
  c.transactionBytes += bytes;
  const max = c.limits.maxTransactionBytes;
  if (c.transactionBytes > max) {
    throw new StompError(
      'transaction too large',
      `open transactions on this connection hold ${c.transactionBytes} bytes of frames; at most ${max} may wait for COMMIT (maxHeldBytesPerConnection)`,
    );
  }
}

export function onBegin(c: StompState, frame: StompFrame): void {
  const tx = header(frame, 'transaction');
  if (!tx) throw new StompError('BEGIN needs a transaction header');
  if (c.transactions.has(tx)) throw new StompError(`transaction "${tx}" is already open`);
  holdForTransaction(c, TRANSACTION_ALLOWANCE + tx.length);
  c.transactions.set(tx, []);
  c.receipt(frame);
}

/** A transaction ends (COMMIT, ABORT): its frames no longer count. */
function endTransaction(c: StompState, tx: string, list: StompFrame[]): void {
  c.transactions.delete(tx);
  let bytes = TRANSACTION_ALLOWANCE + tx.length;
  for (const f of list) bytes += frameSize(f);
  c.transactionBytes = Math.max(0, c.transactionBytes - bytes);
}

export async function onCommit(c: StompState, frame: StompFrame): Promise<void> {
  const tx = header(frame, 'transaction');
  if (!tx) throw new StompError('COMMIT needs a transaction header');
  const list = c.transactions.get(tx);
  if (!list) throw new StompError(`unknown transaction "${tx}"`);
  endTransaction(c, tx, list);
  for (const f of list) {
    const r = f.command === 'SEND' ? onSend(c, stripReceipt(f)) : onAck(c, stripReceipt(f));
    if (r) await r;
  }
  c.receipt(frame);
}

export function onAbort(c: StompState, frame: StompFrame): void {
  const tx = header(frame, 'transaction');
  if (!tx) throw new StompError('ABORT needs a transaction header');
  const list = c.transactions.get(tx);
  if (!list) throw new StompError(`unknown transaction "${tx}"`);
  endTransaction(c, tx, list);
  c.receipt(frame);
}

/** A frame carried out at COMMIT: the COMMIT's own RECEIPT answers for it. */
function stripReceipt(f: StompFrame): StompFrame {
  return { ...f, headers: f.headers.filter(([k]) => k !== 'receipt') };
}
