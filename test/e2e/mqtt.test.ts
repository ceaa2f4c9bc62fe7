/**
 * MQTT with real clients: mqtt.js (3.1.1 and 5, TCP and WebSocket) and Paho
 * JavaScript reproducing the device MQTT client (app and user tokens), plus raw packets for bad input.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { connect as tcpConnect } from 'node:net';
import { describe, it, before, after } from 'node:test';
import mqtt, { type MqttClient, type IClientOptions } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, tempDir, ADMIN_PASSWORD, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader } from '../helpers/stomp.js';
import { JsonClient } from '../helpers/json-ws.js';
import { RawMqtt } from '../helpers/mqtt.js';

const require = createRequire(import.meta.url);

function tcpUrl(s: TestServer): string {
  return `mqtt://127.0.0.1:${s.server.address('mqtt').port}`;
}
function wsUrl(s: TestServer): string {
  return s.url.replace(/^http/, 'ws') + '/mqtt';
}
const ADMIN: IClientOptions = { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 };

function nextMessage(c: MqttClient, topic?: string): Promise<{ topic: string; payload: Buffer; packet: mqttPacket.IPublishPacket }> {
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
function suback(c: MqttClient, topics: Record<string, { qos: 0 | 1 | 2 }>): Promise<number[]> {
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
async function refusedWith(url: string, opts: IClientOptions): Promise<number> {
  try {
    const c = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 3000, ...opts });
    await c.endAsync();
    return 0;
  } catch (err) {
    return (err as { code: number }).code;
  }
}

describe('MQTT with mqtt.js', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxKeepAliveSeconds: 120 });
  });
  after(() => s.stop());

  for (const protocolVersion of [4, 5] as const) {
    for (const transport of ['tcp', 'ws'] as const) {
      it(`publishes and subscribes at QoS 0, 1 and 2 (v${protocolVersion} over ${transport})`, async () => {
        const url = transport === 'tcp' ? tcpUrl(s) : wsUrl(s);
        const sub = await mqtt.connectAsync(url, { ...ADMIN, protocolVersion });
        const pub = await mqtt.connectAsync(url, { ...ADMIN, protocolVersion });
        await sub.subscribeAsync('room/+/input', { qos: 2 });
        for (const qos of [0, 1, 2] as const) {
          const got = nextMessage(sub);
          await pub.publishAsync(`room/${qos}/input`, Buffer.from([qos, 0, 255]), { qos });
          const m = await got;
          assert.equal(m.topic, `room/${qos}/input`);
          assert.deepEqual([...m.payload], [qos, 0, 255]);
          assert.equal(m.packet.qos, qos, 'delivered at min(subscription, publish) QoS');
        }
        await pub.endAsync();
        await sub.endAsync();
      });
    }
  }

  it('delivers MQTT ⇄ STOMP ⇄ JSON WebSocket on one topic, with content type and user properties mapped', async () => {
    const token = await login(s.url);
    const m5 = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await m5.subscribeAsync('scores/#', { qos: 1 });
    const stomp = await RawStomp.tcp(s.server.address('stomp').port);
    await stomp.connect({ login: token });
    stomp.send('SUBSCRIBE\nid:1\ndestination:/topic/scores.#\nreceipt:r\n\n\0');
    await stomp.next('RECEIPT');
    const json = await JsonClient.open(s.url.replace(/^http/, 'ws') + '/websocket/' + token);
    json.send({ action: 'subscribe', topic: 'scores.*' });
    await json.next('ok');

    const own = nextMessage(m5, 'scores/game1');
    await m5.publishAsync('scores/game1', '{"home":1}', { qos: 1, properties: { contentType: 'application/json', userProperties: { league: 'A' } } });
    const sf = await stomp.next('MESSAGE');
    assert.equal(frameHeader(sf, 'destination'), '/topic/scores.game1');
    assert.equal(frameHeader(sf, 'content-type'), 'application/json');
    assert.equal(frameHeader(sf, 'league'), 'A');
    assert.equal(sf.body.toString(), '{"home":1}');
    const je = await json.next('topic');
    assert.deepEqual([je.topic, je.data], ['scores.game1', { home: 1 }]);
    assert.equal((await own).payload.toString(), '{"home":1}', 'the publisher is subscribed too');

    const fromStomp = nextMessage(m5, 'scores/game2');
    stomp.send('SEND\ndestination:/topic/scores.game2\ncontent-type:text/plain\nreferee:B\n\nhalf time\0');
    const mm = await fromStomp;
    assert.equal(mm.payload.toString(), 'half time');
    assert.equal(mm.packet.properties?.contentType, 'text/plain');
    assert.deepEqual({ ...mm.packet.properties?.userProperties }, { referee: 'B' });

    const fromJson = nextMessage(m5, 'scores/game3');
    json.send({ action: 'publish', topic: 'scores.game3', data: { away: 2 } });
    assert.equal((await fromJson).payload.toString(), '{"away":2}');
    await m5.endAsync();
    stomp.close();
    json.close();
  });

  it('keeps retained messages across a restart, sends them on subscribe, and clears them with an empty payload', async () => {
    const dir = tempDir();
    const a = await startServer({}, undefined, dir);
    const c = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await c.publishAsync('status/door', 'open', { qos: 1, retain: true });
    await c.endAsync();
    await a.server.stop();
    const b = await startServer({}, undefined, dir);
    const late = await mqtt.connectAsync(tcpUrl(b), ADMIN);
    const got = nextMessage(late);
    await late.subscribeAsync('status/#', { qos: 1 });
    const m = await got;
    assert.equal(m.payload.toString(), 'open');
    assert.equal(m.packet.retain, true);
    await late.publishAsync('status/door', '', { qos: 1, retain: true });
    const again = await mqtt.connectAsync(tcpUrl(b), ADMIN);
    let any = false;
    again.on('message', () => (any = true));
    await again.subscribeAsync('status/#', { qos: 1 });
    await again.publishAsync('sync/x', 'x', { qos: 1 });
    assert.equal(any, false, 'cleared');
    await late.endAsync();
    await again.endAsync();
    await b.stop();
  });

  it('publishes the will when a client vanishes, not when it disconnects cleanly', async () => {
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('presence/+', { qos: 1 });
    const clean = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'clean-one', will: { topic: 'presence/clean-one', payload: Buffer.from('gone'), qos: 1, retain: false } });
    await clean.endAsync();
    const vanishing = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, clientId: 'vanisher', will: { topic: 'presence/vanisher', payload: Buffer.from('lost'), qos: 1, retain: false } });
    const got = nextMessage(watcher);
    vanishing.stream.destroy();
    const m = await got;
    assert.equal(m.topic, 'presence/vanisher');
    assert.equal(m.payload.toString(), 'lost');
    await watcher.endAsync();
  });

  it('refuses bad credentials with 3.1.1 return codes and 5.0 reason codes', async () => {
    assert.equal(await refusedWith(tcpUrl(s), { username: 'admin', password: 'wrong', protocolVersion: 4 }), 4);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'admin', password: 'wrong', protocolVersion: 5 }), 0x86);
    assert.equal(await refusedWith(tcpUrl(s), { protocolVersion: 4 }), 5, 'anonymous refused');
    assert.equal(await refusedWith(tcpUrl(s), { protocolVersion: 5 }), 0x87);
    const token = await login(s.url);
    assert.equal(await refusedWith(tcpUrl(s), { username: 'whoever', password: token, protocolVersion: 4 }), 0, 'a Herald token as password');
  });

  it('assigns a client id to a v5 client that sends none, and caps keep-alive as server keep alive', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: '', keepalive: 3600 });
    const props = (c as unknown as { connackPacket?: { properties?: { assignedClientIdentifier?: string; serverKeepAlive?: number } } }).connackPacket?.properties;
    assert.match(props?.assignedClientIdentifier ?? '', /^herald-/);
    assert.equal(props?.serverKeepAlive, 120);
    await c.endAsync();
  });

  it('takes over a session when the same client id connects again', async () => {
    const first = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'dup-id' });
    const ended = new Promise<number | undefined>((resolve) => first.once('disconnect', (p) => resolve(p.reasonCode)));
    const second = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'dup-id' });
    assert.equal(await ended, 0x8e);
    await second.endAsync();
    first.end(true);
  });

  it('delivers $user/{name} like STOMP /user/queue/{name}, and refuses other $ topics', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await c.subscribeAsync('$user/messages', { qos: 1 });
    const got = nextMessage(c);
    const r = await api(s.url, 'POST', '/api/message/sendMessage', { token: await login(s.url), body: { content: 'via mqtt', receiver: ['admin'], title: 'hello', type: 0 } });
    assert.equal(r.status, 200);
    const m = await got;
    assert.equal(m.topic, '$user/messages');
    assert.equal(JSON.parse(m.payload.toString()).content, 'via mqtt');
    await assert.rejects(c.publishAsync('$SYS/fake', 'x', { qos: 1 }), /Not authorized/);
    await c.endAsync();
  });
});

describe('device MQTT: app and user tokens, Paho over WebSocket', () => {
  const clock = new ManualClock(Date.now());
  let s: TestServer;
  let app: { appId: string; appClientId: string; appClientSecret: string };
  before(async () => {
    s = await startServer({}, clock);
    const r = await api<typeof app>(s.url, 'POST', '/api/apps', { token: await login(s.url), body: { name: 'coplay' } });
    assert.equal(r.status, 200);
    app = r.body.data;
  });
  after(() => s.stop());

  async function userToken(uname: string, cid: string, expiresIn = 86_400): Promise<string> {
    const appRes = await fetch(s.url + '/openapi/rm/app/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appClientId: app.appClientId, appClientSecret: app.appClientSecret }),
    });
    const appBody = (await appRes.json()) as { code: number; body: { access_token: string; expires_in: number } };
    assert.equal(appBody.code, 200);
    const userRes = await fetch(s.url + '/openapi/rm/user/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', Authorization: appBody.body.access_token },
      body: JSON.stringify({ username: uname, expires_in: expiresIn, cid }),
    });
    const userBody = (await userRes.json()) as { code: number; body: { access_token: string; expires_in: number } };
    assert.equal(userBody.code, 200, JSON.stringify(userBody));
    return userBody.body.access_token;
  }

  it('runs the device MQTT flow with Paho: uname@appId, token as password, keep-alive 60, clean session, QoS 0', async () => {
    Object.assign(globalThis, { WebSocket });
    const Paho = require('paho-mqtt') as {
      Client: new (host: string, port: number, clientId: string) => PahoClient;
      Message: new (payload: string) => { destinationName: string };
    };
    interface PahoClient {
      connect(o: object): void;
      subscribe(t: string, o: object): void;
      send(m: object): void;
      disconnect(): void;
      isConnected(): boolean;
      onMessageArrived: (m: { payloadString: string; destinationName: string }) => void;
      onConnectionLost: (r: unknown) => void;
    }
    const port = Number(new URL(s.url).port);
    const topic = 'coplay/room1/input';
    const open = async (uname: string): Promise<{ client: PahoClient; inbox: string[] }> => {
      const clientId = `${uname}@${app.appId}`;
      const token = await userToken(uname, clientId);
      const client = new Paho.Client('127.0.0.1', port, clientId);
      const inbox: string[] = [];
      client.onMessageArrived = (m) => inbox.push(m.payloadString);
      client.onConnectionLost = () => undefined;
      await new Promise<void>((resolve, reject) =>
        client.connect({
          timeout: 3,
          onSuccess: () => {
            client.subscribe(topic, { qos: 0, onSuccess: () => resolve() });
          },
          onFailure: (e: { errorMessage: string }) => reject(new Error(e.errorMessage)),
          mqttVersion: 4,
          useSSL: false,
          cleanSession: true,
          reconnect: true,
          keepAliveInterval: 60,
          userName: uname,
          password: token,
        }),
      );
      return { client, inbox };
    };
    const a = await open('player1');
    const b = await open('player2');
    const msg = new Paho.Message(JSON.stringify({ key: 'ArrowLeft', t: 1 }));
    msg.destinationName = topic;
    b.client.send(msg);
    const deadline = Date.now() + 5000;
    while (a.inbox.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(JSON.parse(a.inbox[0]!), { key: 'ArrowLeft', t: 1 });
    // the device client connects with reconnect: true; a dropped connection comes back by itself
    const lost = new Promise<void>((r) => (a.client.onConnectionLost = () => r()));
    for (const session of [...s.server.ctx.sessions.all()]) {
      if (session.device === `player1@${app.appId}`) session.close({ code: 'kicked', message: 'test drop' });
    }
    await lost;
    const deadline2 = Date.now() + 10_000;
    while (!a.client.isConnected() && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 50));
    assert.equal(a.client.isConnected(), true, 'Paho reconnected');
    const again = new Paho.Message('after reconnect');
    again.destinationName = topic;
    const before = a.inbox.length;
    b.client.send(again);
    while (a.inbox.length === before && Date.now() < deadline2) await new Promise((r) => setTimeout(r, 10));
    assert.equal(a.inbox.at(-1), 'after reconnect');
    a.client.disconnect();
    b.client.disconnect();
  });

  it('refuses a wrong app, a token for another cid or user, and an expired token', async () => {
    const cid = `p9@${app.appId}`;
    const token = await userToken('p9', cid);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: cid, username: 'p9', password: token, protocolVersion: 4 }), 0);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: `p9@otherapp`, username: 'p9', password: token, protocolVersion: 4 }), 5);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: `other@${app.appId}`, username: 'p9', password: token, protocolVersion: 5 }), 0x87);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: cid, username: 'p8', password: token, protocolVersion: 4 }), 4);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: cid, username: 'p8', password: token, protocolVersion: 5 }), 0x86);
    const shortLived = await userToken('p7', `p7@${app.appId}`, 60);
    clock.advance(61_000);
    assert.equal(await refusedWith(tcpUrl(s), { clientId: `p7@${app.appId}`, username: 'p7', password: shortLived, protocolVersion: 5 }), 0x86);
    // expired tokens are purged from the store (at most hourly, when tokens are issued)
    const hashOf = (t: string) => createHash('sha256').update(t).digest('hex');
    assert.notEqual(await s.server.ctx.store.getAppToken(hashOf(shortLived)), null);
    clock.advance(3_600_000);
    await userToken('p6', `p6@${app.appId}`);
    assert.equal(await s.server.ctx.store.getAppToken(hashOf(shortLived)), null);
  });

  it('answers token requests with wrong credentials in the client\'s shape', async () => {
    const r = await fetch(s.url + '/openapi/rm/app/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appClientId: app.appClientId, appClientSecret: 'nope' }),
    });
    assert.equal(r.status, 401);
    assert.match(((await r.json()) as { message: string }).message, /appClientId or appClientSecret is wrong/);
    const u = await fetch(s.url + '/openapi/rm/user/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', Authorization: 'bogus' },
      body: JSON.stringify({ username: 'x', expires_in: 60, cid: `x@${app.appId}` }),
    });
    assert.equal(u.status, 401);
  });
});

describe('MQTT bad input over raw TCP', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ mqttMaxPacketBytes: 4096 });
  });
  after(() => s.stop());

  /** Sends bytes, collects what comes back until the server closes. */
  function exchange(bytes: Buffer[]): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const sock = tcpConnect(s.server.address('mqtt').port, '127.0.0.1');
      const chunks: Buffer[] = [];
      sock.on('data', (d) => chunks.push(d));
      sock.on('close', () => resolve(Buffer.concat(chunks)));
      sock.on('error', reject);
      sock.on('connect', () => {
        for (const b of bytes) sock.write(b);
      });
      setTimeout(() => {
        sock.destroy();
        reject(new Error('server did not close the connection'));
      }, 5000).unref();
    });
  }
  const connect = (v: 4 | 5) =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clientId: 'raw', clean: true, keepalive: 30, username: 'admin', password: Buffer.from(ADMIN_PASSWORD) });
  function packets(bytes: Buffer, v: 4 | 5): mqttPacket.Packet[] {
    const out: mqttPacket.Packet[] = [];
    const p = mqttPacket.parser({ protocolVersion: v });
    p.on('packet', (x) => out.push(x));
    p.parse(bytes);
    return out;
  }

  it('closes when the first packet is not CONNECT', async () => {
    const back = await exchange([mqttPacket.generate({ cmd: 'pingreq' })]);
    assert.equal(back.length, 0);
  });

  it('answers an unknown protocol level with CONNACK 1, then closes', async () => {
    const bad = connect(4);
    bad[8] = 9; // protocol level byte
    const back = await exchange([bad]);
    assert.deepEqual([...back], [0x20, 0x02, 0x00, 0x01]);
  });

  it('refuses an empty client id without clean session with CONNACK 2 (3.1.1)', async () => {
    // Built by hand: mqtt-packet itself refuses to encode this.
    const str = (t: string) => Buffer.concat([Buffer.from([0, Buffer.byteLength(t)]), Buffer.from(t)]);
    const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc0, 0, 30]), str(''), str('admin'), str(ADMIN_PASSWORD)]);
    const p = Buffer.concat([Buffer.from([0x10, body.length]), body]);
    assert.deepEqual([...(await exchange([p]))], [0x20, 0x02, 0x00, 0x02]);
  });

  it('closes on a second CONNECT (v5: DISCONNECT 0x82)', async () => {
    const back = packets(await exchange([connect(5), connect(5)]), 5);
    assert.equal(back[0]!.cmd, 'connack');
    const d = back[1] as mqttPacket.IDisconnectPacket;
    assert.equal(d.cmd, 'disconnect');
    assert.equal(d.reasonCode, 0x82);
  });

  it('closes on a PUBLISH with a wildcard topic (v5: DISCONNECT 0x90)', async () => {
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'a/+/b', payload: 'x', qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x90);
  });

  it('closes on a packet over the maximum size (v5: DISCONNECT 0x95)', async () => {
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'a', payload: Buffer.alloc(10_000), qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x95);
  });

  it('closes on a wrong protocol name and on a PUBLISH topic that is not UTF-8', async () => {
    const bad = connect(4);
    bad[7] = 0x58; // "MQTX"
    assert.equal((await exchange([bad])).length, 0);
    const pub = mqttPacket.generate({ cmd: 'publish', topic: 'ab', payload: 'x', qos: 0, dup: false, retain: false }, { protocolVersion: 5 });
    pub[4] = 0xff; // first topic byte: not UTF-8
    const back = packets(await exchange([connect(5), pub]), 5);
    assert.equal((back[1] as mqttPacket.IDisconnectPacket).reasonCode, 0x90);
  });

  it('refuses an authentication method it does not support with CONNACK 0x8C (v5), then closes', async () => {
    const p = mqttPacket.generate(
      { cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: 'am', clean: true, keepalive: 30, username: 'admin', password: Buffer.from(ADMIN_PASSWORD), properties: { authenticationMethod: 'SCRAM-SHA-1' } },
      { protocolVersion: 5 },
    );
    const back = packets(await exchange([p]), 5);
    assert.equal(back.length, 1);
    const ack = back[0] as mqttPacket.IConnackPacket;
    assert.equal(ack.reasonCode, 0x8c);
    assert.match(ack.properties?.reasonString ?? '', /authentication method "SCRAM-SHA-1" is not supported/);
  });

  it('leaves reason strings out of PUBACK when the client asks for no problem information (v5)', async () => {
    const port = s.server.address('mqtt').port;
    const refusedPuback = async (c: RawMqtt): Promise<mqttPacket.IPubackPacket> => {
      c.send({ cmd: 'publish', topic: '$SYS/x', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false });
      return (await c.next('puback')) as mqttPacket.IPubackPacket;
    };
    const quiet = await RawMqtt.open(port, 5);
    assert.equal((await quiet.connect('quiet', 'admin', ADMIN_PASSWORD, { properties: { requestProblemInformation: false } })).reasonCode, 0);
    const q = await refusedPuback(quiet);
    assert.equal(q.reasonCode, 0x87);
    assert.equal(q.properties?.reasonString, undefined);
    const chatty = await RawMqtt.open(port, 5);
    await chatty.connect('chatty', 'admin', ADMIN_PASSWORD);
    const c = await refusedPuback(chatty);
    assert.equal(c.reasonCode, 0x87);
    assert.match(c.properties?.reasonString ?? '', /reserved for the server/);
    quiet.sock.destroy();
    chatty.sock.destroy();
  });

  it('closes on no-local set on a shared subscription (v5: DISCONNECT 0x82)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('share-nl', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/g/news', qos: 1, nl: true, rap: false, rh: 0 }] });
    const d = (await c.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(d.reasonCode, 0x82);
    assert.match(d.properties?.reasonString ?? '', /no local cannot be set on a shared subscription/);
    await c.closed;
    assert.equal(c.packets.filter((x) => x.cmd === 'suback').length, 0);
  });

  it('closes on more unreleased QoS 2 messages than its receive maximum (v5: DISCONNECT 0x93)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    const ack = await c.connect('recv-max', 'admin', ADMIN_PASSWORD);
    const max = ack.properties!.receiveMaximum!;
    for (let id = 1; id <= max; id++) c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: id, retain: false, dup: false });
    for (let id = 1; id <= max; id++) await c.next('pubrec');
    // Releasing one makes room for one more.
    c.send({ cmd: 'pubrel', messageId: 1 });
    await c.next('pubcomp');
    c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: 1, retain: false, dup: false });
    await c.next('pubrec');
    c.send({ cmd: 'publish', topic: 'flood', payload: Buffer.from('x'), qos: 2, messageId: max + 1, retain: false, dup: false });
    const d = (await c.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(d.reasonCode, 0x93);
    await c.closed;
  });

  it('sends v5 acknowledgements of success in the 2-byte short form', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('short-acks', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'short/#', qos: 2 }] });
    await c.next('suback');
    c.send({ cmd: 'publish', topic: 'short/one', payload: Buffer.from('1'), qos: 1, messageId: 10, retain: false, dup: false });
    c.send({ cmd: 'publish', topic: 'short/two', payload: Buffer.from('2'), qos: 2, messageId: 11, retain: false, dup: false });
    const puback = await c.next('puback');
    const pubrec = await c.next('pubrec');
    c.send({ cmd: 'pubrel', messageId: 11 });
    const pubcomp = await c.next('pubcomp');
    // Its own QoS 2 message comes back (no no-local): the server's PUBREL follows our PUBREC.
    const msgs: mqttPacket.IPublishPacket[] = [];
    while (msgs.length < 2) msgs.push((await c.next('publish')) as mqttPacket.IPublishPacket);
    const two = msgs.find((m) => m.qos === 2)!;
    c.send({ cmd: 'pubrec', messageId: two.messageId! });
    const pubrel = await c.next('pubrel');
    for (const m of msgs.filter((x) => x.qos === 1)) c.send({ cmd: 'puback', messageId: m.messageId! });
    c.send({ cmd: 'pubcomp', messageId: two.messageId! });
    assert.deepEqual([puback, pubrec, pubcomp, pubrel].map((p) => [p.cmd, p.length]), [['puback', 2], ['pubrec', 2], ['pubcomp', 2], ['pubrel', 2]]);
    c.sock.destroy();
  });

  it('answers PUBREL for an unknown packet id with PUBCOMP 0x92 (v5)', async () => {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('pubrel-test', 'admin', ADMIN_PASSWORD);
    c.send({ cmd: 'pubrel', messageId: 999 });
    assert.equal(((await c.next('pubcomp')) as mqttPacket.IPubcompPacket).reasonCode, 0x92);
    c.sock.destroy();
  });

  it('closes on reserved flags in CONNECT and on garbage, and counts it', async () => {
    const bad = connect(4);
    bad[9] = bad[9]! | 0x01; // reserved connect flag
    assert.equal((await exchange([bad])).length, 0);
    assert.equal((await exchange([connect(4), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff])])).subarray(4).length, 0);
    const metrics = await (await fetch(s.url + '/metrics')).text();
    assert.match(metrics, /herald_protocol_errors_total\{protocol="mqtt-tcp",reason="malformed"\} [1-9]/);
    // and everyone else is fine
    const c = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await c.endAsync();
  });
});

