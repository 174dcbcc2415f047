/**
 * The cached holds' invariants (issue 12), checked as the clients see them:
 * a use of a datum runs from the moment access hands out the view (granted by
 * the servers, or locally from a cached grant) to the moment the program calls
 * release.
 *
 * - Local grant: the servers record the grant as cached by this session (every
 *   current server: up, serving, holding every acknowledged update, newest epoch).
 * - Bytes: what a use starts with is the datum's bytes on the current servers
 *   (every acknowledged write is what the next use sees), and for a grant the
 *   bytes the tail sent it with.
 * - Conflicts: no two uses of one datum in conflicting modes at any instant,
 *   unless one of them is fenced: its hold is no longer recorded by the servers
 *   (its session expired while the client, paused, went on). A fenced write
 *   must then not be acknowledged.
 * - Releases: only the release that ends a use lets its hold go: none leaves a client
 *   while the use goes on, nor before a granted use begins (hold ids are never reused).
 * - Recalls: every recall a client got is answered (a release of that hold is
 *   acknowledged, or the servers dropped the hold: the client's own acquire of
 *   the datum gives its cached grant up) or its session ends, by the time the
 *   run settles.
 */
import type { StoreState } from "../core";
import type { Recall, Update } from "../wire";
import { fnvBytes } from "./hash";

export interface Use {
  client: string;
  session: number;
  name: string;
  mode: "read" | "write";
  holdId: number;
  local: boolean;
  fenced: boolean;
}

export interface UseWorld {
  /** The states of the current servers (empty when none serves). */
  currentStates(): StoreState[];
  report(invariant: string, message: string): void;
}

export class UseChecker {
  private readonly active = new Map<string, Use[]>();
  /** Holds a release was sent for (hold ids are never reused). */
  private readonly releasesSent = new Set<number>();

  constructor(
    private readonly world: UseWorld,
    private readonly pageSize: number,
  ) {}

  start(use: Use, view: Uint8Array, expectedHash: number | undefined): void {
    const states = this.world.currentStates();
    const what = `${use.mode} use of ${use.name} by client ${use.client} (hold ${use.holdId}, session ${use.session}, ${use.local ? "local" : "granted"})`;
    if (!use.local && this.releasesSent.has(use.holdId)) {
      return this.world.report("cache-conflict", `${what}: begins after a release of its hold was sent`);
    }
    if (use.local) {
      for (const state of states) {
        const hold = state.holds.get(use.holdId);
        if (!hold || hold.session !== use.session || !hold.cached || hold.name !== use.name) {
          const recorded = hold ? `${hold.cached ? "cached" : "in use"} ${hold.mode} hold of session ${hold.session}` : "no such hold";
          return this.world.report("cache-grant", `${what}: granted locally, but the servers record ${recorded}`);
        }
      }
    }
    if (!use.local && expectedHash !== undefined && hashPages(view, this.pageSize) !== expectedHash && recorded(states, use)) {
      return this.world.report("4", `${what}: its bytes differ from the tail's at the grant: a stale cache or a wrong page version`);
    }
    for (const state of states) {
      if (!sameBytes(state, use.name, view)) {
        if (!recorded([state], use)) use.fenced = true;
        else return this.world.report("cache-bytes", `${what}: starts with bytes that are not the servers' (an acknowledged write it does not see)`);
      }
    }
    let list = this.active.get(use.name);
    if (!list) this.active.set(use.name, (list = []));
    for (const other of list) {
      if (other.client === use.client || (other.mode === "read" && use.mode === "read")) continue;
      if (states.length === 0) continue;
      const mine = recorded(states, use);
      const theirs = recorded(states, other);
      if (mine && theirs) {
        const describe = (u: Use) => `${u.mode} use by client ${u.client} (hold ${u.holdId}, ${u.local ? "local" : "granted"})`;
        return this.world.report("cache-conflict", `${use.name}: ${describe(use)} began while ${describe(other)} went on, both recorded by the servers`);
      }
      if (!mine) use.fenced = true;
      if (!theirs) other.fenced = true;
    }
    list.push(use);
  }

  end(use: Use): void {
    const list = this.active.get(use.name);
    const at = list?.indexOf(use) ?? -1;
    if (list && at >= 0) list.splice(at, 1);
  }

