/**
 * The PROXY protocol on the STOMP and MQTT TCP listeners and their TLS
 * twins, with real clients (mqtt.js, @stomp/stompjs over TCP) behind a
 * loopback relay that writes the header first, as HAProxy does with
 * send-proxy: the address in the header is what the server records (the
 * online clients API) and what the per-address limit counts. Then what is
 * refused: a peer not in trustedProxies, a connection with no or a garbled
 * header, a header that does not arrive in time.
 */
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { PORT_OFF } from '../../src/config.js';
import { ADMIN } from '../helpers/mqtt.js';
import { proxyRelay, proxyV1, proxyV2, type Relay } from '../helpers/proxy-relay.js';
import { ADMIN_PASSWORD, api, login, startServer, type TestServer } from '../helpers/server.js';
import { connectStompTcp } from '../helpers/stomp-tcp.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

const noOpenssl = opensslMissing();
if (noOpenssl && process.env['CI']) throw new Error('openssl is required under CI');

interface ClientRow {
  loginName: string;
  device: string;
  protocol: string;
  remoteAddress: string;
}

/** The online clients as the admin API lists them. */
async function clients(s: TestServer, token: string): Promise<ClientRow[]> {
  const r = await api<ClientRow[]>(s.url, 'GET', '/api/message/getWebSocketClients', { token });
  assert.equal(r.status, 200);
  return r.body.data;
}

