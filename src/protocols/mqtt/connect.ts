/**
 * CONNECT as a list of named steps, in the order the spec reads (as aedes'
 * handlers/connect.js does). Each step may refuse (throw ConnectRefused,
 * answered with a refusing CONNACK by the connection); the steps stop as
 * soon as the connection is closed under them (a takeover, the client gone).
 */
import { randomBytes } from 'node:crypto';
import type { IConnectPacket, Packet } from 'mqtt-packet';
import type { MqttSessionRecord } from '../../store/store.js';
import type { Principal } from '../../core/auth.js';
import { authenticate } from './credentials.js';
import { startReplay } from './replay.js';
import { ConnectRefused, REFUSE, RC } from './reason-codes.js';
import { INBOUND_ALIASES, type MqttClientState, type Version } from './state.js';
import { restoreSubscriptions } from './subscribe.js';
import { IdleSweep } from '../../transports/idle-sweep.js';
import { checkWill, holdWill } from './will.js';

/** What the steps learn along the way. */
interface Connecting {
  clientId: string;
  /** The server chose the client id (the client sent an empty one). */
  assigned: boolean;
  principal: Principal | undefined;
  /** Keep alive: what the client asked for, and what it gets. */
  askedKeepAlive: number;
  keepAlive: number;
  /** Session expiry granted, in seconds (0: the session ends with the connection). */
  expiry: number;
  /** The stored session this connection resumes. */
  existing: { record: MqttSessionRecord; principal: Principal } | undefined;
}

type Step = (c: MqttClientState, p: IConnectPacket, s: Connecting) => void | Promise<void>;

const CONNECT_STEPS: readonly Step[] = [
  checkListenerRoom,
  checkClientId,
  checkAuthenticationMethod,
  authenticateClient,
  checkConnectionQuota,
  (c, p) => checkWill(c, p.will),
  checkClientIdOwner,
  takeOverClientId,
  registerClient,
  readClientLimits,
  openSession,
  sendConnack,
  (c, _p, s) => holdWill(c, s.expiry),
  resumeSession,
  startKeepAlive,
];

export async function handleConnect(c: MqttClientState, p: IConnectPacket): Promise<void> {
  c.version = (p.protocolVersion ?? 4) as Version;
  clearTimeout(c.keepAliveTimer);
  const s: Connecting = { clientId: p.clientId, assigned: false, principal: undefined, askedKeepAlive: 0, keepAlive: 0, expiry: 0, existing: undefined };
  try {
    for (const step of CONNECT_STEPS) {
      // Most steps are synchronous: only a promise is awaited (an await costs a microtask turn each).
      const pending = step(c, p, s);
      if (pending) await pending;
      if (c.closed) return;
    }
  } finally {
    // The parser keeps this packet as the connection's settings (for its protocol version): the password
    // (a view of the bytes read, which it keeps alive) is not kept with it for the connection's life.
    (p as { password?: Buffer | undefined }).password = undefined;
  }
}

/**
 * The listener was full when this connection arrived: CONNACK 0x97 (quota
 * exceeded) in 5.0, 3 (server unavailable) in 3.1.1, before anything else
 * is looked at.
 */
function checkListenerRoom(c: MqttClientState): void {
  const full = c.admission.listenerFull;
  if (full) throw new ConnectRefused(REFUSE.quota, full.reason, 'listener_full');
}

/** An empty client id gets one of ours, but only with a clean session (or in v5). */
function checkClientId(c: MqttClientState, p: IConnectPacket, s: Connecting): void {
  if (s.clientId !== '') return;
  if (!p.clean && c.version !== 5) throw new ConnectRefused(REFUSE.clientId, 'an empty client id needs clean session');
  s.clientId = 'herald-' + randomBytes(8).toString('hex');
  s.assigned = true;
}

/** [MQTT-4.12.0-1]: an authentication method the server does not support is refused. */
function checkAuthenticationMethod(c: MqttClientState, p: IConnectPacket): void {
  const method = p.properties?.authenticationMethod;
  if (c.version === 5 && method !== undefined) {
    throw new ConnectRefused(REFUSE.authMethod, `authentication method "${method.slice(0, 50)}" is not supported: send a user name and password, or a token as password`);
  }
}

