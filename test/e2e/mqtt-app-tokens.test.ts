/**
 * Device MQTT with app and user tokens (docs/clients.md): Paho JavaScript
 * over WebSocket reproducing the device client, and the refusals of wrong
 * apps, client ids, users and expired tokens.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { describe, it, before, after } from 'node:test';
import { WebSocket } from 'ws';
import { ManualClock } from '../../src/clock.js';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { refusedWith, tcpUrl } from '../helpers/mqtt.js';

const require = createRequire(import.meta.url);

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
