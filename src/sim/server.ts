/**
 * One simulated storage server: the real Replica of src/core, driven the way
 * src/server/server.ts drives it — client requests go to the replica only
 * when it is head (else the client is told the chain), subscriptions only at
 * the tail, replies go to the connection the session is bound to, and every
 * client connection hears about a new configuration. The I/O is the host's
 * (the simulation); this class only turns events into replica calls and
 * actions into host calls.
 */
import { PROTOCOL_VERSION } from "../constants";
import { type Action, type Output, Replica, type StoreState } from "../core";
import { type Message, type PeerMessage, type Request, decodeMessage, decodePeer } from "../wire";
import { AppliedHistory } from "./applied";
import { fnvBytes } from "./hash";
import type { ClientConn } from "./network";
import type { Storage } from "./storage";

export interface ReplicaSettings {
  peers: number[];
  quorum: "none" | "majority";
  sessionTimeoutMsDefault: number;
  heartbeatMs: number;
  suspectMs: number;
}

/** What a server asks of the simulation. */
export interface ServerHost {
  readonly nowMs: number;
  sendPeer(from: SimServer, to: number, message: PeerMessage): void;
  /** `expectedHash`: for a grant, the hash of the datum's bytes the client must end up with. */
  sendClient(from: SimServer, conn: ClientConn, message: Message, expectedHash?: number): void;
  trace(what: string, detail?: string | (() => string)): void;
  /** An internal inconsistency of the simulation or a violated invariant seen inside a step. */
  fail(invariant: string, message: string): void;
  /** A configuration this server adopted or issued. */
  sawConfig(server: SimServer, epoch: number, chain: number[]): void;
}

export class SimServer {
  up = false;
  /** Stopped (SIGSTOP, a long pause): nothing runs; what arrives waits in `held` until it resumes. */
  paused = false;
  readonly held: unknown[] = [];
  incarnation = 0;
  replica!: Replica;
  history = new AppliedHistory();
  /** Client connections this incarnation accepted. */
  readonly clientConns = new Set<ClientConn>();
  private readonly sessionConns = new Map<number, ClientConn>();
  /** The history a snapshot being installed brings (captured when it was sent). */
  private installing: AppliedHistory | null = null;
  /** Ticks per virtual millisecond differ per server, as timers do. */
  readonly tickMs: number;

  constructor(
    readonly id: number,
    private readonly settings: ReplicaSettings,
    readonly storage: Storage,
    private readonly host: ServerHost,
    tickMs: number,
  ) {
    this.tickMs = tickMs;
  }

  /** A new incarnation from what the storage recovers. */
  start(): void {
    const recovered = this.storage.recover();
    this.incarnation++;
    this.up = true;
    this.history = recovered.history;
    this.replica = new Replica({ selfId: this.id, ...this.settings }, recovered.state, recovered.lastEpoch, recovered.config ?? undefined, recovered.vote ?? undefined, recovered.epochs);
    if (recovered.state.appliedSeq !== this.history.length) {
      this.host.fail("sim", `server ${this.id} recovered state at ${recovered.state.appliedSeq} but a history of ${this.history.length}`);
    }
  }

  crash(): void {
    this.up = false;
    this.paused = false;
    this.held.length = 0;
    this.clientConns.clear();
    this.sessionConns.clear();
  }

  get state(): StoreState {
    return this.replica.state;
  }

  tick(): void {
    this.perform(this.replica.onTick(this.host.nowMs));
  }

  onPeerFrame(frame: Uint8Array, snapshotHistory: AppliedHistory | undefined): PeerMessage {
    const message = decodePeer(frame[4]!, frame.subarray(5));
    this.installing = snapshotHistory ?? null;
    this.perform(this.replica.onPeerMessage(message, this.host.nowMs));
    this.installing = null;
    return message;
  }

  onPeerLost(peer: number): void {
    this.perform(this.replica.onPeerDisconnected(peer));
  }

  /** A client connected (the handshake, without a secret): it gets the welcome. */
  onHello(conn: ClientConn): void {
    conn.accepted = true;
    this.clientConns.add(conn);
    this.host.sendClient(this, conn, { type: "welcome", body: this.welcome() });
  }

  onClientFrame(conn: ClientConn, frame: Uint8Array): Message {
    const message = decodeMessage(frame[4]!, frame.subarray(5));
    if (!conn.accepted) this.host.fail("sim", `client connection ${conn.id} sent ${message.type} before its hello`);
    switch (message.type) {
      case "request":
        this.onRequest(conn, message.body);
        break;
      case "heartbeat":
        if (!this.replica.isHead) break;
        // As src/server: a client that only heartbeats (it uses cached grants) still gets its recalls here.
        this.sessionConns.set(message.body.session, conn);
        this.perform(this.replica.onClientHeartbeat(message.body.session, message.body.doneBelow));
        break;
      case "subscribe": {
        if (!this.replica.isTail) {
          this.redirect(conn);
          break;
        }
        this.sessionConns.set(message.body.session, conn);
        const outputs = this.replica.storedReplies(message.body.session, message.body.waiting);
        this.perform(outputs.map((output) => ({ kind: "reply", output })));
        break;
      }
      default:
        this.host.fail("sim", `a client sent ${message.type}`);
    }
    return message;
  }