async function authenticateClient(c: MqttClientState, p: IConnectPacket, s: Connecting): Promise<void> {
  s.principal = await authenticate(c, p);
}

function checkConnectionQuota(c: MqttClientState, p: IConnectPacket, s: Connecting): void {
  const who = s.principal!;
  const max = c.ctx.config.maxConnectionsPerUser;
  if (c.ctx.sessions.ofUser(who.userId).size >= max) throw new ConnectRefused(REFUSE.quota, `user "${who.name}" already has ${max} connections open`);
  c.principal = who;
  c.clientId = s.clientId;
  c.device = s.clientId;
  c.will = p.will;
}

/**
 * A client id belongs to the user whose connection or stored session has it
 * (here, or in a cluster as the store says): nobody else may take it over.
 */
async function checkClientIdOwner(c: MqttClientState, _p: IConnectPacket, s: Connecting): Promise<void> {
  const { clientId } = s;
  const userId = c.principal.userId;
  const holder = c.shared.clients.get(clientId);
  const stored = c.shared.sessions.get(clientId) ?? (c.shared.cluster ? await c.shared.sessions.fetch(clientId) : undefined);
  const owners = [holder && holder !== c ? holder.principal.userId : undefined, stored?.principal.userId];
  if (owners.some((o) => o !== undefined && o !== userId)) {
    c.ctx.log.debug({ session: c.id, clientId, userId }, 'MQTT client id of another user refused');
    throw new ConnectRefused(REFUSE.clientId, `client id ${clientId} is in use by another user`);
  }
}

/** Session takeover: the same client id on another node (cluster) is ended, and its session let go. */
async function takeOverClientId(c: MqttClientState, _p: IConnectPacket, s: Connecting): Promise<void> {
  if (c.shared.cluster) await c.shared.cluster.takeover(s.clientId, c.principal.userId);
}

/** ... then on this node: this connection becomes the client id's. */
function registerClient(c: MqttClientState, _p: IConnectPacket, s: Connecting): void {
  const previous = c.shared.clients.get(s.clientId);
  if (previous && previous !== c && previous.principal.userId !== c.principal.userId) {
    // Another user's CONNECT with this id got here first (while this one was being checked).
    throw new ConnectRefused(REFUSE.clientId, `client id ${s.clientId} is in use by another user`);
  }
  if (previous && previous !== c) previous.takenOver();
  c.shared.clients.set(s.clientId, c);
}

/** The client's v5 limits, keep alive within ours, and the session expiry granted. */
function readClientLimits(c: MqttClientState, p: IConnectPacket, s: Connecting): void {
  const props = p.properties ?? {};
  if (props.receiveMaximum) c.clientReceiveMaximum = props.receiveMaximum;
  if (props.maximumPacketSize) c.clientMaxPacket = props.maximumPacketSize;
  if (c.version === 5 && props.requestProblemInformation === false) c.problemInfo = false;
  if (c.version === 5 && props.topicAliasMaximum) c.clientAliasMax = props.topicAliasMaximum;
  const max = c.ctx.config.mqttMaxKeepAliveSeconds;
  s.askedKeepAlive = p.keepalive ?? 0;
  s.keepAlive = s.askedKeepAlive === 0 || s.askedKeepAlive > max ? max : s.askedKeepAlive;
  const maxExpiry = c.ctx.config.mqttSessionExpirySeconds;
  s.expiry = c.version === 5 ? Math.min(props.sessionExpiryInterval ?? 0, maxExpiry) : p.clean ? 0 : maxExpiry;
}

