/**
 * Clients and counters for the fault tests (issue 12).
 *
 * The Ledger holds what the server acknowledged (PUBACK/PUBCOMP, STOMP
 * RECEIPT, HTTP 200) and what the durable receivers got, and computes the
 * counters every scenario reports and asserts:
 * - acknowledged-but-missing: acknowledged, never received;
 * - unflagged duplicates: received again without the redelivered mark
 *   (STOMP `redelivered:true`, MQTT DUP);
 * - order violations: per receiving session and publisher, a message
 *   received for the first time with a lower sequence number than one
 *   received before it.
 * Every message is `{publisher}:{seq}`; a publisher never reuses a number
 * (a refused message is a gap, not repeated), so a duplicate is always the
 * server's doing.
 */
import { connect as tcpConnect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { StompParser, encodeFrame, header, type StompFrame } from '../../src/protocols/stomp/codec.js';
import { ADMIN_PASSWORD, FaultCluster, sleep, until } from './fault-cluster.js';
import { api } from './server.js';

// ---------------------------------------------------------------- ledger

export interface Counts {
  sent: number;
  acked: number;
  refused: number;
  received: number;
  ackedMissing: number;
  unflaggedDuplicates: number;
  flaggedDuplicates: number;
  orderViolations: number;
}

export class Ledger {
  readonly acked = new Set<string>();
  sent = 0;
  refused = 0;
  received = 0;
  unflaggedDuplicates = 0;
  flaggedDuplicates = 0;
  orderViolations = 0;
  /** Examples of each problem, for the report. */
  readonly examples: { duplicates: string[]; order: string[] } = { duplicates: [], order: [] };
  private readonly seen = new Map<string, number>();
  private readonly maxSeq = new Map<string, number>();

  constructor(readonly label: string) {}

  ack(key: string): void {
    this.acked.add(key);
  }

  /**
   * A durable receiver got `key` in `session`. `flagged`: marked redelivered.
   * `ordered`: whether this delivery must respect publisher order (queue
   * deliveries marked redelivered need not).
   */
  receive(session: string, key: string, flagged: boolean, ordered = true): void {
    if (key.startsWith('probe')) return;
    this.received++;
    const times = this.seen.get(key) ?? 0;
    this.seen.set(key, times + 1);
    if (times > 0) {
      if (flagged) this.flaggedDuplicates++;
      else {
        this.unflaggedDuplicates++;
        if (this.examples.duplicates.length < 10) this.examples.duplicates.push(`${session}: ${key}`);
      }
      return;
    }
    if (!ordered) return;
    const i = key.lastIndexOf(':');
    const pub = key.slice(0, i);
    const seq = Number(key.slice(i + 1));
    const k = session + '|' + pub;
    const max = this.maxSeq.get(k) ?? -1;
    if (seq < max) {
      this.orderViolations++;
      if (this.examples.order.length < 10) this.examples.order.push(`${session}: ${key} after ${pub}:${max}`);
    } else this.maxSeq.set(k, seq);
  }

  has(key: string): boolean {
    return this.seen.has(key);
  }

  missing(): string[] {
    return [...this.acked].filter((k) => !this.seen.has(k));
  }

  /** Waits until every acknowledged message has arrived, or the time is up (then the counts tell). */
  async settle(timeoutMs: number): Promise<number> {
    const t0 = Date.now();
    await until(() => this.missing().length === 0, 'every acknowledged message', timeoutMs, 100).catch(() => undefined);
    return Date.now() - t0;
  }

  counts(): Counts {
    return {
      sent: this.sent,
      acked: this.acked.size,
      refused: this.refused,
      received: this.received,
      ackedMissing: this.missing().length,
      unflaggedDuplicates: this.unflaggedDuplicates,
      flaggedDuplicates: this.flaggedDuplicates,
      orderViolations: this.orderViolations,
    };
  }
}

/** Prints the counts of a scenario (test diagnostics and stdout), plus the nodes' warnings when something is off. */
const reported = new WeakSet<TestContext>();

export function report(t: TestContext, cluster: FaultCluster, scenario: string, ledgers: Ledger[], extra: Record<string, unknown> = {}): void {
  if (reported.has(t)) return;
  reported.add(t);
  const rows: Record<string, unknown> = { scenario, nodeExits: cluster.unexpectedExits.length, ...extra };
  for (const l of ledgers) {
    const c = l.counts();
    rows[l.label] = c;
    const missing = l.missing();
    if (missing.length) rows[l.label + '.missing'] = ranges(missing);
    if (l.examples.duplicates.length) rows[l.label + '.duplicateExamples'] = l.examples.duplicates;
    if (l.examples.order.length) rows[l.label + '.orderExamples'] = l.examples.order;
  }
  if (cluster.unexpectedExits.length) rows['exits'] = cluster.unexpectedExits;
  const text = JSON.stringify(rows);
  t.diagnostic(text);
  console.log(`[fault-counts] ${text}`);
  cluster.saveLogs(scenario.replace(/[^a-z0-9]+/gi, '-'));
}

/** `p:3, p:4, p:5, q:9` → `p:3-5 q:9` (at most 20 ranges). */
export function ranges(keys: string[]): string {
  const by = new Map<string, number[]>();
  for (const k of keys) {
    const i = k.lastIndexOf(':');
    const list = by.get(k.slice(0, i)) ?? [];
    list.push(Number(k.slice(i + 1)));
    by.set(k.slice(0, i), list);
  }
  const out: string[] = [];
  for (const [p, nums] of by) {
    nums.sort((x, y) => x - y);
    let start = nums[0]!;
    let prev = start;
    for (const n of [...nums.slice(1), Infinity]) {
      if (n === prev + 1) {
        prev = n;
        continue;
      }
      out.push(start === prev ? `${p}:${start}` : `${p}:${start}-${prev}`);
      start = prev = n;
    }
  }
  return out.length > 20 ? out.slice(0, 20).join(' ') + ` …(${out.length - 20} more)` : out.join(' ');
}

/**
 * When a scenario fails: its counts as far as they got (unless reported
 * already, with the error), then the nodes' warn/error lines and stderr.
 */
export function printProblems(cluster: FaultCluster, max = 30, failed?: { t: TestContext; scenario: string; ledgers: Ledger[]; err: unknown; extra?: Record<string, unknown> }): void {
  if (failed) report(failed.t, cluster, failed.scenario, failed.ledgers, { ...failed.extra, abortedBy: String((failed.err as Error)?.message ?? failed.err).slice(0, 300) });
  const lines = cluster.problems(max);
  if (lines.length) console.log('[fault-logs]\n' + lines.join('\n'));
}

// ---------------------------------------------------------------- MQTT

export const ADMIN_MQTT: IClientOptions = { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0, connectTimeout: 5000 };

/** DISCONNECT and close, or just close if the server does not let it finish within 2 s. */
export async function endClient(c: MqttClient): Promise<void> {
  await Promise.race([c.endAsync().catch(() => undefined), sleep(2000)]);
  c.end(true);
}

/** A connected mqtt.js client (errors are kept, not thrown). */
export async function mqttClient(cluster: FaultCluster, node: string, opts: IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(cluster.mqttUrl(node), { ...ADMIN_MQTT, ...opts });
  c.on('error', () => undefined);
  return c;
}

/**
 * A persistent MQTT session (3.1.1 clean session 0, or v5 with a session
 * expiry) that records every message in the ledger. It can move to another
 * node with the same client id; QoS 2 state survives the move (one
 * incomingStore for every connection, as a real client keeps it).
 */
export class MqttSession {
  client: MqttClient | undefined;
  /** Connection ends the test did not ask for (server DISCONNECT, socket closed by the server). */
  readonly serverCloses: string[] = [];
  sessionPresent: boolean[] = [];
  /** `probe…` messages seen (the route from a publisher's node is in place). */
  probes = 0;
  /** Every message in arrival order, with `(DUP)` when flagged and `@node`. */
  readonly arrivals: string[] = [];
  private readonly store = new mqtt.Store();
  private ours = false;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly ledger: Ledger | undefined,
    readonly clientId: string,
    readonly opts: { qos: 0 | 1 | 2; version: 4 | 5; topic: string; user?: { username: string; password: string } },
  ) {}

  /** Connects to `node`; subscribes when the server has no session (the first time). */
  async connect(node: string): Promise<boolean> {
    this.ours = false;
    const client = mqtt.connect(this.cluster.mqttUrl(node), {
      ...ADMIN_MQTT,
      ...(this.opts.user ?? {}),
      clientId: this.clientId,
      clean: false,
      protocolVersion: this.opts.version,
      ...(this.opts.version === 5 ? { properties: { sessionExpiryInterval: 600 } } : {}),
      incomingStore: this.store,
    });
    this.client = client;
    client.on('error', () => undefined);
    client.on('message', (_t, payload, packet: mqttPacket.IPublishPacket) => {
      const key = payload.toString();
      if (key.startsWith('probe')) this.probes++;
      else {
        this.arrivals.push(`${key}${packet.dup ? '(DUP)' : ''}@${node}`);
        this.ledger?.receive(this.clientId, key, packet.dup === true);
      }
    });
    client.on('packetreceive', (p) => {
      if (p.cmd === 'disconnect') this.serverCloses.push(`${node}: DISCONNECT 0x${((p as mqttPacket.IDisconnectPacket).reasonCode ?? 0).toString(16)}`);
    });
    let up = false;
    client.once('connect', () => (up = true));
    client.on('close', () => {
      if (!up || this.ours || this.client !== client) return;
      this.serverCloses.push(`${node}: connection closed at ${new Date().toISOString()}`);
      if (this.reconnectTo && client.connected === false) void this.comeBack();
    });
    const connack = await new Promise<mqttPacket.IConnackPacket>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
      client.once('close', () => reject(new Error(`connection to ${node} closed before CONNACK`)));
    });
    this.sessionPresent.push(connack.sessionPresent);
    if (!connack.sessionPresent) {
      const granted = await new Promise<number[]>((resolve, reject) =>
        client.subscribe(this.opts.topic, { qos: this.opts.qos }, (err, g) => (err ? reject(err) : resolve((g ?? []).map((x) => x.qos)))),
      );
      if (granted[0] !== this.opts.qos) throw new Error(`SUBACK granted ${granted[0]}`);
    }
    return connack.sessionPresent;
  }

  private reconnectTo: string[] | undefined;
  private comingBack = false;
  reconnects = 0;

  /** From now on, a connection the server ends is made again at once (to `nodes` in turn), as a device would. */
  keepConnected(nodes: string[] | undefined): void {
    this.reconnectTo = nodes;
  }

  private async comeBack(): Promise<void> {
    if (this.comingBack || !this.reconnectTo) return;
    this.comingBack = true;
    try {
      await sleep(200);
      if (this.reconnectTo && !this.ours) {
        this.reconnects++;
        await this.connectAny(this.reconnectTo, 120_000);
      }
    } catch {
      // counted by the missing messages
    } finally {
      this.comingBack = false;
    }
  }

  /** Connects to the first node of `nodes` that takes it, trying for up to `timeoutMs`. */
  async connectAny(nodes: string[], timeoutMs = 30_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; ; i++) {
      const node = nodes[i % nodes.length]!;
      try {
        await this.connect(node);
        return node;
      } catch (err) {
        this.client?.end(true);
        if (Date.now() > deadline) throw err;
        await sleep(300);
      }
    }
  }

  /** Publishes probes (QoS 1) from `node` to `topic` until this session gets one: the route is in place. */
  async routeFrom(node: string, topic: string, timeoutMs = 15_000): Promise<void> {
    const pub = await mqttClient(this.cluster, node);
    try {
      const before = this.probes;
      let n = 0;
      await until(
        async () => {
          await pub.publishAsync(topic, `probe:${n++}`, { qos: 1 });
          await sleep(200);
          return this.probes > before;
        },
        `a probe from ${node} to reach ${this.clientId}`,
        timeoutMs,
        0,
      );
    } finally {
      await endClient(pub);
    }
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** Closes the connection (DISCONNECT): the session stays on the server. */
  async disconnect(): Promise<void> {
    this.ours = true;
    this.reconnectTo = undefined;
    const c = this.client;
    if (c) await endClient(c);
  }

  /** Drops the socket without DISCONNECT. */
  drop(): void {
    this.ours = true;
    this.reconnectTo = undefined;
    this.client?.end(true);
  }
}

