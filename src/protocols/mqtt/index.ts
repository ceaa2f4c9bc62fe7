/**
 * MQTT front end: TCP on `mqttPort`, WebSocket at `/mqtt` (subprotocols
 * `mqtt` and `mqttv3.1`, binary frames; a packet may span frames and a frame
 * may hold several packets, since the parser is a stream).
 */
import type { Socket } from 'node:net';
import type { MqttApps } from '../../apps/mqtt-apps.js';
import type { HeraldContext } from '../../context.js';
import { rawSocket, wsFrame, writeFrame } from '../../transports/ws-frame.js';
import { writeBatched } from '../../transports/write-batch.js';
import { clientAddress } from '../stomp/index.js';
import { MqttConnection, RetainedMessages, type MqttTransport } from './connection.js';
import { PersistentSessions } from './sessions.js';

/** State all MQTT connections of this node share. */
export interface MqttShared {
  apps: MqttApps;
  retained: RetainedMessages;
  /** Connected clients by client id, for session takeover. */
  clients: Map<string, MqttConnection>;
  sessions: PersistentSessions;
}

export async function registerMqtt(ctx: HeraldContext, apps: MqttApps): Promise<MqttShared> {
  const retained = new RetainedMessages(ctx);
  await retained.load();
  const sessions = new PersistentSessions(ctx);
  await sessions.load();
  const shared: MqttShared = { apps, retained, clients: new Map(), sessions };

  ctx.listeners.addTcpListener({
    name: 'mqtt',
    port: ctx.config.mqttPort,
    onConnection(socket: Socket) {
      const transport: MqttTransport = {
        write: (data) => writeBatched(socket, data),
        buffered: () => socket.writableLength,
        close: () => socket.end(),
      };
      const conn = new MqttConnection(ctx, shared, transport, 'mqtt-tcp', socket.remoteAddress ?? 'unknown');
      socket.on('data', (d: Buffer) => conn.receive(d));
      socket.on('close', () => conn.onTransportClosed());
      socket.on('error', () => conn.onTransportClosed());
    },
  });

  ctx.listeners.addWebSocketRoute({
    name: 'mqtt /mqtt',
    path: '/mqtt',
    protocols: ['mqtt', 'mqttv3.1'],
    maxPayload: ctx.config.mqttMaxPacketBytes + 8,
    accept: async () => undefined,
    onConnection(ws, req) {
      const socket = rawSocket(ws);
      const transport: MqttTransport = {
        write: (data) => writeFrame(ws, wsFrame(data, false)),
        buffered: () => socket.writableLength,
        close: () => {
          ws.close(1000);
          setTimeout(() => ws.terminate(), 2000).unref();
        },
      };
      const conn = new MqttConnection(ctx, shared, transport, 'mqtt-ws', clientAddress(ctx, req));
      ws.on('message', (d: Buffer) => conn.receive(d));
      ws.on('close', () => conn.onTransportClosed());
      ws.on('error', () => conn.onTransportClosed());
    },
  });
  return shared;
}
