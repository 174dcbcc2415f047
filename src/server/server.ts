/**
 * The I/O shell of one storage server: it accepts client and server
 * connections, keeps a connection to every peer, turns frames and timers into
 * replica events, and carries out the actions the replica returns. Every
 * state change happens in core/.
 */
import { present } from "../assert";
import type { TCPSocketListener } from "bun";
import { consola, type ConsolaInstance } from "consola";
import {
  CHECKPOINT_WAITS_MAX,
  TICK_MS_MAX,
  CHECKPOINT_MB_DEFAULT,
  DISK_FREE_BYTES_MIN,
  FRAME_BYTES_MAX,
  HANDSHAKE_FRAME_BYTES_MAX,
  HANDSHAKE_TIMEOUT_MS,
  CLIENT_SILENCE_TIMEOUTS,
  IDLE_SWEEP_MS,
  INBOUND_BUFFERED_BYTES_MAX,
  PAGE_SIZE,
  PROTOCOL_VERSION,
} from "../constants";
import { type Action, type Output, Replica } from "../core";
import { Durability, isNoSpace } from "../store";
import { clientProof, makeNonce, sameProof, serverProof } from "../net/auth";
import { Link, batchSends, linkSocketHandlers } from "../net/link";
import { clientTls, serverTls } from "../net/tls";
import {
  type Frame,
  FrameBudget,
  type Message,
  type Op,
  type Query,
  WireError,
  decodeMessage,
  decodePeer,
  encodeMessage,
  encodePeerParts,
  isPeerFrameType,
} from "../wire";
import { Admission, type Refusal } from "./admission";
import { DiskQueue } from "./diskqueue";
import { silentClientLinks } from "./idle";
import type { RunningServer, ServerOptions } from "./options";
import { PeerLinks } from "./peers";
import { clusterStatus } from "./status";

/** Frames from this size on make the server announce it will be busy... */
const BUSY_FRAME_BYTES = 1024 * 1024;
/** ...for as long as this (slow) rate of processing implies, with margin. */
const BUSY_BYTES_PER_MS = 8 * 1024;

/** What a connection turned out to be, after its hello (and its proof, with a secret). */
type LinkRole =
  | { kind: "new" }
  | { kind: "authenticating"; role: "client" | "server"; senderId: number; clientNonce: Uint8Array; serverNonce: Uint8Array }
  | { kind: "client"; sessions: Set<number> }
  | { kind: "peer"; id: number };

export class Server {
  private readonly log: ConsolaInstance;
  readonly replica: Replica;
  private readonly peerAddresses: string[];
  private readonly links = new Set<Link>();
  /** Which connection delivers the replies of each session. */
  private readonly sessionLinks = new Map<number, Link>();
  private readonly peers: PeerLinks;
  private listener: TCPSocketListener<Link> | null = null;
  private ticker: ReturnType<typeof setInterval> | null = null;
  private idleSweeper: ReturnType<typeof setInterval> | null = null;
  private lastSweepMs = performance.now();
  private readonly admission = new Admission();
  /** What clients' incomplete frames may hold at once, all together. */
  private readonly clientFrames: FrameBudget;
  private readonly durability: Durability;
  private authFailures = 0;
  private readonly refusalsLogged = new Set<string>();
  private readonly refusedPeers = new Set<number>();
  /** Actions queued in this turn of the event loop: one disk sync serves them all. */
  private queued: Action[] = [];
  private flushScheduled = false;
  private checkpointTimer: ReturnType<typeof setTimeout> | null = null;
  private collectTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly disk: DiskQueue;
  readonly selfId: number;

