/**
 * The invariants of DESIGN §7, checked after every step of a run.
 *
 * 1. No acknowledged update is lost while a server that had it survives.
 *    An update is acknowledged once a tail has applied it (the tail replies
 *    and acks up the chain; a server that becomes tail acknowledges all it
 *    has) — with disks, once the whole chain has also synced it (the tail's
 *    replies wait for that: core/chain_sync.ts). `committed` is the acknowledged history, one sequence. Every step:
 *    a tail's history must agree with it (a tail that acknowledges a different
 *    update at a committed sequence number means one of the two is lost), and
 *    some live server must still hold all of it. Only a crash may take the last
 *    copy away, and the fault budget (see simulation.ts) never crashes the last
 *    server holding it when servers have no disk — so any loss is a violation.
 *    With disks, a power loss may take updates that need no sync (holds,
 *    sessions) once every live member of the newest chain that served (its
 *    tail adopted it) has lost them, as
 *    docs/recovery.md accepts; anything needing a sync is still a violation.
 * 2. Each member's history is a prefix of its predecessor's in their common
 *    configuration (same updates, same order); gaps and duplicates are caught
 *    as updates are logged (AppliedHistory.append).
 * 3. No datum has a writer together with another holder, on any server's state
 *    (the clients' view is checked at the end with checkHolds).
 * Also: an epoch names one configuration only.
 */
import { predecessorOf } from "../core/chain";
import type { StoreState } from "../core";
import type { Reply } from "../wire";
import { AppliedHistory, describeUpdate } from "./applied";
import { RunningHash, fnvString } from "./hash";
import { needsSync } from "../core/durable";
import type { ServerMachine } from "./machine";

/** How far back a reply's update is looked for in the history of a server that is no longer tail. */
const REPLIED_LOOKBACK = 1024;

/** A violated invariant (or an inconsistency of the simulator): the run fails with it. */
export class Failed extends Error {
  constructor(
    readonly invariant: string,
    message: string,
  ) {
    super(message);
  }
}

export class Checker {
  readonly committed = new AppliedHistory();
  private readonly epochs = new Set<number>();
  /** Epochs whose tail wrote the configuration down: only those can have acknowledged anything. */
  private readonly servedEpochs = new Set<number>();
  /** Acknowledged updates that died with the last server holding them (only with durable storage). */
  lostWithCrashes = 0;
  /**
   * After a crash of every server of the newest chain that held them: acknowledged updates
   * from this seq on needed no sync (holds, sessions) and may be forgotten by the chain that
   * restarts, even if a server outside it (a joiner, a removed or paused server) or one
   * crashed process kept them (DESIGN §6, docs/recovery.md: a forgotten hold is fenced).
   * Null: none.
   */
  private forgivableFrom: number | null = null;

  /** When each acknowledged update was acknowledged (index: seq). */
  private readonly acknowledgedAtMs: number[] = [];

  constructor(
    private readonly servers: ServerMachine[],
    private readonly fail: (invariant: string, message: string) => void,
    private readonly nowMs: () => number,
  ) {}

  /**
   * An epoch names one configuration: no two live servers may hold different
   * chains under one epoch. (A server restarted without a disk may issue again an
   * epoch it issued before it crashed, when no live server remembers it: harmless.)
   */
  sawConfig(server: ServerMachine, epoch: number, chain: number[]): void {
    this.epochs.add(epoch);
    if (epoch === 0) return;
    if (chain[chain.length - 1] === server.id) this.servedEpochs.add(epoch);
    const key = chain.join(",");
    for (const other of this.servers) {
      if (!other.up || other === server || other.replica.config.epoch !== epoch) continue;
      const theirs = other.replica.config.chain.join(",");
      if (theirs !== key) this.fail("epoch", `epoch ${epoch} names two configurations: [${theirs}] at server ${other.id} and [${key}] at server ${server.id}`);
    }
  }

  get configurations(): number {
    return this.epochs.size;
  }

  afterStep(crashed: ServerMachine | null): void {
    this.checkChainOrder();
    this.checkAcknowledged(crashed);
    this.checkHoldsOnStates();
  }

