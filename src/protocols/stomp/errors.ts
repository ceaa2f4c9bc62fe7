/** Raised while handling a frame: becomes an ERROR frame, then the connection closes. */
export class StompError extends Error {
  constructor(
    message: string,
    readonly detail?: string,
    /**
     * Counted in herald_protocol_errors_total under this reason; null for a
     * refusal counted elsewhere (the access rules: herald_acl_denials_total).
     */
    readonly metric: string | null = 'frame',
  ) {
    super(message);
  }
}