  constructor(private readonly options: ServerOptions) {
    this.log = options.logger ?? consola.withTag("server");
    const self = `${options.listen.host}:${options.listen.port}`;
    const index = options.peers.indexOf(self);
    if (index < 0) throw new Error(`--listen ${self} is not in --peers ${options.peers.join(",")}`);
    this.selfId = index + 1;
    this.peerAddresses = [...options.peers];
    // Bind first: a port in use must not leave a data dir (LOCK, a fresh log) behind.
    this.listener = this.listen();
    try {
      const { durability, recovered } = Durability.open(
        options.dataDir,
        options.segmentSize,
        options.fsync,
        options.checkpointBytes ?? CHECKPOINT_MB_DEFAULT * 1024 * 1024,
        options.rejoin,
      );
      this.durability = durability;
      this.disk = new DiskQueue(durability, options.dataDir, this.log, (actions) => this.afterWrite(actions));
      this.clientFrames = new FrameBudget(options.inboundBufferedBytesMax ?? INBOUND_BUFFERED_BYTES_MAX);
      for (const note of recovered.notes) {
        if (note.startsWith("--rejoin")) this.log.warn(note);
        else this.log.info(note);
      }
      this.replica = new Replica(
        {
          selfId: this.selfId,
          peers: options.peers.map((_, i) => i + 1),
          sessionTimeoutMsDefault: options.sessionTimeoutMs,
          heartbeatMs: options.heartbeatMs,
          suspectMs: options.suspectMs,
          quorum: options.quorum ?? "none",
          forceBoot: options.forceBoot ?? false,
        },
        recovered.state,
        recovered.lastEpoch,
        recovered.config ?? undefined,
        recovered.vote ?? undefined,
        recovered.epochs,
      );
      this.peers = new PeerLinks(this.selfId, options.peers, this.peerFrameBytesMax(), options.secret, clientTls(options.tls?.ca), {
        onLost: (id) => this.perform(this.replica.onPeerDisconnected(id)),
        onRefused: (id, code, message) => {
          if (this.refusedPeers.has(id)) return; // logged once: the dial is retried every heartbeat
          this.refusedPeers.add(id);
          this.log.error(`server ${id} (${this.peerAddresses[id - 1]}) refused us: ${code} ${message}`);
        },
      });
    } catch (error) {
      this.listener.stop(true);
      throw error;
    }
  }

  private listen(): TCPSocketListener<Link> {
    const server = this;
    return Bun.listen<Link>({
      hostname: this.options.listen.host,
      port: this.options.listen.port,
      tls: serverTls(this.options.tls),
      socket: {
        ...linkSocketHandlers,
        open(socket) {
          // Until it proves who it is, a connection may send only small frames:
          // an unauthenticated length prefix must not make the server allocate much.
          const link = new Link(
            socket,
            { onFrame: (l, frame) => server.onFrame(l, frame), onClose: (l, reason) => server.onClose(l, reason) },
            HANDSHAKE_FRAME_BYTES_MAX,
          );
          link.tag = { kind: "new" } satisfies LinkRole;
          socket.data = link;
          const admitted = server.admission.accept(link, socket.remoteAddress);
          if ("refused" in admitted) return server.refuseSlot(link, admitted.refused);
          server.links.add(link);
          if (admitted.evict) server.refuseSlot(admitted.evict as Link, Admission.evicted);
          // A connection that does not complete its handshake in time is closed (slowloris).
          setTimeout(() => {
            const role = (link.tag as LinkRole).kind;
            if (!link.isClosed && (role === "new" || role === "authenticating")) link.close("no handshake in time");
          }, HANDSHAKE_TIMEOUT_MS).unref?.();
        },
      },
    });
  }

  start(): RunningServer {
    const tickMs = Math.min(TICK_MS_MAX, this.options.heartbeatMs);
    this.ticker = setInterval(() => this.tick(), tickMs);
    this.idleSweeper = setInterval(() => this.closeSilentClients(), IDLE_SWEEP_MS);
    this.tick();
    const address = `${this.options.listen.host}:${present(this.listener, "listening").port}`;
    // Listening on port 0 (tests): clients must be told the port we got.
    this.peerAddresses[this.selfId - 1] = address;
    this.log.info(`server ${this.selfId} listening on ${address}, segment ${this.options.segmentSize} bytes, data in ${this.options.dataDir}`);
    return { address, stop: () => this.stop() };
  }