/** The value of herald_protocol_errors_total for a reason (protocol "any"). */
async function refusals(s: TestServer, reason: string): Promise<number> {
  const text = await (await fetch(`${s.url}/metrics`)).text();
  const m = new RegExp(`^herald_protocol_errors_total\\{protocol="any",reason="${reason}"\\} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/** Resolves once the socket is closed, with the bytes the server sent before closing. */
function closedWith(socket: Socket): Promise<Buffer> {
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.once('close', () => resolve(Buffer.concat(got))));
}

function rawConnect(port: number, localAddress = '127.0.0.1'): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
}

/** An MQTT 3.1.1 CONNECT as admin. */
function mqttConnectPacket(clientId: string): Buffer {
  const str = (v: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(v)]), Buffer.from(v)]);
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 30]), str(clientId), str('admin'), str(ADMIN_PASSWORD)]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 5000;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('PROXY protocol on the STOMP and MQTT listeners', { skip: noOpenssl || false }, () => {
  let s: TestServer;
  let pki: TestPki;
  let token: string;
  const relays: Relay[] = [];
  const relay = async (listener: string, header: Buffer, opts: { split?: boolean } = {}): Promise<Relay> => {
    const r = await proxyRelay(s.server.address(listener).port, header, opts);
    relays.push(r);
    return r;
  };

  before(async () => {
    pki = makePki();
    s = await startServer({
      proxyProtocol: true,
      trustedProxies: '10.9.9.9, 127.0.0.1/32, 2001:db8::/32',
      connectTimeoutSeconds: 2,
      tlsCertFile: pki.serverCert,
      tlsKeyFile: pki.serverKey,
      httpsPort: PORT_OFF,
      stompTlsPort: 0,
      mqttTlsPort: 0,
    });
    token = await login(s.url);
  });
  after(async () => {
    for (const r of relays) await r.close();
    await s.stop();
    pki.destroy();
  });

  it('mqtt.js behind a v1 header: the session has the header\'s address, and messages pass unchanged', async () => {
    const r = await relay('mqtt', proxyV1('203.0.113.7', 40001));
    const c = await mqtt.connectAsync(r.url('mqtt'), { ...ADMIN, clientId: 'behind-v1' });
    try {
      const row = (await clients(s, token)).find((x) => x.device === 'behind-v1');
      assert.equal(row?.remoteAddress, '203.0.113.7');
      assert.equal(row?.protocol, 'mqtt-tcp');
      await c.subscribeAsync('proxy/v1', { qos: 1 });
      const got = new Promise<string>((resolve) => c.once('message', (_t, p) => resolve(p.toString())));
      await c.publishAsync('proxy/v1', 'through the proxy', { qos: 1 });
      assert.equal(await got, 'through the proxy');
    } finally {
      await c.endAsync();
    }
  });

  it('mqtt.js (MQTT 5) behind a v2 header from IPv6, sent in two pieces, with TLVs', async () => {
    const tlvs = Buffer.from([0x04, 0x00, 0x02, 0x68, 0x69]); // PP2_TYPE_NOOP, skipped
    const r = await relay('mqtt', proxyV2('2001:db8:0:0::77', 40002, tlvs), { split: true });
    const c = await mqtt.connectAsync(r.url('mqtt'), { ...ADMIN, clientId: 'behind-v2', protocolVersion: 5 });
    try {
      const row = (await clients(s, token)).find((x) => x.device === 'behind-v2');
      assert.equal(row?.remoteAddress, '2001:db8::77');
    } finally {
      await c.endAsync();
    }
  });

  it('@stomp/stompjs over TCP behind a v2 header: the session has the header\'s address and subscribes and sends', async () => {
    const r = await relay('stomp', proxyV2('198.51.100.20', 40003));
    const client = await connectStompTcp(() => connect(r.port, '127.0.0.1'), { login: 'admin', passcode: ADMIN_PASSWORD });
    try {
      const row = (await clients(s, token)).find((x) => x.protocol === 'stomp-tcp');
      assert.equal(row?.remoteAddress, '198.51.100.20');
      const got = new Promise<string>((resolve) => client.subscribe('/topic/proxy.stomp', (m) => resolve(m.body)));
      await new Promise((resolve) => setTimeout(resolve, 100));
      client.publish({ destination: '/topic/proxy.stomp', body: 'stomp through the proxy' });
      assert.equal(await got, 'stomp through the proxy');
    } finally {
      await client.deactivate();
    }
  });

  it('on the TLS twins the header comes first, then the TLS handshake (mqtts and STOMP over TLS)', async () => {
    const ca = pki.read(pki.ca);
    const r = await relay('mqtt-tls', proxyV1('192.0.2.55', 40004));
    const c = await mqtt.connectAsync(r.url('mqtts'), { ...ADMIN, clientId: 'behind-tls', ca, servername: 'localhost' });
    try {
      const row = (await clients(s, token)).find((x) => x.device === 'behind-tls');
      assert.equal(row?.remoteAddress, '192.0.2.55');
    } finally {
      await c.endAsync();
    }
    const rs = await relay('stomp-tls', proxyV2('192.0.2.56', 40005));
    const client = await connectStompTcp(() => tlsConnect({ port: rs.port, host: '127.0.0.1', ca, servername: 'localhost' }), { login: 'admin', passcode: ADMIN_PASSWORD }, 'secureConnect');
    try {
      const rows = await clients(s, token);
      assert.ok(rows.some((x) => x.protocol === 'stomp-tcp' && x.remoteAddress === '192.0.2.56'), JSON.stringify(rows));
    } finally {
      await client.deactivate();
    }
  });

  it('reads what follows the header in the same packet (header and CONNECT in one write)', async () => {
    const socket = await rawConnect(s.server.address('mqtt').port);
    const connack = new Promise<Buffer>((resolve) => socket.once('data', (d: Buffer) => resolve(d)));
    socket.write(Buffer.concat([proxyV2('203.0.113.44', 40006), mqttConnectPacket('one-write')]));
    assert.deepEqual([...(await connack).subarray(0, 4)], [0x20, 0x02, 0x00, 0x00]);
    const row = (await clients(s, token)).find((x) => x.device === 'one-write');
    assert.equal(row?.remoteAddress, '203.0.113.44');
    socket.destroy();
  });

  it('a LOCAL header (the proxy\'s own health check) keeps the proxy\'s address', async () => {
    const r = await relay('mqtt', proxyV2(undefined));
    const c = await mqtt.connectAsync(r.url('mqtt'), { ...ADMIN, clientId: 'health-check' });
    try {
      const row = (await clients(s, token)).find((x) => x.device === 'health-check');
      assert.equal(row?.remoteAddress, '127.0.0.1');
    } finally {
      await c.endAsync();
    }
  });

  it('refuses a peer that is not in trustedProxies, even with a good header, without a word', async () => {
    const before = await refusals(s, 'proxy_untrusted');
    for (const listener of ['mqtt', 'stomp', 'mqtt-tls']) {
      const socket = await rawConnect(s.server.address(listener).port, '127.0.0.2');
      const closed = closedWith(socket);
      socket.write(Buffer.concat([proxyV1('203.0.113.9', 1), mqttConnectPacket('untrusted')]));
      assert.equal((await closed).length, 0, `${listener}: nothing is said to an untrusted peer`);
    }
    assert.equal(await refusals(s, 'proxy_untrusted'), before + 3);
  });

  it('closes a connection that starts with anything but a header: a bare MQTT CONNECT, HTTP, a garbled or over-long header (a bare TCP health check is not counted)', async () => {
    const before = await refusals(s, 'proxy_header');
    // A bare TCP health check (connect, then close without a byte) is no refusal.
    const check = await rawConnect(s.server.address('mqtt').port);
    const checked = closedWith(check);
    check.end();
    await checked;
    const tooLong = proxyV2('203.0.113.9', 1, Buffer.alloc(600)).subarray(0, 16);
    const garbage = [mqttConnectPacket('no-header'), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.from('PROXY TCP4 203.0.113.9 nope 1 2\r\n'), tooLong, Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(200))];
    for (const bytes of garbage) {
      const socket = await rawConnect(s.server.address('mqtt').port);
      const closed = closedWith(socket);
      socket.write(bytes);
      assert.equal((await closed).length, 0, `no CONNACK after ${JSON.stringify(bytes.subarray(0, 20).toString('latin1'))}`);
    }
    assert.equal(await refusals(s, 'proxy_header'), before + garbage.length);
  });

  it('closes a connection whose header does not arrive whole in time (here 2 s, from connectTimeoutSeconds)', async () => {
    const before = await refusals(s, 'proxy_header');
    const socket = await rawConnect(s.server.address('stomp').port);
    const since = Date.now();
    const closed = closedWith(socket);
    socket.write('PROXY TCP4 203.0.113.9 ');
    await closed;
    assert.ok(Date.now() - since >= 1500, 'not before the header had its time');
    assert.equal(await refusals(s, 'proxy_header'), before + 1);
  });
});

describe('PROXY protocol: the per-address limit counts the header\'s address', () => {
  let s: TestServer;
  const relays: Relay[] = [];
  before(async () => {
    s = await startServer({ proxyProtocol: true, trustedProxies: '127.0.0.1', maxUnauthenticatedPerAddress: 2, httpPort: 0 });
  });
  after(async () => {
    for (const r of relays) await r.close();
    await s.stop();
  });

  it('a third unauthenticated connection from one client address is refused; another client behind the same proxy is not', async () => {
    const relayFor = async (address: string): Promise<Relay> => {
      const r = await proxyRelay(s.server.address('mqtt').port, proxyV1(address, 5000));
      relays.push(r);
      return r;
    };
    const a = await relayFor('203.0.113.1');
    const held = [await rawConnect(a.port), await rawConnect(a.port)];
    // Both are admitted (counted) once the server read their headers.
    const third = await waitFor('the third connection to be refused', async () => {
      const sock = await rawConnect(a.port);
      const closed = closedWith(sock);
      const outcome = await Promise.race([closed.then(() => 'closed'), new Promise((r) => setTimeout(() => r('open'), 300))]);
      if (outcome === 'closed') return 'refused';
      sock.destroy();
      return undefined;
    });
    assert.equal(third, 'refused');
    const b = await relayFor('203.0.113.2');
    // mqtt.js's connectAsync waits on after a close without CONNACK: the close is a refusal here.
    const c = mqtt.connect(b.url('mqtt'), { ...ADMIN, clientId: 'other-client' });
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('the other client was refused')));
    });
    await c.endAsync();
    for (const h of held) h.destroy();
  });
});
