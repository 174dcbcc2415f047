/**
 * One storage server without its transport: it takes bytes from connections
 * and ticks from a clock, and gives back bytes, closes, dials and disk writes
 * through its host (host.ts). It decodes frames, runs the handshake (hello,
 * the secret's challenge), routes client messages (requests and heartbeats to
 * the head, subscriptions and queries to the tail), binds sessions to the
 * connection their replies go on, and passes peer messages to the replica, whose
 * Readys carrier.ts carries out (persist before send).
 * Production (server.ts) and the simulator (src/sim/machine.ts) run this same class.
 */
import { present } from "../assert";
import {
  BUSY_BYTES_PER_MS,
  BUSY_FRAME_BYTES,
  CLIENT_SILENCE_TIMEOUTS,
  DISK_FREE_BYTES_MIN,
  FRAME_ASSEMBLE_BYTES_MIN,
  LARGE_FRAME_BYTES_MIN,
  FRAME_BYTES_MAX,
  HANDSHAKE_FRAME_BYTES_MAX,
  HANDSHAKE_TIMEOUT_MS,
  IDLE_SWEEP_MS,
  PAGE_SIZE,
  PROTOCOL_VERSION,
} from "../constants";
import type { ClientView, Replica } from "../core";
import {
  type Frame,
  FrameBudget,
  FrameDecoder,
  type Message,
  type Op,
  WireError,
  decodeMessage,
  decodePeer,
  encodeMessage,
  isPeerFrameType,
} from "../wire";
import { clientProof, sameProof, serverProof } from "../net/auth";
import { ReadyCarrier } from "./carrier";
import { PeerDialer } from "./dialer";
import type { ConnId, NodeHost, NodeObserver, NodeOptions } from "./host";
import { clusterStatus } from "./status";
import { formatBytes } from "../core/names";


/** What a connection turned out to be, after its hello (and its proof, with a secret). */
type Role =
  | { kind: "new" }
  | { kind: "authenticating"; role: "client" | "server"; senderId: number; clientNonce: Uint8Array; serverNonce: Uint8Array }
  | { kind: "client"; sessions: Set<number> }
  /** A peer's connection to us: its peer messages. */
  | { kind: "peer"; id: number }
  /** Our connection to a peer (dialer.ts): only its handshake answers come back on it. */
  | { kind: "dialled" };

interface Conn {
  id: ConnId;
  decoder: FrameDecoder;
  role: Role;
  openedMs: number;
  lastReceivedMs: number;
  closed: boolean;
}

export class ServerNode {
  private readonly conns = new Map<ConnId, Conn>();
  /** Which connection delivers the replies (and recalls) of each session. */
  private readonly sessionConns = new Map<number, ConnId>();
  private readonly dialer: PeerDialer;
  /** What clients' incomplete frames may hold at once, all together. */
  private readonly clientFrames: FrameBudget;
  private readonly carrier: ReadyCarrier;
  private lastSweepMs: number;
  /** When tick() last ran: input that comes long after it waits for a tick first (overdueTick). */
  private lastTickMs = Number.NEGATIVE_INFINITY;
  authFailures = 0;
  private readonly refusalsLogged = new Set<string>();
  private readonly refusedPeers = new Set<number>();
  /** The disk has less free space than the server keeps (said in the log once per change). */
  private diskShort = false;

  constructor(
    readonly replica: Replica,
    readonly options: NodeOptions,
    private readonly host: NodeHost,
    private readonly observer: NodeObserver = {},
  ) {
    this.clientFrames = new FrameBudget(options.inboundBufferedBytesMax);
    this.lastSweepMs = host.nowMs();
    this.carrier = new ReadyCarrier(replica, host, {
      peerConn: (id) => this.dialer.readyConn(id),
      sessionConn: (session) => this.sessionConns.get(session),
      clientConns: () => this.openClientConns(),
      configForClients: (view) => this.configForClients(view),
    }, observer);
    const shape = { segmentSize: options.segmentSize, pageSize: options.pageSize };
    this.dialer = new PeerDialer(options.selfId, replica.options.peers, options.secret, shape, host, {
      onLost: (id) => this.lostLinkTo(id),
      onReady: (id) => this.carrier.perform(this.replica.onPeerConnected(id)),
      onRefused: (id, why) => this.logRefusal(id, why),
    });
  }

  get selfId(): number {
    return this.options.selfId;
  }

  // ---- events from the host ---------------------------------------------------------