  async stop(): Promise<void> {
    if (this.ticker) clearInterval(this.ticker);
    this.ticker = null;
    if (this.idleSweeper) clearInterval(this.idleSweeper);
    this.idleSweeper = null;
    if (this.checkpointTimer) clearTimeout(this.checkpointTimer);
    this.checkpointTimer = null;
    if (this.collectTimer) clearTimeout(this.collectTimer);
    this.collectTimer = null;
    this.disk.stop();
    this.peers.closeAll();
    for (const link of this.links) link.close("server stopping");
    this.listener?.stop(true);
    this.listener = null;
    this.flush();
    this.disk.stop();
    if (this.disk.waiting) {
      // Never forwarded nor acknowledged: no client was told they happened.
      this.log.warn(`stopping with ${this.disk.waitingCount} actions not written (the disk is full); none was acknowledged`);
    }
    try {
      this.durability.close();
    } catch (error) {
      if (!isNoSpace(error)) throw error;
      this.log.warn(`the log could not be synced at stop (the disk is full): ${(error as Error).message}`);
    }
  }

  private tick(): void {
    const now = performance.now();
    this.peers.maintain(now, this.options.heartbeatMs);
    this.perform(this.replica.onTick(now));
  }

  private onClose(link: Link, reason: string): void {
    this.links.delete(link);
    this.admission.release(link);
    const role = link.tag as LinkRole;
    if (role.kind === "client") {
      for (const session of role.sessions) {
        if (this.sessionLinks.get(session) === link) this.sessionLinks.delete(session);
      }
    }
    this.log.debug(`connection closed: ${reason}`);
  }

  /**
   * A large frame leaves its buffers (the frame, the log record, the forward) to the garbage
   * collector, which runs by the JavaScript heap's size and does not see them: the server's
   * RSS then held several copies of a 64 MiB update for seconds. Collect once it is handled.
   */
  private collectSoon(): void {
    if (this.collectTimer !== null) return;
    this.collectTimer = setTimeout(() => {
      this.collectTimer = null;
      Bun.gc(true);
    }, 0);
  }

  private onFrame(link: Link, frame: Frame): void {
    const role = link.tag as LinkRole;
    if (frame.body.length >= BUSY_FRAME_BYTES && (role.kind === "peer" || role.kind === "client")) {
      // Decoding, applying, logging and forwarding it blocks this server for a while.
      this.perform(this.replica.onBusy(frame.body.length / BUSY_BYTES_PER_MS, performance.now()));
      this.flush();
      this.collectSoon();
    }
    try {
      if (role.kind === "peer") {
        if (!isPeerFrameType(frame.type)) return this.refuse(link, "EPROTO", `frame type ${frame.type} on a server link`);
        return this.perform(this.replica.onPeerMessage(decodePeer(frame.type, frame.body), performance.now()));
      }
      const message = decodeMessage(frame.type, frame.body);
      if (role.kind === "new") return this.onHello(link, message);
      if (role.kind === "authenticating") return this.onAuth(link, role, message);
      this.onClientMessage(link, role.sessions, message);
    } catch (error) {
      if (!(error instanceof WireError)) throw error;
      this.refuse(link, "EPROTO", error.message);
    }
  }

  private onHello(link: Link, message: Message): void {
    if (message.type !== "hello") return this.refuse(link, "EPROTO", "the first message must be hello");
    const { version, role, senderId, nonce } = message.body;
    if (version !== PROTOCOL_VERSION) {
      return this.refuse(link, "EPROTO", `protocol version ${version} is not supported (this server speaks ${PROTOCOL_VERSION})`);
    }
    if (role === "server" && (senderId < 1 || senderId > this.peerAddresses.length || senderId === this.selfId)) {
      return this.refuse(link, "EPROTO", `server id ${senderId} is not one of --peers`);
    }
    const secret = this.options.secret;
    if (secret === undefined) return this.admit(link, role, senderId);
    // Nothing is read or changed before the peer proves it knows the secret.
    const serverNonce = makeNonce();
    link.tag = { kind: "authenticating", role, senderId, clientNonce: nonce.slice(), serverNonce } satisfies LinkRole;
    link.send(encodeMessage({ type: "challenge", body: { nonce: serverNonce, proof: serverProof(secret, nonce, serverNonce) } }));
  }