/**
 * An MQTT publisher sending `{id}:{seq}` to `topic` at a steady pace with up
 * to `window` messages unacknowledged. A message counts as acknowledged on
 * its PUBACK (QoS 1) or PUBCOMP (QoS 2); a refusal, or the connection going
 * before the acknowledgement, is a refusal. After a lost connection it
 * connects again (to `nodes`, in turn) and goes on with the next number.
 */
export class MqttStreamPublisher {
  seq = 0;
  connects = 0;
  readonly closes: string[] = [];
  private client: MqttClient | undefined;
  private readonly pending = new Map<number, MqttClient>();
  private stopped = false;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly ledger: Ledger,
    readonly id: string,
    private readonly opts: { nodes: string[]; topic: string; qos: 1 | 2; version?: 4 | 5; intervalMs?: number; window?: number },
  ) {}

  private async ensureClient(): Promise<MqttClient> {
    let i = this.connects;
    while (!this.client || !this.client.connected) {
      if (this.stopped) throw new Error('stopped');
      const node = this.opts.nodes[i++ % this.opts.nodes.length]!;
      try {
        const c = await mqttClient(this.cluster, node, { protocolVersion: this.opts.version ?? 4, clientId: `${this.id}-${this.connects}` });
        this.connects++;
        c.on('close', () => {
          this.closes.push(`${node} at ${new Date().toISOString()}`);
          for (const [seq, owner] of this.pending) {
            if (owner !== c) continue;
            this.pending.delete(seq);
            this.ledger.refused++;
          }
        });
        this.client = c;
      } catch {
        await sleep(250);
      }
    }
    return this.client;
  }

  /** Publishes until `count` numbers have been used (or `stop()`), then waits for the last acknowledgements. */
  async run(count: number, onProgress?: (seq: number) => void): Promise<void> {
    const interval = this.opts.intervalMs ?? 10;
    const window = this.opts.window ?? 20;
    while (this.seq < count && !this.stopped) {
      let client: MqttClient;
      try {
        client = await this.ensureClient();
      } catch {
        break;
      }
      if (this.pending.size >= window) {
        await sleep(2);
        continue;
      }
      const seq = this.seq++;
      const key = `${this.id}:${seq}`;
      this.ledger.sent++;
      this.pending.set(seq, client);
      client.publish(this.opts.topic, key, { qos: this.opts.qos }, (err) => {
        if (this.pending.get(seq) !== client) return; // already counted as refused (connection gone)
        this.pending.delete(seq);
        if (err) this.ledger.refused++;
        else this.ledger.ack(key);
      });
      onProgress?.(seq);
      await sleep(interval);
    }
    await until(() => this.pending.size === 0, `${this.id}: last acknowledgements`, 15_000).catch(() => undefined);
  }

  stop(): void {
    this.stopped = true;
  }

  async close(): Promise<void> {
    this.stopped = true;
    if (this.client) await endClient(this.client);
  }
}