  /** Every tick (at most TICK_MS_MAX apart): peers re-dialled, the replica's timers, handshakes and silent clients. */
  tick(): void {
    const now = this.host.nowMs();
    this.lastTickMs = now;
    this.dialer.maintain(now, this.options.heartbeatMs);
    this.carrier.perform(this.replica.onTick(now));
    // Below the free space it keeps, this server tells the head (which then refuses growth).
    const short = this.host.disk.spaceShort(0);
    if (short !== this.diskShort) this.logDiskShort(short);
    this.carrier.perform(this.replica.setDiskFull(this.host.disk.waiting || short, now));
    for (const conn of this.conns.values()) {
      // A connection that does not complete its handshake in time is closed (slowloris).
      const greeting = conn.role.kind === "new" || conn.role.kind === "authenticating";
      if (greeting && now - conn.openedMs >= HANDSHAKE_TIMEOUT_MS) this.closeConn(conn, "no handshake in time");
    }
    if (now - this.lastSweepMs >= IDLE_SWEEP_MS) this.closeSilentClients(now);
  }

  /**
   * A process that was stopped (SIGSTOP, swapped out) reads what waited in its sockets in
   * whatever order its event loop picks; the tick that notices the pause must come first. A
   * head stopped 713 ms handled a joiner's news before it, issued a configuration (which
   * heartbeats), so the tick found it just heard from and it served on as head of a chain the
   * others had left; they acknowledged updates it then overwrote (sim seed 323016180).
   */
  private overdueTick(): void {
    if (this.host.nowMs() - this.lastTickMs > this.options.heartbeatMs) this.tick();
  }

  /** A connection accepted from someone: until it proves who it is, it may send only small frames. */
  onAccepted(id: ConnId): void {
    this.addConn(id, { kind: "new" }, HANDSHAKE_FRAME_BYTES_MAX);
  }

  /** Our connection to peer `peer` is open (after host.dial). */
  onDialled(peer: number, id: ConnId): void {
    this.addConn(id, { kind: "dialled" }, this.options.peerFrameBytesMax).decoder.assembleBytesMin = FRAME_ASSEMBLE_BYTES_MIN;
    const hello = this.dialer.onDialled(peer, id);
    if (hello) this.host.send(id, encodeMessage(hello));
  }

  onDialFailed(peer: number): void {
    this.dialer.onDialFailed(peer);
  }

  /** Our connection to `peer` was refused below the protocol (e.g. its TLS certificate). */
  onPeerRefused(peer: number, code: string, message: string): void {
    this.logRefusal(peer, `refused us: ${code} ${message}`);
  }

  /** Our dials to `peer` cannot succeed as configured (its name does not resolve). */
  onPeerUnreachable(peer: number, why: string): void {
    this.logRefusal(peer, why);
  }

  /** Logged once per peer: the dial is retried every heartbeat. */
  private logRefusal(peer: number, why: string): void {
    if (this.refusedPeers.has(peer)) return;
    this.refusedPeers.add(peer);
    this.host.log.error(`server ${peer} (${this.options.addresses[peer - 1]}) ${why}`);
  }

  /** An operator whose clients get ENOSPC finds why in the log (and in status), not only in the clients. */
  private logDiskShort(short: boolean): void {
    this.diskShort = short;
    const reserve = formatBytes(DISK_FREE_BYTES_MIN);
    if (short) this.host.log.warn(`the disk of this server has less than the ${reserve} free it keeps: new data (create, writes) is refused with ENOSPC; free some space, or delete data and take a checkpoint`);
    else this.host.log.info(`the disk of this server has more than the ${reserve} free it keeps again: new data is accepted`);
  }

  /** Bytes arrived on `id`, in arbitrary chunks: whole frames are handled in order. */
  onBytes(id: ConnId, chunk: Uint8Array): void {
    this.overdueTick();
    const conn = this.conns.get(id);
    if (!conn || conn.closed) return;
    conn.lastReceivedMs = this.host.nowMs();
    try {
      conn.decoder.push(chunk, (frame) => {
        if (!conn.closed) this.onFrame(conn, frame);
      });
      if (conn.decoder.assemblingBytes >= LARGE_FRAME_BYTES_MIN) this.host.largeFrameArrived(chunk.length);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      // Tell the peer why before closing: a clear error, never a silent drop.
      this.host.send(id, encodeMessage({ type: "error", body: { code: error.code, message: error.message } }));
      this.closeConn(conn, `protocol error: ${error.message}`);
    }
  }

