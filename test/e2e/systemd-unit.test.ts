/**
 * deploy/herald.service and deploy/herald.sysusers.conf (issue 14, part 6):
 * checked by systemd's own tools where they exist (skipped with the reason
 * otherwise; under CI=true they must exist), and read for what operators
 * and the rest of the docs rely on.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it, after } from 'node:test';
import { fileURLToPath } from 'node:url';

const UNIT = fileURLToPath(new URL('../../deploy/herald.service', import.meta.url));
const SYSUSERS = fileURLToPath(new URL('../../deploy/herald.sysusers.conf', import.meta.url));

function toolMissing(tool: string): string | false {
  if (spawnSync(tool, ['--version'], { encoding: 'utf8' }).status === 0) return false;
  const reason = `needs ${tool} (Debian's systemd package; .ci/run installs it)`;
  if (process.env['CI']) throw new Error(`CI=true but ${reason}`);
  return reason;
}

/** The unit's directives, name → every value given (a directive may repeat). */
function directives(text: string): Map<string, string[]> {
  const map = new Map<string, string[]>();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line.trim());
    if (m) map.set(m[1]!, [...(map.get(m[1]!) ?? []), m[2]!]);
  }
  return map;
}

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

describe('the systemd unit', () => {
  it('passes systemd-analyze verify without a warning', { skip: toolMissing('systemd-analyze') }, () => {
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', UNIT], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    // verify exits 0 on a directive it ignores ("Failed to parse …, ignoring"): any line about the unit is a finding.
    const aboutUnit = r.stderr.split('\n').filter((l) => l.includes('herald.service'));
    assert.deepEqual(aboutUnit, [], r.stderr);
  });

  it('is exposed little by systemd-analyze security (offline)', { skip: toolMissing('systemd-analyze') }, (t) => {
    const r = spawnSync('systemd-analyze', ['security', '--offline=yes', '--threshold=30', '--no-pager', UNIT], { encoding: 'utf8' });
    if (/unrecognized option|unknown option/i.test(r.stderr)) {
      t.skip('this systemd-analyze has no offline security check');
      return;
    }
    assert.equal(r.status, 0, `exposure above 3.0:\n${r.stdout}${r.stderr}`);
    t.diagnostic((/Overall exposure level[^\n]*/.exec(r.stdout) ?? [''])[0]);
  });

  it('restarts on failure but not on a bad configuration, reloads with SIGHUP, and runs as its own user on its own data', () => {
    const d = directives(readFileSync(UNIT, 'utf8'));
    const one = (name: string): string => {
      const v = d.get(name);
      assert.equal(v?.length, 1, `${name} once`);
      return v![0]!;
    };
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('RestartPreventExitStatus'), '2', 'exit 2 is a configuration error (src/cli/common.ts)');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.match(one('ExecStart'), / serve$/);
    assert.equal(one('User'), 'herald');
    assert.equal(one('Group'), 'herald');
    assert.equal(one('EnvironmentFile'), '-/etc/herald/herald.env');
    assert.match(one('LimitNOFILE'), /^\d{5,}$/);
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('StateDirectory'), 'herald');
    assert.equal(one('ReadWritePaths'), '/var/lib/herald');
    assert.match(one('Environment'), /(^| )HERALD_DATA_DIR=\/var\/lib\/herald( |$)/, 'the data directory is the writable one');
    assert.equal(d.get('MemoryDenyWriteExecute'), undefined, "V8's JIT needs writable executable memory");
  });

  it('comes with a sysusers.d file for its user that systemd-sysusers accepts', { skip: toolMissing('systemd-sysusers') }, () => {
    const root = mkdtempSync(join(tmpdir(), 'herald-sysroot-'));
    roots.push(root);
    const r = spawnSync('systemd-sysusers', ['--dry-run', `--root=${root}`, SYSUSERS], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout + r.stderr, /Creating user '?herald'?/);
  });
});
