/**
 * A full SQLite database (sqliteMaxSizeMb here; a full disk looks the same to
 * SQLite): writes are refused in each protocol's own words and never
 * acknowledged, reads and topic traffic go on, and deleting messages makes
 * room again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import { api, login, startServer, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';
import { RawMqtt } from '../helpers/mqtt.js';

describe('SQLite database full', () => {
  let s: TestServer;
  let token: string;
  before(async () => {
    s = await startServer({ sqliteMaxSizeMb: 1 });
    token = await login(s.url);
  });
  after(() => s.stop());

  async function stomp(): Promise<RawStomp> {
    const c = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await c.connect({ passcode: token })).command, 'CONNECTED');
    return c;
  }

  it('refuses writes in words, acknowledges none, keeps reads and topics going, and recovers when room is made', async () => {
    // Fill it with 60 KB messages until the store says no.
    const content = 'x'.repeat(60_000);
    const stored: string[] = [];
    let refused: Awaited<ReturnType<typeof api>> | undefined;
    for (let i = 0; i < 40 && !refused; i++) {
      const r = await api<{ id: string }>(s.url, 'POST', '/api/message/sendMessage', { token, body: { content, receiver: ['admin'] } });
      if (r.status === 200) stored.push(r.body.data.id);
      else refused = r;
    }
    assert.ok(refused, 'a 1 MiB database fills up within 40 messages of 60 KB');
    assert.ok(stored.length >= 5, `some messages fit first (${stored.length})`);
    assert.equal(refused.status, 503, JSON.stringify(refused.body));
    assert.match(refused.body.message, /message store is unavailable; nothing was changed/);
    assert.equal(refused.headers.get('retry-after'), '5');

    // Reads still work, and the refused send left nothing behind.
    const page = await api<{ total: number }>(s.url, 'GET', '/api/message/getMessagePage?page=1&size=1', { token });
    assert.equal(page.status, 200);
    assert.equal(page.body.data.total, stored.length);

    // STOMP: a receipted queue SEND gets ERROR with its receipt-id, never a RECEIPT.
    const sub = await stomp();
    sub.send('SUBSCRIBE\nid:t\ndestination:/topic/full.news\nreceipt:s1\n\n\0');
    await sub.next('RECEIPT');
    const pub = await stomp();
    pub.send(`SEND\ndestination:/queue/full-jobs\nreceipt:q-1\n\n${content}\0`);
    const err = await pub.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'service unavailable');
    assert.equal(frameHeader(err, 'receipt-id'), 'q-1');
    await pub.closedPromise;
    assert.equal(pub.frames.filter((f) => f.command === 'RECEIPT').length, 0);

    // Topics need no store: they keep flowing.
    const pub2 = await stomp();
    pub2.send('SEND\ndestination:/topic/full.news\nreceipt:t-1\n\nstill live\0');
    await pub2.next('RECEIPT');
    assert.equal((await sub.next('MESSAGE')).body.toString(), 'still live');

    // MQTT 5: a retained QoS 1 publish is not acknowledged; DISCONNECT 0x89 says why.
    const device = await RawMqtt.open(s.server.address('mqtt').port, 5);
    assert.equal((await device.connect('full-dev', 'admin', token)).reasonCode, 0);
    device.send({ cmd: 'publish', topic: 'state/full', payload: Buffer.from(content), qos: 1, messageId: 3, retain: true, dup: false });
    const disc = (await device.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(disc.reasonCode, 0x89);
    assert.match(disc.properties?.reasonString ?? '', /message store is unavailable/);
    assert.equal(device.packets.filter((p) => p.cmd === 'puback').length, 0);

    // Make room: delete half the messages. The same SEND now goes through.
    for (const id of stored.slice(0, Math.ceil(stored.length / 2))) {
      assert.equal((await api(s.url, 'DELETE', `/api/message/deleteMessageById?id=${id}`, { token })).status, 200);
    }
    const again = await stomp();
    again.send(`SEND\ndestination:/queue/full-jobs\nreceipt:q-1\n\n${content}\0`);
    assert.equal(frameHeader(await again.next('RECEIPT'), 'receipt-id'), 'q-1');
    const worker = await stomp();
    worker.send('SUBSCRIBE\nid:w\ndestination:/queue/full-jobs\n\n\0');
    assert.equal((await worker.next('MESSAGE')).body.length, content.length);
    const back = await RawMqtt.open(s.server.address('mqtt').port, 5);
    assert.equal((await back.connect('full-dev', 'admin', ADMIN_PASSWORD)).reasonCode, 0);
    back.send({ cmd: 'publish', topic: 'state/full', payload: Buffer.from('small'), qos: 1, messageId: 4, retain: true, dup: false });
    assert.equal(((await back.next('puback')) as mqttPacket.IPubackPacket).messageId, 4);

    for (const c of [sub, pub2, again, worker]) c.close();
    back.sock.end();
  });
});