  /** The connection closed, by either end. */
  onClosed(id: ConnId): void {
    this.overdueTick();
    const conn = this.conns.get(id);
    if (!conn) return;
    conn.closed = true;
    // The part of a large frame that came is garbage now: let the host collect it.
    if (conn.decoder.heldBytes >= FRAME_ASSEMBLE_BYTES_MIN) this.host.largeFrame(conn.decoder.heldBytes);
    conn.decoder.discard();
    this.conns.delete(id);
    if (conn.role.kind === "client") {
      for (const session of conn.role.sessions) if (this.sessionConns.get(session) === id) this.sessionConns.delete(session);
    }
    if (conn.role.kind === "dialled") this.dialer.onClosed(id);
    if (conn.role.kind === "peer") this.lostLinkTo(conn.role.id);
  }

  /**
   * A connection with peer `id` closed. Only when neither ours to it nor its own to us is left
   * may the replica suspect it early (a killed process closes both): a reset of one connection
   * says nothing of the peer, whose heartbeats come on the other. Taken for a death, a cut of
   * server 2's connection while 1's heartbeats to it were delayed 200 ms made 2 remove 1, which
   * served on: two chains (sim seed 333005106).
   */
  private lostLinkTo(id: number): void {
    if (this.dialer.readyConn(id) !== null) return;
    for (const conn of this.conns.values()) if (conn.role.kind === "peer" && conn.role.id === id && !conn.closed) return;
    this.carrier.perform(this.replica.onPeerDisconnected(id));
  }

  /** Stops dialling and closes every connection; what is queued is carried out first. */
  stop(): void {
    this.flush();
    this.dialer.closeAll();
    for (const conn of [...this.conns.values()]) this.closeConn(conn, "server stopping");
  }

  // ---- frames ----------------------------------------------------------------------------

  private addConn(id: ConnId, role: Role, frameBytesMax: number): Conn {
    const now = this.host.nowMs();
    const decoder = new FrameDecoder(frameBytesMax, (bytes) => this.host.frameBuffer(bytes));
    const conn = { id, decoder, role, openedMs: now, lastReceivedMs: now, closed: false };
    this.conns.set(id, conn);
    return conn;
  }

  private onFrame(conn: Conn, frame: Frame): void {
    const role = conn.role;
    if (frame.body.length >= BUSY_FRAME_BYTES && (role.kind === "peer" || role.kind === "client")) {
      // Decoding, applying, logging and forwarding it blocks this server for a while.
      this.carrier.perform(this.replica.onBusy(frame.body.length / BUSY_BYTES_PER_MS, this.host.nowMs()));
      this.flush();
      this.host.largeFrame(frame.body.length);
    }
    try {
      if (role.kind === "peer") {
        if (!isPeerFrameType(frame.type)) return this.refuse(conn, "EPROTO", `frame type ${frame.type} on a server link`);
        const message = decodePeer(frame.type, frame.body);
        this.observer.received?.(conn.id, message);
        return this.carrier.perform(this.replica.onPeerMessage(message, this.host.nowMs()));
      }
      const message = decodeMessage(frame.type, frame.body);
      this.observer.received?.(conn.id, message);
      if (role.kind === "dialled") {
        const answer = this.dialer.onMessage(conn.id, message);
        if (answer) this.host.send(conn.id, encodeMessage(answer));
        return;
      }
      if (role.kind === "new") return this.onHello(conn, message);
      if (role.kind === "authenticating") return this.onAuth(conn, role, message);
      this.onClientMessage(conn, role.sessions, message);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.refuse(conn, "EPROTO", error.message);
    }
  }

  // ---- the handshake ---------------------------------------------------------------------