/** Sessions: clean start discards a stored one; otherwise the same user resumes it. */
async function openSession(c: MqttClientState, p: IConnectPacket, s: Connecting): Promise<void> {
  const { clientId } = s;
  let existing = c.shared.sessions.get(clientId) ?? (c.shared.cluster ? await c.shared.sessions.fetch(clientId) : undefined);
  if (existing && existing.principal.userId !== c.principal.userId) {
    // Stored by another user's CONNECT while this one was being checked: that session stays theirs.
    if (c.shared.clients.get(clientId) === c) c.shared.clients.delete(clientId);
    throw new ConnectRefused(REFUSE.clientId, `client id ${clientId} is in use by another user`);
  }
  if (existing && p.clean) {
    await c.shared.sessions.discard(clientId);
    existing = undefined;
  }
  s.existing = existing;
  if (s.expiry > 0 || existing) {
    c.sessionKept = true;
    c.waitingLive = [];
    const qos2In = existing?.record.qos2In ?? [];
    for (const id of qos2In) c.qos2In.add(id);
    await c.shared.sessions.attach(clientId, c.principal, s.expiry, existing?.record.subscriptions ?? [], qos2In);
  }
}

function sendConnack(c: MqttClientState, p: IConnectPacket, s: Connecting): void {
  c.connected = true;
  c.ctx.sessions.add(c);
  c.admission.authenticated();
  const sessionPresent = s.existing !== undefined;
  const connack: Packet | undefined =
    c.version === 5
      ? {
          cmd: 'connack',
          reasonCode: RC.success,
          sessionPresent,
          properties: {
            ...(s.expiry !== (p.properties?.sessionExpiryInterval ?? 0) ? { sessionExpiryInterval: s.expiry } : {}),
            ...(s.keepAlive !== s.askedKeepAlive ? { serverKeepAlive: s.keepAlive } : {}),
            ...(s.assigned ? { assignedClientIdentifier: s.clientId } : {}),
            receiveMaximum: c.ctx.config.mqttMaxInflight,
            maximumPacketSize: c.ctx.config.mqttMaxPacketBytes,
            topicAliasMaximum: INBOUND_ALIASES,
            sharedSubscriptionAvailable: true,
            wildcardSubscriptionAvailable: true,
            subscriptionIdentifiersAvailable: true,
            retainAvailable: true,
          },
        }
      : undefined;
  // 3.1/3.1.1: one of two fixed packets, shared (never written to).
  c.write(connack ? c.gen(connack) : sessionPresent ? CONNACK_RESUMED : CONNACK_ACCEPTED);
}

/** CONNACK 0x00 (accepted) without and with Session Present, as 3.1 and 3.1.1 write it. */
const CONNACK_ACCEPTED = Buffer.from([0x20, 0x02, 0x00, 0x00]);
const CONNACK_RESUMED = Buffer.from([0x20, 0x02, 0x01, 0x00]);

/** A kept session: its subscriptions again, then its stored queue before live traffic. */
async function resumeSession(c: MqttClientState, _p: IConnectPacket, s: Connecting): Promise<void> {
  if (!c.sessionKept) return;
  restoreSubscriptions(c, s.existing?.record.subscriptions ?? []);
  await startReplay(c);
}

/**
 * Keep alive [MQTT-3.1.2-24]: a client silent for 1.5 times its keep alive is
 * disconnected. One sweep watches every connection (see IdleSweep) rather
 * than a timer each.
 */
function startKeepAlive(c: MqttClientState, _p: IConnectPacket, s: Connecting): void {
  c.keepAliveLimitMs = s.keepAlive * 1500;
  keepAliveSweep.watch(c);
}

/** Whether `c` is still watched: false once it is closed, or cut now for its silence. */
export function checkKeepAlive(c: MqttClientState, now: number): boolean {
  if (c.closed) return false;
  // Not silent while Herald itself is not reading (publish rate, inbound backlog): its packets wait here.
  if (c.readingPaused || c.inboundPackets > 0) c.lastRead = now;
  const silent = now - c.lastRead;
  if (silent <= c.keepAliveLimitMs) return true;
  c.ctx.metrics.protocolErrors.inc({ protocol: c.protocol, reason: 'keepalive' });
  c.disconnect(RC.keepAliveTimeout, `keep alive timeout: nothing received for ${silent} ms`);
  return false;
}

export const keepAliveSweep = new IdleSweep<MqttClientState>(checkKeepAlive, (err, c) => c.ctx.log.error({ err, session: c.id }, 'MQTT keep-alive check failed'));
