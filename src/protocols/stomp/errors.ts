/** Raised while handling a frame: becomes an ERROR frame, then the connection closes. */
export class StompError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}
