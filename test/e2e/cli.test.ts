/**
 * The operator's command line (issue 14, part 5): check-config, user passwd
 * and delete, unknown options, and start-up failures in one line of words.
 * Everything runs the real `herald` command (from source) as a child process.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { describe, it, after } from 'node:test';
import { CONFIG_SCHEMA, FILE_ONLY_KEYS } from '../../src/config.js';
import { api, tempDir } from '../helpers/server.js';
import { HERALD_FROM_SOURCE, runCommand, runCommandWithInput, runHerald, LOOPBACK_PORT_FLAGS } from '../helpers/process.js';
import { makePki, opensslMissing } from '../helpers/tls-certs.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function dataDir(): string {
  const d = tempDir('herald-cli-');
  dirs.push(d);
  return d;
}
const portFlags = LOOPBACK_PORT_FLAGS;

/** A failure told in one line of words: `herald: …`, nothing else, no stack frame. */
function oneLine(stderr: string, re: RegExp): void {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line, got:\n${stderr}`);
  assert.match(lines[0]!, /^herald: /);
  assert.match(lines[0]!, re);
  assert.doesNotMatch(stderr, /^\s+at /m, 'no stack trace');
}

interface CheckJson {
  valid: boolean;
  file: string | null;
  problems: string[];
  keys: Record<string, { value: unknown; source: string }>;
}

describe('herald check-config', () => {
  it('prints every key with its value and where it came from, and exits 0', async () => {
    const dir = dataDir();
    const file = join(dir, 'herald.config.json');
    writeFileSync(file, JSON.stringify({ httpPort: 9100, logLevel: 'warn' }));
    const env = { HERALD_CONFIG: file, HERALD_DATA_DIR: join(dir, 'data'), HERALD_STOMP_PORT: '9101' };
    const r = await runCommand(['check-config', '--json', '--mqtt-port', '9102', '--https-port', 'off'], env);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout) as CheckJson;
    assert.equal(out.valid, true);
    assert.equal(out.file, file);
    assert.deepEqual(Object.keys(out.keys), [...Object.keys(CONFIG_SCHEMA), ...Object.keys(FILE_ONLY_KEYS)], 'every key of the schema, in its order, then the file-only keys');
    assert.deepEqual(out.keys['webhooks'], { value: [], source: 'default' });
    assert.deepEqual(out.keys['httpPort'], { value: 9100, source: `file ${file}` });
    assert.deepEqual(out.keys['logLevel'], { value: 'warn', source: `file ${file}` });
    assert.deepEqual(out.keys['stompPort'], { value: 9101, source: 'env HERALD_STOMP_PORT' });
    assert.deepEqual(out.keys['mqttPort'], { value: 9102, source: 'flag --mqtt-port' });
    assert.deepEqual(out.keys['httpsPort'], { value: 'off', source: 'flag --https-port' });
    assert.deepEqual(out.keys['host'], { value: '0.0.0.0', source: 'default' });
    assert.ok(!existsSync(join(dir, 'data')), 'check-config creates nothing');

    const text = await runCommand(['check-config', '--mqtt-port', '9102'], env);
    assert.equal(text.code, 0, text.stderr);
    for (const key of Object.keys(CONFIG_SCHEMA)) assert.match(text.stdout, new RegExp(`^${key} +`, 'm'), key);
    assert.match(text.stdout, /^mqttPort +9102 +flag --mqtt-port$/m);
    assert.match(text.stdout, /^httpPort +9100 +file .*herald\.config\.json$/m);
    assert.match(text.stdout, /configuration is valid/);
  });

  it('redacts secrets: passwords, the JWT secret, passwords inside URLs, key material', async () => {
    const pem = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const env = {
      HERALD_ADMIN_PASSWORD: 'admin-very-secret-1',
      HERALD_JWT_SECRET: 'jwt-very-secret-2',
      HERALD_DATABASE_URL: 'postgres://herald:db-very-secret-3@127.0.0.1:5432/herald?password=db-very-secret-4&sslmode=disable',
      HERALD_REDIS_URL: 'redis://:redis-very-secret-5@127.0.0.1:6379/0',
      HERALD_JWT_PUBLIC_KEY: pem,
    };
    for (const json of [true, false]) {
      const r = await runCommand(['check-config', ...(json ? ['--json'] : [])], env);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout + r.stderr, /very-secret/, 'no secret printed');
      assert.ok(!r.stdout.includes(pem.split('\n')[1]!), 'no key material printed');
      if (!json) continue;
      const keys = (JSON.parse(r.stdout) as CheckJson).keys;
      assert.equal(keys['adminPassword']!.value, '[redacted]');
      assert.equal(keys['jwtSecret']!.value, '[redacted]');
      assert.equal(keys['databaseUrl']!.value, 'postgres://herald:***@127.0.0.1:5432/herald?password=***&sslmode=disable');
      assert.equal(keys['redisUrl']!.value, 'redis://:***@127.0.0.1:6379/0');
      assert.match(String(keys['jwtPublicKey']!.value), /^\(PEM text, \d+ bytes\)$/);
      assert.equal(keys['adminPassword']!.source, 'env HERALD_ADMIN_PASSWORD');
    }
    // Not set is shown as not set.
    const plain = JSON.parse((await runCommand(['check-config', '--json', '--data-dir', dataDir()])).stdout) as CheckJson;
    assert.equal(plain.keys['adminPassword']!.value, '');
  });

  it('exits 1 with the error in words on an invalid value or file', async () => {
    const bad = await runCommand(['check-config'], { HERALD_HTTP_PORT: 'abc' });
    assert.equal(bad.code, 1);
    oneLine(bad.stderr, /invalid configuration: HERALD_HTTP_PORT = "abc"; httpPort must be a port from 0 to 65535/);
    assert.equal(bad.stdout, '');

    const range = await runCommand(['check-config', '--token-idle-seconds', '0']);
    assert.equal(range.code, 1);
    oneLine(range.stderr, /--token-idle-seconds = "0"; tokenIdleSeconds must be an integer from 1 to 31536000/);

    const dir = dataDir();
    const file = join(dir, 'c.json');
    writeFileSync(file, JSON.stringify({ httpPrt: 1 }));
    const unknownKey = await runCommand(['check-config', '--config', file]);
    assert.equal(unknownKey.code, 1);
    oneLine(unknownKey.stderr, /unknown key "httpPrt"/);
    writeFileSync(file, '{ not json');
    const notJson = await runCommand(['check-config', '--config', file]);
    assert.equal(notJson.code, 1);
    oneLine(notJson.stderr, /is not valid JSON/);
    const missing = await runCommand(['check-config', '--config', join(dir, 'nope.json')]);
    assert.equal(missing.code, 1);
    oneLine(missing.stderr, /config file .*nope\.json does not exist/);
  });

  it('finds what start-up would meet: shared ports, unreadable files, a data directory that is a file, a cluster without PostgreSQL', async () => {
    const dir = dataDir();
    const aFile = join(dir, 'a-file');
    writeFileSync(aFile, 'x');
    const r = await runCommand(
      [
        'check-config',
        '--host', '127.0.0.1',
        '--http-port', '9200',
        '--stomp-port', '9200',
        '--data-dir', aFile,
        '--acl-file', join(dir, 'no-acl.json'),
        '--tls-cert-file', join(dir, 'no-cert.pem'),
        '--tls-key-file', join(dir, 'no-key.pem'),
        '--jwt-public-key', join(dir, 'no-key.pub'),
      ],
      {},
    );
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^httpPort +9200 +flag --http-port$/m, 'the configuration is still printed');
    assert.match(r.stderr, /^herald: httpPort and stompPort are both 9200: each listener needs its own port$/m);
    assert.match(r.stderr, /^herald: dataDir .*a-file exists and is not a directory$/m);
    assert.match(r.stderr, /^herald: aclFile .*no-acl\.json cannot be read as JSON/m);
    assert.match(r.stderr, /^herald: tlsCertFile: cannot read .*no-cert\.pem \(ENOENT\)$/m);
    assert.match(r.stderr, /^herald: jwtPublicKey is neither PEM text nor a readable file/m);
    assert.doesNotMatch(r.stderr, /^\s+at /m);

    const cluster = await runCommand(['check-config', '--redis-url', 'redis://127.0.0.1:6379', '--cluster-name', 'bad name']);
    assert.equal(cluster.code, 1);
    assert.match(cluster.stderr, /redisUrl \(cluster mode\) needs databaseUrl too/);
    assert.match(cluster.stderr, /clusterName must be 1–64 letters, digits, - or _/);

    const wrongUrl = await runCommand(['check-config', '--database-url', 'mysql://u:hidden-pw@127.0.0.1/db']);
    assert.equal(wrongUrl.code, 1);
    assert.match(wrongUrl.stderr, /databaseUrl must be a postgres:\/\/ or postgresql:\/\/ URL/);
    assert.doesNotMatch(wrongUrl.stderr + wrongUrl.stdout, /hidden-pw/);
  });

  it('reads the TLS files as start-up does: a matching pair passes, a key of another certificate does not', { skip: opensslMissing() }, async () => {
    const pki = makePki();
    try {
      const tls = ['--tls-cert-file', pki.serverCert, '--tls-key-file', pki.serverKey, '--tls-ca-file', pki.ca];
      const good = await runCommand(['check-config', '--json', '--data-dir', dataDir(), ...tls]);
      assert.equal(good.code, 0, good.stderr);
      const keys = (JSON.parse(good.stdout) as CheckJson).keys;
      assert.equal(keys['tlsKeyFile']!.value, pki.serverKey, 'a key file is named, never read out');
      assert.ok(!good.stdout.includes('PRIVATE KEY'));
      const mismatched = await runCommand(['check-config', '--data-dir', dataDir(), '--tls-cert-file', pki.serverCert, '--tls-key-file', pki.clientKey]);
      assert.equal(mismatched.code, 1);
      assert.match(mismatched.stderr, /^herald: TLS files .* do not make a usable certificate/m);
      const keyOnly = await runCommand(['check-config', '--data-dir', dataDir(), '--tls-key-file', pki.serverKey]);
      assert.equal(keyOnly.code, 1);
      assert.match(keyOnly.stderr, /tlsKeyFile and tlsCaFile need tlsCertFile/);
    } finally {
      pki.destroy();
    }
  });

  it('refuses arguments it does not take (exit 2)', async () => {
    const value = await runCommand(['check-config', '--json=yes']);
    assert.equal(value.code, 2);
    oneLine(value.stderr, /option --json takes no value/);
    const extra = await runCommand(['check-config', 'now']);
    assert.equal(extra.code, 2);
    oneLine(extra.stderr, /unexpected argument "now"/);
  });
});

describe('unknown options', () => {
  it('serve --unknown says "unknown option --unknown" and exits 2 without starting', async () => {
    for (const args of [['serve', '--unknown'], ['serve', '--unknown', 'value'], ['serve', '--unknown=1'], ['--unknown', 'serve']]) {
      const r = await runCommand([...args, ...portFlags, '--data-dir', dataDir()]);
      assert.equal(r.code, 2, args.join(' '));
      oneLine(r.stderr, /^herald: unknown option --unknown; run "herald --help" for the list$/);
      assert.doesNotMatch(r.stdout, /listening|admin password/);
    }
    const short = await runCommand(['serve', '-p', '8080']);
    assert.equal(short.code, 2);
    oneLine(short.stderr, /unknown option -p/);
    const stray = await runCommand(['serve', 'now']);
    assert.equal(stray.code, 2);
    oneLine(stray.stderr, /unexpected argument "now"/);
  });

  it('refuses an option of another command', async () => {
    const r = await runCommand(['serve', '--password', 'x-password-1', ...portFlags, '--data-dir', dataDir()]);
    assert.equal(r.code, 2);
    oneLine(r.stderr, /unknown option --password for "herald serve"/);
    const role = await runCommand(['user', 'passwd', 'bob', '--role', 'admin', '--data-dir', dataDir()]);
    assert.equal(role.code, 2);
    oneLine(role.stderr, /unknown option --role for "herald user passwd"/);
  });

  it('still takes a value that starts with a dash after an option that needs one', async () => {
    const dir = dataDir();
    const r = await runCommand(['user', 'add', 'dash', '--password', '-starts-with-dash', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
  });
});

describe('herald user passwd and user delete', () => {
  it('change passwords (flag or standard input), delete users, refuse the last active admin, and say why on bad input', async () => {
    const dir = dataDir();
    const env = { HERALD_DATA_DIR: dir };
    const ok = async (args: string[]): Promise<string> => {
      const r = await runCommand(args, env);
      assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
      return r.stdout;
    };
    await ok(['user', 'add', 'root', '--role', 'admin', '--password', 'root-pass-1']);
    await ok(['user', 'add', 'bob', '--password', 'bob-pass-1']);
    await ok(['user', 'add', 'carol', '--password', 'carol-pass-1']);
    await ok(['user', 'add', 'dave', '--password', 'dave-pass-1']);
    const bobToken = (await ok(['token', 'issue', 'bob'])).trim();
    const daveToken = (await ok(['token', 'issue', 'dave'])).trim();

    // The last active admin stays.
    const last = await runCommand(['user', 'delete', 'root'], env);
    assert.equal(last.code, 1);
    oneLine(last.stderr, /"root" is the last active admin: deleting it would leave nobody able to manage users; make another user admin first/);

    // New passwords: by flag (the user's tokens are revoked), from a pipe.
    assert.match(await ok(['user', 'passwd', 'bob', '--password', 'bob-pass-2']), /^changed the password of bob \(id \d+\); 1 login token revoked$/);
    const piped = await runCommandWithInput(['user', 'passwd', 'carol'], 'carol-pass-2\nignored second line\n', env);
    assert.equal(piped.code, 0, piped.stderr);
    assert.match(piped.stdout, /changed the password of carol/);

    // Bad input, each in words.
    const empty = await runCommandWithInput(['user', 'passwd', 'carol'], '', env);
    assert.equal(empty.code, 2);
    oneLine(empty.stderr, /no new password: give --password P, or write it on standard input/);
    const short = await runCommand(['user', 'passwd', 'carol', '--password', 'short'], env);
    assert.equal(short.code, 2);
    oneLine(short.stderr, /--password must have at least 8 characters/);
    const shortPiped = await runCommandWithInput(['user', 'passwd', 'carol'], 'short\n', env);
    assert.equal(shortPiped.code, 2);
    oneLine(shortPiped.stderr, /the password read from standard input must have at least 8 characters/);
    for (const sub of ['passwd', 'delete']) {
      const unknown = await runCommand(['user', sub, 'nobody', ...(sub === 'passwd' ? ['--password', 'nobody-pass-1'] : [])], env);
      assert.equal(unknown.code, 1, sub);
      oneLine(unknown.stderr, /no user named "nobody"/);
      const noName = await runCommand(['user', sub], env);
      assert.equal(noName.code, 2);
      oneLine(noName.stderr, new RegExp(`user ${sub} needs a NAME`));
    }

    // With a second admin, the first may go; then the second is the last.
    await ok(['user', 'add', 'root2', '--role', 'admin', '--password', 'root2-pass-1']);
    assert.match(await ok(['user', 'delete', 'root']), /^deleted user root \(id \d+, role admin\)$/);
    const lastAgain = await runCommand(['user', 'delete', 'root2'], env);
    assert.equal(lastAgain.code, 1);
    oneLine(lastAgain.stderr, /"root2" is the last active admin/);
    assert.match(await ok(['user', 'delete', 'dave']), /^deleted user dave/);
    const list = await ok(['user', 'list']);
    assert.deepEqual(list.split('\n').map((l) => l.split('\t')[1]), ['bob', 'carol', 'root2']);

    // What a server started on this store sees.
    const p = runHerald(['serve', ...portFlags], env);
    try {
      const [, , port] = (await p.waitFor(/^listening http (\S+):(\d+)$/))!;
      const url = `http://127.0.0.1:${port}`;
      const loginAs = async (username: string, password: string): Promise<number> =>
        (await api(url, 'POST', '/v1/login', { body: { username, password } })).status;
      assert.equal(await loginAs('bob', 'bob-pass-2'), 200);
      assert.equal(await loginAs('bob', 'bob-pass-1'), 401, 'the old password is gone');
      assert.equal(await loginAs('carol', 'carol-pass-2'), 200, 'the password read from the pipe (its first line)');
      assert.equal(await loginAs('root', 'root-pass-1'), 401, 'a deleted user cannot log in');
      assert.equal(await loginAs('root2', 'root2-pass-1'), 200);
      assert.equal((await api(url, 'GET', '/v1/me', { token: bobToken })).status, 401, 'a new password revoked the old tokens');
      assert.equal((await api(url, 'GET', '/v1/me', { token: daveToken })).status, 401, "a deleted user's tokens are gone");
      assert.ok(!p.stdout.some((l) => l.startsWith('admin password')), 'no new admin: users exist');
    } finally {
      p.child.kill('SIGTERM');
      await p.exited;
    }
  });

  it('asks twice at a terminal without echoing the password', { skip: pythonPtyMissing() }, () => {
    const dir = dataDir();
    const env = { ...process.env, HERALD_DATA_DIR: dir, HERALD_LOG_PRETTY: 'false' };
    execFileSync(HERALD_FROM_SOURCE[0]!, [...HERALD_FROM_SOURCE.slice(1), 'user', 'add', 'erin', '--password', 'erin-pass-1'], { env });
    // A pseudo-terminal from Python's pty module: reads the prompts, types the answers.
    const script = `
import os, pty, sys
argv = sys.argv[1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
seen = b''
def until(word):
    global seen
    while word not in seen:
        chunk = os.read(fd, 1024)
        if not chunk: raise SystemExit('eof before ' + word.decode())
        seen += chunk
for answer, prompt in ((b'Erin-tty-pass-9', b'new password for erin: '), (b'Erin-tty-pass-9', b'again: ')):
    until(prompt)
    os.write(fd, answer + b'\\r')
try:
    while True:
        chunk = os.read(fd, 1024)
        if not chunk: break
        seen += chunk
except OSError:
    pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(seen.decode(errors='replace'))
sys.exit(os.waitstatus_to_exitcode(status))
`;
    const r = spawnSync('python3', ['-c', script, ...HERALD_FROM_SOURCE, 'user', 'passwd', 'erin'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /changed the password of erin/);
    assert.ok(!r.stdout.includes('Erin-tty-pass-9'), 'the typed password is not echoed');

    const differ = `${script}`.replace("(b'Erin-tty-pass-9', b'again: ')", "(b'Erin-other-pass', b'again: ')");
    const d = spawnSync('python3', ['-c', differ, ...HERALD_FROM_SOURCE, 'user', 'passwd', 'erin'], { env, encoding: 'utf8', timeout: 30_000 });
    assert.equal(d.status, 1, d.stdout + d.stderr);
    assert.match(d.stdout, /the two passwords differ; nothing changed/);
  });
});