  onClientClosed(conn: ClientConn): void {
    this.clientConns.delete(conn);
    for (const [session, bound] of this.sessionConns) if (bound === conn) this.sessionConns.delete(session);
  }

  private onRequest(conn: ClientConn, request: Request): void {
    if (!this.replica.isHead) {
      this.redirect(conn);
      return;
    }
    if (!this.sessionConns.has(request.session)) this.sessionConns.set(request.session, conn);
    this.perform(this.replica.onRequest(request));
  }

  private redirect(conn: ClientConn): void {
    this.host.sendClient(this, conn, { type: "config", body: this.configForClients() });
  }

  configForClients(): { epoch: number; chain: string[] } {
    const serving = this.replica.status === "member";
    return { epoch: this.replica.config.epoch, chain: serving ? this.replica.config.chain.map(String) : [] };
  }

  private welcome() {
    const config = this.configForClients();
    return {
      version: PROTOCOL_VERSION,
      serverId: this.id,
      segmentSize: this.state.segmentSize,
      pageSize: this.state.pageSize,
      epoch: config.epoch,
      chain: config.chain,
    };
  }

  // ---- actions ----------------------------------------------------------------

  private perform(actions: Action[]): void {
    for (const action of actions) {
      switch (action.kind) {
        case "log": {
          const problem = this.history.append(action.update);
          if (problem) this.host.fail("2", `server ${this.id}: ${problem}`);
          this.storage.log(action.update, this.history);
          break;
        }
        case "install":
          this.onInstall(action.seq, action.epoch, action.snapshot);
          break;
        case "checkpoint":
          this.storage.checkpoint(action.seq, action.epoch, action.snapshot, this.history);
          break;
        case "vote":
          this.storage.saveVote(action.vote);
          break;
        case "send":
          this.host.sendPeer(this, action.to, action.message);
          break;
        case "reply":
          this.deliver(action.output);
          break;
        case "recall": {
          // As src/server: over the connection the session's requests or heartbeats come on (we are its head).
          const conn = this.sessionConns.get(action.recall.session);
          if (conn) this.host.sendClient(this, conn, { type: "recall", body: action.recall });
          break;
        }
        case "config":
          this.storage.saveConfig(action.config);
          this.host.sawConfig(this, action.config.epoch, action.config.chain);
          this.announceConfig();
          break;
        case "note":
          this.host.trace(`server ${this.id}:`, action.text);
          break;
      }
    }
    // As src/server flushes: the disk (with its sync) before anything leaves.
    this.storage.commit();
    if (this.replica.state.appliedSeq !== this.history.length) {
      this.host.fail("sim", `server ${this.id} is at ${this.replica.state.appliedSeq} but logged ${this.history.length} updates`);
    }
  }

  private onInstall(seq: number, epoch: number, snapshot: Uint8Array): void {
    const brought = this.installing;
    if (!brought || brought.length !== seq) {
      this.host.fail("sim", `server ${this.id} installed a snapshot at ${seq} with no matching history (${brought?.length})`);
      return;
    }
    this.history = brought.prefix(seq);
    if (seq > 0 && this.history.epochAt(seq) !== epoch) {
      this.host.fail("2", `server ${this.id} installed a snapshot at ${seq} said to be of epoch ${epoch}, but that update is of epoch ${this.history.epochAt(seq)}`);
    }
    this.storage.install(seq, epoch, snapshot, this.history);
  }

  private deliver(output: Output): void {
    const conn = this.sessionConns.get(output.session);
    if (!conn) {
      this.host.trace(`server ${this.id}: reply dropped (no connection)`, () => `s${output.session}/${output.reqNo} ${output.reply.type}`);
      return;
    }
    const { reply } = output;
    let pages: { page: number; bytes: Uint8Array }[] = [];
    let expectedHash: number | undefined;
    if (reply.type === "granted") {
      pages = this.state.pagesAfter(reply.offset, reply.size, reply.sendAfter).map((p) => ({ page: p.page, bytes: p.bytes.slice() }));
      expectedHash = datumHash(this.state, reply.offset, reply.size);
    }
    this.host.sendClient(this, conn, { type: "reply", body: { session: output.session, reqNo: output.reqNo, reply, pages } }, expectedHash);
  }

  private announceConfig(): void {
    const body = this.configForClients();
    for (const conn of this.clientConns) this.host.sendClient(this, conn, { type: "config", body });
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
