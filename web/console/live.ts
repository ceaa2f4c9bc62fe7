/**
 * What the page on show keeps running (a poll, charts, a STOMP client):
 * each page registers how to stop it, and leaving the page stops it all.
 */
const running: (() => void)[] = [];

/** Stops `stop` when the page is left (the router, logout or the end of the session call stopLive). */
export function onLeave(stop: () => void): void {
  running.push(stop);
}

export function stopLive(): void {
  for (const stop of running.splice(0)) stop();
}
