/**
 * JWTs from the operator's own issuer, used the way clients use tokens: HTTP
 * Bearer, STOMP over WebSocket (`__token`), STOMP over TCP (passcode) and
 * MQTT (password); and revoked through the user's revoke-tokens.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT } from 'jose';
import type mqttPacket from 'mqtt-packet';
import { api, login, startServer, type TestServer } from '../helpers/server.js';
import { RawStomp, frameHeader, wsUrl } from '../helpers/stomp.js';
import { RawMqtt } from '../helpers/mqtt.js';

const SECRET = 'an-issuer-secret-long-enough-for-hs256';

describe('JWTs as tokens', () => {
  let s: TestServer;
  let admin: string;
  let dana: string;
  before(async () => {
    s = await startServer({ jwtSecret: SECRET });
    admin = await login(s.url);
    const r = await api<{ id: string }>(s.url, 'POST', '/api/users', { token: admin, body: { name: 'dana', password: 'dana-password', role: 'user' } });
    dana = r.body.data.id;
  });
  after(() => s.stop());

  const jwtFor = (sub: string) =>
    new SignJWT({})
      .setProtectedHeader({ alg: 'HS256' })
      .setSubject(sub)
      .setIssuedAt()
      .setExpirationTime('1h')
      .sign(new TextEncoder().encode(SECRET));

  it('works in every protocol, and revoking the user ends every socket using one and refuses it after', async () => {
    const jwt = await jwtFor('dana');
    const collect = (token: string) => api(s.url, 'POST', '/api/message/collectMessage', { headers: { authorization: `Bearer ${token}` } });
    assert.equal((await collect(jwt)).status, 200);

    const ws = await RawStomp.ws(wsUrl(s.url, '/v1/ws') + '?__token=' + encodeURIComponent(jwt));
    assert.equal((await ws.connect({})).command, 'CONNECTED');
    const tcp = await RawStomp.tcp(s.server.address('stomp').port);
    assert.equal((await tcp.connect({ login: 'dana', passcode: jwt })).command, 'CONNECTED');
    const device = await RawMqtt.open(s.server.address('mqtt').port, 5);
    assert.equal((await device.connect('dana-phone', 'dana', jwt)).reasonCode, 0);

    const closeCode = new Promise<number>((r) => ws.socket.once('close', (code) => r(code)));
    const revoked = await api(s.url, 'POST', `/api/users/${dana}/revoke-tokens`, { token: admin });
    assert.equal(revoked.status, 200);

    assert.equal(frameHeader(await ws.next('ERROR'), 'message'), 'token revoked');
    assert.equal(await closeCode, 4403);
    assert.equal(frameHeader(await tcp.next('ERROR'), 'message'), 'token revoked');
    const disc = (await device.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(disc.reasonCode, 0x87);

    const again = await collect(jwt);
    assert.equal(again.status, 401);
    assert.match(again.body.message, /issued before the tokens of user "dana" were revoked/);
    const retry = await RawMqtt.open(s.server.address('mqtt').port, 5);
    assert.equal((await retry.connect('dana-phone', 'dana', jwt)).reasonCode, 0x86);

    // The issuer hands out a new one (a later iat): it works.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal((await collect(await jwtFor('dana'))).status, 200);
  });
});