// ---------------------------------------------------------------- STOMP

/** A STOMP 1.2 peer over TCP (or WebSocket) that hands every frame to listeners. */
export class StompPeer {
  readonly closed: Promise<void>;
  isClosed = false;
  /** ERROR frames the server sent. */
  readonly errors: StompFrame[] = [];
  private readonly listeners: ((f: StompFrame) => void)[] = [];
  private readonly receipts = new Map<string, { resolve: (f: StompFrame) => void; reject: (e: Error) => void }>();
  private nextReceipt = 0;
  private ours = false;
  closedByServer = false;

  private constructor(
    readonly node: string,
    private readonly write: (b: Buffer) => void,
    private readonly end: () => void,
    onClose: (cb: () => void) => void,
  ) {
    this.closed = new Promise((r) =>
      onClose(() => {
        this.isClosed = true;
        if (!this.ours) this.closedByServer = true;
        for (const w of this.receipts.values()) w.reject(new Error(`connection to ${node} closed`));
        this.receipts.clear();
        r();
      }),
    );
  }

  static async open(cluster: FaultCluster, node: string, headers: Record<string, string>, ws = false): Promise<StompPeer> {
    const parser = new StompParser({ maxHeaderBytes: 1 << 20, maxHeaders: 1000, maxBodyBytes: 1 << 26 });
    let peer!: StompPeer;
    const feed = (d: Buffer): void =>
      parser.feed(d, (e) => {
        if (e.type === 'frame') peer.onFrame(e.frame);
      });
    if (ws) {
      const socket = new WebSocket(cluster.wsUrl(node, '/stomp'), ['v12.stomp']);
      peer = new StompPeer(node, (b) => socket.send(b), () => socket.close(), (cb) => socket.on('close', cb));
      socket.on('message', (d: Buffer) => feed(d));
      socket.on('error', () => undefined);
      await new Promise((resolve, reject) => (socket.once('open', resolve), socket.once('error', reject)));
    } else {
      const socket: Socket = tcpConnect(cluster.node(node).stompPort, '127.0.0.1');
      peer = new StompPeer(node, (b) => socket.write(b), () => socket.destroy(), (cb) => socket.on('close', cb));
      socket.on('data', feed);
      socket.on('error', () => undefined);
      await new Promise((resolve, reject) => (socket.once('connect', resolve), socket.once('error', reject)));
    }
    const connected = new Promise<StompFrame>((resolve, reject) => {
      const l = (f: StompFrame): void => {
        peer.off(l);
        if (f.command === 'CONNECTED') resolve(f);
        else reject(new Error(`${f.command} ${header(f, 'message') ?? ''}`));
      };
      peer.on(l);
      void peer.closed.then(() => reject(new Error(`connection to ${node} closed before CONNECTED`)));
    });
    peer.frame('CONNECT', { 'accept-version': '1.2', host: 'localhost', ...headers });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([connected, new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`no CONNECTED from ${node} in 10 s`)), 10_000)))]);
    } catch (err) {
      peer.close();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return peer;
  }

  on(l: (f: StompFrame) => void): void {
    this.listeners.push(l);
  }
  off(l: (f: StompFrame) => void): void {
    const i = this.listeners.indexOf(l);
    if (i >= 0) this.listeners.splice(i, 1);
  }

  private onFrame(f: StompFrame): void {
    if (f.command === 'ERROR') this.errors.push(f);
    const rid = header(f, 'receipt-id');
    if (rid !== undefined) {
      const w = this.receipts.get(rid);
      if (w) {
        this.receipts.delete(rid);
        if (f.command === 'RECEIPT') w.resolve(f);
        else w.reject(new Error(`${f.command} ${header(f, 'message') ?? ''}`));
      }
    }
    for (const l of [...this.listeners]) l(f);
  }

  frame(command: string, headers: Record<string, string>, body = ''): void {
    if (this.isClosed) return;
    this.write(encodeFrame(command, Object.entries(headers), body));
  }

  /** Sends the frame with a receipt header; resolves on its RECEIPT, rejects on ERROR or close. */
  request(command: string, headers: Record<string, string>, body = '', timeoutMs = 10_000): Promise<StompFrame> {
    const id = `r${this.nextReceipt++}`;
    return new Promise<StompFrame>((resolve, reject) => {
      if (this.isClosed) return reject(new Error(`connection to ${this.node} closed`));
      const t = setTimeout(() => {
        this.receipts.delete(id);
        reject(new Error(`no RECEIPT for ${command} in ${timeoutMs} ms`));
      }, timeoutMs);
      this.receipts.set(id, {
        resolve: (f) => (clearTimeout(t), resolve(f)),
        reject: (e) => (clearTimeout(t), reject(e)),
      });
      this.frame(command, { ...headers, receipt: id }, body);
    });
  }

  close(): void {
    this.ours = true;
    this.end();
  }
}

