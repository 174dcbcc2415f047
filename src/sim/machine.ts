/**
 * One simulated server machine: the real ServerNode of src/server (with its
 * real Replica) given the simulation's network, virtual clock and a Storage
 * as its host. The machine is the world around the node — whether the process
 * is up or paused, its incarnation, its disk — and what the checks read: the
 * history of updates it logged (AppliedHistory), taken from the disk writes
 * the node makes, never from a copy of its logic.
 */
import { NONCE_BYTES } from "../wire";
import type { Message, PeerMessage, Recall, ReplyMessage } from "../wire";
import { type Persist, Replica, type StoreState } from "../core";
import { JOINER_HELD_NOTE } from "../core/joiner_flow";
import { INBOUND_BUFFERED_BYTES_MAX } from "../constants";
import { type ConnId, type NodeDisk, type NodeHost, type NodeLog, type NodeObserver, peerFrameBytesMax } from "../server/host";
import { ServerNode } from "../server/node";
import { DiskQueue, type QueueClock, type QueueStore } from "../server/diskqueue";
import { AppliedHistory } from "./applied";
import { fnvBytes } from "./hash";
import type { Rng } from "./prng";
import type { Storage } from "./storage";

/** A disk's sync takes up to this long (simulated ms): forwards and other servers' work go on meanwhile. */
const SYNC_MS_MAX = 2;

export interface ReplicaSettings {
  peers: number[];
  quorum: "none" | "majority";
  sessionTimeoutMsDefault: number;
  heartbeatMs: number;
  suspectMs: number;
  segmentSize: number;
  pageSize: number;
  /** The servers' --secret (undefined: no challenge). */
  secret: string | undefined;
  /** ReplicaOptions.joinerBacklogBytes: drawn small in half the seeds, so that a joiner's forwards get held back. */
  joinerBacklogBytes?: number;
}

/** What a machine asks of the simulated world. */
export interface World {
  readonly nowMs: number;
  send(from: ServerMachine, conn: ConnId, bytes: Uint8Array): void;
  close(from: ServerMachine, conn: ConnId, reason: string): void;
  dial(from: ServerMachine, peer: number): void;
  trace(what: string, detail?: string | (() => string)): void;
  /** Runs `run` on the server `afterMs` from now: its disk's work done (if it is still the same incarnation). */
  diskLater(from: ServerMachine, afterMs: number, run: () => void): void;
  /** An internal inconsistency of the simulation or a violated invariant seen inside a step. */
  fail(invariant: string, message: string): never;
  /** The same, seen where it cannot throw into the step (a promise's continuation). */
  report(invariant: string, message: string): void;
  /** A background checkpoint began (for the run's figures). */
  checkpointStarted(): void;
  /** A tail held back its forwards to a joiner too far behind (core/joiner_flow.ts). */
  joinerHeld(): void;
  /** A write failed for lack of space (the DiskQueue will try again). */
  diskWriteRefused(): void;
  /** A configuration this server saved (adopted or issued). */
  sawConfig(server: ServerMachine, epoch: number, chain: number[]): void;
  /** What a snapshot arriving on `conn` at `seq` brings (captured when it was sent). */
  snapshotHistory(conn: ConnId, seq: number): AppliedHistory | undefined;
  sentPeer(from: ServerMachine, conn: ConnId, message: PeerMessage): void;
  sentReply(from: ServerMachine, conn: ConnId, body: ReplyMessage): void;
  sentRecall(recall: Recall): void;
  received(to: ServerMachine, conn: ConnId, message: Message | PeerMessage): void;
}

export class ServerMachine implements NodeHost, NodeDisk, NodeObserver {
  up = false;
  /** Stopped (SIGSTOP, a long pause): nothing runs; what arrives waits in `held` until it resumes. */
  paused = false;
  readonly held: unknown[] = [];
  incarnation = 0;
  private current: ServerNode | null = null;
  history = new AppliedHistory();
  /** The connection whose bytes the node is handling now: a snapshot installed comes from it. */
  private bytesFrom: ConnId | null = null;
  /** Work the node deferred to the end of the current event (its "microtasks"). */
  private deferred: (() => void)[] = [];
  readonly log: NodeLog;

  constructor(
    readonly id: number,
    private readonly settings: ReplicaSettings,
    readonly storage: Storage,
    private readonly world: World,
    /** Ticks per virtual millisecond differ per server, as timers do. */
    readonly tickMs: number,
    private readonly rng: Rng,
  ) {
    const trace = (text: string) => {
      if (text.endsWith(JOINER_HELD_NOTE)) this.world.joinerHeld();
      this.world.trace(`server ${this.id}:`, text);
    };
    this.log = { info: trace, warn: trace, error: trace, debug: trace };
  }

