/**
 * Issue 13, MQTT side: each attack against a real server, with real clients.
 *
 * - event-loop fairness: a PUBLISH split into one-byte WebSocket messages
 *   costs CPU linear in its size; a publisher flood is slowed to
 *   publishRatePerSecond without losing a message; healthy clients keep
 *   their round trip meanwhile;
 * - memory: a subscriber that never acknowledges is cut at
 *   maxHeldBytesPerConnection, and the server's RSS stays bounded and comes
 *   back down (server in a child process, RSS and CPU from /proc);
 * - authorization: no forged chat-thread messages or retained copies, no
 *   wills to them; a client id belongs to its user;
 * - credentials: an app user's token that expires ends its live connection;
 * - fidelity: will delay ends with the session; overlapping subscriptions
 *   get one copy with every subscription identifier; a resumed session's
 *   stored queue is sent within the client's receive maximum.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { WebSocket } from 'ws';
import { ADMIN, RawMqtt, refusedWith, tcpUrl } from '../helpers/mqtt.js';
import { runHerald, type HeraldProcess } from '../helpers/process.js';
import { ADMIN_PASSWORD, api, login, startServer, tempDir, type TestServer } from '../helpers/server.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function p99(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(s.length * 0.99))] ?? Infinity;
}

/**
 * A healthy client: publishes to its own topic every 20 ms and times each
 * round trip (a reply missing for 2 s counts as 2 s).
 */
async function startProbe(url: string, opts: IClientOptions): Promise<{ stop(): Promise<number[]> }> {
  const id = Math.random().toString(36).slice(2, 10);
  const c = await mqtt.connectAsync(url, { ...opts, clientId: 'probe-' + id, reconnectPeriod: 0 });
  await c.subscribeAsync('probe/' + id, { qos: 0 });
  const rtts: number[] = [];
  let running = true;
  let sentAt = 0;
  let timer: NodeJS.Timeout | undefined;
  const next = (): void => {
    if (!running) return;
    sentAt = performance.now();
    c.publish('probe/' + id, 'ping', { qos: 0 });
    timer = setTimeout(() => {
      rtts.push(2000);
      next();
    }, 2000);
  };
  c.on('message', () => {
    clearTimeout(timer);
    rtts.push(performance.now() - sentAt);
    setTimeout(next, 20);
  });
  next();
  return {
    async stop() {
      running = false;
      clearTimeout(timer);
      await c.endAsync();
      return rtts;
    },
  };
}

function collect(c: MqttClient): { topic: string; payload: string; packet: mqttPacket.IPublishPacket }[] {
  const got: { topic: string; payload: string; packet: mqttPacket.IPublishPacket }[] = [];
  c.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), packet }));
  return got;
}

// ---- a server process: CPU and memory -----------------------------------------------------

/** The child's resident set size in bytes (VmRSS). */
function rssOf(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) * 1024;
}

