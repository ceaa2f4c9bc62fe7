/** A raw MQTT peer over TCP (mqtt-packet framing), to send what real clients would refuse to and to stop handshakes half-way. */
import { connect, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';

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
