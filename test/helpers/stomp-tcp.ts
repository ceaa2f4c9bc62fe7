/**
 * @stomp/stompjs over a TCP (or TLS) socket instead of a WebSocket: the
 * library takes any object shaped like a WebSocket (`webSocketFactory`),
 * and its parser reads a byte stream cut anywhere, so the real client can
 * speak to the STOMP TCP listeners.
 */
import type { Socket } from 'node:net';
import { Client, type IFrame, type IStompSocket } from '@stomp/stompjs';

/** A WebSocket-shaped wrapper of a socket `open` returns (not yet connected). */
export function tcpStompSocket(open: () => Socket, connectEvent: 'connect' | 'secureConnect' = 'connect'): IStompSocket {
  const socket = open();
  const wrapper: IStompSocket & { readyState: number } = {
    url: 'tcp',
    binaryType: 'arraybuffer',
    readyState: 0,
    onopen: null,
    onmessage: null,
    onclose: null,
    onerror: null,
    send(data) {
      socket.write(typeof data === 'string' ? data : Buffer.from(data as ArrayBuffer));
    },
    close() {
      wrapper.readyState = 2;
      socket.end();
    },
    terminate() {
      socket.destroy();
    },
  };
  socket.once(connectEvent, () => {
    wrapper.readyState = 1;
    wrapper.onopen?.();
  });
  socket.on('data', (d: Buffer) => wrapper.onmessage?.({ data: d.buffer.slice(d.byteOffset, d.byteOffset + d.length) }));
  socket.on('error', (err) => wrapper.onerror?.(err));
  socket.once('close', () => {
    wrapper.readyState = 3;
    wrapper.onclose?.({ code: 1006, reason: 'socket closed' });
  });
  return wrapper;
}

/** Connects @stomp/stompjs over `open`'s socket; resolves with the client once CONNECTED, rejects with the ERROR frame or the close. */
export function connectStompTcp(open: () => Socket, headers: Record<string, string>, connectEvent: 'connect' | 'secureConnect' = 'connect'): Promise<Client> {
  return new Promise((resolve, reject) => {
    const client = new Client({
      webSocketFactory: () => tcpStompSocket(open, connectEvent),
      connectHeaders: headers,
      reconnectDelay: 0,
      heartbeatIncoming: 0,
      heartbeatOutgoing: 0,
      onConnect: () => resolve(client),
      onStompError: (frame: IFrame) => {
        reject(Object.assign(new Error(frame.headers['message'] ?? 'STOMP ERROR'), { frame }));
        void client.deactivate();
      },
      onWebSocketClose: () => reject(new Error('the connection closed before CONNECTED')),
    });
    client.activate();
  });
}
