/**
 * The head's view of which sessions are alive. Time comes in as numbers
 * (tick events), so the simulator can drive it. Only the head expires
 * sessions, by putting an expire_session update into the total order.
 */
export class SessionMonitor {
  private readonly lastHeardMs = new Map<number, number>();
  private readonly expiring = new Set<number>();
  nowMs = 0;

  heard(session: number): void {
    this.lastHeardMs.set(session, this.nowMs);
    // Expired once, and heard again: a resent open_session re-created it (same id) before
    // the next tick could see it gone. Left marked, it would never expire again.
    this.expiring.delete(session);
  }

  /** This process was not running for `ms`: it did not hear anyone then, nobody fell silent. */
  shift(ms: number): void {
    for (const [session, last] of this.lastHeardMs) this.lastHeardMs.set(session, last + ms);
  }

  /**
   * Sessions of `live` (id → timeout) silent for longer than their timeout.
   * A session first seen here (e.g. after this server became head) gets a
   * full timeout from now: the previous head's knowledge is not trusted nor needed.
   */
  expired(live: ReadonlyMap<number, { timeoutMs: number }>): number[] {
    const result: number[] = [];
    for (const [id, session] of live) {
      const last = this.lastHeardMs.get(id);
      if (last === undefined) this.lastHeardMs.set(id, this.nowMs);
      else if (this.nowMs - last > session.timeoutMs && !this.expiring.has(id)) {
        this.expiring.add(id);
        result.push(id);
      }
    }
    for (const id of this.lastHeardMs.keys()) {
      if (!live.has(id)) {
        this.lastHeardMs.delete(id);
        this.expiring.delete(id);
      }
    }
    return result;
  }

  /** Forget everything, e.g. when this server stops being head. */
  reset(): void {
    this.lastHeardMs.clear();
    this.expiring.clear();
  }
}