  /**
   * The longest prefix of the acknowledged history some server other than
   * `except` holds: in memory if it is up, on its disk if it is down. With
   * `runningOnly`, only servers that are up and not paused count.
   */
  heldPrefix(except: ServerMachine | null = null, runningOnly = false): number {
    const c = this.committed;
    let best = 0;
    for (const server of this.servers) {
      if (server === except || (runningOnly && (!server.up || server.paused))) continue;
      const history = server.up ? server.history : server.storage.onDisk;
      if (history.samePrefix(c, c.length)) return c.length;
      best = Math.max(best, history.commonPrefix(c));
    }
    return best;
  }

  private holdersOf(seq: number): string {
    const up = this.servers.filter((s) => s.up && s.history.samePrefix(this.committed, seq)).map((s) => s.id);
    const disks = this.servers.filter((s) => !s.up && s.storage.onDisk.samePrefix(this.committed, seq)).map((s) => s.id);
    const parts = [up.length ? `live servers ${up.join(",")}` : "", disks.length ? `the disks of crashed servers ${disks.join(",")}` : ""];
    return parts.filter((p) => p).join(" and ") || "no server";
  }

  private checkChainOrder(): void {
    for (const server of this.servers) {
      if (!server.up || server.replica.status !== "member") continue;
      const config = server.replica.config;
      const predId = predecessorOf(config, server.id);
      if (predId === null) continue;
      const pred = this.servers[predId - 1]!;
      if (!pred.up || pred.replica.status !== "member" || pred.replica.config.epoch !== config.epoch) continue;
      const mine = server.history;
      const theirs = pred.history;
      if (mine.length <= theirs.length && mine.samePrefix(theirs, mine.length)) continue;
      const common = mine.commonPrefix(theirs);
      this.fail(
        "2",
        `in epoch ${config.epoch} [${config.chain}], server ${server.id} (at ${mine.length}) is not a prefix of its predecessor ${pred.id} (at ${theirs.length}): ` +
          `they agree up to ${common}; at ${common + 1} server ${server.id} has ${describeUpdate(mine.updateAt(common + 1))}, server ${pred.id} has ${describeUpdate(theirs.updateAt(common + 1))}`,
      );
      return;
    }
  }

  /**
   * A tail sent a reply: what it acknowledges counts now, though the step may go on to make
   * it something else (a tail paused past --suspect-ms replies to what waited for it, then
   * its first tick makes it boot: sim seed 261005760 counted nothing it had acknowledged).
   */
  replied(server: ServerMachine, session: number, reqNo: number, reply: Reply): void {
    if (!server.up) return;
    if (server.replica.isTail) {
      this.acknowledgedBy(server);
      return;
    }
    // A reply made as tail can leave once the server is tail no longer: a forward and the
    // configuration that appends a new tail, read together, were one step, and the replies
    // left after the write. The client has it: the update is acknowledged (sim seed
    // 1205002882, --one-way: uncounted, the checker took the new tail, still short of it,
    // for a server holding every acknowledged update). Not the head's own refusals, which
    // answer requests it does not sequence now (a resend after the session's close, sequenced
    // before and never acknowledged, is refused ESESSION: sim seed 1212002930).
    if (reply.type === "error" && (reply.code === "ESESSION" || reply.code === "EUNAVAILABLE")) return;
    const seq = this.seqOfRequest(server, session, reqNo);
    if (seq !== null) this.acknowledgedUpTo(server, seq);
  }

  /** Where `server`'s recent history sequenced request `reqNo` of `session` (null: not among them). */
  private seqOfRequest(server: ServerMachine, session: number, reqNo: number): number | null {
    if (session === 0) return null;
    const h = server.history;
    for (let seq = h.length; seq >= 1 && seq > h.length - REPLIED_LOOKBACK; seq--) {
      const update = h.updateAt(seq);
      if (update && update.session === session && update.reqNo === reqNo) return seq;
    }
    return null;
  }

  /** Takes in what tail `server` acknowledges; false when that contradicts what was acknowledged before. */
  private acknowledgedBy(server: ServerMachine): boolean {
    // With disks (--fsync always) a tail replies once the chain has synced: acknowledged is less than applied.
    return this.acknowledgedUpTo(server, server.replica.acknowledgedSeq);
  }

