/**
 * The PROXY protocol header parser (v1 text, v2 binary) and the address
 * ranges of trustedProxies: every field of both versions, what must be
 * refused, headers split anywhere, and bounded work on any input.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { loadConfig } from '../../src/config.js';
import { AddressRanges, formatIp, ipBytes } from '../../src/transports/ip.js';
import { ProxyProtocol } from '../../src/transports/proxy-accept.js';
import { parseProxyHeader, PROXY_HEADER_MAX_BYTES, type ProxyHeader } from '../../src/transports/proxy-protocol.js';

const SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** A v2 header: version/command byte, family/transport byte, then the address block (and TLVs). */
function v2(command: number, familyTransport: number, block: Buffer): Buffer {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(block.length);
  return Buffer.concat([SIGNATURE, Buffer.from([0x20 | command, familyTransport]), len, block]);
}

function v2Inet(src: number[], dst: number[], sport: number, dport: number, tlvs = Buffer.alloc(0)): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return v2(1, 0x11, Buffer.concat([Buffer.from(src), Buffer.from(dst), ports, tlvs]));
}

function v2Inet6(src: string, dst: string, sport: number, dport: number): Buffer {
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sport, 0);
  ports.writeUInt16BE(dport, 2);
  return v2(1, 0x21, Buffer.concat([Buffer.from(ipBytes(src)!), Buffer.from(ipBytes(dst)!), ports]));
}

function header(h: ProxyHeader): Extract<ProxyHeader, { kind: 'header' }> {
  assert.equal(h.kind, 'header', JSON.stringify(h));
  return h as Extract<ProxyHeader, { kind: 'header' }>;
}

function invalid(h: ProxyHeader): string {
  assert.equal(h.kind, 'invalid', JSON.stringify(h));
  return (h as { reason: string }).reason;
}

