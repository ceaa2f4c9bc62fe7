/**
 * How many connections one listener holds (`stompMaxConnections`,
 * `httpMaxConnections`, …; 0 = no limit): a TCP connection from accept to
 * close, a WebSocket session from its upgrade to its close. A connection
 * that finds its listener full is not dropped unheard: it is handed to its
 * protocol marked full (`Admission.listenerFull`), which answers its
 * CONNECT with a refusal in its own words (STOMP ERROR, MQTT CONNACK
 * 0x97 or 3, WebSocket close 1013) and closes; it takes no slot.
 */

/** Why a connection was refused for a full listener, for the protocol to say. */
export interface ListenerFull {
  /** The listener's name (`stomp`, `mqtt-tls`, `http`, …). */
  listener: string;
  /** The whole sentence: which listener, its limit and key, and what to do. */
  reason: string;
}

/** `stomp-tls` → `stompTlsMaxConnections`. */
function capKey(listener: string): string {
  return listener.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()) + 'MaxConnections';
}

export class ListenerSlots {
  private open = 0;
  readonly full: ListenerFull;

  constructor(
    readonly listener: string,
    /** The most connections at once; 0 = no limit. */
    readonly max: number,
  ) {
    this.full = { listener, reason: `listener "${listener}" is full: it holds its limit of ${max} connections (${capKey(listener)}); try again later` };
  }

  /** Connections holding a slot now. */
  get count(): number {
    return this.open;
  }

  /** Takes a slot; false when the listener is full. Every slot taken is given back with `release`, once. */
  take(): boolean {
    if (this.max > 0 && this.open >= this.max) return false;
    this.open++;
    return true;
  }

  release(): void {
    if (this.open > 0) this.open--;
  }
}
