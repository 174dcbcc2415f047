/**
 * The client's side of cached holds (docs/protocol.md#cached-holds), free of any
 * transport or memory so that the store and the simulator drive the same code.
 *
 * Per datum it keeps the grant the servers gave this session and decides, for each
 * access, release and recall, whether a message goes out. The rules that keep it safe:
 * - a local grant only while the servers record the grant as cached (a release came back
 *   `cached`), no release or give-back is in flight, no recall is pending, and the lease
 *   holds: a session lives at least its timeout after the head last heard it, and the
 *   head heard it at or after the first sending of any request it answered, so local
 *   grants stop CACHE_LEASE_FRACTION of a timeout after that sending;
 * - a recall is answered at once when the grant is idle, else by the release that ends
 *   the use: never by waiting on user code.
 */
import { CACHE_BACKOFF_MS, CACHE_LEASE_FRACTION } from "../constants";
import type { Mode } from "../wire";

export interface CachedGrant {
  holdId: number;
  name: string;
  /** The mode the servers granted: write-cached allows both uses, read-cached reads. */
  mode: Mode;
  /** The use in progress, if any. */
  using: Mode | null;
  /** The servers record it as cached (a release of it came back `cached`). */
  serverCached: boolean;
  /** A release or give-back of it is in flight: the servers decide whether it stays. */
  inFlight: boolean;
  /** A recall came while it was in use or in flight: give it back as soon as possible. */
  recalled: boolean;
  /** Uses of this grant so far: the fencing id of a use is (holdId, use number). */
  uses: number;
}

/** What an access does: use the grant locally, wait for a release in flight, or ask the servers. */
export type AccessStep = { kind: "local"; grant: CachedGrant } | { kind: "wait" } | { kind: "acquire" } | { kind: "deadlock" };

/** What the end of a use sends: the release (pages, or a read's first release), a give-back, or nothing. */
export type EndStep = "release" | "give-back" | "nothing";

export class GrantCache {
  private readonly grants = new Map<string, CachedGrant>();
  private readonly byHoldId = new Map<number, CachedGrant>();
  private leaseUntilMs = -Infinity;
  /** When each datum was last recalled from us: contended data are not cached for a while. */
  private readonly recalledAtMs = new Map<string, number>();
  private leaseMs = 0;
  /** Uses granted locally (no message), for stats and tests. */
  localGrants = 0;

  /** The session's timeout, once opened: the lease is a fraction of it. */
  setSessionTimeout(timeoutMs: number): void {
    this.leaseMs = timeoutMs * CACHE_LEASE_FRACTION;
  }

  /** The servers answered a request of the current session first sent at `firstSentAtMs`. */
  renewLease(firstSentAtMs: number): void {
    this.leaseUntilMs = Math.max(this.leaseUntilMs, firstSentAtMs + this.leaseMs);
  }

  leaseValid(nowMs: number): boolean {
    return nowMs < this.leaseUntilMs;
  }

  get(name: string): CachedGrant | undefined {
    return this.grants.get(name);
  }

  /** Until when local grants are allowed (the lease), in the clock of renewLease. */
  get leaseEndMs(): number {
    return this.leaseUntilMs;
  }

  decide(name: string, mode: Mode, nowMs: number): AccessStep {
    const grant = this.grants.get(name);
    if (!grant) return { kind: "acquire" };
    if (grant.using) return { kind: "deadlock" };
    if (grant.inFlight) return { kind: "wait" };
    if (this.localGrant(name, mode, nowMs)) return { kind: "local", grant };
    // The acquire gives the cached grant up at the servers (StoreState.acquire).
    this.forget(name);
    return { kind: "acquire" };
  }

  /** The grant an access of `name` may use here now, or null; changes nothing (decide does). */
  localGrant(name: string, mode: Mode, nowMs: number): CachedGrant | null {
    const grant = this.grants.get(name);
    if (!grant || grant.using || grant.inFlight) return null;
    const allows = grant.mode === "write" || mode === "read";
    return grant.serverCached && !grant.recalled && allows && this.leaseValid(nowMs) ? grant : null;
  }

  /** Whether an acquire of `name` asks to keep the grant after release (not right after a recall of it). */
  shouldCache(name: string, nowMs: number): boolean {
    const recalled = this.recalledAtMs.get(name);
    if (recalled === undefined) return true;
    if (nowMs - recalled < CACHE_BACKOFF_MS) return false;
    this.recalledAtMs.delete(name);
    return true;
  }

  /** A local use begins (decide said "local"). */
  useLocally(grant: CachedGrant, mode: Mode): void {
    grant.using = mode;
    grant.uses++;
    this.localGrants++;
  }

  /** The servers granted an acquire: the use begins; the grant may be kept after it. */
  granted(holdId: number, name: string, mode: Mode): CachedGrant {
    this.forget(name);
    const grant: CachedGrant = { holdId, name, mode, using: mode, serverCached: false, inFlight: false, recalled: false, uses: 1 };
    this.grants.set(name, grant);
    this.byHoldId.set(holdId, grant);
    return grant;
  }

  /** The user released; says what to send. A "nothing" use ended without a message. */
  endUse(name: string): EndStep {
    const grant = this.grants.get(name);
    if (!grant || !grant.using) return "nothing";
    const use = grant.using;
    grant.using = null;
    if (use === "write" || !grant.serverCached) {
      // Pages to ship, or a read grant the servers still count as in use: a release.
      grant.inFlight = true;
      grant.recalled = false;
      return "release";
    }
    if (grant.recalled) return this.startGiveBack(grant);
    return "nothing";
  }

  /** The reply to a release or give-back. Returns "give-back" when a recall came meanwhile. */
  released(holdId: number, cached: boolean): EndStep {
    const grant = this.byHoldId.get(holdId);
    if (!grant) return "nothing";
    grant.inFlight = false;
    if (!cached) {
      this.forget(grant.name);
      return "nothing";
    }
    grant.serverCached = true;
    if (grant.recalled) return this.startGiveBack(grant);
    return "nothing";
  }

  /**
   * The head recalls `holdId`: true to give it back now; false when the use or the release
   * in flight will. A grant we do not know (forgotten: an acquire or delete gave it up) is
   * given back too: the servers recall only grants released as cached, which no use of ours
   * rests on once forgotten, and a give-back the servers no longer need is refused harmlessly.
   */
  recall(holdId: number, name: string, nowMs: number): boolean {
    this.recalledAtMs.set(name, nowMs);
    const grant = this.byHoldId.get(holdId);
    if (!grant) return true;
    grant.recalled = true;
    if (grant.using || grant.inFlight) return false;
    this.startGiveBack(grant);
    return true;
  }

  private startGiveBack(grant: CachedGrant): EndStep {
    grant.inFlight = true;
    // This give-back answers the recall; a later recall (after a `cached` reply) asks again.
    grant.recalled = false;
    return "give-back";
  }

  forget(name: string): void {
    const grant = this.grants.get(name);
    if (!grant) return;
    this.grants.delete(name);
    this.byHoldId.delete(grant.holdId);
  }

  /** The session is gone (or the store closes): nothing is cached any more, no lease holds. */
  clear(): void {
    this.grants.clear();
    this.byHoldId.clear();
    this.leaseUntilMs = -Infinity;
  }
}