export const ADMIN_STOMP = { login: 'admin', passcode: ADMIN_PASSWORD };

/**
 * A queue consumer (client-individual) recording every MESSAGE in the
 * ledger; it acknowledges each one unless `ack` is false (then it holds them).
 */
export class StompQueueConsumer {
  readonly got: { key: string; redelivered: boolean }[] = [];
  private constructor(readonly peer: StompPeer) {}

  static async open(cluster: FaultCluster, node: string, queue: string, ledger: Ledger | undefined, opts: { ack?: boolean; ws?: boolean; name?: string } = {}): Promise<StompQueueConsumer> {
    const peer = await StompPeer.open(cluster, node, ADMIN_STOMP, opts.ws ?? false);
    const c = new StompQueueConsumer(peer);
    const session = opts.name ?? `consumer@${node}`;
    peer.on((f) => {
      if (f.command !== 'MESSAGE') return;
      const key = f.body.toString();
      const redelivered = header(f, 'redelivered') === 'true';
      c.got.push({ key, redelivered });
      ledger?.receive(session, key, redelivered, !redelivered);
      if (opts.ack ?? true) peer.frame('ACK', { id: header(f, 'ack') ?? '' });
    });
    await peer.request('SUBSCRIBE', { id: 'q', destination: queue, ack: 'client-individual' });
    return c;
  }
}