  private onAuth(link: Link, pending: Extract<LinkRole, { kind: "authenticating" }>, message: Message): void {
    const expected = clientProof(present(this.options.secret, "authenticating needs a secret"), pending.role, pending.serverNonce, pending.clientNonce);
    if (message.type !== "auth" || !sameProof(message.body.proof, expected)) {
      this.authFailures++;
      // Logged once per server run (and counted): a scan must not flood the log.
      if (this.authFailures === 1) this.log.warn("refused a connection with a wrong or missing secret (EAUTH); further ones are counted in status");
      link.send(encodeMessage({ type: "error", body: { code: "EAUTH", message: "wrong or missing secret (--secret or PSTORE_SECRET)" } }));
      return link.close("authentication failed");
    }
    this.admit(link, pending.role, pending.senderId);
  }

  /** The connection is who it says: a client gets the welcome, a peer too (its link is then ready). */
  private admit(link: Link, role: "client" | "server", senderId: number): void {
    if (role === "server") {
      this.admission.admitPeer(link);
      link.tag = { kind: "peer", id: senderId } satisfies LinkRole;
      link.setFrameBytesMax(this.peerFrameBytesMax());
    } else {
      const refusal = this.admission.admitClient(link);
      if (refusal) return this.refuseSlot(link, refusal);
      link.tag = { kind: "client", sessions: new Set() } satisfies LinkRole;
      link.setFrameBytesMax(FRAME_BYTES_MAX);
      link.setFrameBudget(this.clientFrames);
    }
    link.send(encodeMessage({ type: "welcome", body: this.welcome() }));
  }

