/**
 * A server under test, whatever it is: its PID (for /proc), its loopback
 * ports, and the credentials the generator logs in with.
 */
export type ServerKind = 'herald' | 'mosquitto';

/** One login: MQTT user name and password (for Herald: a user's login token as the password). */
export interface Account {
  username: string;
  password: string;
}

export interface Target {
  kind: ServerKind;
  /** e.g. "Herald 0.1.0" or "Mosquitto 2.0.11". */
  label: string;
  pid: number;
  mqttPort: number;
  /** Herald only: HTTP port (API, /healthz and every WebSocket path). */
  httpPort?: number;
  /** Herald only: STOMP over TCP. */
  stompPort?: number;
  /** Accounts the scenarios use round-robin. */
  accounts: Account[];
  /** Herald only: an admin token for the HTTP API. */
  adminToken?: string;
  stop(): Promise<void>;
}

/** Credentials in the form the generator's worker processes need them. */
export interface Endpoint {
  kind: ServerKind;
  mqttPort: number;
  httpPort?: number;
  stompPort?: number;
  accounts: Account[];
}

export function endpointOf(t: Target): Endpoint {
  return { kind: t.kind, mqttPort: t.mqttPort, httpPort: t.httpPort, stompPort: t.stompPort, accounts: t.accounts };
}
