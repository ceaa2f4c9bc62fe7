/**
 * The words the command line uses: start-up failures from the system's error
 * codes (including those a loopback-only test cannot provoke: an unresolvable
 * host, an address of another machine, a privileged port), and how
 * check-config shows a value.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeStartupError } from '../../src/cli/startup-errors.js';
import { shown } from '../../src/cli/check-config.js';
import { PORT_OFF } from '../../src/config.js';

const config = { dataDir: '/var/lib/herald', databaseUrl: '' };

function systemError(message: string, fields: Record<string, unknown>): Error {
  return Object.assign(new Error(message), fields);
}

describe('start-up failures in words', () => {
  it('names the listener and what to do for each listen error', () => {
    const cases: [Error, RegExp][] = [
      [systemError('listen EADDRINUSE', { code: 'EADDRINUSE', syscall: 'listen', address: '127.0.0.1', port: 8080 }), /^cannot listen on 127\.0\.0\.1:8080: the address is in use/],
      [systemError('listen EADDRINUSE', { code: 'EADDRINUSE', syscall: 'listen', address: '::', port: 1883 }), /^cannot listen on \[::\]:1883: the address is in use/],
      [
        systemError('listen EADDRNOTAVAIL', { code: 'EADDRNOTAVAIL', syscall: 'listen', address: '192.0.2.1', port: 0 }),
        /^cannot listen on 192\.0\.2\.1:0: 192\.0\.2\.1 is not an address of this machine; set host to 0\.0\.0\.0/,
      ],
      [systemError('listen EACCES', { code: 'EACCES', syscall: 'listen', address: '0.0.0.0', port: 443 }), /^cannot listen on 0\.0\.0\.0:443: permission denied \(ports below 1024 need root or the CAP_NET_BIND_SERVICE capability\)$/],
      [
        systemError('getaddrinfo ENOTFOUND 999.1.1.1', { code: 'ENOTFOUND', syscall: 'getaddrinfo', hostname: '999.1.1.1' }),
        /^cannot listen: host "999\.1\.1\.1" is neither an IP address nor a name this machine can resolve \(ENOTFOUND\)$/,
      ],
    ];
    for (const [err, re] of cases) assert.match(describeStartupError(err, config), re);
  });

  it('names the file and the reason for file errors', () => {
    assert.equal(
      describeStartupError(systemError("EACCES: permission denied, open '/etc/herald/acl.json'", { code: 'EACCES', syscall: 'open', path: '/etc/herald/acl.json' }), config),
      'cannot open /etc/herald/acl.json: permission denied',
    );
    assert.equal(
      describeStartupError(systemError("EEXIST: file already exists, mkdir '/srv/x'", { code: 'EEXIST', syscall: 'mkdir', path: '/srv/x' }), config),
      'cannot create the directory /srv/x: a file is in the way',
    );
    assert.equal(describeStartupError(systemError('x', { code: 'EWEIRD', syscall: 'open', path: '/a' }), config), 'cannot open /a: EWEIRD');
  });

  it('says which database, and keeps anything else to one line', () => {
    const sqlite = Object.assign(new Error('unable to open database file'), { name: 'SqliteError', code: 'SQLITE_CANTOPEN' });
    assert.equal(describeStartupError(sqlite, config), 'cannot use the SQLite database in dataDir /var/lib/herald: unable to open database file');
    assert.equal(describeStartupError(new Error('first\n  second'), config), 'start-up failed: first; second');
    assert.equal(describeStartupError('a string', config), 'start-up failed: a string');
  });
});

describe('check-config values as shown', () => {
  it('redacts secrets and passwords in URLs, sums up key material, and shows everything else as it is', () => {
    assert.equal(shown('adminPassword', 'hunter22'), '[redacted]');
    assert.equal(shown('adminPassword', ''), '', 'an unset secret shows as unset');
    assert.equal(shown('jwtSecret', 'x'), '[redacted]');
    assert.equal(shown('databaseUrl', 'postgresql://u:p%40ss@db.local:5432/h?sslpassword=z&application_name=herald'), 'postgresql://u:***@db.local:5432/h?sslpassword=***&application_name=herald');
    assert.equal(shown('redisUrl', 'rediss://default:pw@cache:6380'), 'rediss://default:***@cache:6380');
    assert.equal(shown('redisUrl', 'redis://cache:6379'), 'redis://cache:6379');
    assert.equal(shown('jwtPublicKey', '-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n'), '(PEM text, 57 bytes)');
    assert.equal(shown('jwtPublicKey', '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'), '[redacted] (private key)');
    assert.equal(shown('jwtPublicKey', '/etc/herald/jwt.pub'), '/etc/herald/jwt.pub');
    assert.equal(shown('httpPort', PORT_OFF), 'off');
    assert.equal(shown('httpPort', 0), 0);
    assert.equal(shown('trustProxy', true), true);
    assert.equal(shown('host', '127.0.0.1'), '127.0.0.1');
  });
});
