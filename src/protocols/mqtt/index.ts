/**
 * MQTT front end: TCP on `mqttPort`, WebSocket at `/mqtt` (subprotocols
 * `mqtt` and `mqttv3.1`, binary frames; a packet may span frames and a frame
 * may hold several packets: the framer reassembles them in linear time).
 *
 * The folder: framer.ts cuts the stream into packets; connection.ts
 * dispatches them to connect.ts, publish-in.ts, publish-out.ts (with
 * replay.ts) and subscribe.ts over the state in state.ts; reason-codes.ts
 * names every reason code and maps errors to them. Beside the connection:
 * properties.ts (topic and property mapping), retained.ts, will.ts,
 * sessions.ts (persistent sessions), shared.ts (what a node's connections
 * share) and cluster.ts (takeover, retained sync and wills across nodes,
 * wired by server.ts in cluster mode).
 */
import type { Socket } from 'node:net';
import type { WebSocket } from 'ws';
import type { MqttApps } from '../../apps/mqtt-apps.js';
import type { HeraldContext } from '../../context.js';
import { tcpTransport, webSocketTransport } from '../../transports/byte-transport.js';
import { certificateIdentity, originOf } from '../../transports/tls.js';
import { MqttConnection } from './connection.js';
import { RetainedMessages } from './retained.js';
import type { MqttShared } from './shared.js';
import { PersistentSessions } from './sessions.js';
import { repeat } from '../../core/background.js';
import { createMessage } from '../../core/message.js';

export type { MqttShared } from './shared.js';

export async function registerMqtt(ctx: HeraldContext, apps: MqttApps): Promise<MqttShared> {
  const retained = new RetainedMessages(ctx, ctx.config.mqttRetainedMaxBytes);
  await retained.load();
  const sessions = new PersistentSessions(ctx);
  // Alone, this node takes every stored session; in a cluster, those no live incarnation holds (the lease ticks adopt later ones).
  await sessions.adopt([ctx.broker.owner]);
  const acl = ctx.acl;
  const sysTimer = startSysTopics(ctx, retained);
  const shared: MqttShared = {
    apps,
    retained,
    clients: new Map(),
    sessions,
    acl,
    cluster: undefined,
    stop() {
      clearInterval(sysTimer);
      sessions.stop();
    },
  };

  ctx.listeners.addTcpListener({
    name: 'mqtt',
    port: ctx.config.mqttPort,
    host: ctx.config.mqttHost,
    maxConnections: ctx.config.mqttMaxConnections,
    tls: { name: 'mqtt-tls', port: ctx.config.mqttTlsPort, host: ctx.config.mqttTlsHost, maxConnections: ctx.config.mqttTlsMaxConnections },
    onConnection(socket: Socket, admission) {
      const transport = tcpTransport(socket);
      const conn = new MqttConnection(ctx, shared, transport, 'mqtt-tcp', admission.remoteAddress, admission);
      if (ctx.config.tlsClientCertAsUser) conn.certificate = certificateIdentity(socket);
      if (ctx.auth.hook) conn.origin = originOf(socket);
      transport.read((d) => conn.receive(d));
      socket.on('close', () => conn.onTransportClosed());
      socket.on('error', () => conn.onTransportClosed());
    },
  });

  const wsConnections = new WeakMap<WebSocket, MqttConnection>();
  ctx.listeners.addWebSocketRoute({
    name: 'mqtt /mqtt',
    doc: {
      summary: 'MQTT 3.1.1 and 5 over WebSocket',
      description:
        'MQTT over WebSocket with subprotocol `mqtt` (or `mqttv3.1`): one or more MQTT packets per WebSocket message. ' +
        'The handshake carries no credential; the CONNECT packet does (user name and password, a token as password, or an app user token). See docs/mqtt.md.',
      token: 'protocol',
    },
    path: '/mqtt',
    protocols: ['mqtt', 'mqttv3.1'],
    maxPayload: ctx.config.mqttMaxPacketBytes + 8,
    onOversize: (ws, bytes, limit) => wsConnections.get(ws)?.tooLarge(bytes, limit),
    accept: async () => undefined,
    onConnection(ws, req, _accepted, admission) {
      const conn = new MqttConnection(ctx, shared, webSocketTransport(ws), 'mqtt-ws', admission.remoteAddress, admission);
      if (ctx.auth.hook) conn.origin = originOf(req.socket, '/mqtt');
      wsConnections.set(ws, conn);
      ws.on('message', (d: Buffer) => conn.receive(d));
      ws.on('close', () => conn.onTransportClosed());
      ws.on('error', () => conn.onTransportClosed());
    },
  });
  return shared;
}

/** `$SYS/broker/…` statistics, published periodically and kept as retained (in memory) for new subscribers. */
function startSysTopics(ctx: HeraldContext, retained: RetainedMessages): NodeJS.Timeout | undefined {
  const every = ctx.config.sysIntervalSeconds;
  if (every === 0) return undefined;
  const started = Date.now();
  const audience: ReadonlySet<string> = new Set(); // staff only
  const counterValue = async (name: 'herald_messages_in_total' | 'herald_messages_out_total'): Promise<number> => {
    const m = await ctx.metrics.registry.getSingleMetric(name)?.get();
    return (m?.values ?? []).reduce((sum, v) => sum + v.value, 0);
  };
  const publish = async (): Promise<void> => {
    const values: [string, string][] = [
      ['$SYS/broker/version', 'Herald'],
      ['$SYS/broker/uptime', `${Math.round((Date.now() - started) / 1000)} seconds`],
      ['$SYS/broker/clients/connected', String(ctx.sessions.size)],
      ['$SYS/broker/messages/received', String(await counterValue('herald_messages_in_total'))],
      ['$SYS/broker/messages/sent', String(await counterValue('herald_messages_out_total'))],
    ];
    for (const [topic, value] of values) {
      const msg = createMessage({ target: { kind: 'topic', topic }, body: Buffer.from(value), qos: 0, audience });
      retained.setVolatile(topic, msg);
      ctx.broker.publishTopic(msg, true); // this node's figures: not for other nodes' subscribers
    }
  };
  return repeat(ctx.log, 'the $SYS statistics', every * 1000, publish, { now: true });
}