/**
 * SENDs `{id}:{seq}` with a receipt each, at most `window` without their
 * RECEIPT; a RECEIPT acknowledges, an ERROR or a lost connection refuses.
 * Reconnects (to `nodes` in turn) after a lost connection.
 */
export class StompStreamProducer {
  seq = 0;
  connects = 0;
  private peer: StompPeer | undefined;
  private pending = 0;
  private stopped = false;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly ledger: Ledger,
    readonly id: string,
    private readonly opts: { nodes: string[]; destination: string; intervalMs?: number; window?: number; headers?: Record<string, string> },
  ) {}

  private async ensurePeer(): Promise<StompPeer> {
    let i = this.connects;
    while (!this.peer || this.peer.isClosed) {
      if (this.stopped) throw new Error('stopped');
      try {
        this.peer = await StompPeer.open(this.cluster, this.opts.nodes[i++ % this.opts.nodes.length]!, this.opts.headers ?? ADMIN_STOMP);
        this.connects++;
      } catch {
        await sleep(250);
      }
    }
    return this.peer;
  }

  async run(count: number, onProgress?: (seq: number) => void): Promise<void> {
    const interval = this.opts.intervalMs ?? 10;
    const window = this.opts.window ?? 20;
    while (this.seq < count && !this.stopped) {
      let peer: StompPeer;
      try {
        peer = await this.ensurePeer();
      } catch {
        break;
      }
      if (this.pending >= window) {
        await sleep(2);
        continue;
      }
      const key = `${this.id}:${this.seq++}`;
      this.ledger.sent++;
      this.pending++;
      peer.request('SEND', { destination: this.opts.destination, 'content-type': 'text/plain' }, key, 15_000).then(
        () => (this.pending--, this.ledger.ack(key)),
        () => (this.pending--, this.ledger.refused++),
      );
      onProgress?.(this.seq);
      await sleep(interval);
    }
    await until(() => this.pending === 0, `${this.id}: last receipts`, 20_000).catch(() => undefined);
  }

  stop(): void {
    this.stopped = true;
  }

  close(): void {
    this.stopped = true;
    this.peer?.close();
  }
}

