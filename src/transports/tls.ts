/**
 * TLS for every listener (Node's `tls` and `https` only): one set of files
 * (`tlsCertFile`, `tlsKeyFile`, optional `tlsCaFile` for client
 * certificates) read at start, where a file that cannot be read stops
 * start-up naming the key and the path, and read again on `reload()`
 * (SIGHUP): new handshakes use the new certificate, open connections keep
 * theirs, and a new file that does not load leaves the old one in place and
 * says why.
 */
import { readFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import type { SecureVersion, Server as TlsServer, TlsOptions } from 'node:tls';
import { createSecureContext, TLSSocket } from 'node:tls';
import { ConfigError, type Config } from '../config.js';
import type { Logger } from '../log.js';

type TlsConfig = Pick<Config, 'tlsCertFile' | 'tlsKeyFile' | 'tlsCaFile' | 'tlsMinVersion' | 'tlsRequireClientCert' | 'tlsClientCertAsUser' | 'connectTimeoutSeconds'>;

/**
 * Who a connection's client certificate says it is (tlsClientCertAsUser):
 * `none` when the socket is not TLS or carries no certificate the CA
 * verified (the client then logs in as usual); otherwise the subject's one
 * CN, or why it cannot name a user.
 */
export type CertificateIdentity = { kind: 'none' } | { kind: 'user'; name: string } | { kind: 'unusable'; reason: string };

/** How a connection reached us, as the connect hook is told: the transport, and a verified client certificate's subject. */
export interface ConnectionOrigin {
  transport: 'tcp' | 'tls' | 'ws' | 'wss';
  /** The WebSocket path (never with a token in it). */
  path?: string;
  /** `CN=…,O=…` of a client certificate the CA verified. */
  certificateSubject?: string;
}

/** The origin of a TCP (or TLS) connection, or of the socket under a WebSocket (`path` given). */
export function originOf(socket: Socket, path?: string): ConnectionOrigin {
  if (!(socket instanceof TLSSocket)) return path === undefined ? { transport: 'tcp' } : { transport: 'ws', path };
  const origin: ConnectionOrigin = path === undefined ? { transport: 'tls' } : { transport: 'wss', path };
  if (socket.authorized) {
    const subject = socket.getPeerCertificate().subject as Record<string, string | string[] | undefined> | undefined;
    if (subject) origin.certificateSubject = Object.entries(subject).map(([k, v]) => `${k}=${Array.isArray(v) ? v.join('+') : (v ?? '')}`).join(',');
  }
  return origin;
}

export function certificateIdentity(socket: Socket): CertificateIdentity {
  if (!(socket instanceof TLSSocket) || !socket.authorized) return { kind: 'none' };
  const subject = socket.getPeerCertificate().subject as Record<string, string | string[] | undefined> | undefined;
  const cn = subject?.['CN'];
  if (typeof cn !== 'string' || cn === '') return { kind: 'unusable', reason: 'the client certificate has no CN (common name) to name a user' };
  return { kind: 'user', name: cn };
}

/** The parts of the options that come from files (what `reload` replaces). */
interface Material {
  cert: Buffer;
  key: Buffer;
  ca: Buffer | undefined;
}

function readKey(key: 'tlsCertFile' | 'tlsKeyFile' | 'tlsCaFile', path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new ConfigError(`${key}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
}

/** Reads the files and checks that they make a usable context (a key that does not match its certificate fails here). */
function load(config: TlsConfig): Material {
  if (!config.tlsKeyFile) throw new ConfigError('tlsKeyFile must be set when tlsCertFile is (the private key of the certificate)');
  const material: Material = {
    cert: readKey('tlsCertFile', config.tlsCertFile),
    key: readKey('tlsKeyFile', config.tlsKeyFile),
    ca: config.tlsCaFile ? readKey('tlsCaFile', config.tlsCaFile) : undefined,
  };
  try {
    createSecureContext({ cert: material.cert, key: material.key, ...(material.ca ? { ca: material.ca } : {}) });
  } catch (err) {
    throw new ConfigError(`TLS files ${config.tlsCertFile} and ${config.tlsKeyFile} do not make a usable certificate: ${(err as Error).message}`);
  }
  return material;
}

export class TlsFiles {
  private material: Material;
  /** Listeners to give a reloaded certificate to, and whether each asks for client certificates. */
  private readonly servers = new Map<TlsServer, boolean>();

  private constructor(
    private readonly config: TlsConfig,
    private readonly log: Logger,
  ) {
    this.material = load(config);
  }

  /** TLS for this configuration, or undefined when no certificate is configured (TLS listeners stay off). */
  static open(config: TlsConfig, log: Logger): TlsFiles | undefined {
    if (!config.tlsCertFile) {
      if (config.tlsKeyFile || config.tlsCaFile) throw new ConfigError('tlsKeyFile and tlsCaFile need tlsCertFile (the certificate every TLS listener presents)');
      if (config.tlsClientCertAsUser) throw new ConfigError('tlsClientCertAsUser needs tlsCertFile, tlsKeyFile and tlsCaFile (the CA that signs client certificates)');
      return undefined;
    }
    if (config.tlsClientCertAsUser && !config.tlsCaFile) throw new ConfigError('tlsClientCertAsUser needs tlsCaFile: the CA whose signature makes a client certificate name a user');
    return new TlsFiles(config, log);
  }

  /**
   * Server options. `clientCerts`: STOMP and MQTT ask for a client
   * certificate when a CA is configured (and refuse without one when
   * `tlsRequireClientCert`); HTTPS never asks (browsers would prompt).
   */
  options(clientCerts: boolean): TlsOptions {
    const m = this.material;
    const asks = clientCerts && m.ca !== undefined;
    return {
      cert: m.cert,
      key: m.key,
      ...(m.ca ? { ca: m.ca } : {}),
      minVersion: this.config.tlsMinVersion as SecureVersion,
      requestCert: asks,
      rejectUnauthorized: asks && this.config.tlsRequireClientCert,
      // A client that opens a connection and never finishes its handshake is cut like one that never sends CONNECT.
      handshakeTimeout: this.config.connectTimeoutSeconds * 1000,
    };
  }

  /** A listener to give the new certificate to on reload. */
  track(server: TlsServer, clientCerts: boolean): void {
    this.servers.set(server, clientCerts);
    server.once('close', () => this.servers.delete(server));
  }

  /** Reads the files again; every listener's new handshakes use them. Returns what happened, for the log and the caller. */
  reload(): { ok: true } | { ok: false; reason: string } {
    let material: Material;
    try {
      material = load(this.config);
    } catch (err) {
      const reason = (err as Error).message;
      this.log.warn({ reason }, 'TLS files not reloaded; the current certificate stays');
      return { ok: false, reason };
    }
    this.material = material;
    for (const [server, clientCerts] of this.servers) {
      const { cert, key, ca, minVersion } = this.options(clientCerts);
      server.setSecureContext({ cert, key, ...(ca ? { ca } : {}), minVersion });
    }
    this.log.info({ cert: this.config.tlsCertFile }, 'TLS certificate reloaded: new connections use it');
    return { ok: true };
  }
}
