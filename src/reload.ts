/**
 * Hot reload (SIGHUP, POST /api/admin/reload): `aclFile` and the TLS files
 * are read again and the JWKS of `jwtJwksUrl` is fetched again, each on its
 * own. A part whose new files do not load keeps what it had and says why
 * (in the log at warn, and in the report); the others are reloaded anyway.
 * The configuration itself is not read again: which files, which URL, the
 * ports and every other key stay as they were at start.
 */
import type { Config } from './config.js';
import type { Acl } from './core/acl.js';
import type { Auth } from './core/auth.js';
import type { Logger } from './log.js';
import type { TlsFiles } from './transports/tls.js';

type Part<Done, Failed> = { configured: false; ok: true } | ({ configured: true; ok: true } & Done) | ({ configured: true; ok: false; reason: string } & Failed);

export interface ReloadReport {
  /** Every configured part reloaded. */
  ok: boolean;
  /** `rules`: the number in force afterwards (on failure, the old ones'). */
  acl: Part<{ file: string; rules: number }, { file: string; rules: number }>;
  tls: Part<{ certFile: string }, { certFile: string }>;
  /** `keys`: the number in use afterwards (on failure, those of the last fetch that worked). */
  jwks: Part<{ url: string; keys: number }, { url: string; keys: number }>;
}

export interface Reloadable {
  config: Config;
  acl: Acl;
  auth: Auth;
  tls: TlsFiles | undefined;
  log: Logger;
}

/** The parts that failed, in one line: `aclFile: …; TLS: …`. */
export function reloadFailures(report: ReloadReport): string {
  const failed: string[] = [];
  if (!report.acl.ok) failed.push(`aclFile: ${report.acl.reason} (the ${report.acl.rules} current rules stay)`);
  if (!report.tls.ok) failed.push(`TLS: ${report.tls.reason} (the current certificate stays)`);
  if (!report.jwks.ok) failed.push(`${report.jwks.reason} (the ${report.jwks.keys} keys fetched before stay)`);
  return failed.join('; ');
}

export async function reloadNode(node: Reloadable): Promise<ReloadReport> {
  const { config, acl, auth, tls } = node;
  const log = node.log.child({ component: 'reload' });

  let aclPart: ReloadReport['acl'] = { configured: false, ok: true };
  if (config.aclFile) {
    const r = acl.reload(config.aclFile);
    aclPart = r.ok ? { configured: true, ok: true, file: config.aclFile, rules: r.rules } : { configured: true, ok: false, file: config.aclFile, rules: r.rules, reason: r.reason };
    if (r.ok) log.info({ file: config.aclFile, rules: r.rules }, 'aclFile reloaded: the next publish and subscribe of every connection use the new rules');
    else log.warn({ file: config.aclFile, reason: r.reason, rules: r.rules }, 'aclFile not reloaded; the current rules stay');
  }

  let tlsPart: ReloadReport['tls'] = { configured: false, ok: true };
  if (tls) {
    // TlsFiles logs either way.
    const r = tls.reload();
    tlsPart = r.ok ? { configured: true, ok: true, certFile: config.tlsCertFile } : { configured: true, ok: false, certFile: config.tlsCertFile, reason: r.reason };
  }

  let jwksPart: ReloadReport['jwks'] = { configured: false, ok: true };
  const jwks = auth.jwks;
  if (jwks) {
    // The cache logs either way.
    const r = await jwks.refresh('reload');
    jwksPart = r.ok ? { configured: true, ok: true, url: jwks.shownUrl, keys: r.keys } : { configured: true, ok: false, url: jwks.shownUrl, keys: r.keys, reason: r.reason };
  }

  return { ok: aclPart.ok && tlsPart.ok && jwksPart.ok, acl: aclPart, tls: tlsPart, jwks: jwksPart };
}