describe('MQTT persistent sessions', () => {
  it('keeps subscriptions and QoS 1/2 messages while the client is away (3.1.1 clean session 0)', async () => {
    const s = await startServer();
    const opts = { ...ADMIN, protocolVersion: 4 as const, clientId: 'device-7', clean: false };
    const first = await mqtt.connectAsync(tcpUrl(s), opts);
    await first.subscribeAsync('alerts/#', { qos: 2 });
    await first.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('alerts/1', 'one', { qos: 1 });
    await pub.publishAsync('alerts/2', 'two', { qos: 2 });
    await pub.publishAsync('alerts/3', 'dropped: QoS 0 is not kept', { qos: 0 });
    await pub.publishAsync('alerts/4', 'four', { qos: 1 });
    const got: string[] = [];
    const back = mqtt.connect(tcpUrl(s), opts);
    // Order of PUBLISH packets as they arrive (mqtt.js emits a QoS 2 message only after PUBREL).
    back.on('packetreceive', (p) => {
      if (p.cmd === 'publish') got.push(p.payload.toString());
    });
    const connack = await new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve));
    assert.equal(connack.sessionPresent, true);
    const deadline = Date.now() + 5000;
    while (got.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['one', 'two', 'four']);
    // live traffic still flows on the restored subscription
    await pub.publishAsync('alerts/5', 'five', { qos: 1 });
    while (got.length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got[3], 'five');
    await back.endAsync();
    // a clean connect discards the session
    const clean = await mqtt.connectAsync(tcpUrl(s), { ...opts, clean: true });
    await clean.endAsync();
    await pub.publishAsync('alerts/6', 'six', { qos: 1 });
    const after = mqtt.connect(tcpUrl(s), opts);
    const ack2 = await new Promise<{ sessionPresent: boolean }>((resolve) => after.once('connect', resolve));
    assert.equal(ack2.sessionPresent, false);
    await after.endAsync();
    await pub.endAsync();
    await s.stop();
  });

  it('keeps a persistent session and its queued messages across a server restart, and expires it', async () => {
    const dir = tempDir();
    const clock = new ManualClock(Date.now());
    const a = await startServer({}, clock, dir);
    const opts = { ...ADMIN, protocolVersion: 5 as const, clientId: 'sensor-1', clean: false, properties: { sessionExpiryInterval: 600 } };
    const c = await mqtt.connectAsync(tcpUrl(a), opts);
    await c.subscribeAsync('cmd/sensor-1', { qos: 1 });
    await c.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await pub.publishAsync('cmd/sensor-1', 'reboot', { qos: 1 });
    await pub.endAsync();
    await a.server.stop();

    const b = await startServer({}, clock, dir);
    const back = mqtt.connect(tcpUrl(b), opts);
    const got = nextMessage(back);
    const ack = await new Promise<{ sessionPresent: boolean }>((resolve) => back.once('connect', resolve));
    assert.equal(ack.sessionPresent, true);
    assert.equal((await got).payload.toString(), 'reboot');
    await back.endAsync();
    await b.server.stop();

    clock.advance(601_000);
    const c3 = await startServer({}, clock, dir);
    const late = mqtt.connect(tcpUrl(c3), opts);
    const ack3 = await new Promise<{ sessionPresent: boolean }>((resolve) => late.once('connect', resolve));
    assert.equal(ack3.sessionPresent, false, 'expired after 600 s away');
    await late.endAsync();
    await c3.stop();
  });

  it('sends an unacknowledged QoS 1 message again when the session resumes', async () => {
    const s = await startServer();
    const port = s.server.address('mqtt').port;
    const raw = async (clean: boolean): Promise<{ sock: ReturnType<typeof tcpConnect>; packets: mqttPacket.Packet[] }> => {
      const sock = tcpConnect(port, '127.0.0.1');
      const packets: mqttPacket.Packet[] = [];
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p) => packets.push(p));
      sock.on('data', (d) => parser.parse(d));
      await new Promise((r) => sock.once('connect', r));
      sock.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'raw-persist', clean, keepalive: 60, username: 'admin', password: Buffer.from(ADMIN_PASSWORD) }));
      return { sock, packets };
    };
    const waitFor = async (packets: mqttPacket.Packet[], cmd: string) => {
      const deadline = Date.now() + 5000;
      for (;;) {
        const p = packets.find((x) => x.cmd === cmd);
        if (p) return p;
        if (Date.now() > deadline) throw new Error(`no ${cmd}; got ${packets.map((x) => x.cmd).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    const one = await raw(false);
    await waitFor(one.packets, 'connack');
    one.sock.write(mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'jobs/x', qos: 1 }] }));
    await waitFor(one.packets, 'suback');
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('jobs/x', 'do it', { qos: 1 });
    const first = (await waitFor(one.packets, 'publish')) as mqttPacket.IPublishPacket;
    assert.equal(first.payload.toString(), 'do it');
    one.sock.destroy(); // no PUBACK
    await new Promise((r) => setTimeout(r, 50));
    const two = await raw(false);
    const ack = (await waitFor(two.packets, 'connack')) as mqttPacket.IConnackPacket;
    assert.equal(ack.sessionPresent, true);
    const again = (await waitFor(two.packets, 'publish')) as mqttPacket.IPublishPacket;
    assert.equal(again.payload.toString(), 'do it');
    two.sock.write(mqttPacket.generate({ cmd: 'puback', messageId: again.messageId! }));
    two.sock.destroy();
    await pub.endAsync();
    await s.stop();
  });
});

describe('MQTT shared subscriptions, ACL rules, anonymous clients and $SYS', () => {
  let s: TestServer;
  let dir: string;
  before(async () => {
    dir = tempDir();
    const { writeFileSync } = await import('node:fs');
    const acl = `${dir}/acl.json`;
    writeFileSync(
      acl,
      JSON.stringify([
        { effect: 'allow', action: 'all', topic: 'public/#', who: '*' },
        { effect: 'allow', action: 'all', topic: 'users/{user}/#', who: 'user' },
        { effect: 'deny', action: 'publish', topic: 'jobs/#', who: 'name:bob' },
        { effect: 'allow', action: 'all', topic: 'jobs/#', who: 'user' },
        { effect: 'allow', action: 'subscribe', topic: '$SYS/#', who: 'role:admin' },
        { effect: 'allow', action: 'all', topic: '#', who: 'role:admin' },
      ]),
    );
    s = await startServer({ aclFile: acl, allowAnonymous: true, sysIntervalSeconds: 1 }, undefined, dir);
    await api(s.url, 'POST', '/api/users', { token: await login(s.url), body: { name: 'bob', password: 'bob-password' } });
  });
  after(() => s.stop());

  it('gives each message of a $share group to one member', async () => {
    const a = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const b = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const got: string[][] = [[], []];
    a.on('message', (_t, p) => got[0]!.push(p.toString()));
    b.on('message', (_t, p) => got[1]!.push(p.toString()));
    await a.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    await b.subscribeAsync('$share/workers/jobs/+', { qos: 1 });
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    for (let i = 0; i < 20; i++) await pub.publishAsync('jobs/render', String(i), { qos: 1 });
    const deadline = Date.now() + 5000;
    while (got[0]!.length + got[1]!.length < 20 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual([...got[0]!, ...got[1]!].map(Number).sort((x, y) => x - y), Array.from({ length: 20 }, (_, i) => i));
    assert.ok(got[0]!.length > 0 && got[1]!.length > 0, `both members worked: ${got[0]!.length}/${got[1]!.length}`);
    for (const c of [a, b, pub]) await c.endAsync();
  });

  it('applies the ACL file: denied subscriptions get 0x80 / 0x87, denied publishes are dropped (v5: 0x87)', async () => {
    const bob4 = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion: 4, reconnectPeriod: 0 });
    const granted = await suback(bob4, { 'users/bob/inbox': { qos: 1 }, 'users/alice/inbox': { qos: 1 }, 'secret/#': { qos: 0 }, '$SYS/#': { qos: 0 } });
    assert.deepEqual(granted, [1, 128, 128, 128]);
    const bob5 = await mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion: 5, reconnectPeriod: 0 });
    assert.deepEqual(await suback(bob5, { 'secret/#': { qos: 0 } }), [0x87]);
    await assert.rejects(bob5.publishAsync('jobs/x', 'sneaky', { qos: 1 }), /Not authorized/);
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('jobs/#', { qos: 1 });
    let leaked = false;
    watcher.on('message', (t) => (t === 'jobs/y' ? (leaked = true) : undefined));
    await bob4.publishAsync('jobs/y', 'dropped', { qos: 1 }); // v3: acknowledged, then dropped
    await watcher.publishAsync('public/sync', 'x', { qos: 1 });
    assert.equal(leaked, false);
    for (const c of [bob4, bob5, watcher]) await c.endAsync();
  });

  it('checks the will topic at CONNECT like a publish: ACL-denied and $ topics are refused', async () => {
    const bob = (protocolVersion: 4 | 5, topic: string) =>
      mqtt.connectAsync(tcpUrl(s), { username: 'bob', password: 'bob-password', protocolVersion, reconnectPeriod: 0, will: { topic, payload: Buffer.from('gone'), qos: 1, retain: false } });
    await assert.rejects(bob(4, 'jobs/status'), (err: Error & { code?: number }) => err.code === 5);
    await assert.rejects(bob(5, 'jobs/status'), (err: Error & { code?: number }) => err.code === 0x87);
    await assert.rejects(bob(5, '$SYS/broker/uptime'), (err: Error & { code?: number }) => err.code === 0x90);
    await assert.rejects(bob(4, '$SYS/broker/uptime'), (err: Error & { code?: number }) => err.code === 5);
    const ok = await bob(5, 'users/bob/status');
    // Its will still works: dropped without DISCONNECT, it is published.
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await watcher.subscribeAsync('users/bob/status', { qos: 1 });
    const got = new Promise<string>((r) => watcher.on('message', (_t, p) => r(p.toString())));
    ok.stream.destroy();
    assert.equal(await got, 'gone');
    await watcher.endAsync();
    ok.end(true);
  });

  it('applies the same rules to STOMP, the JSON WebSocket and HTTP publishes (no way around them by protocol)', async () => {
    const bobToken = await login(s.url, 'bob', 'bob-password');
    const admin = await login(s.url);
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const seen: string[] = [];
    watcher.on('message', (t, p) => seen.push(`${t}=${p.toString()}`));
    await watcher.subscribeAsync(['jobs/#', 'users/bob/#', 'alerts/#'], { qos: 1 });

    // STOMP: bob may not publish to jobs/# (deny rule), may to users/bob/# ({user} rule).
    const stomp = async () => {
      const c = await RawStomp.tcp(s.server.address('stomp').port);
      assert.equal((await c.connect({ passcode: bobToken })).command, 'CONNECTED');
      return c;
    };
    const ok = await stomp();
    ok.send('SEND\ndestination:/topic/users.bob.inbox\nreceipt:r1\n\nfrom stomp\0');
    await ok.next('RECEIPT');
    const denied = await stomp();
    denied.send('SEND\ndestination:/topic/jobs.x\nreceipt:r2\n\nsneaky\0');
    const err = await denied.next('ERROR');
    assert.equal(frameHeader(err, 'message'), 'not allowed');
    assert.equal(frameHeader(err, 'receipt-id'), 'r2');
    assert.match(err.body.toString(), /access rules \(aclFile\) do not let "bob" publish to \/topic\/jobs\.x/);
    await denied.closedPromise;
    const sub = await stomp();
    sub.send('SUBSCRIBE\nid:1\ndestination:/topic/secret.plans\n\n\0');
    assert.match((await sub.next('ERROR')).body.toString(), /do not let "bob" subscribe to \/topic\/secret\.plans/);

    // JSON WebSocket: refused in an error event; the socket stays and allowed traffic flows.
    const json = await JsonClient.open(wsUrl(s).replace('/mqtt', '') + '/websocket/' + bobToken);
    json.send({ action: 'publish', topic: 'jobs.y', data: 'sneaky' });
    const e1 = await json.next('error');
    assert.equal((e1.data as { code: string }).code, 'not_allowed');
    json.send({ action: 'subscribe', topic: 'secret.plans' });
    assert.match(((await json.next('error')).data as { message: string }).message, /do not let "bob" subscribe/);
    json.send({ action: 'publish', topic: 'users.bob.inbox', data: 'from json' });
    await json.sync();

    // HTTP: a service account the rules say nothing about may not publish to a topic; an admin may.
    await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'svc', password: 'svc-password', role: 'service' } });
    const svc = await login(s.url, 'svc', 'svc-password');
    const refused = await api(s.url, 'POST', '/api/publish', { token: svc, body: { destination: '/topic/alerts.fire', body: 'x' } });
    assert.equal(refused.status, 403);
    assert.match(refused.body.message, /access rules \(aclFile\) do not let "svc" publish to \/topic\/alerts\.fire/);
    const allowed = await api(s.url, 'POST', '/api/publish', { token: admin, body: { destination: '/topic/alerts.fire', body: 'real' } });
    assert.equal(allowed.status, 200);

    // The MQTT watcher saw exactly the allowed messages.
    const deadline = Date.now() + 5000;
    while (seen.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(seen.sort(), ['alerts/fire=real', 'users/bob/inbox=from json', 'users/bob/inbox=from stomp']);
    json.close();
    ok.close();
    await watcher.endAsync();
  });

  it('accepts anonymous clients when allowed, within the rules for anonymous clients', async () => {
    const anon = await mqtt.connectAsync(tcpUrl(s), { protocolVersion: 4, reconnectPeriod: 0 });
    assert.deepEqual(await suback(anon, { 'public/news': { qos: 0 }, 'jobs/#': { qos: 0 } }), [0, 128]);
    await anon.endAsync();
  });

  it('publishes $SYS statistics that admins can read and users cannot', async () => {
    const admin = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const got = nextMessage(admin, '$SYS/broker/clients/connected');
    await admin.subscribeAsync('$SYS/#', { qos: 0 });
    assert.match((await got).payload.toString(), /^\d+$/);
    const all = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    let leaked = 0;
    all.on('message', () => leaked++);
    await all.subscribeAsync('#', { qos: 0 }); // '#' never matches $ topics
    await new Promise((r) => setTimeout(r, 1200));
    assert.equal(leaked, 0);
    await admin.endAsync();
    await all.endAsync();
  });
});

describe('MQTT 5 properties', () => {
  it('passes response topic, correlation data, user properties and the payload format indicator, honours retain-as-published and message expiry', async () => {
    const clock = new ManualClock(Date.now());
    const s = await startServer({}, clock);
    const responder = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await responder.subscribeAsync('rpc/time', { qos: 1 });
    const requester = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const req = nextMessage(responder, 'rpc/time');
    await requester.publishAsync('rpc/time', 'now?', {
      qos: 1,
      properties: { responseTopic: 'rpc/replies/42', correlationData: Buffer.from([1, 2, 3]), userProperties: { trace: 'abc' }, payloadFormatIndicator: true },
    });
    const m = await req;
    assert.equal(m.packet.properties?.payloadFormatIndicator, true, 'sent unaltered [MQTT-3.3.2-4]');
    assert.equal(m.packet.properties?.responseTopic, 'rpc/replies/42');
    assert.deepEqual([...(m.packet.properties?.correlationData ?? [])], [1, 2, 3]);
    assert.deepEqual({ ...m.packet.properties?.userProperties }, { trace: 'abc' });

    // retain-as-published keeps the publisher's retain flag on live delivery; plain subscriptions see 0
    const rap = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await rap.subscribeAsync('state/#', { qos: 1, rap: true });
    const plain = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    await plain.subscribeAsync('state/#', { qos: 1 });
    const r1 = nextMessage(rap, 'state/lamp');
    const r2 = nextMessage(plain, 'state/lamp');
    await requester.publishAsync('state/lamp', 'on', { qos: 1, retain: true, properties: { payloadFormatIndicator: true } });
    assert.equal((await r1).packet.retain, true);
    assert.equal((await r2).packet.retain, false);
    // ...and the retained copy keeps the indicator for a later subscriber.
    const late = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const r3 = nextMessage(late, 'state/lamp');
    await late.subscribeAsync('state/lamp', { qos: 1 });
    assert.equal((await r3).packet.properties?.payloadFormatIndicator, true);
    await late.endAsync();

    // an expired message is not delivered to a session that comes back later
    const opts = { ...ADMIN, protocolVersion: 5 as const, clientId: 'sleepy', clean: false, properties: { sessionExpiryInterval: 3600 } };
    const sleepy = await mqtt.connectAsync(tcpUrl(s), opts);
    await sleepy.subscribeAsync('alarms/#', { qos: 1 });
    await sleepy.endAsync();
    await requester.publishAsync('alarms/short', 'short-lived', { qos: 1, properties: { messageExpiryInterval: 5 } });
    await requester.publishAsync('alarms/long', 'long-lived', { qos: 1, properties: { messageExpiryInterval: 600, payloadFormatIndicator: true } });
    clock.advance(10_000);
    const got: { payload: string; expiry: number | undefined; pfi: boolean | undefined }[] = [];
    const back = mqtt.connect(tcpUrl(s), opts);
    back.on('message', (_t, p, pk) => got.push({ payload: p.toString(), expiry: pk.properties?.messageExpiryInterval, pfi: pk.properties?.payloadFormatIndicator }));
    const deadline = Date.now() + 5000;
    while (got.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await requester.publishAsync('public/sync', 'x', { qos: 1 });
    assert.deepEqual(got.map((g) => g.payload), ['long-lived']);
    assert.ok(got[0]!.expiry! <= 590 && got[0]!.expiry! > 0, `remaining expiry ${got[0]!.expiry}`);
    assert.equal(got[0]!.pfi, true, 'kept with the stored session message');
    for (const c of [responder, requester, rap, plain, back]) await c.endAsync();
    await s.stop();
  });
});

describe('MQTT QoS 2 exactly once across reconnects and restarts', () => {
  /** A raw MQTT 3.1.1 peer with a persistent session, to stop the handshake half-way. */
  async function peer(port: number, clientId: string) {
    const c = await RawMqtt.open(port, 4);
    const connack = await c.connect(clientId, 'admin', ADMIN_PASSWORD, { clean: false });
    return { sock: c.sock, packets: c.packets, send: (p: mqttPacket.Packet) => c.send(p), next: (cmd: string) => c.next(cmd), connack };
  }

  it('sends only PUBREL to a client that had sent PUBREC before the drop, even after a restart', async () => {
    const dir = tempDir();
    const a = await startServer({}, undefined, dir);
    const one = await peer(a.server.address('mqtt').port, 'qos2-out');
    one.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pay/#', qos: 2 }] });
    await one.next('suback');
    const pub = await mqtt.connectAsync(tcpUrl(a), ADMIN);
    await pub.publishAsync('pay/1', 'charge 10 EUR', { qos: 2 });
    const publish = (await one.next('publish')) as mqttPacket.IPublishPacket;
    one.send({ cmd: 'pubrec', messageId: publish.messageId! });
    await one.next('pubrel');
    one.sock.destroy(); // no PUBCOMP
    await pub.endAsync();
    await new Promise((r) => setTimeout(r, 50));
    await a.server.stop();

    const b = await startServer({}, undefined, dir);
    const two = await peer(b.server.address('mqtt').port, 'qos2-out');
    assert.equal(two.connack.sessionPresent, true);
    const rel = (await two.next('pubrel')) as mqttPacket.IPubrelPacket;
    assert.equal(rel.messageId, publish.messageId);
    two.send({ cmd: 'pubcomp', messageId: rel.messageId! });
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(two.packets.filter((p) => p.cmd === 'publish').length, 0, 'not delivered a second time');
    two.sock.destroy();
    await new Promise((r) => setTimeout(r, 50));
    const three = await peer(b.server.address('mqtt').port, 'qos2-out');
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(three.packets.map((p) => p.cmd), [], 'nothing left once PUBCOMP came');
    three.sock.destroy();
    await b.stop();
  });

  it('does not deliver a re-sent QoS 2 PUBLISH twice when the client reconnects before PUBREL', async () => {
    const s = await startServer();
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const seen: string[] = [];
    watcher.on('message', (_t, p) => seen.push(p.toString()));
    await watcher.subscribeAsync('orders/#', { qos: 2 });
    const one = await peer(s.server.address('mqtt').port, 'qos2-in');
    one.send({ cmd: 'publish', topic: 'orders/1', payload: 'buy', qos: 2, messageId: 77, dup: false, retain: false });
    await one.next('pubrec');
    one.sock.destroy(); // no PUBREL
    await new Promise((r) => setTimeout(r, 50));
    const two = await peer(s.server.address('mqtt').port, 'qos2-in');
    two.send({ cmd: 'publish', topic: 'orders/1', payload: 'buy', qos: 2, messageId: 77, dup: true, retain: false });
    await two.next('pubrec');
    two.send({ cmd: 'pubrel', messageId: 77 });
    await two.next('pubcomp');
    await watcher.publishAsync('orders/sync', 'sync', { qos: 2 });
    const deadline = Date.now() + 5000;
    while (!seen.includes('sync') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen.filter((x) => x === 'buy'), ['buy']);
    two.sock.destroy();
    await watcher.endAsync();
    await s.stop();
  });
});

describe('MQTT 5 topic aliases', () => {
  it('uses topic aliases both ways', async () => {
    const s = await startServer();
    const sub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, properties: { topicAliasMaximum: 5 } });
    const raw: mqttPacket.IPublishPacket[] = [];
    sub.on('packetreceive', (p) => {
      if (p.cmd === 'publish') raw.push(p);
    });
    const got: string[] = [];
    sub.on('message', (t, p) => got.push(`${t}=${p.toString()}`));
    await sub.subscribeAsync('telemetry/#', { qos: 0 });
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    // the publisher sets alias 3 once, then publishes with the alias alone
    await pub.publishAsync('telemetry/engine/temp', '90', { qos: 1, properties: { topicAlias: 3 } });
    await pub.publishAsync('', '91', { qos: 1, properties: { topicAlias: 3 } });
    const deadline = Date.now() + 5000;
    while (got.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got, ['telemetry/engine/temp=90', 'telemetry/engine/temp=91']);
    assert.equal(raw[0]!.topic, 'telemetry/engine/temp');
    assert.equal(raw[1]!.topic, '', 'the second delivery carries only the alias');
    assert.equal(raw[1]!.properties?.topicAlias, raw[0]!.properties?.topicAlias);
    // an alias outside the announced range ends the connection with 0x94
    // (mqtt.js refuses to send such an alias itself, so this one is raw)
    const abuser = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await abuser.connect('alias-abuser', 'admin', ADMIN_PASSWORD);
    abuser.send({ cmd: 'publish', topic: 'x', payload: 'y', qos: 0, dup: false, retain: false, properties: { topicAlias: 1000 } });
    assert.equal(((await abuser.next('disconnect')) as mqttPacket.IDisconnectPacket).reasonCode, 0x94);
    await abuser.closed;
    await sub.endAsync();
    await pub.endAsync();
    await s.stop();
  });
});

describe('MQTT 5 subscription options, flow control, keep-alive and will delay', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  /** Raw v5 client: connect with the given properties and keep-alive, collect packets. */
  async function raw5(clientId: string, keepalive: number, properties: mqttPacket.IConnectPacket['properties'] = {}) {
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect(clientId, 'admin', ADMIN_PASSWORD, { keepalive, properties });
    const until = async (cond: () => boolean, what: string) => {
      const deadline = Date.now() + 5000;
      while (!cond()) {
        if (Date.now() > deadline) throw new Error(`no ${what}; got ${c.packets.map((p) => p.cmd).join(',')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    return { sock: c.sock, got: c.packets, send: (p: mqttPacket.Packet) => c.send(p), until, closed: c.closed };
  }

  it('honours no-local, subscription identifiers and retain handling', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const other = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    const mine: string[] = [];
    c.on('message', (t, _p, pk) => mine.push(`${t}#${String(pk.properties?.subscriptionIdentifier ?? '')}`));
    await c.subscribeAsync('nl/#', { qos: 1, nl: true });
    await c.subscribeAsync('sid/#', { qos: 1, properties: { subscriptionIdentifier: 7 } });
    const theirs = nextMessage(other, 'nl/x');
    await other.subscribeAsync('nl/#', { qos: 1 });
    await c.publishAsync('nl/x', 'own', { qos: 1 });
    await theirs;
    await other.publishAsync('sid/y', 'tagged', { qos: 1 });
    const deadline = Date.now() + 5000;
    while (mine.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(mine, ['sid/y#7'], 'no own message on the no-local subscription; the identifier on the other');

    await other.publishAsync('rh/a', 'kept', { qos: 1, retain: true });
    const seen: string[] = [];
    const r = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    r.on('message', (t, p, pk) => seen.push(`${t}:${p.toString()}:${pk.retain}`));
    await r.subscribeAsync('rh/#', { qos: 1, rh: 2 }); // never
    await r.subscribeAsync('rh/+', { qos: 1, rh: 1 }); // new subscription: yes
    await r.subscribeAsync('rh/+', { qos: 1, rh: 1 }); // existing: no
    await r.publishAsync('public/sync', 'x', { qos: 1 });
    while (seen.length < 1 && Date.now() < deadline) await new Promise((r2) => setTimeout(r2, 10));
    assert.deepEqual(seen, ['rh/a:kept:true']);
    for (const x of [c, other, r]) await x.endAsync();
  });

  it('sends no more QoS 1 messages than the client\'s receive maximum before PUBACKs', async () => {
    const c = await raw5('flow', 60, { receiveMaximum: 2 });
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'flow/#', qos: 1 }] });
    await c.until(() => c.got.some((p) => p.cmd === 'suback'), 'suback');
    const pub = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5 });
    for (let i = 0; i < 5; i++) await pub.publishAsync('flow/x', String(i), { qos: 1 });
    const publishes = () => c.got.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
    await c.until(() => publishes().length === 2, 'two publishes');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(publishes().length, 2, 'the window holds the rest back');
    for (const p of publishes()) c.send({ cmd: 'puback', messageId: p.messageId! });
    await c.until(() => publishes().length === 4, 'two more after the acks');
    assert.deepEqual(publishes().map((p) => p.payload.toString()), ['0', '1', '2', '3']);
    c.sock.destroy();
    await pub.endAsync();
  });

  it('closes a client silent for 1.5 times its keep-alive (v5: DISCONNECT 0x8D)', async () => {
    const c = await raw5('sleeper', 1);
    const started = Date.now();
    await c.closed;
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1400, `closed after ${elapsed} ms, not before 1.5 × 1 s`);
    assert.equal((c.got.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined)?.reasonCode, 0x8d);
  });

  it('delays the will, and a client back in time cancels it', async () => {
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const wills: string[] = [];
    watcher.on('message', (t, p) => wills.push(`${t}:${p.toString()}`));
    await watcher.subscribeAsync('lastwill/#', { qos: 1 });
    const will = { topic: 'lastwill/d1', payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } };
    // The session outlives the connection (expiry 10 s), so the will waits for its own delay [MQTT-3.1.3.2.2].
    const sessionKept = { sessionExpiryInterval: 10 };
    const first = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'd1', will, properties: sessionKept });
    first.stream.destroy();
    const back = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'd1', will, properties: sessionKept });
    await new Promise((r) => setTimeout(r, 1300));
    assert.deepEqual(wills, [], 'the client came back within the delay');
    const started = Date.now();
    back.stream.destroy();
    const deadline = Date.now() + 5000;
    while (wills.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(wills, ['lastwill/d1:gone']);
    assert.ok(Date.now() - started >= 900, 'sent after the delay, not at once');
    await watcher.endAsync();
  });
});
