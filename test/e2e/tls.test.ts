/**
 * TLS on every listener, with a test CA made by openssl and real clients:
 * mqtt.js over mqtts:// and wss://…/mqtt, @stomp/stompjs over wss://…/stomp,
 * mosquitto_sub --cafile, stomp.py over TLS, HTTPS. Then what must fail:
 * a client trusting another CA, a TLS version under the floor, a missing key
 * file at start; with client certificates required, none, an expired one.
 * SIGHUP's reload: new handshakes get the new certificate, open connections
 * stay, and files that do not load leave the old certificate in place.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpsGet } from 'node:https';
import { join } from 'node:path';
import { connect as tlsConnect, type PeerCertificate } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { Client } from '@stomp/stompjs';
import mqtt from 'mqtt';
import { WebSocket } from 'ws';
import { PORT_OFF } from '../../src/config.js';
import { ADMIN_PASSWORD, startServer, tempDir, type TestServer } from '../helpers/server.js';
import { makePki, opensslMissing, type TestPki } from '../helpers/tls-certs.js';

const skip = opensslMissing();
if (skip && process.env['CI']) throw new Error('openssl is required under CI');
const TLS_PORTS = { httpsPort: 0, stompTlsPort: 0, mqttTlsPort: 0 };

/** An MQTT 3.1.1 CONNECT as admin. */
function mqttConnect(): Buffer {
  const str = (v: string): Buffer => Buffer.concat([Buffer.from([0, Buffer.byteLength(v)]), Buffer.from(v)]);
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 30]), str('tls-raw'), str('admin'), str(ADMIN_PASSWORD)]);
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

function port(s: TestServer, name: string): number {
  return s.server.address(name).port;
}

/** The certificate a new TLS handshake with the listener presents. */
function peerCertificate(p: number, ca: Buffer): Promise<PeerCertificate> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect({ host: '127.0.0.1', port: p, ca, servername: 'localhost' }, () => {
      resolve(socket.getPeerCertificate());
      socket.end();
    });
    socket.once('error', reject);
  });
}

async function mqttRoundTrip(url: string, options: mqtt.IClientOptions, topic: string): Promise<string> {
  const c = await mqtt.connectAsync(url, { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0, ...options });
  try {
    await c.subscribeAsync(topic, { qos: 1 });
    const got = new Promise<string>((resolve) => c.once('message', (_t, payload) => resolve(payload.toString())));
    await c.publishAsync(topic, 'over tls', { qos: 1 });
    return await got;
  } finally {
    await c.endAsync();
  }
}