// ---------------------------------------------------------------- message service

/** POST /api/message/sendMessage; `content` is the ledger key. Resolves with the HTTP status (0: no answer). */
export async function sendMessage(cluster: FaultCluster, node: string, token: string, receivers: string[], content: string): Promise<number> {
  try {
    const r = await api(cluster.url(node), 'POST', '/api/message/sendMessage', { token, body: { receiver: receivers, title: 'fault', content, type: 'NOTICE' } });
    return r.status;
  } catch {
    return 0;
  }
}

/**
 * A user's STOMP subscriber of the message service's mailbox
 * (`/user/queue/messages`, client-individual, each message acknowledged),
 * recording the message `content` in the ledger under the user's name.
 */
export class MailboxReceiver {
  peer: StompPeer | undefined;
  readonly disconnects: string[] = [];
  got = 0;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly ledger: Ledger,
    readonly user: { name: string; token: string; password: string },
  ) {}

  async connect(node: string): Promise<void> {
    const peer = await StompPeer.open(this.cluster, node, { login: this.user.name, passcode: this.user.password });
    this.peer = peer;
    let subscribed = false;
    void peer.closed.then(() => {
      if (!peer.closedByServer) return;
      this.disconnects.push(`${node}: closed by the server at ${new Date().toISOString()}${peer.errors.length ? ' after ERROR ' + header(peer.errors[0]!, 'message') : ''}`);
      if (subscribed && this.reconnectTo && this.peer === peer) void this.reconnect(this.reconnectTo, 120_000).catch(() => undefined);
    });
    peer.on((f) => {
      if (f.command !== 'MESSAGE') return;
      this.got++;
      const content = (JSON.parse(f.body.toString()) as { content: string }).content;
      this.ledger.receive(this.user.name, content, header(f, 'redelivered') === 'true');
      peer.frame('ACK', { id: header(f, 'ack') ?? '' });
    });
    await peer.request('SUBSCRIBE', { id: 'm', destination: '/user/queue/messages', ack: 'client-individual' });
    subscribed = true;
  }

  private reconnectTo: string[] | undefined;

  /** From now on, a connection the server ends is made again (to `nodes` in turn). */
  keepConnected(nodes: string[] | undefined): void {
    this.reconnectTo = nodes;
  }

  /** Connects again (to `nodes` in turn) until it works. */
  async reconnect(nodes: string[], timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (let i = 0; ; i++) {
      try {
        await this.connect(nodes[i % nodes.length]!);
        return;
      } catch (err) {
        if (Date.now() > deadline) throw err;
        await sleep(300);
      }
    }
  }

  close(): void {
    this.reconnectTo = undefined;
    this.peer?.close();
  }
}