  /** Takes in that `server`'s history is acknowledged up to `upTo`; false when that contradicts what was acknowledged before. */
  private acknowledgedUpTo(server: ServerMachine, upTo: number): boolean {
    const c = this.committed;
    const h = server.history;
    const acknowledged = Math.min(h.length, upTo);
    const overlap = Math.min(h.length, c.length);
    if (!h.samePrefix(c, overlap)) {
      const at = h.commonPrefix(c) + 1;
      if (this.forgivableFrom !== null && at >= this.forgivableFrom) {
        this.lostWithCrashes += c.length - (at - 1);
        c.truncate(at - 1);
        for (let seq = at; seq <= acknowledged; seq++) this.acknowledgedAtMs[seq] = this.nowMs();
        c.extendFrom(h, acknowledged);
        this.forgivableFrom = null;
        return true;
      }
      this.fail(
        "1",
        `tail ${server.id} (epoch ${server.replica.config.epoch} [${server.replica.config.chain}]) acknowledges ${describeUpdate(h.updateAt(at))} at seq ${at}, ` +
          `where ${describeUpdate(c.updateAt(at))} was acknowledged before (still held by ${this.holdersOf(at)}): one of them is lost`,
      );
      return false;
    }
    if (acknowledged > c.length) {
      for (let seq = c.length + 1; seq <= acknowledged; seq++) this.acknowledgedAtMs[seq] = this.nowMs();
      c.extendFrom(h, acknowledged);
      this.forgivableFrom = null; // acknowledged on top of them: they count again
    }
    return true;
  }

  private checkAcknowledged(crashed: ServerMachine | null): void {
    const c = this.committed;
    if (crashed && crashed.storage.durable && !this.newestChainHoldsAll()) this.noteUnsyncedSuffixAtRisk();
    if (crashed && crashed.storage.lossWindowMs > 0 && Number.isFinite(crashed.storage.lossWindowMs) && !this.newestChainHoldsAll()) {
      this.noteRecentAtRisk(crashed.storage.lossWindowMs);
    }
    for (const server of this.servers) {
      if (server.up && server.replica.isTail && !this.acknowledgedBy(server)) return;
    }
    const held = this.heldPrefix();
    if (held >= c.length) return;
    if (this.forgivableFrom !== null && held + 1 >= this.forgivableFrom) {
      this.lostWithCrashes += c.length - held;
      c.truncate(held);
      return;
    }
    if (crashed && crashed.storage.durable) {
      // Every server that had them lost them in a crash (power lost before a sync). With
      // --fsync always that is allowed only for updates that need no sync (holds, sessions).
      for (let seq = held + 1; seq <= c.length; seq++) {
        const update = c.updateAt(seq);
        if (update && needsSync(update)) {
          this.fail("1", `acknowledged ${describeUpdate(update)} is on no server's disk after server ${crashed.id} crashed, although it needed a sync before it was acknowledged`);
        }
      }
      this.lostWithCrashes += c.length - held;
      c.truncate(held);
      return;
    }
    const why = crashed ? `server ${crashed.id} crashed holding the last copy (the fault budget should have prevented it)` : "no server crashed in this step";
    this.fail("1", `acknowledged update ${describeUpdate(c.updateAt(held + 1))} (seq ${held + 1} of ${c.length}) is held by no live server any more; ${why}`);
  }

  /**
   * Whether a live member of the newest chain that held acknowledged updates still holds them
   * all. That is the newest configuration any server knows (in memory, or saved on a crashed
   * server's disk) whose tail adopted it: one its issuer saved and crashed with before its tail
   * heard of it acknowledged nothing, and the chain that held the updates is the one before.
   * When no member of that chain does, the chain that serves next may restart from a disk
   * that lost the unsynced suffix, and a joiner or a server outside it may keep a copy the
   * restart does not wait for (docs/recovery.md). Sim seed 1076000698: e193 [1,2,3], issued
   * by 1, which lost power at once, lists joiner 3, which had the hold update e129 [1,2]
   * acknowledged and both its members lost in power losses.
   */
  private newestChainHoldsAll(): boolean {
    let newest: { epoch: number; chain: number[] } | null = null;
    for (const server of this.servers) {
      const config = server.up ? server.replica.config : server.storage.savedConfig;
      if (config && this.servedEpochs.has(config.epoch) && (!newest || config.epoch > newest.epoch)) newest = config;
    }
    if (!newest) return this.servers.some((server) => server.up && server.history.samePrefix(this.committed, this.committed.length));
    return newest.chain.some((id) => {
      const server = this.servers[id - 1]!;
      return server.up && server.history.samePrefix(this.committed, this.committed.length);
    });
  }