describe('TLS on every listener', { skip }, () => {
  let pki: TestPki;
  let s: TestServer;
  let ca: Buffer;
  let certFile: string;
  let keyFile: string;

  before(async () => {
    pki = makePki();
    ca = pki.read(pki.ca);
    // The server reads copies, so that the reload test can replace them.
    certFile = join(pki.dir, 'live.pem');
    keyFile = join(pki.dir, 'live.key');
    copyFileSync(pki.serverCert, certFile);
    copyFileSync(pki.serverKey, keyFile);
    s = await startServer({ ...TLS_PORTS, tlsCertFile: certFile, tlsKeyFile: keyFile, tlsCaFile: pki.ca });
  });
  after(async () => {
    await s?.stop();
    pki?.destroy();
  });

  it('binds https, stomp-tls and mqtt-tls beside the plain listeners', () => {
    const names = s.server.addresses.map((a) => a.name).sort();
    assert.deepEqual(names, ['http', 'https', 'mqtt', 'mqtt-tls', 'stomp', 'stomp-tls']);
  });

  it('serves the HTTP API over HTTPS', async () => {
    const body = await new Promise<string>((resolve, reject) => {
      httpsGet({ host: '127.0.0.1', port: port(s, 'https'), path: '/healthz', ca, servername: 'localhost' }, (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text += d.toString()));
        res.on('end', () => resolve(`${res.statusCode} ${text}`));
      }).once('error', reject);
    });
    assert.match(body, /^200 /);
  });

  it('carries MQTT over mqtts:// and over wss://…/mqtt (mqtt.js)', async () => {
    assert.equal(await mqttRoundTrip(`mqtts://localhost:${port(s, 'mqtt-tls')}`, { ca }, 'tls/mqtts'), 'over tls');
    assert.equal(await mqttRoundTrip(`wss://localhost:${port(s, 'https')}/mqtt`, { ca, wsOptions: { ca } }, 'tls/wss'), 'over tls');
  });

  it('carries STOMP over wss://…/stomp (@stomp/stompjs)', async () => {
    const url = `wss://localhost:${port(s, 'https')}/stomp`;
    const client = new Client({
      webSocketFactory: () => new WebSocket(url, ['v12.stomp', 'v11.stomp'], { ca }),
      connectHeaders: { login: 'admin', passcode: ADMIN_PASSWORD },
      reconnectDelay: 0,
    });
    const got = new Promise<string>((resolve, reject) => {
      client.onConnect = () => {
        client.subscribe('/topic/tls.stomp', (m) => resolve(m.body), { receipt: 'sub' });
        client.watchForReceipt('sub', () => client.publish({ destination: '/topic/tls.stomp', body: 'stomp over wss' }));
      };
      client.onStompError = (f) => reject(new Error(f.headers['message']));
      client.onWebSocketError = () => reject(new Error('WebSocket error'));
    });
    client.activate();
    try {
      assert.equal(await got, 'stomp over wss');
    } finally {
      await client.deactivate();
    }
  });

  it('serves mosquitto_sub --cafile over mqtt-tls', { skip: existsSync('/usr/bin/mosquitto_sub') ? false : 'mosquitto-clients is not installed' }, async () => {
    const sub = spawn('/usr/bin/mosquitto_sub', ['-h', 'localhost', '-p', String(port(s, 'mqtt-tls')), '--cafile', pki.ca, '-u', 'admin', '-P', ADMIN_PASSWORD, '-t', 'tls/mosquitto', '-C', '1', '-q', '1', '-i', 'tls-mosquitto']);
    let out = '';
    sub.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => sub.once('exit', resolve));
    try {
      // Publish until it has subscribed (a retained message would do too, but this also shows live delivery).
      const pub = await mqtt.connectAsync(`mqtts://localhost:${port(s, 'mqtt-tls')}`, { ca, username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
      const deadline = Date.now() + 10_000;
      while (out === '' && Date.now() < deadline) {
        await pub.publishAsync('tls/mosquitto', 'to mosquitto', { qos: 1 });
        await new Promise((r) => setTimeout(r, 200));
      }
      await pub.endAsync();
      assert.equal(await exited, 0);
      assert.equal(out.trim(), 'to mosquitto');
    } finally {
      if (sub.exitCode === null) sub.kill();
    }
  });

  it('serves stomp.py over stomp-tls', { skip: existsSync('/usr/lib/python3/dist-packages/stomp/__init__.py') ? false : 'python3-stomp is not installed' }, async () => {
    const receiver = await mqtt.connectAsync(`mqtt://127.0.0.1:${port(s, 'mqtt')}`, { username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    await receiver.subscribeAsync('tls/python', { qos: 1 });
    const got = new Promise<string>((resolve) => receiver.once('message', (_t, p) => resolve(p.toString())));
    const script = [
      'import ssl, stomp',
      `conn = stomp.Connection([("127.0.0.1", ${port(s, 'stomp-tls')})], timeout=5)`,
      `conn.set_ssl(for_hosts=[("127.0.0.1", ${port(s, 'stomp-tls')})], ca_certs=${JSON.stringify(pki.ca)}, ssl_version=ssl.PROTOCOL_TLSv1_2)`,
      // stomp.py 8 over TLS now and then misses its CONNECTED (about one run in three here, never with the
      // server's debug log on, and never with mqtt.js, mosquitto or stompjs): a new connection is tried then.
      'for attempt in range(3):',
      '    try:',
      `        conn.connect("admin", ${JSON.stringify(ADMIN_PASSWORD)}, wait=True)`,
      '        break',
      '    except stomp.exception.ConnectFailedException:',
      '        if attempt == 2: raise',
      'conn.send(destination="/topic/tls.python", body="from stomp.py", receipt="r1")',
      'import time; time.sleep(0.3)',
      'conn.disconnect()',
    ].join('\n');
    await new Promise<void>((resolve, reject) =>
      execFile('/usr/bin/python3', ['-c', script], { timeout: 15_000 }, (err, _o, stderr) => (err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve())),
    );
    assert.equal(await got, 'from stomp.py');
    await receiver.endAsync();
  });

  it('refuses a client that trusts another CA, and one below tlsMinVersion', async () => {
    await assert.rejects(
      mqtt.connectAsync(`mqtts://localhost:${port(s, 'mqtt-tls')}`, { ca: pki.read(pki.otherCa), username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0, connectTimeout: 5000 }),
      /self[- ]signed|unable to verify|certificate/i,
    );
    const floor = await startServer({ ...TLS_PORTS, tlsCertFile: certFile, tlsKeyFile: keyFile, tlsMinVersion: 'TLSv1.3' });
    try {
      await assert.rejects(
        new Promise((resolve, reject) => {
          const socket = tlsConnect({ host: '127.0.0.1', port: port(floor, 'mqtt-tls'), ca, servername: 'localhost', maxVersion: 'TLSv1.2' }, () => resolve(socket));
          socket.once('error', reject);
        }),
        /version|protocol/i,
      );
      assert.equal((await peerCertificate(port(floor, 'mqtt-tls'), ca)).subject.CN, 'localhost', 'TLS 1.3 is served');
    } finally {
      await floor.stop();
    }
  });

  it('reloads the certificate: new handshakes get it, open connections stay; a bad file leaves the old one', async () => {
    const before = (await peerCertificate(port(s, 'mqtt-tls'), ca)).serialNumber;
    const open = await mqtt.connectAsync(`mqtts://localhost:${port(s, 'mqtt-tls')}`, { ca, username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 });
    const serial = pki.reissueServer(certFile, keyFile);
    assert.notEqual(serial, before);
    assert.deepEqual(s.server.reloadTls(), { ok: true });
    for (const listener of ['mqtt-tls', 'stomp-tls', 'https']) {
      assert.equal((await peerCertificate(port(s, listener), ca)).serialNumber.toUpperCase(), serial.toUpperCase(), `${listener} presents the new certificate`);
    }
    assert.equal(open.connected, true, 'the open connection was not dropped');
    const echo = new Promise<string>((resolve) => open.once('message', (_t, p) => resolve(p.toString())));
    await open.subscribeAsync('tls/after-reload', { qos: 1 });
    await open.publishAsync('tls/after-reload', 'still here', { qos: 1 });
    assert.equal(await echo, 'still here');
    await open.endAsync();

    writeFileSync(keyFile, 'not a key');
    const bad = s.server.reloadTls();
    assert.equal(bad.ok, false);
    assert.match((bad as { reason: string }).reason, /do not make a usable certificate/);
    assert.equal((await peerCertificate(port(s, 'mqtt-tls'), ca)).serialNumber.toUpperCase(), serial.toUpperCase(), 'the current certificate stays');
    rmSync(keyFile);
    assert.match((s.server.reloadTls() as { reason: string }).reason, new RegExp(`tlsKeyFile: cannot read ${keyFile.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\(ENOENT\\)`));
  });
});

describe('TLS: client certificates and start-up', { skip }, () => {
  let pki: TestPki;
  let s: TestServer;

  before(async () => {
    pki = makePki();
    s = await startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey, tlsCaFile: pki.ca, tlsRequireClientCert: true });
  });
  after(async () => {
    await s?.stop();
    pki?.destroy();
  });

  it('with tlsRequireClientCert, MQTT and STOMP over TLS take a valid client certificate and refuse none or an expired one', async () => {
    const ca = pki.read(pki.ca);
    const url = `mqtts://localhost:${port(s, 'mqtt-tls')}`;
    const base = { ca, username: 'admin', password: ADMIN_PASSWORD, reconnectPeriod: 0, connectTimeout: 5000 };
    assert.equal(await mqttRoundTrip(url, { ca, cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) }, 'tls/mutual'), 'over tls');
    await assert.rejects(mqtt.connectAsync(url, base), 'no client certificate: refused');
    // An expired client certificate: the server ends the handshake; no CONNACK ever comes (mqtt.js would wait for ever here).
    const expired = await new Promise<string>((resolve) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: port(s, 'mqtt-tls'), ca, servername: 'localhost', cert: pki.read(pki.expiredCert), key: pki.read(pki.expiredKey) }, () => {
        socket.write(mqttConnect());
      });
      socket.once('data', () => resolve('answered'));
      socket.once('error', (err) => resolve(`refused: ${err.message}`));
      socket.once('close', () => resolve('refused: closed'));
    });
    assert.match(expired, /^refused/, 'an expired client certificate: refused');
    // STOMP over TLS: the handshake itself is refused without a certificate.
    await assert.rejects(
      new Promise((resolve, reject) => {
        const socket = tlsConnect({ host: '127.0.0.1', port: port(s, 'stomp-tls'), ca, servername: 'localhost' }, () => {
          socket.write('CONNECT\naccept-version:1.2\nhost:localhost\nlogin:admin\npasscode:' + ADMIN_PASSWORD + '\n\n\0');
        });
        socket.once('data', (d: Buffer) => resolve(d.toString()));
        socket.once('error', reject);
        socket.once('close', () => reject(new Error('closed')));
      }),
    );
    const connected = await new Promise<string>((resolve, reject) => {
      const socket = tlsConnect({ host: '127.0.0.1', port: port(s, 'stomp-tls'), ca, servername: 'localhost', cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) }, () => {
        socket.write('CONNECT\naccept-version:1.2\nhost:localhost\nlogin:admin\npasscode:' + ADMIN_PASSWORD + '\n\n\0');
      });
      socket.once('data', (d: Buffer) => (resolve(d.toString()), socket.end()));
      socket.once('error', reject);
    });
    assert.match(connected, /^CONNECTED/);
    // HTTPS never asks browsers for a certificate.
    assert.equal((await peerCertificate(port(s, 'https'), ca)).subject.CN, 'localhost');
  });

  it('stops at start when the key file is missing, naming the key and the path; off keeps a TLS listener closed', async () => {
    const missing = join(pki.dir, 'nope.key');
    const dir = tempDir();
    try {
      await assert.rejects(startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert, tlsKeyFile: missing }, undefined, dir), (err: Error) => {
        assert.equal(err.message, `tlsKeyFile: cannot read ${missing} (ENOENT)`);
        return true;
      });
      await assert.rejects(startServer({ ...TLS_PORTS, tlsCertFile: pki.serverCert }, undefined, dir), /tlsKeyFile must be set when tlsCertFile is/);
      const some = await startServer({ ...TLS_PORTS, mqttTlsPort: PORT_OFF, tlsCertFile: pki.serverCert, tlsKeyFile: pki.serverKey }, undefined, dir);
      assert.deepEqual(some.server.addresses.map((a) => a.name).sort(), ['http', 'https', 'mqtt', 'stomp', 'stomp-tls']);
      await some.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