  get node(): ServerNode {
    if (!this.current) return this.world.fail("sim", `server ${this.id} is down: it has no node`);
    return this.current;
  }

  get replica(): Replica {
    return this.node.replica;
  }

  get state(): StoreState {
    return this.node.replica.state;
  }

  get disk(): NodeDisk {
    return this;
  }

  /** A new incarnation from what the storage recovers. */
  start(): void {
    // The new incarnation first: recovery already starts background work (the spare segment, --fsync batch's syncs), which belongs to it.
    this.incarnation++;
    const recovered = this.storage.recover((run, afterMs) => this.world.diskLater(this, afterMs ?? this.rng.next() * SYNC_MS_MAX, run));
    this.up = true;
    this.history = recovered.history;
    const { segmentSize, pageSize, secret, ...replicaSettings } = this.settings;
    const replica = new Replica({ selfId: this.id, ...replicaSettings, awaitSync: this.storage.durable }, recovered.state, recovered.lastEpoch, recovered.config ?? undefined, recovered.vote ?? undefined, recovered.epochs, recovered.bootPeers);
    const options = {
      selfId: this.id,
      addresses: this.settings.peers.map(String),
      segmentSize,
      pageSize,
      sessionTimeoutMs: this.settings.sessionTimeoutMsDefault,
      heartbeatMs: this.settings.heartbeatMs,
      suspectMs: this.settings.suspectMs,
      secret,
      inboundBufferedBytesMax: INBOUND_BUFFERED_BYTES_MAX,
      peerFrameBytesMax: peerFrameBytesMax(segmentSize),
    };
    this.queue = new DiskQueue(this.queueStore(), `server ${this.id}`, this.log, this.queueClock());
    this.current = new ServerNode(replica, options, this, this);
    // As a server's start: a log past its limit is checkpointed now (src/server/server.ts).
    if (this.storage.checkpointDue) this.world.diskLater(this, 0, () => this.checkpoint());
    if (recovered.state.appliedSeq !== this.history.length) {
      this.world.fail("sim", `server ${this.id} recovered state at ${recovered.state.appliedSeq} but a history of ${this.history.length}`);
    }
  }

  crash(): void {
    this.up = false;
    this.paused = false;
    this.held.length = 0;
    this.current = null;
    this.deferred = [];
    this.syncing = [];
    this.queue = null;
  }

  /** Runs one event on the node, then what it deferred (as the event loop runs microtasks after a callback). */
  run(fn: (node: ServerNode) => void, on: ConnId | null = null): void {
    this.bytesFrom = on;
    try {
      fn(this.node);
      while (this.deferred.length > 0 && this.current) this.deferred.shift()!();
    } finally {
      this.bytesFrom = null;
    }
    // While its disk is full, updates the node applied wait in the DiskQueue, not yet logged.
    if (this.current && this.state.appliedSeq !== this.history.length && !this.waiting) {
      this.world.fail("sim", `server ${this.id} is at ${this.state.appliedSeq} but logged ${this.history.length} updates`);
    }
  }

  // ---- NodeHost -----------------------------------------------------------------------

  nowMs(): number {
    return this.world.nowMs;
  }

  send(conn: ConnId, bytes: Uint8Array): void {
    this.world.send(this, conn, bytes);
  }

  close(conn: ConnId, reason: string): void {
    this.world.close(this, conn, reason);
  }

  dial(peer: number): void {
    this.world.dial(this, peer);
  }

  defer(fn: () => void): void {
    this.deferred.push(fn);
  }

  batch(fn: () => void): void {
    fn();
  }

  pendingBytes(): number {
    return 0;
  }

  nonce(): Uint8Array {
    const bytes = new Uint8Array(NONCE_BYTES);
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(this.rng.next() * 256);
    return bytes;
  }

  admit(): null {
    return null;
  }

  largeFrame(): void {}
  largeFrameArrived(): void {}

  frameBuffer(bytes: number): Uint8Array {
    return new Uint8Array(bytes);
  }

  // ---- NodeDisk: the Storage, and the history the checks read -----------------------------

  get waiting(): boolean {
    return this.queue?.waiting ?? false;
  }

  spaceShort(bytes: number): boolean {
    return this.storage.spaceShort(bytes);
  }

  /** src/server's own DiskQueue, over this machine's storage, for the current incarnation. */
  private queue: DiskQueue | null = null;