  private onHello(conn: Conn, message: Message): void {
    if (message.type !== "hello") return this.refuse(conn, "EPROTO", "the first message must be hello");
    const { version, role, senderId, nonce } = message.body;
    if (version !== PROTOCOL_VERSION) {
      return this.refuse(conn, "EPROTO", `protocol version ${version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
    }
    if (role === "server" && senderId === this.selfId) {
      return this.refuse(conn, "EPROTO", `server id ${senderId} is this server's own: every server needs the same --peers, in the same order`);
    }
    if (role === "server" && (senderId < 1 || senderId > this.options.addresses.length)) {
      return this.refuse(conn, "EPROTO", `server id ${senderId} is not one of --peers (${this.options.addresses.length} here)`);
    }
    const secret = this.options.secret;
    if (secret === undefined) return this.admit(conn, role, senderId);
    // Nothing is read or changed before the peer proves it knows the secret.
    const serverNonce = this.host.nonce();
    conn.role = { kind: "authenticating", role, senderId, clientNonce: nonce.slice(), serverNonce };
    this.host.send(conn.id, encodeMessage({ type: "challenge", body: { nonce: serverNonce, proof: serverProof(secret, nonce, serverNonce) } }));
  }

  private onAuth(conn: Conn, pending: Extract<Role, { kind: "authenticating" }>, message: Message): void {
    const expected = clientProof(present(this.options.secret, "authenticating needs a secret"), pending.role, pending.serverNonce, pending.clientNonce);
    if (message.type !== "auth" || !sameProof(message.body.proof, expected)) {
      this.authFailures++;
      // Logged once per server run (and counted): a scan must not flood the log.
      if (this.authFailures === 1) this.host.log.warn("refused a connection with a wrong or missing secret (EAUTH); further ones are counted in status");
      this.host.send(conn.id, encodeMessage({ type: "error", body: { code: "EAUTH", message: "wrong or missing secret (--secret or PSTORE_SECRET)" } }));
      return this.closeConn(conn, "authentication failed");
    }
    this.admit(conn, pending.role, pending.senderId);
  }

  /** The connection is who it says: a client gets the welcome, a peer too (its link is then ready). */
  private admit(conn: Conn, role: "client" | "server", senderId: number): void {
    const refusal = this.host.admit(conn.id, role);
    if (refusal) {
      this.host.log.debug(`refusing a connection: ${refusal.code} ${refusal.message}`);
      this.host.send(conn.id, encodeMessage({ type: "error", body: refusal }));
      return this.closeConn(conn, refusal.message);
    }
    if (role === "server") {
      conn.role = { kind: "peer", id: senderId };
      conn.decoder.frameBytesMax = this.options.peerFrameBytesMax;
      conn.decoder.assembleBytesMin = FRAME_ASSEMBLE_BYTES_MIN;
    } else {
      conn.role = { kind: "client", sessions: new Set() };
      conn.decoder.frameBytesMax = FRAME_BYTES_MAX;
      conn.decoder.budget = this.clientFrames;
      conn.decoder.assembleBytesMin = LARGE_FRAME_BYTES_MIN;
    }
    const config = this.configForClients();
    const notServing = this.replica.whyNotServing();
    const welcome = { version: PROTOCOL_VERSION, serverId: this.selfId, segmentSize: this.options.segmentSize, pageSize: this.options.pageSize, ...config, ...(notServing === "" ? {} : { notServing }) };
    this.host.send(conn.id, encodeMessage({ type: "welcome", body: welcome }));
    // The peer just proved it lives: a suspicion from lost connections ends.
    if (role === "server") this.carrier.perform(this.replica.onPeerConnected(senderId));
  }

  // ---- clients -----------------------------------------------------------------------

  private onClientMessage(conn: Conn, sessions: Set<number>, message: Message): void {
    switch (message.type) {
      case "request": {
        if (!this.replica.isHead) return this.redirect(conn);
        if (!this.sessionConns.has(message.body.session)) this.bindSession(conn, sessions, message.body.session);
        const refusal = this.spaceRefusal(message.body.op);
        // Sequenced all the same (as a "refused" op): the session's request numbers keep no gap.
        const { op } = message.body;
        const holdId = op.type === "release" ? op.holdId : 0;
        const request = refusal ? { ...message.body, op: { type: "refused" as const, code: "ENOSPC", message: refusal, holdId } } : message.body;
        return this.carrier.perform(this.replica.onRequest(request));
      }
      case "heartbeat":
        if (!this.replica.isHead) return;
        // A client that only heartbeats (it uses cached grants) must still get its recalls here.
        if (this.sessionConns.get(message.body.session) !== conn.id) this.bindSession(conn, sessions, message.body.session);
        return this.carrier.perform(this.replica.onClientHeartbeat(message.body.session, message.body.doneBelow));
      case "subscribe":
        if (!this.replica.isTail) return this.redirect(conn);
        this.bindSession(conn, sessions, message.body.session);
        return this.carrier.perform(this.replica.storedReplies(message.body.session, message.body.waiting));
      case "query": {
        const { queryId, kind, name } = message.body;
        if (kind !== "status" && !this.replica.isTail) {
          const error = { code: "EREDIRECT", message: "ask the tail" };
          this.host.send(conn.id, encodeMessage({ type: "queryReply", body: { queryId, json: JSON.stringify({ error }) } }));
          return this.redirect(conn);
        }
        const answer = kind === "status" ? clusterStatus(this.replica, this.options.addresses, this.host.nowMs(), this.options) : this.replica.queryAnswer(kind, name);
        return this.host.send(conn.id, encodeMessage({ type: "queryReply", body: { queryId, json: JSON.stringify(answer) } }));
      }
      default:
        return this.refuse(conn, "EPROTO", `a client does not send ${message.type} messages`);
    }
  }

  /**
   * With the disk (nearly) full, the head refuses what grows the data: a
   * create, a release that carries pages. Deletes, acquires and releases
   * without data go on (they free space, or take a few bytes of the log's
   * preallocated segment); so do reads, which the tail serves from memory.
   */
  private spaceRefusal(op: Op): string | null {
    const bytes = op.type === "create" ? op.size : op.type === "release" ? op.pages.length * PAGE_SIZE : 0;
    if (bytes === 0) return null;
    // A successor that cannot log would hold the whole chain back: its full disk counts as ours.
    const full = this.host.disk.waiting || this.host.disk.spaceShort(bytes) ? this.selfId : this.replica.memberWithFullDisk();
    if (full === null) return null;
    const what = op.type === "release" ? "the write was not applied and its hold is released" : "nothing was created";
    return `the disk of server ${full} is full (it keeps ${formatBytes(DISK_FREE_BYTES_MIN)} free): ${what}; free space on it, or delete data and take a checkpoint (pstore checkpoint: deleting alone frees no disk), then retry`;
  }

  private bindSession(conn: Conn, sessions: Set<number>, session: number): void {
    this.sessionConns.set(session, conn.id);
    sessions.add(session);
  }

  /**
   * Closes client connections silent for CLIENT_SILENCE_TIMEOUTS times their
   * sessions' timeout (the server's default for one with no session yet): live
   * clients heartbeat every quarter of it, so these are dead or hostile and
   * their slots go to others.
   */
  private closeSilentClients(now: number): void {
    // Late by much: this server was blocked (a large frame, a checkpoint), and the
    // data that arrived meanwhile is not read yet. Judge silence at the next sweep.
    const late = now - this.lastSweepMs > 4 * IDLE_SWEEP_MS;
    this.lastSweepMs = now;
    if (late) return;
    for (const conn of [...this.conns.values()]) {
      if (conn.role.kind !== "client") continue;
      // A client still taking a large reply from us is busy, not silent.
      if (this.host.pendingBytes(conn.id) > 0) continue;
      let timeoutMs = this.options.sessionTimeoutMs;
      for (const id of conn.role.sessions) timeoutMs = Math.max(timeoutMs, this.replica.state.sessions.get(id)?.timeoutMs ?? 0);
      if (now - conn.lastReceivedMs <= CLIENT_SILENCE_TIMEOUTS * timeoutMs) continue;
      this.host.send(conn.id, encodeMessage({ type: "error", body: { code: "ETIMEDOUT", message: "nothing received within the session timeout: connection closed" } }));
      this.closeConn(conn, "silent client");
    }
  }

  private redirect(conn: Conn): void {
    this.host.send(conn.id, encodeMessage({ type: "config", body: this.configForClients() }));
  }

  private *openClientConns(): Iterable<ConnId> {
    for (const conn of this.conns.values()) if (conn.role.kind === "client" && !conn.closed) yield conn.id;
  }

  private configForClients(view: ClientView = this.replica.clientView()): { epoch: number; chain: string[] } {
    return { epoch: view.epoch, chain: view.chain.map((id) => present(this.options.addresses[id - 1], `chain member ${id} is not in --peers`)) };
  }

  private refuse(conn: Conn, code: string, message: string): void {
    // Warn once per kind of refusal, then only at debug level: a scanner must not flood the log.
    const first = !this.refusalsLogged.has(code);
    this.refusalsLogged.add(code);
    if (first) this.host.log.warn(`refusing a connection: ${code} ${message} (further ${code} refusals at debug level)`);
    else this.host.log.debug(`refusing a connection: ${code} ${message}`);
    this.host.send(conn.id, encodeMessage({ type: "error", body: { code, message } }));
    this.closeConn(conn, message);
  }

  private closeConn(conn: Conn, reason: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.host.close(conn.id, reason);
  }

  // ---- the replica's Readys: carrier.ts ---------------------------------------------------

  /** Releases what is queued now (before a checkpoint, a stop, a long frame). */
  flush(): void {
    this.carrier.flush();
  }
}