/** CPU time the child has used (user + system), in ms (clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

const MiB = 1024 * 1024;

describe('MQTT attacks on a server process: CPU and memory stay bounded', () => {
  const dir = tempDir('herald-sec-mqtt-');
  const password = 'admin-sec-mqtt-1';
  const auth: IClientOptions = { username: 'admin', password, reconnectPeriod: 0 };
  let proc: HeraldProcess;
  let pid: number;
  let mqttPort: number;
  let httpPort: number;

  before(async () => {
    proc = runHerald(['serve', '--host', '127.0.0.1', '--http-port', '0', '--stomp-port', '0', '--mqtt-port', '0'], {
      HERALD_DATA_DIR: dir,
      HERALD_ADMIN_PASSWORD: password,
      HERALD_LOG_LEVEL: 'warn',
      HERALD_SQLITE_SYNCHRONOUS: 'NORMAL',
      // The attacks below are about the parser and the delivery budget: the other limits stay out of the way.
      HERALD_WS_MESSAGES_PER_SECOND: '0',
      HERALD_PUBLISH_RATE_PER_SECOND: '0',
      HERALD_MAX_HELD_BYTES_PER_CONNECTION: String(2 * MiB),
    });
    httpPort = Number((await proc.waitFor(/^listening http \S+:(\d+)$/))[1]);
    mqttPort = Number((await proc.waitFor(/^listening mqtt \S+:(\d+)$/))[1]);
    pid = proc.child.pid!;
  });
  after(async () => {
    proc.child.kill('SIGTERM');
    await proc.exited;
    rmSync(dir, { recursive: true, force: true });
  });

  it('parses a 100 KB PUBLISH sent as 100,000 one-byte WebSocket messages in linear CPU, and a healthy client keeps p99 < 100 ms', async () => {
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const watcher = await mqtt.connectAsync(url, auth);
    const arrived = new Promise<Buffer>((resolve) => watcher.on('message', (_t, p) => resolve(p)));
    await watcher.subscribeAsync('attack/big', { qos: 0 });
    const probe = await startProbe(url, auth);

    const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/mqtt`, 'mqtt');
    await new Promise((r, j) => ws.once('open', r).once('error', j));
    const connack = new Promise((r) => ws.once('message', r));
    ws.send(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clientId: 'dribbler', clean: true, keepalive: 60, username: 'admin', password: Buffer.from(password) }));
    await connack;

    const payload = Buffer.alloc(100_000, 0x61);
    const publish = mqttPacket.generate({ cmd: 'publish', topic: 'attack/big', payload, qos: 0, dup: false, retain: false });
    const cpuBefore = cpuMsOf(pid);
    const started = Date.now();
    // Written by hand as client frames of one byte each (binary, FIN, a mask of zeros), all in one write:
    // as bursty as an attacker can be, and no loop of 100,000 ws.send calls in this process, where the
    // probe runs too (it would measure this process, not the server).
    const frames = Buffer.alloc(publish.length * 7);
    for (let i = 0; i < publish.length; i++) {
      frames[i * 7] = 0x82;
      frames[i * 7 + 1] = 0x81;
      frames[i * 7 + 6] = publish[i]!;
    }
    (ws as unknown as { _socket: Socket })._socket.write(frames);
    const got = await Promise.race([arrived, sleep(30_000).then(() => undefined)]);
    const cpu = cpuMsOf(pid) - cpuBefore;
    const wall = Date.now() - started;
    const rtts = await probe.stop();
    ws.close();
    await watcher.endAsync();

    assert.ok(got, 'the PUBLISH was parsed and delivered');
    assert.equal(got.length, payload.length);
    // mqtt-packet alone needs several seconds of CPU for this (quadratic); whole packets cost ws's own framing only.
    assert.ok(cpu < 2000, `the server used ${cpu} ms of CPU for ${publish.length} one-byte messages`);
    assert.ok(p99(rtts) < 100, `healthy client p99 ${p99(rtts).toFixed(1)} ms over ${rtts.length} round trips`);
    console.log(`# one-byte WebSocket PUBLISH of ${publish.length} bytes: server CPU ${cpu} ms, wall ${wall} ms; healthy p99 ${p99(rtts).toFixed(1)} ms (${rtts.length} round trips)`);
  });

  it('cuts a QoS 1 subscriber that never acknowledges at maxHeldBytesPerConnection (0x97); RSS stays bounded and comes back down', async () => {
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    // Warm up: the same traffic with a subscriber that acknowledges, so the baseline includes what any load costs
    const body = Buffer.alloc(64 * 1024, 0x42);
    let nextId = 1;
    const frames = (n: number, topic: string): Buffer =>
      Buffer.concat(Array.from({ length: n }, () => mqttPacket.generate({ cmd: 'publish', topic, payload: body, qos: 1, messageId: nextId++, dup: false, retain: false })));
    const publisher = await RawMqtt.open(mqttPort, 4);
    await publisher.connect('hog-publisher', 'admin', password);
    // Built before the healthy client starts timing (64 MB take this process a while to encode).
    const published = 1000; // 64 MB, 32 times the budget
    const flood = Buffer.concat([frames(published, 'hold/x'), mqttPacket.generate({ cmd: 'pingreq' })]);
    const warmUp = Array.from({ length: 30 }, () => frames(10, 'warm/x'));
    const toNobody = Buffer.concat([frames(published, 'nobody/x'), mqttPacket.generate({ cmd: 'pingreq' })]);
    const probe = await startProbe(url, auth);
    const fine = await mqtt.connectAsync(url, auth);
    let fineGot = 0;
    fine.on('message', () => fineGot++);
    await fine.subscribeAsync('warm/x', { qos: 1 });
    // (in steps a healthy subscriber keeps up with: a burst past the budget would cut it too)
    for (let i = 1; i <= 30; i++) {
      publisher.sock.write(warmUp[i - 1]!);
      await until(() => fineGot === 10 * i, 'the warm-up messages');
    }
    await fine.endAsync();
    // and the whole flood once to a topic nobody reads: the baseline includes what passing 64 MB through costs.
    publisher.sock.write(toNobody);
    await until(() => publisher.packets.some((p) => p.cmd === 'pingresp'), 'the warm-up flood handled', 20_000);
    publisher.packets.length = 0;
    await sleep(500);
    const baseline = rssOf(pid);

    // The attack: a v5 subscriber at QoS 1 that reads everything and acknowledges nothing.
    const hog = await RawMqtt.open(mqttPort, 5);
    await hog.connect('hog', 'admin', password);
    hog.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'hold/#', qos: 1 }] });
    await hog.next('suback');
    let peak = baseline;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pid))), 20);
    publisher.sock.write(flood);
    // PINGRESP: the server has handled every PUBLISH before it.
    await until(() => publisher.packets.some((p) => p.cmd === 'pingresp'), 'the whole flood handled', 20_000);
    await Promise.race([hog.closed, sleep(500)]);
    const cutAfter = hog.packets.filter((p) => p.cmd === 'publish').length;
    clearInterval(sampler);
    peak = Math.max(peak, rssOf(pid));
    publisher.sock.destroy();
    // RSS comes back down: the held messages are free once the client is gone.
    let after = rssOf(pid);
    const deadline = Date.now() + 8000;
    while (after > baseline + 16 * MiB && Date.now() < deadline) {
      await sleep(250);
      after = rssOf(pid);
    }
    const rtts = await probe.stop();
    const grew = (peak - baseline) / MiB;
    console.log(
      `# never-acknowledging subscriber: cut after ${cutAfter} messages; RSS baseline ${(baseline / MiB).toFixed(1)} MiB, peak +${grew.toFixed(1)} MiB, after +${((after - baseline) / MiB).toFixed(1)} MiB; healthy p99 ${p99(rtts).toFixed(1)} ms`,
    );
    hog.sock.destroy();

    const d = hog.packets.find((p) => p.cmd === 'disconnect') as mqttPacket.IDisconnectPacket | undefined;
    assert.equal(d?.reasonCode, 0x97, 'DISCONNECT 0x97 (quota exceeded)');
    assert.match(d?.properties?.reasonString ?? '', /slow consumer: .* bytes .*maxHeldBytesPerConnection/);
    assert.ok(cutAfter < 100, `cut after ${cutAfter} of ${published} messages of 64 KiB (2 MiB budget: about 16 in flight)`);
    assert.ok(grew < 40, `RSS grew by ${grew.toFixed(1)} MiB while 64 MiB were published to a client that acknowledges nothing`);
    assert.ok(after < baseline + 16 * MiB, `RSS ${((after - baseline) / MiB).toFixed(1)} MiB above the baseline after the client left`);
    assert.ok(p99(rtts) < 100, `healthy client p99 ${p99(rtts).toFixed(1)} ms`);
  });

  // Last in this process: it leaves 5,000 subscriptions' worth of garbage, which would blur the RSS reading above.
  it('connections holding 1,000 filters each, one of them #, cost CPU for the filters a message matches, not for all of them', async () => {
    const url = `mqtt://127.0.0.1:${mqttPort}`;
    const holders: MqttClient[] = [];
    for (let h = 0; h < 5; h++) {
      const c = await mqtt.connectAsync(url, { ...auth, protocolVersion: 5 });
      const filters = Array.from({ length: 999 }, (_, i) => `overlap/${h}/${i}/+`);
      for (let i = 0; i < filters.length; i += 200) await c.subscribeAsync(filters.slice(i, i + 200), { qos: 0 });
      await c.subscribeAsync('#', { qos: 0 });
      holders.push(c);
    }
    const received = holders.map(() => 0);
    holders.forEach((c, i) => c.on('message', () => received[i]!++));
    const pub = await mqtt.connectAsync(url, auth);
    const cpuBefore = cpuMsOf(pid);
    for (let i = 0; i < 500; i++) pub.publish('overlap/0/1/x', 'm');
    await until(() => received.every((n) => n >= 500), 'every holder got every message', 20_000);
    const cpu = cpuMsOf(pid) - cpuBefore;
    await pub.endAsync();
    for (const c of holders) await c.endAsync();
    // A scan of every filter cost ~2 ms per message here (1 s for 500); the index costs a small fraction of that.
    assert.ok(cpu < 500, `server CPU for 500 messages to 5 holders: ${cpu} ms`);
  });
});

// ---- a server in this process ----------------------------------------------------------

describe('MQTT publishers are held to publishRatePerSecond', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer({ publishRatePerSecond: 100 });
  });
  after(() => s.stop());

  it('slows a QoS 0 flood of 300 messages to 100/s without dropping one, and a healthy client keeps p99 < 100 ms', async () => {
    const receiver = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const times: number[] = [];
    const payloads: string[] = [];
    receiver.on('message', (_t, p) => {
      times.push(Date.now());
      payloads.push(p.toString());
    });
    await receiver.subscribeAsync('flood/#', { qos: 0 });
    const probe = await startProbe(tcpUrl(s), ADMIN);
    const flooder = await RawMqtt.open(s.server.address('mqtt').port, 4);
    await flooder.connect('flooder', 'admin', ADMIN_PASSWORD);
    const started = Date.now();
    flooder.sock.write(Buffer.concat(Array.from({ length: 300 }, (_, i) => mqttPacket.generate({ cmd: 'publish', topic: 'flood/x', payload: String(i), qos: 0, dup: false, retain: false }))));
    await until(() => payloads.length === 300, '300 messages', 8000);
    const rtts = await probe.stop();
    const spread = times.at(-1)! - started;
    assert.deepEqual(payloads, Array.from({ length: 300 }, (_, i) => String(i)), 'every message, in order');
    // A burst of 100, then 100 per second.
    assert.ok(spread >= 1800, `300 messages arrived within ${spread} ms`);
    assert.ok(p99(rtts) < 100, `healthy client p99 ${p99(rtts).toFixed(1)} ms`);
    console.log(`# flood of 300 at publishRatePerSecond 100: delivered over ${spread} ms; healthy p99 ${p99(rtts).toFixed(1)} ms (${rtts.length} round trips)`);
    flooder.sock.destroy();
    await receiver.endAsync();
  });

  it('does not read a flood faster than it may publish: 32 MB of PUBLISH packets wait in the client, not in the server', async () => {
    const flooder = await RawMqtt.open(s.server.address('mqtt').port, 4);
    await flooder.connect('big-flooder', 'admin', ADMIN_PASSWORD);
    const one = mqttPacket.generate({ cmd: 'publish', topic: 'flood/big', payload: Buffer.alloc(1024, 0x41), qos: 0, dup: false, retain: false });
    const total = 32 * 1024 * 1024;
    // In 64 KiB writes, so that what the kernel took leaves writableLength as it goes.
    const chunk = Buffer.concat(Array.from({ length: 64 }, () => one));
    for (let sent = 0; sent < total; sent += chunk.length) flooder.sock.write(chunk);
    await sleep(1500);
    // At 100 messages per second the server needs 1 KiB × 150 now; what it has not read stays with the
    // client (the kernel's socket buffers hold a few MB more). Unthrottled, it would all have been read.
    const unread = flooder.sock.writableLength;
    assert.ok(unread > total / 2 && unread < total, `only ${(unread / 1048576).toFixed(1)} MiB of 32 MiB still wait in the client after 1.5 s`);
    console.log(`# 32 MiB flood at publishRatePerSecond 100: ${(unread / 1048576).toFixed(1)} MiB still unread by the server after 1.5 s`);
    flooder.sock.destroy();
  });
});

describe('MQTT retained messages: their total size is capped', () => {
  it('past mqttRetainedMaxBytes a v5 retained publish gets PUBACK 0x97 naming the key; a 3.1.1 one is delivered but not retained', async () => {
    const s = await startServer({ mqttRetainedMaxBytes: 100, sysIntervalSeconds: 0 });
    try {
      const port = s.server.address('mqtt').port;
      const v5 = await RawMqtt.open(port, 5);
      await v5.connect('retainer-5', 'admin', ADMIN_PASSWORD);
      v5.send({ cmd: 'publish', topic: 'keep/small', payload: Buffer.alloc(60, 1), qos: 1, messageId: 1, retain: true, dup: false });
      assert.ok((((await v5.next('puback')) as mqttPacket.IPubackPacket).reasonCode ?? 0) < 0x80);
      v5.send({ cmd: 'publish', topic: 'keep/big', payload: Buffer.alloc(60, 2), qos: 1, messageId: 2, retain: true, dup: false });
      const full = (await v5.next('puback')) as mqttPacket.IPubackPacket;
      assert.equal(full.reasonCode, 0x97);
      assert.match(full.properties?.reasonString ?? '', /120 bytes; the limit is 100 \(mqttRetainedMaxBytes\)/);
      const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
      const live = collect(watcher);
      await watcher.subscribeAsync('keep/#', { qos: 0 });
      const v3 = await RawMqtt.open(port, 4);
      await v3.connect('retainer-3', 'admin', ADMIN_PASSWORD);
      v3.send({ cmd: 'publish', topic: 'keep/v3', payload: Buffer.alloc(60, 3), qos: 1, messageId: 3, retain: true, dup: false });
      await v3.next('puback');
      await until(() => live.some((m) => m.topic === 'keep/v3'), 'the 3.1.1 message delivered live');
      const late = await mqtt.connectAsync(tcpUrl(s), ADMIN);
      const retained = collect(late);
      await late.subscribeAsync('keep/#', { qos: 0 });
      await sleep(300);
      assert.deepEqual(retained.map((m) => m.topic), ['keep/small'], 'only the message within the cap was retained');
      for (const c of [watcher, late]) await c.endAsync();
      v5.sock.destroy();
      v3.sock.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('MQTT SUBSCRIBE: the subscription quota is checked before any filter is authorized', () => {
  it('a packet of 20,000 filters past maxSubscriptionsPerConnection gets 0x97 for each extra one, not an authorization each', async () => {
    const s = await startServer({ maxSubscriptionsPerConnection: 3, sysIntervalSeconds: 0 });
    try {
      const admin = await login(s.url);
      assert.equal((await api(s.url, 'POST', '/api/users', { token: admin, body: { name: 'plain', password: 'plain-password' } })).status, 200);
      const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
      // A plain user: a $SYS filter would be refused as not authorized (0x87) if it were looked at.
      await c.connect('many-filters', 'plain', 'plain-password');
      const subscriptions = Array.from({ length: 20_000 }, (_, i) => ({ topic: i % 2 ? `$SYS/x/${i}` : `f/${i}`, qos: 0 as const }));
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions });
      const granted = ((await c.next('suback')) as mqttPacket.ISubackPacket).granted;
      assert.deepEqual(granted.slice(0, 5), [0, 0x87, 0, 0x87, 0]);
      // Past the quota the answer is "quota exceeded" whatever the filter: it was not looked at.
      assert.ok(granted.slice(5).every((g) => g === 0x97), 'every filter past the quota: 0x97');
      c.sock.destroy();
    } finally {
      await s.stop();
    }
  });
});

describe('MQTT authorization: thread topics, client ids, expiring app-user tokens', () => {
  let s: TestServer;
  let admin: string;
  const thread = 'org1/visitor/v1';
  before(async () => {
    s = await startServer();
    admin = await login(s.url);
    for (const name of ['visitor1', 'agent1', 'stranger', 'alice', 'bob']) {
      const r = await api(s.url, 'POST', '/api/users', { token: admin, body: { name, password: name + '-password' } });
      assert.equal(r.status, 200, r.body.message);
    }
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread, members: [{ user: 'visitor1', role: 'visitor' }, { user: 'agent1', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
  });
  after(() => s.stop());

  const as = (name: string): IClientOptions => ({ username: name, password: name + '-password', reconnectPeriod: 0 });

  it('refuses a retained QoS 1 publish to a chat thread (v5 PUBACK 0x87, v3 not delivered), stores no retained copy, and refuses a will to it', async () => {
    const agent = await mqtt.connectAsync(tcpUrl(s), { ...as('agent1'), protocolVersion: 5 });
    const seen = collect(agent);
    await agent.subscribeAsync(thread, { qos: 1 });

    const port = s.server.address('mqtt').port;
    for (const who of ['stranger', 'visitor1']) {
      const forger = await RawMqtt.open(port, 5);
      await forger.connect(`forger-${who}`, who, who + '-password');
      forger.send({ cmd: 'publish', topic: thread, payload: Buffer.from('{"status":"SUCCESS","user":{"uid":"agent1"}}'), qos: 1, messageId: 5, retain: true, dup: false });
      const ack = (await forger.next('puback')) as mqttPacket.IPubackPacket;
      assert.equal(ack.reasonCode, 0x87, `${who}: not authorized`);
      assert.match(ack.properties?.reasonString ?? '', /chat thread: send to \/app\/org1\.visitor\.v1/);
      forger.sock.destroy();
    }
    const v3 = await RawMqtt.open(port, 4);
    await v3.connect('forger-v3', 'stranger', 'stranger-password');
    v3.send({ cmd: 'publish', topic: thread, payload: Buffer.from('forged'), qos: 1, messageId: 6, retain: true, dup: false });
    await v3.next('puback');
    v3.sock.destroy();

    // A will to the thread would be published as this client later: refused at CONNECT.
    const will = { topic: thread, payload: Buffer.from('forged will'), qos: 1 as const, retain: true };
    assert.equal(await refusedWith(tcpUrl(s), { ...as('stranger'), protocolVersion: 5, will }), 0x87);
    assert.equal(await refusedWith(tcpUrl(s), { ...as('stranger'), protocolVersion: 4, will }), 5);

    // The subscription is live (a real message arrives through the thread service), and nothing forged came.
    const sent = await api(s.url, 'POST', '/api/v1/message/send', {
      token: await login(s.url, 'visitor1', 'visitor1-password'),
      body: { uid: 'real-1', type: 'TEXT', content: 'hello', status: 'SENDING', createdAt: new Date().toISOString(), channel: 'WEB', extra: '{"orgUid":"org1"}', thread: { topic: thread }, user: { uid: 'visitor1' } },
    });
    assert.equal(sent.status, 200, sent.body.message);
    await until(() => seen.length > 0, 'the real message');
    await sleep(200);
    assert.equal(seen.length, 1, 'only the real message: ' + seen.map((m) => m.payload).join(' | '));
    assert.equal((JSON.parse(seen[0]!.payload) as { uid: string }).uid, 'real-1');

    // A later subscriber gets no retained copy.
    const late = await mqtt.connectAsync(tcpUrl(s), { ...as('agent1'), protocolVersion: 5 });
    const lateSeen = collect(late);
    await late.subscribeAsync(thread, { qos: 1 });
    await sleep(300);
    assert.deepEqual(lateSeen, []);
    await late.endAsync();
    await agent.endAsync();
  });

  it('topics and filters deeper than 200 levels are refused: SUBACK 0x8F, and a PUBLISH ends with DISCONNECT 0x90', async () => {
    const deep = Array.from({ length: 201 }, (_, i) => `l${i}`).join('/');
    const c = await RawMqtt.open(s.server.address('mqtt').port, 5);
    await c.connect('deep-levels', 'stranger', 'stranger-password');
    c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: deep.replace(/[^/]+$/, '#'), qos: 0 }, { topic: 'shallow/#', qos: 0 }] });
    assert.deepEqual(((await c.next('suback')) as mqttPacket.ISubackPacket).granted, [0x8f, 0]);
    c.send({ cmd: 'publish', topic: deep, payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    const bye = (await c.next('disconnect')) as mqttPacket.IDisconnectPacket;
    assert.equal(bye.reasonCode, 0x90);
    assert.match(bye.properties?.reasonString ?? '', /more than 200 levels/);
    await c.closed;
  });

  it('a will or a retained message aimed at a thread before it exists is never delivered once it does', async () => {
    const future = 'org1/visitor/later';
    const port = s.server.address('mqtt').port;
    // Before the thread exists: a retained publish and a connection whose retained will names it.
    const early = await RawMqtt.open(port, 5);
    await early.connect('early-retained', 'stranger', 'stranger-password');
    early.send({ cmd: 'publish', topic: future, payload: Buffer.from('{"status":"SUCCESS","content":"FORGED retained"}'), qos: 1, messageId: 7, retain: true, dup: false });
    assert.ok((((await early.next('puback')) as mqttPacket.IPubackPacket).reasonCode ?? 0) < 0x80, 'an ordinary topic then: accepted');
    early.sock.destroy();
    const willer = await mqtt.connectAsync(tcpUrl(s), {
      ...as('stranger'),
      clientId: 'will-at-later',
      protocolVersion: 5,
      will: { topic: future, payload: Buffer.from('{"status":"SUCCESS","content":"FORGED will"}'), qos: 1, retain: true },
    });
    const created = await api(s.url, 'POST', '/api/v1/thread', {
      token: admin,
      body: { thread: future, members: [{ user: 'visitor1', role: 'visitor' }, { user: 'agent1', role: 'agent' }] },
    });
    assert.equal(created.status, 200, created.body.message);
    const agent = await mqtt.connectAsync(tcpUrl(s), { ...as('agent1'), protocolVersion: 5 });
    const seen = collect(agent);
    await agent.subscribeAsync(future, { qos: 1 });
    // The will's owner drops without DISCONNECT: the will is due now, and the thread owns the topic.
    willer.stream.destroy();
    await sleep(500);
    assert.deepEqual(seen.map((m) => m.payload), [], 'neither the retained message nor the will reached a member');
    await agent.endAsync();
  });

  it('keeps a client id for the user whose session has it: another user gets 0x85 / 2 and the owner keeps its session and connection', async () => {
    const cid = 'device7@app1';
    const bob = await mqtt.connectAsync(tcpUrl(s), { ...as('bob'), clientId: cid, clean: false, protocolVersion: 4 });
    await bob.subscribeAsync('bob/inbox', { qos: 1 });
    await bob.endAsync();
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    for (const n of [1, 2, 3]) await pub.publishAsync('bob/inbox', `queued ${n}`, { qos: 1 });

    // bob is away, with 3 messages queued: alice may not take his id, with or without clean start.
    assert.equal(await refusedWith(tcpUrl(s), { ...as('alice'), clientId: cid, clean: true, protocolVersion: 4 }), 2);
    assert.equal(await refusedWith(tcpUrl(s), { ...as('alice'), clientId: cid, clean: false, protocolVersion: 4 }), 2);
    assert.equal(await refusedWith(tcpUrl(s), { ...as('alice'), clientId: cid, clean: true, protocolVersion: 5 }), 0x85);

    const back = mqtt.connect(tcpUrl(s), { ...as('bob'), clientId: cid, clean: false, protocolVersion: 4, manualConnect: true });
    const got = collect(back);
    let closes = 0;
    back.on('close', () => closes++);
    const sessionPresent = new Promise<boolean>((r) => back.once('connect', (ack) => r(ack.sessionPresent)));
    back.connect();
    assert.equal(await sessionPresent, true, 'bob\'s session was kept');
    await until(() => got.length === 3, 'the 3 queued messages');
    assert.deepEqual(got.map((m) => m.payload), ['queued 1', 'queued 2', 'queued 3']);

    // While bob is connected: alice is refused and bob stays connected.
    assert.equal(await refusedWith(tcpUrl(s), { ...as('alice'), clientId: cid, protocolVersion: 5 }), 0x85);
    assert.equal(await refusedWith(tcpUrl(s), { ...as('alice'), clientId: cid, protocolVersion: 4 }), 2);
    await pub.publishAsync('bob/inbox', 'still here', { qos: 1 });
    await until(() => got.length === 4, 'a message after the attempts');
    assert.equal(closes, 0, 'bob was not disconnected');
    assert.equal(back.connected, true);

    // bob himself may still take over his own id (as before).
    const again = await mqtt.connectAsync(tcpUrl(s), { ...as('bob'), clientId: cid, clean: false, protocolVersion: 4 });
    await until(() => closes > 0, 'the older connection taken over');
    await again.endAsync();
    back.end(true);
    await pub.endAsync();
  });

  it('closes a live connection when its app user token expires (v5: DISCONNECT with the reason)', async () => {
    const created = await api<{ appId: string; appClientId: string; appClientSecret: string }>(s.url, 'POST', '/api/apps', { token: admin, body: { name: 'expiry' } });
    assert.equal(created.status, 200);
    const app = created.body.data;
    const appRes = await fetch(s.url + '/openapi/rm/app/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ appClientId: app.appClientId, appClientSecret: app.appClientSecret }),
    });
    const appToken = ((await appRes.json()) as { body: { access_token: string } }).body.access_token;
    const cid = `u1@${app.appId}`;
    const userRes = await fetch(s.url + '/openapi/rm/user/token', {
      method: 'POST',
      headers: { 'content-type': 'application/json', Authorization: appToken },
      body: JSON.stringify({ username: 'u1', expires_in: 2, cid }),
    });
    const user = (await userRes.json()) as { code: number; body: { access_token: string; expires_in: number } };
    assert.equal(user.code, 200);
    assert.equal(user.body.expires_in, 2);
    const expiresAt = Date.now() + 2000;

    const c = await mqtt.connectAsync(tcpUrl(s), { clientId: cid, username: 'u1', password: user.body.access_token, protocolVersion: 5, reconnectPeriod: 0 });
    let disconnect: mqttPacket.IDisconnectPacket | undefined;
    c.on('disconnect', (p) => (disconnect = p));
    const closedAt = await Promise.race([new Promise<number>((r) => c.once('close', () => r(Date.now()))), sleep(6000).then(() => undefined)]);
    assert.ok(closedAt !== undefined, 'still connected 4 s after the token expired');
    const late = closedAt - expiresAt;
    assert.ok(late < 2000, `closed ${late} ms after the token expired`);
    assert.equal(disconnect?.reasonCode, 0x87);
    assert.match(disconnect?.properties?.reasonString ?? '', /expired/);
    c.end(true);
  });
});

describe('MQTT 5 fidelity: will delay, overlapping subscriptions, stored queues within the window', () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(() => s.stop());

  it('publishes a delayed will at once when the session ends with the connection (session expiry 0), and at session end when that comes first', async () => {
    const watcher = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    const wills: { topic: string; at: number }[] = [];
    watcher.on('message', (topic) => wills.push({ topic, at: Date.now() }));
    await watcher.subscribeAsync('wills/#', { qos: 1 });

    const will = (topic: string) => ({ topic, payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 30 } });
    const a = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'will-a', will: will('wills/a') });
    const droppedA = Date.now();
    (a.stream as Socket).destroy();
    await until(() => wills.length === 1, 'the will of a session that ended', 3000);
    assert.equal(wills[0]!.topic, 'wills/a');
    assert.ok(wills[0]!.at - droppedA < 1000, `sent ${wills[0]!.at - droppedA} ms after the drop`);

    const b = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'will-b', will: will('wills/b'), properties: { sessionExpiryInterval: 1 } });
    const droppedB = Date.now();
    (b.stream as Socket).destroy();
    await until(() => wills.length === 2, 'the will when the session expires', 4000);
    const tookB = wills[1]!.at - droppedB;
    assert.ok(tookB >= 900 && tookB < 2500, `sent ${tookB} ms after the drop (session expiry 1 s, will delay 30 s)`);
    await watcher.endAsync();
  });

  it('sends one copy for overlapping subscriptions, at the highest QoS, with every subscription identifier', async () => {
    const c = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'overlap' });
    const got = collect(c);
    await c.subscribeAsync('a/+', { qos: 0, properties: { subscriptionIdentifier: 1 } });
    await c.subscribeAsync('a/#', { qos: 1, properties: { subscriptionIdentifier: 2 } });
    await c.subscribeAsync('other/#', { qos: 1, properties: { subscriptionIdentifier: 3 } });
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    await pub.publishAsync('a/b', 'both', { qos: 1 });
    await pub.publishAsync('a/b/c', 'only #', { qos: 1 });
    await pub.publishAsync('other/x', 'marker', { qos: 1 });
    await until(() => got.some((m) => m.payload === 'marker'), 'the marker');
    await sleep(100);
    const ids = (m: (typeof got)[number]): number[] => [m.packet.properties?.subscriptionIdentifier ?? []].flat();
    assert.deepEqual(
      got.map((m) => [m.topic, m.packet.qos, ids(m)]),
      [
        ['a/b', 1, [1, 2]],
        ['a/b/c', 1, [2]],
        ['other/x', 1, [3]],
      ],
    );
    await c.endAsync();

    // The same for a persistent session while its client is away: one stored copy.
    const p = await mqtt.connectAsync(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'overlap-away', clean: false, properties: { sessionExpiryInterval: 60 } });
    await p.subscribeAsync('b/+', { qos: 1, properties: { subscriptionIdentifier: 4 } });
    await p.subscribeAsync('b/#', { qos: 2, properties: { subscriptionIdentifier: 5 } });
    await p.endAsync();
    await pub.publishAsync('b/c', 'while away', { qos: 2 });
    await pub.publishAsync('b/c/d', 'marker', { qos: 1 });
    const back = mqtt.connect(tcpUrl(s), { ...ADMIN, protocolVersion: 5, clientId: 'overlap-away', clean: false, properties: { sessionExpiryInterval: 0 }, manualConnect: true });
    const gotBack = collect(back);
    back.connect();
    await until(() => gotBack.some((m) => m.payload === 'marker'), 'the stored marker');
    await sleep(100);
    // (mqtt.js hands a QoS 2 message on at PUBREL, after the QoS 1 one: compare them by topic)
    assert.deepEqual(
      gotBack.map((m) => [m.topic, m.packet.qos, ids(m)]).sort(),
      [
        ['b/c', 2, [4, 5]],
        ['b/c/d', 1, [5]],
      ],
    );
    await back.endAsync();
    await pub.endAsync();
  });

  it('replays a stored queue of 250 messages a page at a time, never more than the receive maximum unacknowledged', async () => {
    const port = s.server.address('mqtt').port;
    const away = await RawMqtt.open(port, 5);
    await away.connect('pager', 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 600 } });
    away.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pager/#', qos: 1 }] });
    await away.next('suback');
    away.send({ cmd: 'disconnect' });
    await away.closed;
    const pub = await mqtt.connectAsync(tcpUrl(s), ADMIN);
    for (let i = 0; i < 250; i++) await pub.publishAsync('pager/x', String(i), { qos: 1 });

    const c = await RawMqtt.open(port, 5);
    const ack = await c.connect('pager', 'admin', ADMIN_PASSWORD, { clean: false, properties: { sessionExpiryInterval: 600, receiveMaximum: 10 } });
    assert.equal(ack.sessionPresent, true);
    const seen: string[] = [];
    let most = 0;
    const deadline = Date.now() + 10_000;
    while (seen.length < 250 && Date.now() < deadline) {
      await sleep(30); // time for the server to overfill the window, if it would
      const batch = c.packets.filter((p): p is mqttPacket.IPublishPacket => p.cmd === 'publish');
      c.packets.length = 0;
      most = Math.max(most, batch.length);
      for (const p of batch) {
        seen.push(p.payload.toString());
        c.send({ cmd: 'puback', messageId: p.messageId! });
      }
    }
    assert.deepEqual(seen, Array.from({ length: 250 }, (_, i) => String(i)), 'all of them, in order, once');
    assert.ok(most <= 10, `${most} messages were unacknowledged at once (receive maximum 10)`);
    c.sock.destroy();
    await pub.endAsync();
  });
});
