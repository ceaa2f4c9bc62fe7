import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it, after } from 'node:test';
import { CONFIG_SCHEMA, ConfigError, FILE_ONLY_KEYS, configHelp, envName, flagName, loadConfig, parseFlags } from '../../src/config.js';
import { PORT_OFF } from '../../src/config.js';
import { tempDir } from '../helpers/server.js';

const dir = tempDir('herald-config-');
after(() => rmSync(dir, { recursive: true, force: true }));

describe('config', () => {
  it('has the documented defaults', () => {
    const c = loadConfig({ env: {}, cwd: dir });
    assert.equal(c.httpPort, 8080);
    assert.equal(c.stompPort, 61613);
    assert.equal(c.mqttPort, 1883);
    assert.equal(c.dataDir, './data');
    assert.equal(c.tokenIdleSeconds, 600);
    assert.equal(c.databaseUrl, '');
  });

  it('names env vars and flags after the keys', () => {
    assert.equal(envName('httpPort'), 'HERALD_HTTP_PORT');
    assert.equal(envName('tokenIdleSeconds'), 'HERALD_TOKEN_IDLE_SECONDS');
    assert.equal(flagName('httpPort'), '--http-port');
  });

  it('applies defaults < file < env < flags', () => {
    const sub = tempDir('herald-config-prec-');
    writeFileSync(join(sub, 'herald.config.json'), JSON.stringify({ httpPort: 1111, stompPort: 2222, mqttPort: 3333 }));
    const c = loadConfig({
      cwd: sub,
      env: { HERALD_STOMP_PORT: '4444', HERALD_MQTT_PORT: '5555' },
      flags: parseFlags(['--mqtt-port', '6666']).flags,
    });
    assert.equal(c.httpPort, 1111, 'file beats default');
    assert.equal(c.stompPort, 4444, 'env beats file');
    assert.equal(c.mqttPort, 6666, 'flag beats env');
    assert.equal(c.tokenIdleSeconds, 600, 'untouched key keeps its default');
    rmSync(sub, { recursive: true, force: true });
  });

  it('reads the file named by HERALD_CONFIG or --config', () => {
    const file = join(dir, 'other.json');
    writeFileSync(file, JSON.stringify({ tokenIdleSeconds: 42 }));
    assert.equal(loadConfig({ cwd: dir, env: { HERALD_CONFIG: file } }).tokenIdleSeconds, 42);
    assert.equal(loadConfig({ cwd: dir, env: {}, flags: parseFlags(['--config', file]).flags }).tokenIdleSeconds, 42);
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: join(dir, 'missing.json') } }), /does not exist/);
  });

  it('stops on an invalid value with the key, the value and what is allowed', () => {
    assert.throws(
      () => loadConfig({ cwd: dir, env: { HERALD_HTTP_PORT: 'eighty' } }),
      (e: Error) =>
        e instanceof ConfigError &&
        e.message.includes('HERALD_HTTP_PORT') &&
        e.message.includes('"eighty"') &&
        e.message.includes('a port from 0 to 65535 (0: any free port), or off'),
    );
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_HTTP_PORT: '70000' } }), /from 0 to 65535/);
    assert.equal(loadConfig({ cwd: dir, env: { HERALD_MQTT_PORT: 'off' } }).mqttPort, PORT_OFF, 'off: no listener');
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_TOKEN_IDLE_SECONDS: '0' } }), /tokenIdleSeconds must be an integer from 1/);
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_LOG_LEVEL: 'loud' } }), /one of fatal, error/);
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_TRUST_PROXY: 'maybe' } }), /true or false/);
    assert.throws(() => loadConfig({ cwd: dir, env: {}, flags: parseFlags(['--stomp-port=-1']).flags }), /--stomp-port = "-1"/);
  });

  it('rejects unknown keys, wrong types and broken JSON in the file', () => {
    const f = join(dir, 'bad.json');
    writeFileSync(f, JSON.stringify({ httpPortt: 1 }));
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }), /unknown key "httpPortt"/);
    writeFileSync(f, JSON.stringify({ httpPort: '80' }));
    assert.equal(loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }).httpPort, 80, 'numeric strings are accepted');
    writeFileSync(f, JSON.stringify({ httpPort: true }));
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }), /httpPort in .* = true/);
    writeFileSync(f, '{"httpPort": ');
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }), /not valid JSON/);
    writeFileSync(f, '[1]');
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }), /must hold a JSON object/);
  });

  it('parses flags in both forms, booleans without a value, and refuses unknown flags', () => {
    const p = parseFlags(['serve', '--http-port=0', '--host', '127.0.0.1', '--trust-proxy', '--role', 'admin'], ['--role']);
    assert.deepEqual(p.positional, ['serve']);
    assert.deepEqual(p.flags, { httpPort: '0', host: '127.0.0.1', trustProxy: 'true' });
    assert.deepEqual(p.extra, { role: 'admin' });
    assert.throws(() => parseFlags(['--http-prot', '1']), /unknown option --http-prot/);
    assert.throws(() => parseFlags(['--http-port']), /needs a value/);
  });

  it('reads the webhooks list from the file only, and stops at a wrong entry naming it', () => {
    const f = join(dir, 'hooks.json');
    const good = { url: 'https://api.example.com/hook', events: ['client.connected', 'message.published'], topics: ['orders/#'], secret: 's3cret' };
    writeFileSync(f, JSON.stringify({ webhooks: [good, { name: 'all', url: 'http://127.0.0.1:9/x', events: ['*'], secret: 'k' }] }));
    const c = loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } });
    assert.equal(c.webhooks.length, 2);
    assert.deepEqual(c.webhooks[0], { name: good.url, url: good.url, events: ['client.connected', 'message.published'], topics: ['orders/#'], secret: 's3cret' });
    assert.equal(c.webhooks[1]!.name, 'all');
    assert.equal(c.webhooks[1]!.events.length, 11, '"*" is every event');
    assert.deepEqual(loadConfig({ cwd: dir, env: {} }).webhooks, [], 'none by default');
    assert.throws(() => parseFlags(['--webhooks', '[]']), /unknown option --webhooks/, 'no flag');

    const bad = (entry: unknown, re: RegExp): void => {
      writeFileSync(f, JSON.stringify({ webhooks: [good, entry] }));
      assert.throws(
        () => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }),
        (e: Error) => e instanceof ConfigError && re.test(e.message) && e.message.includes(`webhooks[1]`) && e.message.includes(f) && !e.message.includes('\n'),
        `${JSON.stringify(entry)} → ${re}`,
      );
    };
    bad({ ...good, url: 'ftp://x/y' }, /webhooks\[1\] \(ftp:\/\/x\/y\).*url must be http:\/\/ or https:\/\/, not ftp:/);
    bad({ ...good, url: 'not a url' }, /url "not a url" is not a URL/);
    bad({ ...good, url: undefined }, /url must be an http/);
    bad({ ...good, events: [] }, /events must be a non-empty list/);
    bad({ ...good, events: ['client.connect'] }, /unknown event "client.connect"; events are client.connected/);
    bad({ ...good, secret: '' }, /secret must be a non-empty string/);
    bad({ ...good, topics: ['a/#/b'] }, /topic filter "a\/#\/b": "#" must be a whole level/);
    bad({ ...good, events: ['client.connected'] }, /topics filters message.published events/);
    bad({ ...good, sekret: 'x' }, /unknown field "sekret"/);
    bad(good, /webhooks\[0\] has the same name .*give each entry its own "name"/);
    bad('https://x', /must be an object/);
    writeFileSync(f, JSON.stringify({ webhooks: { url: 'x' } }));
    assert.throws(() => loadConfig({ cwd: dir, env: { HERALD_CONFIG: f } }), /webhooks in .* must be a list/);
    assert.throws(() => loadConfig({ cwd: dir, env: {}, overrides: { webhooks: [{ url: 'https://x', events: ['nope'], secret: 'k' }] } }), /webhooks\[0\] \(https:\/\/x\): unknown event "nope"/);
  });

  it('documents every key in docs/configuration.md with its environment variable, flag and default', () => {
    const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
    for (const [key, spec] of Object.entries(CONFIG_SCHEMA)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| ${key} |`));
      assert.ok(row, `docs/configuration.md has no configuration row for ${key}`);
      assert.ok(row.includes(envName(key)) && row.includes(flagName(key)), `docs/configuration.md row for ${key} names ${envName(key)} and ${flagName(key)}`);
      if (typeof spec.default === 'number' || typeof spec.default === 'boolean') {
        const shown = spec.kind.type === 'port' && spec.default === PORT_OFF ? 'off' : String(spec.default);
        assert.ok(row.includes(` ${shown} |`), `docs/configuration.md row for ${key} gives the default ${shown}`);
      }
    }
    // A structured key has no environment variable or flag: its row says so instead of naming ones that do not exist.
    for (const key of Object.keys(FILE_ONLY_KEYS)) {
      const row = doc.split('\n').find((l) => l.startsWith(`| ${key} |`));
      assert.ok(row, `docs/configuration.md has no configuration row for ${key}`);
      assert.ok(row.startsWith(`| ${key} | (file only) | (file only) |`), `docs/configuration.md row for ${key} says it is set in the file only`);
      assert.ok(configHelp().includes(`${key} `) && configHelp().includes('(config file only)'), `herald --help lists ${key}`);
    }
  });
});
