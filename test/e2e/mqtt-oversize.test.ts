/**
 * MQTT over WebSocket: a message larger than the `/mqtt` route takes is
 * refused by the transport with 1009 before any of it is read; a connected
 * v5 client is first told why with DISCONNECT 0x95, as it is over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { ADMIN_PASSWORD, startServer, type TestServer } from '../helpers/server.js';
import { wsUrl } from '../helpers/mqtt.js';

/** A raw MQTT peer over WebSocket: every packet it gets, and the close code. */
async function open(url: string, version: 4 | 5): Promise<{ ws: WebSocket; packets: mqttPacket.Packet[]; closed: Promise<number> }> {
  const ws = new WebSocket(url, 'mqtt');
  const packets: mqttPacket.Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: version });
  parser.on('packet', (p) => packets.push(p));
  ws.on('message', (d: Buffer) => parser.parse(d));
  const closed = new Promise<number>((r) => ws.once('close', (code) => r(code)));
  await new Promise((r, j) => {
    ws.once('open', r);
    ws.once('error', j);
  });
  ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clientId: `big-${version}`, clean: true, keepalive: 30, username: 'admin', password: Buffer.from(ADMIN_PASSWORD) }, { protocolVersion: version }));
  const deadline = Date.now() + 5000;
  while (!packets.some((p) => p.cmd === 'connack')) {
    if (Date.now() > deadline) throw new Error('no CONNACK');
    await new Promise((r) => setTimeout(r, 10));
  }
  return { ws, packets, closed };
}

const bigPublish = (version: 4 | 5): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic: 'big', payload: Buffer.alloc(10_000), qos: 0, dup: false, retain: false }, { protocolVersion: version });

describe('MQTT over WebSocket: a message over the route limit', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxPacketBytes: 4096 });
  });
  after(() => s.stop());

  it('gets DISCONNECT 0x95 saying why (v5), then close 1009', async () => {
    const c = await open(wsUrl(s), 5);
    c.ws.send(bigPublish(5));
    assert.equal(await c.closed, 1009);
    const d = c.packets.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined;
    assert.ok(d, `no DISCONNECT; got ${c.packets.map((p) => p.cmd).join(',')}`);
    assert.equal(d.reasonCode, 0x95);
    assert.match(d.properties?.reasonString ?? '', /packet larger than 4096 bytes \(a WebSocket message of \d+ bytes is over the 4104-byte limit\)/);
  });

  it('is closed with 1009 and no packet in 3.1.1, which has no server DISCONNECT', async () => {
    const c = await open(wsUrl(s), 4);
    c.ws.send(bigPublish(4));
    assert.equal(await c.closed, 1009);
    assert.deepEqual(
      c.packets.map((p) => p.cmd),
      ['connack'],
    );
  });
});