function pythonPtyMissing(): string | false {
  const r = spawnSync('python3', ['-c', 'import pty, os; os.waitstatus_to_exitcode'], { encoding: 'utf8' });
  return r.status === 0 ? false : 'needs python3 (3.9 or later) for a pseudo-terminal';
}

describe('start-up failures', () => {
  it('a port in use: one line in words, exit 1, no stack trace', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = await runCommand(['serve', '--host', '127.0.0.1', '--http-port', String(port), '--stomp-port', '0', '--mqtt-port', '0', '--data-dir', dataDir()], {
        HERALD_ADMIN_PASSWORD: 'admin-pass-1',
      });
      assert.equal(r.code, 1);
      oneLine(r.stderr, new RegExp(`^herald: cannot listen on 127\\.0\\.0\\.1:${port}: the address is in use; pick another port or stop the other process$`));
    } finally {
      blocker.close();
    }
  });

  it('a data directory that cannot be made (exit 1), and a key or rule file that cannot be read (a configuration error, exit 2): one line each', async () => {
    const dir = dataDir();
    const aFile = join(dir, 'not-a-dir');
    writeFileSync(aFile, 'x');
    const data = await runCommand(['serve', ...portFlags, '--data-dir', aFile]);
    assert.equal(data.code, 1);
    oneLine(data.stderr, /^herald: cannot create the directory .*not-a-dir: a file is in the way$/);

    const key = await runCommand(['serve', ...portFlags, '--data-dir', dataDir(), '--jwt-public-key', join(dir, 'missing.pem')]);
    assert.equal(key.code, 2, 'a JWT key that cannot be read is a configuration error');
    oneLine(key.stderr, /^herald: jwtPublicKey is neither PEM text nor a readable file: .*missing\.pem$/);

    const acl = await runCommand(['serve', ...portFlags, '--data-dir', dataDir(), '--acl-file', join(dir, 'missing-acl.json')]);
    assert.equal(acl.code, 2, 'a configuration error stays a usage error');
    oneLine(acl.stderr, /aclFile .*missing-acl\.json cannot be read as JSON/);
  });
});
