/**
 * MQTT test helpers: a raw MQTT peer over TCP (mqtt-packet framing), to send
 * what real clients would refuse to and to stop handshakes half-way; and the
 * addresses, admin options and waits the mqtt.js tests share.
 */
import { connect, type Socket } from 'node:net';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { ADMIN_PASSWORD, type TestServer } from './server.js';

/** A raw MQTT peer over TCP (mqtt-packet framing). */
export class RawMqtt {
  readonly packets: mqttPacket.Packet[] = [];
  readonly closed: Promise<void>;

  private constructor(
    readonly sock: Socket,
    private readonly version: 4 | 5,
  ) {
    const parser = mqttPacket.parser({ protocolVersion: version });
    parser.on('packet', (p) => this.packets.push(p));
    sock.on('data', (d) => parser.parse(d));
    this.closed = new Promise((r) => sock.once('close', () => r()));
  }

  static async open(port: number, version: 4 | 5): Promise<RawMqtt> {
    const sock = connect(port, '127.0.0.1');
    await new Promise((r) => sock.once('connect', r));
    return new RawMqtt(sock, version);
  }

  send(p: mqttPacket.Packet): void {
    this.sock.write(mqttPacket.generate(p, { protocolVersion: this.version }));
  }

  /** CONNECT as `username`/`password` and wait for the CONNACK. */
  async connect(clientId: string, username: string, password: string, opts: { clean?: boolean; keepalive?: number; properties?: mqttPacket.IConnectPacket['properties'] } = {}): Promise<mqttPacket.IConnackPacket> {
    this.send({
      cmd: 'connect',
      protocolId: 'MQTT',
      protocolVersion: this.version,
      clientId,
      clean: opts.clean ?? true,
      keepalive: opts.keepalive ?? 60,
      username,
      password: Buffer.from(password),
      ...(opts.properties ? { properties: opts.properties } : {}),
    });
    return (await this.next('connack')) as mqttPacket.IConnackPacket;
  }

  /** Removes and returns the first packet of that kind, waiting up to 5 s for it. */
  async next(cmd: string): Promise<mqttPacket.Packet> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const i = this.packets.findIndex((x) => x.cmd === cmd);
      if (i >= 0) return this.packets.splice(i, 1)[0]!;
      if (Date.now() > deadline) throw new Error(`no ${cmd}; have ${this.packets.map((x) => x.cmd).join(',') || 'nothing'}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/** The server's MQTT over TCP address, for mqtt.js. */
export function tcpUrl(s: TestServer): string {
  return `mqtt://127.0.0.1:${s.server.address('mqtt').port}`;
}
/** The server's MQTT over WebSocket address (`/mqtt`), for mqtt.js. */
export function wsUrl(s: TestServer): string {
  return s.url.replace(/^http/, 'ws') + '/mqtt';
}
/** mqtt.js options of the test server's admin, without reconnecting. */
export const ADMIN: IClientOptions = { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 };

/** The next message the client gets (on `topic`, when given). */
export function nextMessage(c: MqttClient, topic?: string): Promise<{ topic: string; payload: Buffer; packet: mqttPacket.IPublishPacket }> {
  return new Promise((resolve) => {
    const on = (t: string, payload: Buffer, packet: mqttPacket.IPublishPacket) => {
      if (topic !== undefined && t !== topic) return;
      c.off('message', on);
      resolve({ topic: t, payload, packet });
    };
    c.on('message', on);
  });
}

/** Subscribes and resolves with the SUBACK's granted list as sent (mqtt.js rejects on any refusal). */
export function suback(c: MqttClient, topics: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
  return new Promise((resolve) => {
    const on = (p: mqttPacket.Packet) => {
      if (p.cmd !== 'suback') return;
      c.off('packetreceive', on);
      resolve(p.granted as number[]);
    };
    c.on('packetreceive', on);
    c.subscribe(topics, () => undefined);
  });
}

/** Connects and resolves with the CONNACK reason, or rejects with mqtt.js's error (which carries `code`). */
export async function refusedWith(url: string, opts: IClientOptions): Promise<number> {
  try {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 3000, ...opts });
    await c.endAsync();
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}