  /**
   * Batches written and waiting for their sync, oldest first (--fsync always: forwards leave
   * before the sync, so a crash may fall between; batch and off do not wait for a sync).
   */
  private syncing: (() => void)[] = [];

  /** The oldest sync under way completes (an event of its own, drawn a little later). */
  private onSynced(): void {
    this.syncing.shift()?.();
  }

  /** What each snapshot to install brings: read from its connection when the node hands it over (a full disk may write it later). */
  private snapshotsBrought = new WeakMap<Persist, AppliedHistory | undefined>();

  write(items: Persist[], written: () => void, unsynced?: () => void): void {
    const queue = this.queue ?? this.world.fail("sim", `server ${this.id} is down: it has no disk queue`);
    for (const item of items) {
      if (item.kind === "install") this.snapshotsBrought.set(item, this.bytesFrom === null ? undefined : this.world.snapshotHistory(this.bytesFrom, item.seq));
    }
    queue.push(
      items,
      () => {
        written();
        if (this.storage.checkpointDue) this.world.diskLater(this, 0, () => this.checkpoint());
      },
      unsynced,
    );
  }

  /** What the DiskQueue writes through: the storage, and the history the checks read, as items are written. */
  private queueStore(): QueueStore {
    return {
      persist: (item) => {
        if (item.kind === "install") this.install(item);
        const info = this.storage.write(item, this.history);
        if (item.kind === "log") {
          const problem = this.history.append(item.update);
          if (problem) this.world.fail("2", `server ${this.id}: ${problem}`);
        }
        if (item.kind === "config") this.world.sawConfig(this, item.config.epoch, item.config.chain);
        return info;
      },
      flush: () => this.storage.flush(),
      // The sync itself happens at a later event (afterCommit), so a crash may fall before it.
      commit: () => {},
      afterCommit: (done, wroteAnything) => {
        const complete = () => {
          this.storage.commit();
          done();
        };
        if (!this.storage.durable || (!wroteAnything && this.syncing.length === 0)) return complete();
        this.syncing.push(complete);
        this.world.diskLater(this, this.rng.next() * SYNC_MS_MAX, () => this.onSynced());
      },
      forgetFreeSpace: () => {
        this.world.diskWriteRefused();
        this.storage.forgetFreeSpace();
      },
    };
  }

  /** DiskQueue's retries, at disk events of the current incarnation. */
  private queueClock(): QueueClock {
    return {
      later: (ms, fn) => {
        let cancelled = false;
        this.world.diskLater(this, ms, () => cancelled || fn());
        return () => {
          cancelled = true;
        };
      },
      nowMs: () => this.world.nowMs,
    };
  }

  /** As src/server's scheduleCheckpoint: the node hands the disk all it applied, then the background checkpoint. */
  private checkpoint(): void {
    this.node.flush();
    if (this.waiting) return; // the disk is full: no checkpoint now
    const started = this.storage.checkpointIfDue(
      this.replica,
      (message) => this.world.report("sim", `server ${this.id}: ${message}`),
      (message) => this.world.trace(`server ${this.id}:`, message),
    );
    if (started) this.world.checkpointStarted();
  }

  private install(item: Persist & { kind: "install" }): void {
    const { seq, epoch } = item;
    const brought = this.snapshotsBrought.get(item);
    if (!brought || brought.length !== seq) {
      this.world.fail("sim", `server ${this.id} installed a snapshot at ${seq} with no matching history (${brought?.length})`);
    }
    this.history = brought.prefix(seq);
    if (seq > 0 && this.history.epochAt(seq) !== epoch) {
      this.world.fail("2", `server ${this.id} installed a snapshot at ${seq} said to be of epoch ${epoch}, but that update is of epoch ${this.history.epochAt(seq)}`);
    }
  }

  // ---- NodeObserver ---------------------------------------------------------------------

  received(conn: ConnId, message: Message | PeerMessage): void {
    this.world.received(this, conn, message);
  }

  sentReply(conn: ConnId, body: ReplyMessage): void {
    this.world.sentReply(this, conn, body);
  }

  sentRecall(_conn: ConnId, recall: Recall): void {
    this.world.sentRecall(recall);
  }

  sentPeer(conn: ConnId, _to: number, message: PeerMessage): void {
    this.world.sentPeer(this, conn, message);
  }
}

/** Hash of a datum's bytes (whole pages) in a state. */
export function datumHash(state: StoreState, offset: number, size: number): number {
  const first = offset / state.pageSize;
  const count = Math.ceil(size / state.pageSize);
  let h = 0x811c9dc5;
  for (let page = first; page < first + count; page++) h = fnvBytes(state.pages.read(page), h);
  return h;
}