/**
 * A user's JSON WebSocket session (`/websocket/{token}`, the message
 * service's own protocol) recording each message `content` in the ledger and
 * acknowledging it. The JSON protocol has no redelivered mark, so any
 * duplicate counts as unflagged.
 */
export class JsonMailboxReceiver {
  readonly closes: string[] = [];
  got = 0;
  private ws: WebSocket | undefined;
  private ours = false;

  constructor(
    private readonly cluster: FaultCluster,
    private readonly ledger: Ledger,
    readonly user: { name: string; token: string },
  ) {}

  async connect(node: string): Promise<void> {
    const ws = new WebSocket(this.cluster.wsUrl(node, '/websocket/' + encodeURIComponent(this.user.token)));
    this.ws = ws;
    ws.on('message', (d: Buffer) => {
      const e = JSON.parse(d.toString()) as { event: string; data?: { id: string; content: string } };
      if (e.event !== 'message' || !e.data) return;
      this.got++;
      this.ledger.receive(this.user.name + '(json)', e.data.content, false);
      ws.send(JSON.stringify({ action: 'ack', id: e.data.id }));
    });
    ws.on('error', () => undefined);
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('unexpected-response', (_q, res) => reject(new Error(`handshake refused with ${res.statusCode}`)));
      ws.once('error', reject);
    });
    ws.on('close', (code, reason) => {
      if (!this.ours) this.closes.push(`${node}: closed by the server (${code} ${reason.toString()}) at ${new Date().toISOString()}`);
    });
  }

  close(): void {
    this.ours = true;
    this.ws?.close();
  }
}
