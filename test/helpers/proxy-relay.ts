/**
 * A loopback stand-in for HAProxy in `mode tcp` with `send-proxy` /
 * `send-proxy-v2`: it accepts a client, opens a connection to the server,
 * writes the PROXY header first, then pipes bytes both ways unchanged (for
 * a TLS listener, the client's TLS follows the header). And the header
 * bytes themselves, v1 and v2.
 */
import { connect, createServer, type Socket } from 'node:net';
import { ipBytes } from '../../src/transports/ip.js';

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/** `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`. */
export function proxyV1(source: string, sourcePort: number, destination = '127.0.0.1', destinationPort = 1): Buffer {
  const family = source.includes(':') ? 'TCP6' : 'TCP4';
  const dst = family === 'TCP6' && !destination.includes(':') ? '::1' : destination;
  return Buffer.from(`PROXY ${family} ${source} ${dst} ${sourcePort} ${destinationPort}\r\n`, 'latin1');
}

/** A v2 PROXY (TCP over IPv4 or IPv6) header; with `source` undefined, a LOCAL one (the proxy's own health check). */
export function proxyV2(source: string | undefined, sourcePort = 0, tlvs: Buffer = Buffer.alloc(0)): Buffer {
  const fixed = (command: number, familyTransport: number, block: Buffer): Buffer => {
    const len = Buffer.alloc(2);
    len.writeUInt16BE(block.length);
    return Buffer.concat([V2_SIGNATURE, Buffer.from([0x20 | command, familyTransport]), len, block]);
  };
  if (source === undefined) return fixed(0, 0x00, Buffer.alloc(0));
  const v6 = source.includes(':');
  const src = ipBytes(source)!;
  const ports = Buffer.alloc(4);
  ports.writeUInt16BE(sourcePort, 0);
  ports.writeUInt16BE(1, 2);
  const addresses = v6 ? Buffer.concat([Buffer.from(src), Buffer.from(ipBytes('::1')!)]) : Buffer.concat([Buffer.from(src.subarray(12)), Buffer.from([127, 0, 0, 1])]);
  return fixed(1, v6 ? 0x21 : 0x11, Buffer.concat([addresses, ports, tlvs]));
}

export interface Relay {
  port: number;
  url(scheme: string): string;
  close(): Promise<void>;
}

/**
 * Listens on 127.0.0.1; each client is relayed to 127.0.0.1:`target`
 * behind `header`. `split`: the header goes out in two writes, apart, as a
 * slow network may deliver it.
 */
export async function proxyRelay(target: number, header: Buffer, opts: { split?: boolean } = {}): Promise<Relay> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    client.pause();
    const upstream = connect(target, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.once('close', () => {
        sockets.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    upstream.once('connect', () => {
      const pipe = (): void => {
        client.pipe(upstream);
        upstream.pipe(client);
        client.resume();
      };
      if (!opts.split) {
        upstream.write(header);
        return pipe();
      }
      upstream.write(header.subarray(0, 7));
      setTimeout(() => {
        upstream.write(header.subarray(7));
        pipe();
      }, 50);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