  /**
   * A release of `holdId` leaves client process `client`. Only the release that ends a use
   * may let its hold go: one sent while the use goes on, or before a granted use began (a
   * stray grant's release racing the grant's own delivery, sim seed 848400009), leaves the
   * program using pages the servers may grant to another.
   */
  releasing(client: string, holdId: number): void {
    this.releasesSent.add(holdId);
    const use = this.activeOn(holdId);
    if (use) this.world.report("cache-conflict", `client ${client}: sends a release of hold ${holdId} while the ${use.mode} use of ${use.name} by client ${use.client} goes on`);
  }

  /** Client `client` released or abandoned the view of hold `holdId`: its use ends. */
  endHold(client: string, holdId: number): void {
    const use = this.activeOn(holdId);
    if (use?.client === client) this.end(use);
  }

  /** The use in progress that rests on hold `holdId`, if any. */
  activeOn(holdId: number): Use | undefined {
    for (const list of this.active.values()) {
      const use = list.find((u) => u.holdId === holdId);
      if (use) return use;
    }
    return undefined;
  }

  /** The client process is gone (crash, close): its uses end. */
  endClient(client: string): void {
    for (const list of this.active.values()) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.client === client) list.splice(i, 1);
    }
  }
}

function recorded(states: StoreState[], use: Use): boolean {
  return states.every((state) => state.holds.get(use.holdId)?.session === use.session);
}

function sameBytes(state: StoreState, name: string, view: Uint8Array): boolean {
  const datum = state.data.get(name);
  if (!datum || datum.size !== view.length) return false;
  for (let i = 0; i < datum.pageCount; i++) {
    const page = state.pages.read(datum.firstPage + i);
    const from = i * state.pageSize;
    const mine = view.subarray(from, Math.min(from + state.pageSize, view.length));
    for (let j = 0; j < mine.length; j++) if (mine[j] !== page[j]) return false;
  }
  return true;
}

/** FNV over the whole pages under the view (the tail hashes the datum's whole pages: datumHash). */
function hashPages(view: Uint8Array, pageSize: number): number {
  return fnvBytes(new Uint8Array(view.buffer, view.byteOffset, Math.ceil(view.length / pageSize) * pageSize), 0x811c9dc5);
}

/** Recalls sent and their answers, and the faults that struck while one was open. */
export class RecallWatch {
  /** Recalls sent by a head, by hold id, until a release of the hold or the end of its session is acknowledged. */
  private readonly open = new Map<number, { recall: Recall; delivered: boolean }>();
  private scanned = 0;
  readonly faults = { head: 0, middle: 0, tail: 0, client: 0 };

  sent(recall: Recall): void {
    if (!this.open.has(recall.holdId)) this.open.set(recall.holdId, { recall, delivered: false });
  }

  delivered(recall: Recall): void {
    const entry = this.open.get(recall.holdId);
    if (entry) entry.delivered = true;
  }

  /**
   * Follows the acknowledged history (releases answer recalls, session ends close them)
   * and the current servers' states (a hold they no longer have needs no answer).
   */
  follow(length: number, updateAt: (seq: number) => Update | null, currentStates: () => StoreState[]): void {
    if (length < this.scanned) this.scanned = length;
    for (let seq = this.scanned + 1; seq <= length; seq++) {
      const update = updateAt(seq);
      if (!update) continue;
      const op = update.op;
      // A write release refused for lack of space releases the hold too (core/state.ts): it answers the recall.
      if (op.type === "release" || (op.type === "refused" && op.holdId > 0)) this.open.delete(op.holdId);
      else if (op.type === "expire_session" || op.type === "close_session") {
        const session = op.type === "expire_session" ? op.session : update.session;
        for (const [holdId, entry] of this.open) if (entry.recall.session === session) this.open.delete(holdId);
      }
    }
    this.scanned = length;
    if (this.open.size === 0) return;
    const states = currentStates();
    if (states.length === 0) return;
    for (const holdId of this.open.keys()) if (states.every((state) => !state.holds.has(holdId))) this.open.delete(holdId);
  }

  get pending(): boolean {
    return this.open.size > 0;
  }

  pendingFor(session: number): boolean {
    for (const entry of this.open.values()) if (entry.recall.session === session) return true;
    return false;
  }

  /** At the end: a recall a client got and never answered, its session still open. */
  unanswered(sessions: ReadonlySet<number>): Recall | null {
    for (const entry of this.open.values()) if (entry.delivered && sessions.has(entry.recall.session)) return entry.recall;
    return null;
  }
}
