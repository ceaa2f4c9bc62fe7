/**
 * A test PKI made with `openssl` in a temporary directory: a CA, a server
 * certificate for localhost/127.0.0.1 signed by it, client certificates (one
 * valid, one expired), and an unrelated CA, as PEM files.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  dir: string;
  ca: string;
  caKey: string;
  /** Another CA that signed nothing of ours. */
  otherCa: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  expiredCert: string;
  expiredKey: string;
  /** Signs a client certificate with this subject (`/CN=alice`, or `/O=Devices` for one without a CN), by our CA or the other one; returns its files. */
  issueClient(subject: string, by?: 'ca' | 'other-ca'): { cert: string; key: string };
  /** Signs a new server certificate (a new serial) into `cert`/`key`; returns its serial in hex. */
  reissueServer(cert: string, key: string): string;
  read(path: string): Buffer;
  destroy(): void;
}

export function opensslMissing(): string | false {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'openssl is not installed';
  }
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'herald-pki-'));
  const p = (name: string): string => join(dir, name);
  const selfSigned = (name: string, cn: string): void =>
    openssl(dir, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p(`${name}.key`), '-out', p(`${name}.pem`), '-days', '30', '-subj', `/CN=${cn}`]);
  selfSigned('ca', 'Herald Test CA');
  selfSigned('other-ca', 'Someone Else CA');
  writeFileSync(p('server.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  writeFileSync(p('client.ext'), 'extendedKeyUsage=clientAuth\n');
  const sign = (name: string, cn: string, ext: string, cert = p(`${name}.pem`), key = p(`${name}.key`), subject = `/CN=${cn}`, by = 'ca'): void => {
    openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', p(`${name}.csr`), '-subj', subject]);
    openssl(dir, ['x509', '-req', '-in', p(`${name}.csr`), '-CA', p(`${by}.pem`), '-CAkey', p(`${by}.key`), '-CAcreateserial', '-out', cert, '-days', '30', '-extfile', p(ext)]);
  };
  sign('server', 'localhost', 'server.ext');
  sign('client', 'device-7', 'client.ext');
  // An expired client certificate: `openssl ca` takes explicit dates.
  writeFileSync(p('index.txt'), '');
  writeFileSync(p('serial'), '1000\n');
  writeFileSync(
    p('ca.cnf'),
    [
      '[ca]',
      'default_ca = test',
      '[test]',
      `database = ${p('index.txt')}`,
      `serial = ${p('serial')}`,
      `new_certs_dir = ${dir}`,
      `certificate = ${p('ca.pem')}`,
      `private_key = ${p('ca.key')}`,
      'default_md = sha256',
      'policy = anything',
      'copy_extensions = none',
      '[anything]',
      'commonName = supplied',
      '',
    ].join('\n'),
  );
  openssl(dir, ['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', p('expired.key'), '-out', p('expired.csr'), '-subj', '/CN=device-old']);
  openssl(dir, ['ca', '-batch', '-config', p('ca.cnf'), '-in', p('expired.csr'), '-out', p('expired.pem'), '-startdate', '20200101000000Z', '-enddate', '20200201000000Z', '-extfile', p('client.ext'), '-notext']);
  let n = 0;
  return {
    dir,
    ca: p('ca.pem'),
    caKey: p('ca.key'),
    otherCa: p('other-ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    expiredCert: p('expired.pem'),
    expiredKey: p('expired.key'),
    issueClient(subject, by = 'ca') {
      const name = `client-${++n}`;
      sign(name, '', 'client.ext', p(`${name}.pem`), p(`${name}.key`), subject, by);
      return { cert: p(`${name}.pem`), key: p(`${name}.key`) };
    },
    reissueServer(cert, key) {
      sign(`server-${++n}`, 'localhost', 'server.ext', cert, key);
      return execFileSync('openssl', ['x509', '-in', cert, '-noout', '-serial'], { encoding: 'utf8' }).trim().replace(/^serial=/, '');
    },
    read: (path) => readFileSync(path),
    destroy: () => rmSync(dir, { recursive: true, force: true }),
  };
}
