/**
 * The hosted-MQTT model of app integrations: an app (appId, appClientId, appClientSecret)
 * obtains an app access token, then mints user tokens bound to a user name
 * and an MQTT client id (`deviceId@appId`); the MQTT client connects with
 * that client id, the user name, and the user token as password.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Clock } from '../clock.js';
import type { Config } from '../config.js';
import type { Principal } from '../core/auth.js';
import type { AppRecord, Store } from '../store/store.js';

const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');
const newSecret = (): string => 'YXA6' + randomBytes(24).toString('base64url');

/** The user id prefix of an app's users (see appUserPrincipal). */
export const appUserPrefix = (appId: string): string => `app:${appId}:`;

export interface NewApp {
  appId: string;
  appClientId: string;
  appClientSecret: string;
  name: string;
}

/** Why an app credential was refused: `bad` (unknown/expired/wrong user) or `denied` (another app or client id). */
export class AppTokenRefusal extends Error {
  constructor(
    readonly kind: 'bad' | 'denied',
    message: string,
  ) {
    super(message);
  }
}

/**
 * The principal of an app user: its id is scoped to the app so app users
 * never collide with Herald users. Its credential is the user token, which
 * ends at `expiresAt` (ms): sessions opened with it are closed then.
 */
export function appUserPrincipal(appId: string, username: string, token: { hash: string; expiresAt: number }): Principal {
  return {
    userId: appUserPrefix(appId) + username,
    name: username,
    role: 'user',
    credential: { kind: 'expiring', key: 'app-user:' + token.hash, expiresAt: token.expiresAt },
  };
}

/** What a user token looks like: `randomBytes(24).toString('base64url')`. */
const USER_TOKEN_SHAPE = /^[A-Za-z0-9_-]{32}$/;

export class MqttApps {
  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly clock: Clock,
  ) {}

  async create(name: string): Promise<NewApp> {
    const appId = randomBytes(5).toString('hex');
    const appClientId = 'YXA6' + randomBytes(12).toString('base64url');
    const appClientSecret = newSecret();
    await this.store.createApp({ id: appId, name, clientId: appClientId, secretHash: sha256(appClientSecret), createdAt: this.clock.now() });
    return { appId, appClientId, appClientSecret, name };
  }

  list(): Promise<AppRecord[]> {
    return this.store.listApps();
  }

  /**
   * A new secret for the app, shown once like the first: the old secret and
   * the app tokens got with it stop working at once; user tokens the app
   * already minted keep working until they expire. Undefined if there is no such app.
   */
  async rotateSecret(appId: string): Promise<NewApp | undefined> {
    const app = await this.store.getApp(appId);
    if (!app) return undefined;
    const appClientSecret = newSecret();
    if (!(await this.store.rotateAppSecret(appId, sha256(appClientSecret)))) return undefined;
    return { appId, appClientId: app.clientId, appClientSecret, name: app.name };
  }

  /** Deletes the app with every token it has; false if there was none. Its users' sessions are the caller's to end. */
  delete(appId: string): Promise<boolean> {
    return this.store.deleteApp(appId);
  }

  /** POST /openapi/rm/app/token. */
  private lastPurge = 0;

  /** Expired app and user tokens are deleted at most hourly, when new ones are issued. */
  private async purgeExpired(): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastPurge < 3_600_000) return;
    this.lastPurge = now;
    await this.store.deleteExpiredAppTokens(now);
  }

  async appToken(appClientId: string, appClientSecret: string): Promise<{ access_token: string; expires_in: number }> {
    await this.purgeExpired();
    const app = await this.store.getAppByClientId(appClientId);
    const given = Buffer.from(sha256(appClientSecret), 'hex');
    if (!app || !timingSafeEqual(given, Buffer.from(app.secretHash, 'hex'))) {
      throw new AppTokenRefusal('bad', 'appClientId or appClientSecret is wrong');
    }
    const token = randomBytes(24).toString('base64url');
    const expiresIn = this.config.appTokenSeconds;
    await this.store.insertAppToken({ hash: sha256(token), kind: 'app', appId: app.id, username: null, cid: null, expiresAt: this.clock.now() + expiresIn * 1000 });
    return { access_token: token, expires_in: expiresIn };
  }

  /** POST /openapi/rm/user/token, authorised by an app token. `cid` must be `{device}@{appId}` of the same app. */
  async userToken(appAccessToken: string, username: string, expiresIn: number, cid: string): Promise<{ access_token: string; expires_in: number }> {
    await this.purgeExpired();
    const appToken = await this.store.getAppToken(sha256(appAccessToken));
    if (!appToken || appToken.kind !== 'app' || appToken.expiresAt <= this.clock.now()) {
      throw new AppTokenRefusal('bad', 'the app access token in Authorization is unknown or expired; get one from /openapi/rm/app/token');
    }
    const at = cid.lastIndexOf('@');
    if (at <= 0 || cid.slice(at + 1) !== appToken.appId) {
      throw new AppTokenRefusal('denied', `cid must be {deviceId}@${appToken.appId} for this app`);
    }
    const seconds = Math.min(expiresIn, this.config.userTokenMaxSeconds);
    const token = randomBytes(24).toString('base64url');
    await this.store.insertAppToken({ hash: sha256(token), kind: 'user', appId: appToken.appId, username, cid, expiresAt: this.clock.now() + seconds * 1000 });
    return { access_token: token, expires_in: seconds };
  }

  /**
   * Checks an MQTT CONNECT that presents a user token as password.
   * Returns undefined when the password is not a user token at all (other credentials may apply).
   */
  async checkUserToken(password: string, username: string | undefined, clientId: string): Promise<Principal | undefined> {
    // User tokens are 24 random bytes in base64url (userToken above): anything else is not one, and costs no store read.
    if (!USER_TOKEN_SHAPE.test(password)) return undefined;
    const hash = sha256(password);
    const t = await this.store.getAppToken(hash);
    if (!t || t.kind !== 'user') return undefined;
    if (t.expiresAt <= this.clock.now()) throw new AppTokenRefusal('bad', 'the user token has expired; get a new one from /openapi/rm/user/token');
    if (username !== t.username) throw new AppTokenRefusal('bad', `the user token belongs to another user name than "${username ?? ''}"`);
    if (clientId !== t.cid) throw new AppTokenRefusal('denied', `the user token is bound to client id ${t.cid ?? ''}, not ${clientId}`);
    return appUserPrincipal(t.appId, t.username, { hash, expiresAt: t.expiresAt });
  }
}