  private onClientMessage(link: Link, sessions: Set<number>, message: Message): void {
    switch (message.type) {
      case "request": {
        if (!this.replica.isHead) return this.redirect(link);
        if (!this.sessionLinks.has(message.body.session)) this.bindSession(link, sessions, message.body.session);
        const refusal = this.spaceRefusal(message.body.op);
        // Sequenced all the same (as a "refused" op): the session's request numbers keep no gap.
        const { op } = message.body;
        const holdId = op.type === "release" ? op.holdId : 0;
        const request = refusal ? { ...message.body, op: { type: "refused" as const, code: "ENOSPC", message: refusal, holdId } } : message.body;
        return this.perform(this.replica.onRequest(request));
      }
      case "heartbeat":
        if (!this.replica.isHead) return;
        // A client that only heartbeats (it uses cached grants) must still get its recalls here.
        if (this.sessionLinks.get(message.body.session) !== link) this.bindSession(link, sessions, message.body.session);
        this.perform(this.replica.onClientHeartbeat(message.body.session, message.body.doneBelow));
        return;
      case "subscribe": {
        if (!this.replica.isTail) return this.redirect(link);
        this.bindSession(link, sessions, message.body.session);
        const outputs = this.replica.storedReplies(message.body.session, message.body.waiting);
        return this.perform(outputs.map((output) => ({ kind: "reply", output })));
      }
      case "query": {
        const { queryId, kind } = message.body;
        if (kind !== "status" && !this.replica.isTail) {
          const error = { code: "EREDIRECT", message: "ask the tail" };
          link.send(encodeMessage({ type: "queryReply", body: { queryId, json: JSON.stringify({ error }) } }));
          return this.redirect(link);
        }
        return link.send(encodeMessage({ type: "queryReply", body: { queryId, json: this.answer(message.body) } }));
      }
      default:
        return this.refuse(link, "EPROTO", `a client does not send ${message.type} messages`);
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
    if (!this.disk.waiting && !this.durability.spaceShort(bytes)) return null;
    const what = op.type === "release" ? "the write was not applied and its hold is released" : "nothing was created";
    return `the disk of server ${this.selfId} is full (it keeps ${DISK_FREE_BYTES_MIN} bytes free): ${what}; delete data or free space on it, then retry`;
  }

  private bindSession(link: Link, sessions: Set<number>, session: number): void {
    this.sessionLinks.set(session, link);
    sessions.add(session);
  }

  /** No slot for this connection: say why (the limits are hit by floods, so log at debug level). */
  private refuseSlot(link: Link, refusal: Refusal): void {
    this.log.debug(`refusing a connection: ${refusal.code} ${refusal.message}`);
    link.send(encodeMessage({ type: "error", body: refusal }));
    link.close(refusal.message);
  }

  /**
   * Closes client connections silent for CLIENT_SILENCE_TIMEOUTS times their
   * sessions' timeout (the server's default for one with no session yet): live
   * clients heartbeat every quarter of it, so these are dead or hostile and
   * their slots go to others.
   */
  private closeSilentClients(): void {
    const silenceMsMax = (link: Link): number | null => {
      const role = link.tag as LinkRole;
      if (role.kind !== "client") return null;
      // A client still taking a large reply from us is busy, not silent.
      if (link.pendingBytes > 0) return null;
      let timeoutMs = this.options.sessionTimeoutMs;
      for (const id of role.sessions) timeoutMs = Math.max(timeoutMs, this.replica.state.sessions.get(id)?.timeoutMs ?? 0);
      return CLIENT_SILENCE_TIMEOUTS * timeoutMs;
    };
    const now = performance.now();
    // Late by much: this server was blocked (a large frame, a checkpoint), and the
    // data that arrived meanwhile is not read yet. Judge silence at the next sweep.
    const late = now - this.lastSweepMs > 4 * IDLE_SWEEP_MS;
    this.lastSweepMs = now;
    if (late) return;
    for (const link of silentClientLinks(this.links, now, silenceMsMax)) {
      link.send(encodeMessage({ type: "error", body: { code: "ETIMEDOUT", message: "nothing received within the session timeout: connection closed" } }));
      link.close("silent client");
    }
  }

  private redirect(link: Link): void {
    link.send(encodeMessage({ type: "config", body: this.configForClients() }));
  }

  private refuse(link: Link, code: string, message: string): void {
    // Warn once per kind of refusal, then only at debug level: a scanner must not flood the log.
    const first = !this.refusalsLogged.has(code);
    this.refusalsLogged.add(code);
    if (first) this.log.warn(`refusing a connection: ${code} ${message} (further ${code} refusals at debug level)`);
    else this.log.debug(`refusing a connection: ${code} ${message}`);
    link.send(encodeMessage({ type: "error", body: { code, message } }));
    link.close(message);
  }

  private perform(actions: Action[]): void {
    if (actions.length === 0) return;
    for (const action of actions) this.queued.push(action);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(() => this.flush());
  }

  /**
   * Carries out the queued actions: first the disk, in order (log records,
   * checkpoints, installed snapshots), with one sync for the whole batch; then
   * the network. Nothing leaves before the log records it depends on are written.
   */
  private flush(): void {
    this.flushScheduled = false;
    const actions = this.queued;
    this.queued = [];
    this.disk.push(actions, this.replica.config.epoch);
  }

  /** The batch is on disk (diskqueue.ts): now its messages may leave. */
  private afterWrite(actions: Action[]): void {
    batchSends(() => this.sendAll(actions));
    if (this.durability.checkpointDue) this.scheduleCheckpoint();
  }

  /**
   * An automatic checkpoint copies the whole state, which blocks this server a
   * while: it runs after the replies and forwards of this batch, once they have
   * left (a large forward drains over many turns), so the chain goes on meanwhile.
   */
  private scheduleCheckpoint(): void {
    if (this.checkpointTimer !== null) return;
    let waits = 0;
    const attempt = () => {
      if (this.outboundBytes() > 0 && waits++ < CHECKPOINT_WAITS_MAX) {
        this.checkpointTimer = setTimeout(attempt, 1);
        return;
      }
      // The log must hold every update the state has applied: flush what is queued first.
      this.flush();
      this.checkpointTimer = null;
      if (this.disk.waiting) return; // the disk is full: no checkpoint now
      this.durability.checkpointInBackground(this.replica.state, this.replica.lastEpoch, this.replica.config.epoch)?.then(
        (info) => info && this.log.info(`checkpoint at seq ${info.seq} (${info.bytes} bytes): the log had grown past its limit`),
        (error) => this.log.warn(`checkpoint failed (the log keeps everything; retried later): ${(error as Error).message}`),
      );
    };
    this.checkpointTimer = setTimeout(attempt, 0);
  }

  /** Bytes waiting in this server's outbound queues. */
  private outboundBytes(): number {
    let bytes = this.peers.pendingBytes();
    for (const link of this.links) bytes += link.pendingBytes;
    return bytes;
  }

  private sendAll(actions: Action[]): void {
    for (const action of actions) {
      switch (action.kind) {
        case "send":
          for (const part of encodePeerParts(action.message)) this.peers.send(action.to, part);
          break;
        case "reply":
          this.deliver(action.output);
          break;
        case "recall":
          // Over the connection the session's requests or heartbeats come on (we are its head).
          this.sessionLinks.get(action.recall.session)?.send(encodeMessage({ type: "recall", body: action.recall }));
          break;
        case "config":
          this.announceConfig();
          break;
        case "note":
          this.log.info(action.text);
          break;
      }
    }
  }

  private deliver(output: Output): void {
    const link = this.sessionLinks.get(output.session);
    if (!link) return; // the client reconnects and asks again (subscribe)
    const { reply } = output;
    const pages = reply.type === "granted" ? this.replica.state.pagesAfter(reply.offset, reply.size, reply.sendAfter, reply.version) : [];
    link.send(encodeMessage({ type: "reply", body: { session: output.session, reqNo: output.reqNo, reply, pages } }));
  }

  /** Clients must learn a new head or tail: tell every connected client. */
  private announceConfig(): void {
    const frame = encodeMessage({ type: "config", body: this.configForClients() });
    for (const link of this.links) if ((link.tag as LinkRole).kind === "client") link.send(frame);
  }

  private configForClients() {
    const serving = this.replica.status === "member";
    return {
      epoch: this.replica.config.epoch,
      chain: serving ? this.replica.config.chain.map((id) => present(this.peerAddresses[id - 1], `chain member ${id} is not in --peers`)) : [],
    };
  }

  private welcome() {
    const config = this.configForClients();
    return {
      version: PROTOCOL_VERSION,
      serverId: this.selfId,
      segmentSize: this.options.segmentSize,
      pageSize: PAGE_SIZE,
      epoch: config.epoch,
      chain: config.chain,
    };
  }

  private peerFrameBytesMax(): number {
    // A state transfer carries every allocated page plus the metadata.
    return Math.max(FRAME_BYTES_MAX, this.options.segmentSize * 1.125 + 64 * 1024 * 1024);
  }

  private answer(query: Query): string {
    const state = this.replica.state;
    switch (query.kind) {
      case "list":
        return JSON.stringify(state.list());
      case "stat": {
        const datum = state.data.get(query.name);
        if (!datum) return JSON.stringify({ error: { code: "ENOENT", message: `no datum named "${query.name}"` } });
        return JSON.stringify(state.info(datum));
      }
      case "status":
        return JSON.stringify(clusterStatus(this.replica, this.peerAddresses, performance.now(), this.options));
    }
  }

}