  /** --fsync batch: a power loss of every server may lose what was acknowledged in the last `windowMs` (not synced yet). */
  private noteRecentAtRisk(windowMs: number): void {
    const c = this.committed;
    let first = c.length + 1;
    while (first > 1 && (this.acknowledgedAtMs[first - 1] ?? 0) > this.nowMs() - windowMs) first--;
    if (first <= c.length) this.forgivableFrom = Math.min(this.forgivableFrom ?? Infinity, first);
  }

  private noteUnsyncedSuffixAtRisk(): void {
    const c = this.committed;
    let lastSynced = c.length;
    for (let update = c.updateAt(lastSynced); update && !needsSync(update); update = c.updateAt(lastSynced)) lastSynced--;
    if (lastSynced < c.length) this.forgivableFrom = Math.min(this.forgivableFrom ?? Infinity, lastSynced + 1);
  }

  private checkHoldsOnStates(): void {
    for (const server of this.servers) {
      if (!server.up) continue;
      for (const datum of server.state.data.values()) {
        let writers = 0;
        for (const hold of datum.holders) if (hold.mode === "write") writers++;
        if (writers > 1 || (writers === 1 && datum.holders.length > 1)) {
          const holders = datum.holders.map((h) => `${h.mode} hold ${h.id} of session ${h.session}`).join(", ");
          this.fail("3", `server ${server.id} (${server.replica.status}, tail: ${server.replica.isTail}) has ${datum.name} held by ${holders}`);
          return;
        }
      }
    }
  }
}

/** A digest of everything in a state that replicas must agree on (order-insensitive where order means nothing). */
export function stateDigest(state: StoreState): string {
  const h = new RunningHash();
  h.add(state.appliedSeq);
  h.add(state.nextHoldId);
  for (const run of state.allocator.freeRuns()) {
    h.add(run.first);
    h.add(run.count);
  }
  const names = [...state.data.keys()].sort();
  for (const name of names) {
    const d = state.data.get(name)!;
    h.addString(name);
    for (const n of [d.firstPage, d.pageCount, d.size, d.createdSeq, d.version]) h.add(n);
    for (const hold of [...d.holders].sort((a, b) => a.id - b.id)) h.addString(`${hold.id}/${hold.session}/${hold.mode}/${hold.reqNo}`);
    for (const w of d.queue) h.addString(`${w.session}/${w.reqNo}/${w.mode}/${w.knownCreatedSeq}/${w.cachedVersion}`);
    for (let page = d.firstPage; page < d.firstPage + d.pageCount; page++) {
      h.add(state.pages.pageSeq[page]!);
      const bytes = state.pages.read(page);
      let ph = 0x811c9dc5;
      for (let i = 0; i < bytes.length; i++) ph = Math.imul(ph ^ bytes[i]!, 0x01000193);
      h.add(ph >>> 0);
    }
  }
  for (const id of [...state.sessions.keys()].sort((a, b) => a - b)) {
    const s = state.sessions.get(id)!;
    h.add(id);
    h.add(s.timeoutMs);
    h.add(s.doneBelow);
    for (const reqNo of [...s.replies.keys()].sort((a, b) => a - b)) h.add(fnvString(`${reqNo}:${JSON.stringify(s.replies.get(reqNo))}`));
    for (const hold of [...s.holds].sort((a, b) => a - b)) h.add(hold);
    for (const reqNo of [...s.waiting.keys()].sort((a, b) => a - b)) h.addString(`${reqNo}:${s.waiting.get(reqNo)}`);
  }
  for (const id of [...state.holds.keys()].sort((a, b) => a - b)) {
    const hold = state.holds.get(id)!;
    h.addString(`${hold.id}/${hold.session}/${hold.name}/${hold.mode}/${hold.reqNo}`);
  }
  return h.hex();
}
