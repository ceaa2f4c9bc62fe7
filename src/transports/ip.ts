/**
 * IP addresses as 16 bytes, an IPv4 address as its IPv4-mapped IPv6 form
 * (`::ffff:a.b.c.d`), so that a peer seen as `10.0.0.5` or as
 * `::ffff:10.0.0.5` (a dual-stack socket) is the same address and matches
 * the same ranges; and address ranges (`10.0.0.5`, `10.1.0.0/16`,
 * `2001:db8::/32`) such as `trustedProxies`. Pure functions, no I/O.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** 10 zero bytes and 0xffff: the prefix of an IPv4-mapped IPv6 address (::ffff:0:0/96). */
const MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

function ipv4Bytes(text: string): number[] | undefined {
  if (!isIPv4(text)) return undefined;
  return text.split('.').map(Number);
}

/** An IPv6 address's 16 bytes (a zone, `%eth0`, is dropped), or undefined when the text is not one. */
function ipv6Bytes(text: string): number[] | undefined {
  let s = text.replace(/%.*$/, '');
  if (!isIPv6(s)) return undefined;
  // A dotted IPv4 tail (::ffff:1.2.3.4) becomes two hexadecimal groups.
  const lastColon = s.lastIndexOf(':');
  const v4 = ipv4Bytes(s.slice(lastColon + 1));
  if (v4) s = `${s.slice(0, lastColon + 1)}${((v4[0]! << 8) | v4[1]!).toString(16)}:${((v4[2]! << 8) | v4[3]!).toString(16)}`;
  const [head = '', tail] = s.split('::', 2);
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  if (groups.length !== 8) return undefined;
  return groups.flatMap((g) => {
    const n = Number.parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/** The 16 bytes of an IPv4 (as IPv4-mapped) or IPv6 address, or undefined when the text is neither. */
export function ipBytes(text: string): Uint8Array | undefined {
  const v4 = ipv4Bytes(text);
  if (v4) return Uint8Array.from([...MAPPED_PREFIX, ...v4]);
  const v6 = ipv6Bytes(text);
  return v6 ? Uint8Array.from(v6) : undefined;
}

/**
 * The usual text of 16 address bytes (RFC 5952): lower-case hexadecimal
 * groups without leading zeros, the longest run of two or more zero groups
 * as `::`; an IPv4-mapped address as `::ffff:a.b.c.d`, as Node shows
 * the peer of a dual-stack socket.
 */
export function formatIp(bytes: Uint8Array): string {
  if (MAPPED_PREFIX.every((b, i) => bytes[i] === b)) return `::ffff:${bytes.subarray(12).join('.')}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((bytes[i]! << 8) | bytes[i + 1]!);
  let best = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      best = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLength).join(':')}`;
}

interface Range {
  bytes: Uint8Array;
  /** Leading bits that must match (of 128; an IPv4 /n is 96 + n). */
  bits: number;
}

/** A list of addresses and CIDR ranges, IPv4 and IPv6; IPv4 entries match IPv4-mapped peers too. */
export class AddressRanges {
  private constructor(private readonly ranges: readonly Range[]) {}

  /**
   * Parses a comma-separated list (`10.0.0.5, 10.1.0.0/16, 2001:db8::/32`).
   * Throws an Error naming the first entry that is not an address or range.
   */
  static parse(list: string): AddressRanges {
    const ranges: Range[] = [];
    for (const raw of list.split(',')) {
      const entry = raw.trim();
      if (entry === '') continue;
      const slash = entry.indexOf('/');
      const address = slash < 0 ? entry : entry.slice(0, slash);
      const bytes = ipBytes(address);
      const v4 = isIPv4(address);
      const max = v4 ? 32 : 128;
      const prefix = slash < 0 ? max : /^\d{1,3}$/.test(entry.slice(slash + 1)) ? Number(entry.slice(slash + 1)) : NaN;
      if (!bytes || !(prefix >= 0 && prefix <= max)) {
        throw new Error(`"${entry}" is not an IP address or CIDR range (write 10.0.0.5, 10.1.0.0/16 or 2001:db8::/32)`);
      }
      ranges.push({ bytes, bits: v4 ? 96 + prefix : prefix });
    }
    return new AddressRanges(ranges);
  }

  get size(): number {
    return this.ranges.length;
  }

  /** Whether `address` (as a socket reports it) is in one of the ranges; false for anything that is not an IP address. */
  includes(address: string | undefined): boolean {
    const bytes = address === undefined ? undefined : ipBytes(address);
    if (!bytes) return false;
    return this.ranges.some((r) => prefixMatches(r.bytes, bytes, r.bits));
  }
}

function prefixMatches(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  const whole = bits >> 3;
  for (let i = 0; i < whole; i++) if (a[i] !== b[i]) return false;
  const rest = bits & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (a[whole]! & mask) === (b[whole]! & mask);
}