describe('PROXY protocol v1', () => {
  it('reads TCP4 and TCP6 lines: the source address and port, and the header length', () => {
    const line = 'PROXY TCP4 203.0.113.7 192.0.2.1 51234 61613\r\n';
    const h = header(parseProxyHeader(Buffer.from(line + 'CONNECT\n')));
    assert.deepEqual(h, { kind: 'header', version: 1, length: line.length, source: { address: '203.0.113.7', port: 51234 } });
    const six = header(parseProxyHeader(Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:1 ::1 65535 1883\r\n')));
    assert.deepEqual(six.source, { address: '2001:db8::1', port: 65535 });
    assert.equal(header(parseProxyHeader(Buffer.from('PROXY TCP6 ::ffff:10.1.2.3 ::1 1 1\r\n'))).source?.address, '::ffff:10.1.2.3');
  });

  it('takes UNKNOWN (whatever follows) as the proxy\'s own connection', () => {
    assert.equal(header(parseProxyHeader(Buffer.from('PROXY UNKNOWN\r\n'))).source, undefined);
    assert.equal(header(parseProxyHeader(Buffer.from('PROXY UNKNOWN ffff:f...f:ffff 1.2.3.4 0 0\r\n'))).source, undefined);
  });

  it('waits for more while the line is short of its end, and refuses one over 107 bytes', () => {
    assert.equal(parseProxyHeader(Buffer.from('PRO')).kind, 'incomplete');
    assert.equal(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 192.0.2.1 5')).kind, 'incomplete');
    assert.match(invalid(parseProxyHeader(Buffer.from('PROXY UNKNOWN ' + 'x'.repeat(100)))), /107 bytes/);
    // A line of exactly 107 bytes with its CRLF is still a header.
    const exact = 'PROXY UNKNOWN ' + 'x'.repeat(107 - 16) + '\r\n';
    assert.equal(exact.length, 107);
    assert.equal(header(parseProxyHeader(Buffer.from(exact))).length, 107);
  });

  it('refuses what is not a v1 line', () => {
    const bad = [
      'GET / HTTP/1.1\r\n',
      'PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n',
      'PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n',
      'PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n',
      'PROXY TCP4 ::1 5.6.7.8 1 2\r\n',
      'PROXY TCP6 1.2.3.4 ::1 1 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n',
      'PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n',
      'PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n',
      'PROXY \r\n',
      '\x16\x03\x01\x02\x00',
    ];
    for (const text of bad) invalid(parseProxyHeader(Buffer.from(text, 'latin1')));
  });
});

describe('PROXY protocol v2', () => {
  it('reads TCP over IPv4 and IPv6, skipping TLVs', () => {
    const four = v2Inet([198, 51, 100, 9], [10, 0, 0, 1], 40000, 1883);
    const h = header(parseProxyHeader(Buffer.concat([four, Buffer.from([0x10, 0x0c])])));
    assert.deepEqual(h, { kind: 'header', version: 2, length: four.length, source: { address: '198.51.100.9', port: 40000 } });
    const tlvs = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63, 0x20, 0x00, 0x01, 0x00]);
    const withTlvs = v2Inet([198, 51, 100, 9], [10, 0, 0, 1], 1, 2, tlvs);
    assert.equal(header(parseProxyHeader(withTlvs)).length, 16 + 12 + tlvs.length);
    const six = header(parseProxyHeader(v2Inet6('2001:db8::42', '2001:db8::1', 5000, 8883)));
    assert.deepEqual(six.source, { address: '2001:db8::42', port: 5000 });
  });

  it('takes LOCAL, an unspecified family or transport, and UNIX sockets as the proxy\'s own connection', () => {
    assert.equal(header(parseProxyHeader(v2(0, 0x00, Buffer.alloc(0)))).source, undefined);
    // LOCAL ignores whatever addresses it carries.
    assert.equal(header(parseProxyHeader(v2(0, 0x11, Buffer.alloc(12, 7)))).source, undefined);
    assert.equal(header(parseProxyHeader(v2(1, 0x00, Buffer.alloc(0)))).source, undefined);
    assert.equal(header(parseProxyHeader(v2(1, 0x10, Buffer.alloc(12)))).source, undefined);
    assert.equal(header(parseProxyHeader(v2(1, 0x31, Buffer.alloc(216)))).source, undefined);
  });

  it('refuses another version or command, UDP, undefined families, short address blocks and over-long headers', () => {
    const ok = v2Inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
    const version1 = Buffer.from(ok);
    version1[12] = 0x11;
    assert.match(invalid(parseProxyHeader(version1)), /version 1/);
    const command2 = Buffer.from(ok);
    command2[12] = 0x22;
    assert.match(invalid(parseProxyHeader(command2)), /command 2/);
    assert.match(invalid(parseProxyHeader(v2(1, 0x12, Buffer.alloc(12)))), /datagram/);
    invalid(parseProxyHeader(v2(1, 0x41, Buffer.alloc(12))));
    invalid(parseProxyHeader(v2(1, 0x13, Buffer.alloc(12))));
    assert.match(invalid(parseProxyHeader(v2(1, 0x11, Buffer.alloc(11)))), /need 12 bytes/);
    assert.match(invalid(parseProxyHeader(v2(1, 0x21, Buffer.alloc(35)))), /need 36 bytes/);
    const long = v2(1, 0x11, Buffer.alloc(PROXY_HEADER_MAX_BYTES - 16 + 1));
    // Refused from its length field alone, before the rest arrives.
    assert.match(invalid(parseProxyHeader(long.subarray(0, 16))), /longer than/);
    assert.equal(header(parseProxyHeader(v2(1, 0x11, Buffer.alloc(PROXY_HEADER_MAX_BYTES - 16)))).length, PROXY_HEADER_MAX_BYTES);
    const badSignature = Buffer.from(ok);
    badSignature[5] = 0x0e;
    invalid(parseProxyHeader(badSignature));
  });

  it('says "incomplete" until the header is whole, at every split', () => {
    for (const whole of [v2Inet([1, 2, 3, 4], [5, 6, 7, 8], 1, 2), v2Inet6('::1', '::1', 3, 4), Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')]) {
      for (let n = 0; n < whole.length; n++) assert.equal(parseProxyHeader(whole.subarray(0, n)).kind, 'incomplete', `at ${n} bytes`);
      header(parseProxyHeader(whole));
    }
  });
});

describe('PROXY protocol parser on any input', () => {
  it('never throws, never reports a header past the bytes it was given or over the limit, and is the same on a longer input', () => {
    const starts = fc.oneof(
      fc.uint8Array({ maxLength: 700 }),
      fc.uint8Array({ maxLength: 600 }).map((b) => Buffer.concat([SIGNATURE, Buffer.from([0x21, 0x11]), Buffer.from(b)])),
      fc.string({ maxLength: 200 }).map((s) => Buffer.from('PROXY ' + s, 'latin1')),
    );
    fc.assert(
      fc.property(starts, fc.uint8Array({ maxLength: 64 }), (bytes, more) => {
        const h = parseProxyHeader(bytes);
        if (h.kind === 'header') {
          assert.ok(h.length <= bytes.length && h.length <= PROXY_HEADER_MAX_BYTES);
          // What follows a whole header does not change it.
          assert.deepEqual(parseProxyHeader(Buffer.concat([bytes, more])), h);
        }
        if (h.kind === 'incomplete') assert.ok(bytes.length < PROXY_HEADER_MAX_BYTES);
        if (h.kind === 'invalid') assert.equal(parseProxyHeader(Buffer.concat([bytes, more])).kind, 'invalid');
      }),
      { numRuns: 2000 },
    );
  });
});

describe('addresses and trustedProxies ranges', () => {
  it('writes addresses the usual way (RFC 5952), IPv4-mapped as ::ffff:a.b.c.d', () => {
    const cases: [string, string][] = [
      ['2001:0DB8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['::', '::'],
      ['::1', '::1'],
      ['1::', '1::'],
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['fe80::1%eth0', 'fe80::1'],
      ['::ffff:192.0.2.1', '::ffff:192.0.2.1'],
      ['::FFFF:c000:0201', '::ffff:192.0.2.1'],
      ['192.0.2.1', '::ffff:192.0.2.1'],
    ];
    for (const [input, shown] of cases) assert.equal(formatIp(ipBytes(input)!), shown, input);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', ':::', 'gg::1', 'localhost', '1.2.3.4/8']) assert.equal(ipBytes(bad), undefined, bad);
  });

  it('matches addresses and CIDR ranges, IPv4 against IPv4-mapped peers and back', () => {
    const r = AddressRanges.parse(' 10.0.0.5, 172.16.0.0/12 ,2001:db8::/32, ::ffff:192.168.0.0/112, ');
    assert.equal(r.size, 4);
    for (const yes of ['10.0.0.5', '::ffff:10.0.0.5', '172.16.0.1', '172.31.255.255', '::ffff:172.20.1.1', '2001:db8::1', '2001:db8:ffff::', '192.168.7.7']) assert.ok(r.includes(yes), yes);
    for (const no of ['10.0.0.6', '172.32.0.0', '172.15.255.255', '2001:db9::1', '::1', '192.169.0.1', 'unknown', undefined]) assert.ok(!r.includes(no), String(no));
    assert.ok(AddressRanges.parse('0.0.0.0/0').includes('::ffff:8.8.8.8'));
    assert.ok(!AddressRanges.parse('0.0.0.0/0').includes('::1'));
    assert.ok(AddressRanges.parse('::/0').includes('8.8.8.8'));
    assert.ok(AddressRanges.parse('10.0.0.1/8').includes('10.200.0.1'), 'host bits in a range are ignored');
    assert.ok(AddressRanges.parse('127.0.0.1/31').includes('127.0.0.0'));
    assert.ok(!AddressRanges.parse('127.0.0.1/31').includes('127.0.0.2'));
    assert.equal(AddressRanges.parse('').size, 0);
  });

  it('refuses entries that are not addresses or ranges, naming them', () => {
    for (const bad of ['10.0.0.0/33', '::/129', '10.0.0.0/', '10.0.0.0/x', 'proxy.example', '10.0.0.0/8/8', '300.1.1.1']) {
      assert.throws(() => AddressRanges.parse(`10.0.0.1,${bad}`), (err: Error) => err.message.includes(`"${bad}"`), bad);
    }
  });
});

describe('ProxyProtocol.fromConfig', () => {
  const config = (overrides: Record<string, unknown>) => loadConfig({ env: {}, cwd: '/nonexistent', overrides });

  it('is off by default, and off with trusted proxies listed but the protocol off', () => {
    assert.equal(ProxyProtocol.fromConfig(config({})), undefined);
    assert.equal(ProxyProtocol.fromConfig(config({ trustedProxies: '10.0.0.1' })), undefined);
  });

  it('refuses to start with the protocol on and nobody trusted, or with an entry that is no address, in one line', () => {
    assert.throws(() => ProxyProtocol.fromConfig(config({ proxyProtocol: true })), { name: 'ConfigError', message: /^proxyProtocol is on but trustedProxies is empty: [^\n]+$/ });
    assert.throws(() => ProxyProtocol.fromConfig(config({ proxyProtocol: true, trustedProxies: ' , ' })), /trustedProxies is empty/);
    assert.throws(() => ProxyProtocol.fromConfig(config({ trustedProxies: '10.0.0.1,haproxy' })), { name: 'ConfigError', message: /^trustedProxies: "haproxy" is not an IP address or CIDR range/ });
  });

  it('waits for the header at most 5 s, less when connectTimeoutSeconds is shorter', () => {
    assert.equal(ProxyProtocol.fromConfig(config({ proxyProtocol: true, trustedProxies: '127.0.0.1' }))!.timeoutMs, 5000);
    const quick = ProxyProtocol.fromConfig(config({ proxyProtocol: true, trustedProxies: '127.0.0.0/8', connectTimeoutSeconds: 2 }))!;
    assert.equal(quick.timeoutMs, 2000);
    assert.ok(quick.trusts('127.0.0.9') && quick.trusts('::ffff:127.0.0.1') && !quick.trusts('::1'));
  });
});
