/**
 * Socket writes batched per event-loop turn, on real loopback sockets: the
 * first write of a turn goes out at once, the rest wait for the end of the
 * turn; while a burst is being read (holdWrites) even the first waits. The
 * bytes arrive whole and in order either way.
 */
import assert from 'node:assert/strict';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { holdWrites, writeBatched } from '../../src/transports/write-batch.js';

describe('writeBatched', () => {
  let server: Server;
  let client: Socket;
  let peer: Socket;
  let received = '';

  before(async () => {
    server = createServer();
    const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    client = connect(port, '127.0.0.1');
    await new Promise((resolve) => client.once('connect', resolve));
    peer = await accepted;
    client.on('data', (d: Buffer) => (received += d.toString()));
  });
  after(() => {
    client.destroy();
    peer.destroy();
    server.close();
  });

  const turnEnd = () => new Promise((resolve) => setImmediate(() => setImmediate(resolve)));
  const receivedAll = async (expected: string) => {
    for (let i = 0; i < 200 && received.length < expected.length; i++) await new Promise((r) => setTimeout(r, 5));
    assert.equal(received, expected);
    received = '';
  };

  it('writes the first write of a turn at once and holds the rest until the turn ends', async () => {
    writeBatched(peer, Buffer.from('a'));
    assert.equal(peer.writableCorked, 0, 'the first write is not held');
    writeBatched(peer, Buffer.from('b'));
    writeBatched(peer, Buffer.from('c'));
    assert.equal(peer.writableCorked, 1, 'the second write corks the socket');
    await turnEnd();
    assert.equal(peer.writableCorked, 0, 'uncorked at the end of the turn');
    await receivedAll('abc');
  });

  it('while a burst is read, holds even the first write; after the code reading it returns, the next turn starts plain again', async () => {
    holdWrites();
    writeBatched(peer, Buffer.from('1'));
    assert.equal(peer.writableCorked, 1, 'the first write is held');
    writeBatched(peer, Buffer.from('2'));
    await Promise.resolve();
    await turnEnd();
    assert.equal(peer.writableCorked, 0);
    await receivedAll('12');
    writeBatched(peer, Buffer.from('3'));
    assert.equal(peer.writableCorked, 0, 'no hold is left over');
    await turnEnd();
    await receivedAll('3');
  });
});
