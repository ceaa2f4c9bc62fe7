/**
 * The PROXY protocol header (HAProxy's `send-proxy` / `send-proxy-v2`), as
 * a pure parser over the first bytes of a connection: version 1 (one text
 * line, at most 107 bytes) and version 2 (a 16-byte binary header and its
 * addresses; TCP over IPv4 or IPv6, the LOCAL command, TLVs skipped).
 *
 * The parser looks at no more than PROXY_HEADER_MAX_BYTES however many
 * bytes it is given, and says as early as it can that the bytes are not a
 * header (the first byte of an HTTP request or a TLS ClientHello already
 * is), so what a connection costs before its header is whole is bounded.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { formatIp, ipBytes } from './ip.js';

/** The largest header accepted: v2's 16 bytes and up to 520 of addresses and TLVs (v1 is at most 107). */
export const PROXY_HEADER_MAX_BYTES = 536;
const V1_MAX_BYTES = 107;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V2_FIXED_BYTES = 16;

export interface ProxySource {
  address: string;
  port: number;
}

export type ProxyHeader =
  /** More bytes are needed. */
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /**
   * A whole header of `length` bytes. `source`: the client the proxy
   * speaks for; undefined when the header names none (v1 UNKNOWN, v2
   * LOCAL, an unspecified or UNIX family): the connection is the proxy's
   * own (a health check), and its own address is the client's.
   */
  | { kind: 'header'; version: 1 | 2; length: number; source: ProxySource | undefined };

const INCOMPLETE: ProxyHeader = { kind: 'incomplete' };
const invalid = (reason: string): ProxyHeader => ({ kind: 'invalid', reason });

/** Reads a PROXY header at the start of `bytes` (the first bytes the connection sent, in order). */
export function parseProxyHeader(bytes: Uint8Array): ProxyHeader {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, Math.min(bytes.length, PROXY_HEADER_MAX_BYTES));
  if (buf.length === 0) return INCOMPLETE;
  if (buf[0] === V1_PREFIX[0]) return parseV1(buf);
  if (buf[0] === V2_SIGNATURE[0]) return parseV2(buf);
  return invalid('the connection does not start with a PROXY protocol header (v1 "PROXY …" or the v2 signature)');
}

function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return buf.subarray(0, n).equals(prefix.subarray(0, n));
}

/** A port as v1 writes it: 0–65535 in decimal, without leading zeros. */
function v1Port(text: string | undefined): number | undefined {
  if (text === undefined || !/^(0|[1-9]\d{0,4})$/.test(text)) return undefined;
  const n = Number(text);
  return n <= 65535 ? n : undefined;
}

function parseV1(buf: Buffer): ProxyHeader {
  if (!startsLike(buf, V1_PREFIX)) return invalid('the connection does not start with a PROXY protocol header (v1 "PROXY …" or the v2 signature)');
  const end = buf.subarray(0, V1_MAX_BYTES).indexOf(0x0a);
  if (end < 0) return buf.length >= V1_MAX_BYTES ? invalid(`PROXY v1 header has no line end within ${V1_MAX_BYTES} bytes`) : INCOMPLETE;
  if (buf[end - 1] !== 0x0d) return invalid('PROXY v1 header line must end with CRLF');
  const fields = buf.toString('latin1', V1_PREFIX.length, end - 1).split(' ');
  const length = end + 1;
  // "PROXY UNKNOWN" may be followed by anything up to the CRLF: the connection's own addresses stand.
  if (fields[0] === 'UNKNOWN') return { kind: 'header', version: 1, length, source: undefined };
  if (fields.length !== 5) return invalid('PROXY v1 header must read "PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>"');
  const [family, source, destination] = fields as [string, string, string];
  const isAddress = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : undefined;
  if (!isAddress) return invalid(`PROXY v1 protocol "${family.slice(0, 16)}" is not TCP4, TCP6 or UNKNOWN`);
  if (!isAddress(source) || !isAddress(destination)) return invalid(`PROXY v1 addresses are not ${family === 'TCP4' ? 'IPv4' : 'IPv6'} addresses`);
  const sourcePort = v1Port(fields[3]);
  if (sourcePort === undefined || v1Port(fields[4]) === undefined) return invalid('PROXY v1 ports must be decimal numbers from 0 to 65535');
  const address = family === 'TCP4' ? source : formatIp(ipBytes(source)!);
  return { kind: 'header', version: 1, length, source: { address, port: sourcePort } };
}

function parseV2(buf: Buffer): ProxyHeader {
  if (!startsLike(buf, V2_SIGNATURE)) return invalid('the connection does not start with a PROXY protocol header (v1 "PROXY …" or the v2 signature)');
  if (buf.length < V2_FIXED_BYTES) return INCOMPLETE;
  const versionAndCommand = buf[12]!;
  if (versionAndCommand >> 4 !== 2) return invalid(`PROXY v2 header has version ${versionAndCommand >> 4}, not 2`);
  const command = versionAndCommand & 0x0f;
  if (command > 1) return invalid(`PROXY v2 command ${command} is neither LOCAL (0) nor PROXY (1)`);
  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (family > 3 || transport > 2) return invalid(`PROXY v2 address family and transport 0x${buf[13]!.toString(16)} are not defined`);
  const length = V2_FIXED_BYTES + buf.readUInt16BE(14);
  if (length > PROXY_HEADER_MAX_BYTES) return invalid(`PROXY v2 header of ${length} bytes is longer than the ${PROXY_HEADER_MAX_BYTES} accepted`);
  if (buf.length < length) return INCOMPLETE;
  const local = { kind: 'header', version: 2, length, source: undefined } as const;
  // LOCAL: the proxy's own connection (a health check); the addresses, if any, are ignored.
  if (command === 0) return local;
  if (transport === 2) return invalid('PROXY v2 header describes a datagram (UDP) connection, not a stream');
  // An unspecified family or transport, or UNIX sockets: nothing to take; the connection's own address stands.
  if (family === 0 || family === 3 || transport === 0) return local;
  const v4 = family === 1;
  const need = v4 ? 12 : 36;
  if (length - V2_FIXED_BYTES < need) return invalid(`PROXY v2 ${v4 ? 'IPv4' : 'IPv6'} addresses need ${need} bytes; the header has ${length - V2_FIXED_BYTES}`);
  const at = V2_FIXED_BYTES;
  const address = v4 ? buf.subarray(at, at + 4).join('.') : formatIp(buf.subarray(at, at + 16));
  const port = buf.readUInt16BE(v4 ? at + 8 : at + 32);
  return { kind: 'header', version: 2, length, source: { address, port } };
}
