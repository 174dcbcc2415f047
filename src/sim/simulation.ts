/**
 * The deterministic simulator (DESIGN §3, §7, §10; TigerBeetle's VOPR): N
 * real server nodes (src/server/node.ts, each with its real Replica) and a
 * few model clients over a seeded network that carries bytes (framed by the
 * real codec, cut at arbitrary boundaries), a virtual clock and one event
 * queue. Faults: message delays and reordering across connections, frames
 * split anywhere, connection cuts (handshakes included), server crashes
 * (memory lost) and restarts, client crashes and pauses. The invariants are checked after every step;
 * at the end the faults stop, the network heals, every crashed server
 * restarts, and within a bounded virtual time every client operation must
 * complete and every server converge to one state; then the client history
 * is checked (linearizability of the counters, hold safety, exact counts).
 *
 * Fault budget (invariant 1 must not be vacuous): servers have no disk, so a
 * crash is never allowed to take the last copy of the acknowledged history —
 * a server is crashed only if another live server holds every acknowledged
 * update. The checker still tracks which servers hold them and reports any
 * loss. With a durable Storage (issue 4) the budget lifts.
 *
 * Same seed, same run: randomness comes only from the seeded Rng, time only
 * from the event queue, and iteration only over insertion-ordered maps.
 */
import { History, checkCounter, checkHolds, checkLinearizability } from "../check";
import { NONCE_BYTES, type Message, type PeerMessage, type ReplyMessage, decodeMessage, encodeMessage, helloMessage } from "../wire";
import type { ConnId } from "../server/host";
import type { AppliedHistory } from "./applied";
import { type ClientHost, type ClientSettings, SimClient } from "./client";
import { Checker, stateDigest } from "./invariants";
import { ServerMachine, type World, datumHash } from "./machine";
import { type ClientConn, Network, type PeerLink, type Pipe, type SimConn } from "./network";
import { Rng } from "./prng";
import { EventQueue } from "./queue";
import { NoDisk, SimDisk, type Storage } from "./storage";
import { Trace } from "./trace";

export interface SimOptions {
  seed: number;
  /** Virtual ms of load and faults (default: drawn per seed, 3–6 s). */
  faultMs?: number;
  /** Virtual ms allowed, after the faults stop, to finish and converge. */
  settleMs?: number;
  /**
   * Also cut both directions between servers for longer than the suspicion
   * timeout (network partitions). The availability mode lets both sides of a
   * partition go on (DESIGN §5), so acknowledged writes can then be lost.
   */
  partitions?: boolean;
  /**
   * --quorum majority: a configuration takes effect once a majority accepted
   * it, and only a chain holding a majority acknowledges (safe under partitions).
   */
  quorum?: "none" | "majority";
  /**
   * Also stop servers for a while (SIGSTOP, a long GC): they run nothing, and
   * resume with stale views. Default true.
   */
  serverPauses?: boolean;
  /** Trace lines kept for a failure report. */
  traceLines?: number;
  /** Bound on events per run. */
  eventsMax?: number;
  /**
   * Servers have disks (a model of src/store with --fsync always): restarted
   * servers recover their state, whole-cluster crashes are allowed, a power
   * loss drops what was not synced. Default: no disk.
   */
  disks?: boolean;
  /**
   * With disks, crash any server at any time (no fault budget), restarting them
   * one by one. By default a server is crashed alone only if another live one
   * holds every acknowledged update, and whole-cluster crashes restart every
   * server close together: a server restarting alone with a stale disk forms a
   * chain after suspectMs and the newer acknowledged updates on the disks of
   * the others are lost when they return (open: a design question).
   */
  freeCrashes?: boolean;
  /** Storage per server, for another disk model (wins over `disks`). */
  storage?: (serverId: number, geometry: { segmentSize: number; pageSize: number }) => Storage;
}

export interface SimFailure {
  invariant: string;
  message: string;
  atMs: number;
  trace: string[];
}

export interface SimStats {
  servers: number;
  clients: number;
  events: number;
  virtualMs: number;
  crashes: number;
  restarts: number;
  cuts: number;
  clientCrashes: number;
  pauses: number;
  serverPauses: number;
  sessionsLost: number;
  increments: number;
  reads: number;
  timeouts: number;
  configurations: number;
  snapshots: number;
  appliedSeq: number;
  linearizability: "ok" | "unknown";
}

export interface SimResult {
  seed: number;
  ok: boolean;
  failure?: SimFailure;
  stats: SimStats;
  /** Hash of every event of the run: equal for two runs of one seed. */
  traceHash: string;
}

const PAGE_SIZE = 64;
const SEGMENT_PAGES = 96;
const SHARED_COUNTERS = ["c0", "c1"];
const EXTRAS = ["x0", "x1", "x2"];

type Event =
  | { type: "tick"; server: ServerMachine; incarnation: number }
  /** The dial of `link` completes (or fails) at its dialler. */
  | { type: "dialled"; server: ServerMachine; incarnation: number; link: PeerLink }
  /** The server takes a new connection. */
  | { type: "accept"; conn: SimConn }
  | { type: "bytes"; conn: SimConn; pipe: Pipe; toAcceptor: boolean; chunk: Uint8Array }
  /** One end learns that its connection closed. */
  | { type: "closed"; conn: SimConn; atAcceptor: boolean }
  /** A fault: the connection breaks within its first round trip, in its handshake (a client's: if not welcomed yet). */
  | { type: "handshake-cut"; conn: SimConn }
  | { type: "wake"; client: SimClient; token: number }
  | { type: "fault" }
  | { type: "server-restart"; server: ServerMachine }
  | { type: "client-start"; slot: number }
  | { type: "client-resume"; client: SimClient }
  | { type: "server-resume"; server: ServerMachine; incarnation: number }
  | { type: "heal" }
  | { type: "wind-down" }
  | { type: "settle-check" };

class Failed extends Error {
  constructor(
    readonly invariant: string,
    message: string,
  ) {
    super(message);
  }
}

export class Simulation implements ClientHost {
  nowMs = 0;
  private nsInMs = 0;
  private lastNsMs = -1;
  readonly history = new History();
  readonly serverIds: number[];
  private readonly servers: ServerMachine[];
  private readonly clients: (SimClient | null)[];
  private readonly incarnations: number[];
  private readonly clientRngs: Rng[];
  private readonly wakeTokens = new Map<SimClient, { token: number; atMs: number }>();
  private readonly queue = new EventQueue<Event>();
  private readonly net: Network;
  private readonly checker: Checker;
  readonly tracer: Trace;
  private readonly rng: Rng;
  private readonly netRng: Rng;
  private readonly faultRng: Rng;
  private readonly settings: ClientSettings;
  private readonly heartbeatMs: number;
  private readonly suspectMs: number;
  private readonly sessionTimeoutMs: number;
  private readonly faultMs: number;
  private readonly settleMs: number;
  private readonly faultEveryMs: number;
  private readonly eventsMax: number;
  private readonly stallMsMax: number;
  private faultsOn = true;
  private stopping = false;
  private settled = false;
  private nextSession = 1;
  private crashedThisStep: ServerMachine | null = null;
  private readonly clientConns = new Map<number, Set<ClientConn>>();
  /** Every open connection, by id. */
  private readonly conns = new Map<ConnId, SimConn>();
  /** What the server machines ask of the world. */
  private readonly world: World;
  readonly stats: SimStats;

  constructor(readonly options: SimOptions) {
    this.rng = new Rng(options.seed);
    const params = this.rng.fork();
    this.netRng = this.rng.fork();
    this.faultRng = this.rng.fork();
    const serverCount = params.range(3, 5);
    const clientCount = params.range(2, 6);
    this.heartbeatMs = params.pick([50, 100, 100]);
    this.suspectMs = this.heartbeatMs * params.pick([5, 8, 10]);
    this.sessionTimeoutMs = params.range(800, 3000);
    this.faultMs = options.faultMs ?? params.range(3000, 6000);
    this.settleMs = options.settleMs ?? 40_000;
    this.faultEveryMs = params.range(100, 600);
    this.stallMsMax = params.chance(0.3) ? this.heartbeatMs * 2 : 0;
    this.eventsMax = options.eventsMax ?? 2_000_000;
    this.tracer = new Trace(options.traceLines ?? 400);
    this.serverIds = Array.from({ length: serverCount }, (_, i) => i + 1);
    this.net = new Network(this.serverIds, this.netRng);
    this.settings = { segmentSize: SEGMENT_PAGES * PAGE_SIZE, pageSize: PAGE_SIZE, sharedCounters: SHARED_COUNTERS, extras: EXTRAS };
    const geometry = { segmentSize: this.settings.segmentSize, pageSize: PAGE_SIZE };
    const replicaSettings = { peers: this.serverIds, quorum: options.quorum ?? "none", sessionTimeoutMsDefault: this.sessionTimeoutMs, heartbeatMs: this.heartbeatMs, suspectMs: this.suspectMs, ...geometry };
    this.world = this.serverWorld();
    this.servers = this.serverIds.map((id) => {
      const storage = options.storage?.(id, geometry) ?? (options.disks ? new SimDisk(geometry, 0.5) : new NoDisk(geometry));
      return new ServerMachine(id, replicaSettings, storage, this.world, params.range(10, Math.min(50, this.heartbeatMs)), this.rng.fork());
    });
    this.checker = new Checker(this.servers, (invariant, message) => this.fail(invariant, message));
    this.clients = new Array(clientCount).fill(null);
    this.incarnations = new Array(clientCount).fill(0);
    this.clientRngs = Array.from({ length: clientCount }, () => this.rng.fork());
    for (const key of SHARED_COUNTERS) this.history.initial(key, 0);
    for (let slot = 0; slot < clientCount; slot++) this.history.initial(`p${slot}`, 0);
    this.stats = {
      servers: serverCount,
      clients: clientCount,
      events: 0,
      virtualMs: 0,
      crashes: 0,
      restarts: 0,
      cuts: 0,
      clientCrashes: 0,
      pauses: 0,
      serverPauses: 0,
      sessionsLost: 0,
      increments: 0,
      reads: 0,
      timeouts: 0,
      configurations: 0,
      snapshots: 0,
      appliedSeq: 0,
      linearizability: "ok",
    };
  }

  describeSetup(): string {
    return (
      `${this.servers.length} servers, ${this.clients.length} clients, heartbeat ${this.heartbeatMs} ms, suspect ${this.suspectMs} ms, ` +
      `session timeout ${this.sessionTimeoutMs} ms, faults for ${this.faultMs} ms every ~${this.faultEveryMs} ms${this.options.partitions ? " with partitions" : ""}${this.options.disks ? ", disks" : ""}${this.options.quorum === "majority" ? ", quorum majority" : ""}`
    );
  }

  // ---- running ---------------------------------------------------------------------

  run(): SimResult {
    let failure: SimFailure | undefined;
    try {
      this.begin();
      this.loop();
      this.finalChecks();
    } catch (error) {
      if (!(error instanceof Failed)) {
        // An exception inside the replica (or the simulator) is a failure of this seed too.
        const message = error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error);
        failure = { invariant: "exception", message, atMs: this.nowMs, trace: this.tracer.lines() };
      } else {
        failure = { invariant: error.invariant, message: error.message, atMs: this.nowMs, trace: this.tracer.lines() };
      }
    }
    this.stats.virtualMs = Math.round(this.nowMs);
    this.stats.configurations = this.checker.configurations;
    for (const client of this.clients) if (client) this.absorbClientStats(client);
    this.tracer.hash.add(this.stats.appliedSeq);
    return { seed: this.options.seed, ok: failure === undefined, failure, stats: this.stats, traceHash: this.tracer.hash.hex() };
  }

  private begin(): void {
    this.tracer.add(0, "setup", this.describeSetup());
    for (const server of this.servers) {
      this.queue.push(this.faultRng.next() * 50, { type: "server-restart", server });
    }
    for (let slot = 0; slot < this.clients.length; slot++) {
      this.queue.push(100 + this.faultRng.next() * 400, { type: "client-start", slot });
    }
    this.queue.push(this.nextFaultDelay(), { type: "fault" });
    this.queue.push(this.faultMs, { type: "heal" });
  }

  private loop(): void {
    for (let events = 0; events < this.eventsMax; events++) {
      this.stats.events = events + 1;
      const item = this.queue.pop();
      if (!item) throw new Failed("liveness", "the event queue ran dry");
      if (item.atMs < this.nowMs) throw new Failed("sim", `event at ${item.atMs} before now ${this.nowMs}`);
      this.nowMs = item.atMs;
      this.crashedThisStep = null;
      this.handle(item.event);
      this.checker.afterStep(this.crashedThisStep);
      if (this.settled) return;
    }
    throw new Failed("liveness", `no convergence within ${this.eventsMax} events`);
  }

  private handle(event: Event): void {
    const target = this.targetServer(event);
    if (target?.up && target.paused) {
      target.held.push(event); // a stopped process: its kernel queues what arrives
      return;
    }
    switch (event.type) {
      case "tick":
        return this.onTick(event.server, event.incarnation);
      case "dialled":
        return this.onDialled(event.server, event.incarnation, event.link);
      case "accept":
        return this.onAccept(event.conn);
      case "bytes":
        return this.onBytes(event.conn, event.pipe, event.toAcceptor, event.chunk);
      case "closed":
        return this.onClosedEnd(event.conn, event.atAcceptor);
      case "handshake-cut":
        if (event.conn.diallerClosed || event.conn.acceptorClosed || event.conn.welcomed) return;
        this.stats.cuts++;
        return this.breakConn(event.conn, "cut in the middle of its handshake");
      case "wake": {
        const wake = this.wakeTokens.get(event.client);
        if (!wake || wake.token !== event.token) return;
        this.wakeTokens.delete(event.client);
        event.client.onWake();
        this.rewake(event.client);
        return;
      }
      case "fault":
        if (!this.faultsOn) return;
        this.injectFault();
        this.queue.push(this.nowMs + this.nextFaultDelay(), { type: "fault" });
        return;
      case "server-restart":
        return this.restartServer(event.server);
      case "client-start":
        return this.startClient(event.slot);
      case "client-resume":
        return this.resumeClient(event.client);
      case "server-resume":
        return this.resumeServer(event.server, event.incarnation);
      case "heal":
        return this.heal();
      case "wind-down":
        return this.windDown();
      case "settle-check":
        return this.settleCheck();
    }
  }

  /** The server an event runs on, if any (held while it is paused). */
  private targetServer(event: Event): ServerMachine | null {
    switch (event.type) {
      case "tick":
      case "dialled":
        return event.server;
      case "accept":
        return this.server(event.conn.serverId);
      case "bytes":
        return event.toAcceptor ? this.server(event.conn.serverId) : this.diallerServer(event.conn);
      case "closed":
        return event.atAcceptor ? this.server(event.conn.serverId) : this.diallerServer(event.conn);
      default:
        return null;
    }
  }

  private server(id: number): ServerMachine {
    const server = this.servers[id - 1];
    if (!server) throw new Failed("sim", `no server ${id}`);
    return server;
  }

  private diallerServer(conn: SimConn): ServerMachine | null {
    return conn.dialler.kind === "server" ? this.server(conn.dialler.id) : null;
  }

  // ---- servers -----------------------------------------------------------------------

  private onTick(server: ServerMachine, incarnation: number): void {
    if (!server.up || server.incarnation !== incarnation) return;
    server.run((node) => node.tick());
    this.queue.push(this.nowMs + server.tickMs, { type: "tick", server, incarnation });
  }

  // ---- connections: the world side of what nodes and clients send ---------------------------

  /** The World the server machines live in (machine.ts). */
  private serverWorld(): World {
    const sim = this;
    return {
      get nowMs() {
        return sim.nowMs;
      },
      send: (from, id, bytes) => this.sendBytes(this.conns.get(id), from.id === this.conns.get(id)?.serverId, bytes),
      close: (from, id, reason) => this.closeEnd(from, id, reason),
      dial: (from, peer) => {
        // As a TCP connect: a round trip later it is open, or refused.
        const rtt = 2 * (0.2 + this.netRng.next() * 2);
        this.queue.push(this.nowMs + rtt, { type: "dialled", server: from, incarnation: from.incarnation, link: this.net.link(from.id, peer) });
      },
      trace: (what, detail) => this.tracer.add(this.nowMs, what, detail),
      fail: (invariant, message) => this.fail(invariant, message),
      sawConfig: (server, epoch, chain) => this.checker.sawConfig(server, epoch, chain),
      snapshotHistory: (id, seq) => this.conns.get(id)?.snapshots.get(seq),
      sentPeer: (from, id, message) => {
        if (message.type !== "snapshot") return;
        this.stats.snapshots++;
        this.conns.get(id)?.snapshots.set(message.seq, from.history.prefix(message.seq));
      },
      sentReply: (from, id, body) => this.noteGrant(from, id, body),
      received: (to, id, message) => this.traceReceived(to, id, message),
    };
  }

  /** The dial of `link` completes: a connection both ends know, or a refusal. */
  private onDialled(from: ServerMachine, incarnation: number, link: PeerLink): void {
    if (!from.up || from.incarnation !== incarnation) return;
    const to = this.server(link.to);
    if (!to.up || this.nowMs < link.blockedUntilMs || link.conn) return from.run((node) => node.onDialFailed(link.to));
    const conn = this.net.newPeerConn({ id: from.id, incarnation }, { id: to.id, incarnation: to.incarnation });
    this.conns.set(conn.id, conn);
    link.conn = conn;
    link.blackHole = false;
    this.queue.push(this.nowMs, { type: "accept", conn });
    this.maybeCutHandshake(conn);
    from.run((node) => node.onDialled(link.to, conn.id));
  }

  private onAccept(conn: SimConn): void {
    const server = this.server(conn.serverId);
    if (!server.up || server.incarnation !== conn.serverIncarnation || conn.acceptorClosed) return;
    conn.accepted = true;
    server.run((node) => node.onAccepted(conn.id));
  }

  /** `bytes` leave one end of `conn` (toward the acceptor when `toAcceptor`), in the chunks the connection cuts them into. */
  private sendBytes(conn: SimConn | undefined, fromAcceptor: boolean, bytes: Uint8Array): void {
    if (!conn) return;
    if (fromAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    const pipe = fromAcceptor ? conn.down : conn.up;
    if (pipe.broken) return;
    const stallMsMax = conn.dialler.kind === "server" ? this.stallMsMax : 0;
    for (const chunk of conn.chunks(bytes, this.netRng)) {
      this.queue.push(pipe.arrival(this.nowMs, this.netRng, stallMsMax), { type: "bytes", conn, pipe, toAcceptor: !fromAcceptor, chunk });
    }
  }

  private onBytes(conn: SimConn, pipe: Pipe, toAcceptor: boolean, chunk: Uint8Array): void {
    if (pipe.broken) return;
    if (toAcceptor) {
      const server = this.server(conn.serverId);
      if (!server.up || server.incarnation !== conn.serverIncarnation || conn.acceptorClosed || !conn.accepted) return;
      return server.run((node) => node.onBytes(conn.id, chunk), conn.id);
    }
    if (conn.diallerClosed) return;
    const dialler = conn.dialler;
    if (dialler.kind === "server") {
      const server = this.server(dialler.id);
      if (!server.up || server.incarnation !== dialler.incarnation) return;
      return server.run((node) => node.onBytes(conn.id, chunk), conn.id);
    }
    this.clientEvent(conn, (client) => {
      // The client's end of the connection: the real frame decoder and codec.
      conn.clientDecoder.push(chunk, (frame) => {
        if (conn.diallerClosed || !client.alive) return;
        const message = decodeMessage(frame.type, frame.body);
        const expectedHash = message.type === "reply" && message.body.reply.type === "granted" ? conn.expectedHashes.shift() : undefined;
        this.tracer.add(this.nowMs, `${conn.serverId}→client ${client.name}`, message);
        client.onMessage(conn, message, expectedHash);
      });
    });
  }

  /** A node closes its end of a connection: it knows at once; the other end once what was sent before arrives. */
  private closeEnd(from: ServerMachine, id: ConnId, reason: string): void {
    const conn = this.conns.get(id);
    if (!conn) return;
    const atAcceptor = from.id === conn.serverId;
    if (atAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    this.tracer.add(this.nowMs, `server ${from.id}: closes connection ${id} (${reason})`);
    this.markClosed(conn, atAcceptor);
    if (from.up) from.node.onClosed(id);
    const pipe = atAcceptor ? conn.down : conn.up;
    this.queue.push(pipe.arrival(this.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: !atAcceptor });
  }

  private markClosed(conn: SimConn, atAcceptor: boolean): void {
    if (atAcceptor) conn.acceptorClosed = true;
    else conn.diallerClosed = true;
    if (conn.dialler.kind === "server") {
      const link = this.net.link(conn.dialler.id, conn.serverId);
      if (link.conn === conn) link.conn = null;
    } else {
      this.clientConns.get(conn.serverId)?.delete(conn);
    }
    if (conn.acceptorClosed && conn.diallerClosed) this.conns.delete(conn.id);
  }

  /** One end learns its connection closed (the other end closed it, or it broke). */
  private onClosedEnd(conn: SimConn, atAcceptor: boolean): void {
    if (atAcceptor ? conn.acceptorClosed : conn.diallerClosed) return;
    if (atAcceptor) {
      this.markClosed(conn, true);
      const server = this.server(conn.serverId);
      if (server.up && server.incarnation === conn.serverIncarnation) server.run((node) => node.onClosed(conn.id));
      return;
    }
    const dialler = conn.dialler;
    if (dialler.kind === "server") {
      this.markClosed(conn, false);
      const server = this.server(dialler.id);
      if (!server.up || server.incarnation !== dialler.incarnation) return;
      this.tracer.add(this.nowMs, `server ${server.id}: connection to ${conn.serverId} lost`);
      return server.run((node) => node.onClosed(conn.id));
    }
    this.clientEvent(conn, (client) => {
      if (conn.diallerClosed) return;
      this.markClosed(conn, false);
      this.tracer.add(this.nowMs, `client ${client.name}: connection to server ${conn.serverId} closed`);
      client.onConnClosed(conn);
    });
  }

  /** A connection breaks under both ends (a reset): what it carried is lost, both ends hear of it. */
  private breakConn(conn: SimConn, why: string, notifyDialler = true): void {
    conn.up.broken = true;
    conn.down.broken = true;
    this.tracer.add(this.nowMs, `connection ${conn.id} (${describeDialler(conn)}→${conn.serverId}) broken (${why})`);
    if (!conn.acceptorClosed) this.queue.push(this.nowMs + this.netRng.next() * 3, { type: "closed", conn, atAcceptor: true });
    if (!conn.diallerClosed && notifyDialler) this.queue.push(this.nowMs + this.netRng.next() * 5, { type: "closed", conn, atAcceptor: false });
  }

  /** Sometimes (while faults run) a new connection breaks before its welcome can have come back. */
  private maybeCutHandshake(conn: SimConn): void {
    if (!this.faultsOn || !this.faultRng.chance(0.03)) return;
    this.queue.push(this.nowMs + this.faultRng.next() * 2 * conn.up.latencyMs, { type: "handshake-cut", conn });
  }

  /** For a grant leaving `from`: the hash of the datum the client must end up with (checked by the client). */
  private noteGrant(from: ServerMachine, id: ConnId, body: ReplyMessage): void {
    const { reply } = body;
    if (reply.type !== "granted") return;
    this.conns.get(id)?.expectedHashes.push(datumHash(from.state, reply.offset, reply.size));
  }

  private traceReceived(to: ServerMachine, id: ConnId, message: Message | PeerMessage): void {
    if (message.type === "heartbeat") return;
    const conn = this.conns.get(id);
    if (!conn) return;
    const label = to.id === conn.serverId ? `${describeDialler(conn)}→${to.id}` : `${conn.serverId}→${to.id}`;
    this.tracer.add(this.nowMs, label, message);
  }

  private restartServer(server: ServerMachine): void {
    if (server.up) return;
    server.start();
    if (server.incarnation > 1) this.stats.restarts++;
    this.tracer.add(this.nowMs, `server ${server.id}: start (incarnation ${server.incarnation}, at seq ${server.history.length})`);
    // Connections that were silently dead (their peer crashed without a reset) break now: the new process resets them.
    for (const link of this.net.linksTo(server.id)) {
      if (link.blackHole) this.breakPeerLink(link);
    }
    this.queue.push(this.nowMs + this.faultRng.next() * server.tickMs, { type: "tick", server, incarnation: server.incarnation });
  }

  /** Crashes `server`; it restarts at `restartAtMs` (default: drawn, mostly within 3 s). */
  private crashServer(server: ServerMachine, restartAtMs?: number): void {
    const flush = this.faultRng.chance(0.5);
    const silent = this.faultRng.chance(0.25);
    this.tracer.add(this.nowMs, `server ${server.id}: CRASH${silent ? " (silent)" : ""}${flush ? " (sent data flushed)" : ""}`);
    this.stats.crashes++;
    this.crashedThisStep = server;
    const lost = server.storage.crash(this.faultRng);
    this.tracer.add(this.nowMs, `server ${server.id}: ${lost}`);
    server.crash();
    for (const link of this.net.linksFrom(server.id)) {
      const conn = link.conn;
      link.blackHole = false;
      if (!conn) continue;
      // A killed process's kernel may still send on what it had sent (then the close); a lost machine does not.
      if (!flush) conn.up.broken = true;
      conn.down.broken = true;
      this.markClosed(conn, false);
      if (flush) this.queue.push(conn.up.arrival(this.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: true });
      else this.breakConn(conn, "its dialler crashed", false);
    }
    for (const link of this.net.linksTo(server.id)) {
      const conn = link.conn;
      if (!conn) continue;
      if (silent) {
        conn.up.broken = true;
        conn.down.broken = true;
        link.blackHole = true; // the dialler still thinks it is connected
      } else this.breakPeerLink(link);
    }
    for (const conn of [...(this.clientConns.get(server.id) ?? [])]) this.breakConn(conn, "server crashed");
    const downMs = this.faultRng.chance(0.85) ? 100 + this.faultRng.next() * 3000 : 5000 + this.faultRng.next() * 5000;
    this.queue.push(restartAtMs ?? this.nowMs + downMs, { type: "server-restart", server });
  }

  /** Every server at once (a power cut, or all killed), then all restart close together. */
  private crashCluster(): void {
    this.tracer.add(this.nowMs, "WHOLE-CLUSTER CRASH");
    const restartAtMs = this.nowMs + 200 + this.faultRng.next() * 2000;
    for (const server of this.servers) this.crashServer(server, restartAtMs + this.faultRng.next() * (this.suspectMs / 4));
  }

  /** The dialler's connection breaks: what it carried is lost, and both ends hear of it. */
  private breakPeerLink(link: PeerLink): void {
    const conn = link.conn;
    link.blackHole = false;
    if (conn) this.breakConn(conn, "cut");
  }

  /** Stops a server for a while: no ticks, no message handled; others may suspect and remove it. */
  private pauseServer(server: ServerMachine): void {
    const long = this.faultRng.chance(0.3);
    const pauseMs = long ? this.suspectMs * (1 + 2 * this.faultRng.next()) : (this.faultRng.next() * this.suspectMs) / 2;
    this.stats.serverPauses++;
    this.tracer.add(this.nowMs, `server ${server.id}: PAUSE for ${pauseMs.toFixed(0)} ms`);
    server.paused = true;
    this.queue.push(this.nowMs + pauseMs, { type: "server-resume", server, incarnation: server.incarnation });
  }

  private resumeServer(server: ServerMachine, incarnation: number): void {
    if (!server.up || server.incarnation !== incarnation || !server.paused) return;
    server.paused = false;
    const held = server.held.splice(0) as Event[];
    this.tracer.add(this.nowMs, `server ${server.id}: resume (${held.length} events waited)`);
    for (const event of held) this.handle(event);
  }

  /**
   * Whether stopping `server` (crash or pause) keeps the acknowledged history
   * on a running server (the fault budget).
   */
  private mayCrash(server: ServerMachine): boolean {
    if (server.storage.durable && this.options.freeCrashes) return true;
    const running = this.servers.filter((s) => s.up && !s.paused);
    if (running.length <= 1) return false;
    return this.checker.heldPrefix(server, true) >= this.checker.committed.length;
  }

  /**
   * --quorum majority without disks: a crash loses the server's history like a lost disk, and
   * the mode promises nothing once a majority lost theirs (any majority may then form a chain
   * with none of it: sim seeds 1000952, 9600367). So a crash keeps a majority of live holders
   * of every acknowledged update. Real servers keep their logs on disk (--disks lifts this).
   */
  private majorityKeepsHistory(server: ServerMachine): boolean {
    if (this.options.quorum !== "majority" || server.storage.durable) return true;
    const committed = this.checker.committed;
    const holders = this.servers.filter((s) => s !== server && s.up && s.history.samePrefix(committed, committed.length));
    return holders.length >= Math.floor(this.servers.length / 2) + 1;
  }

  // ---- clients ---------------------------------------------------------------------------

  timeNs(): number {
    // Several events share a virtual millisecond: number them so the History keeps their order.
    if (this.nowMs !== this.lastNsMs) {
      this.lastNsMs = this.nowMs;
      this.nsInMs = 0;
    }
    this.nsInMs++;
    return Math.round(this.nowMs * 1e6) + this.nsInMs;
  }

  private startClient(slot: number): void {
    if (this.clients[slot]?.alive) return;
    const incarnation = ++this.incarnations[slot]!;
    const client = new SimClient(slot, incarnation, this.nextSession++ * 7 + 3, this.settings, this, this.clientRngs[slot]!.fork());
    client.stopping = this.stopping;
    this.clients[slot] = client;
    this.tracer.add(this.nowMs, `client ${client.name}: start (session ${client.session})`);
    client.start();
    this.rewake(client);
  }

  restartLater(client: SimClient, why: string): void {
    if (!client.alive) return;
    this.tracer.add(this.nowMs, `client ${client.name}: ${why}; starting over`);
    if (why.includes("ESESSION")) this.stats.sessionsLost++;
    this.absorbClientStats(client);
    client.retire();
    this.queue.push(this.nowMs + 10 + this.faultRng.next() * 200, { type: "client-start", slot: client.slot });
  }

  private absorbClientStats(client: SimClient): void {
    this.stats.increments += client.stats.increments;
    this.stats.reads += client.stats.reads;
    this.stats.timeouts += client.stats.timeouts;
    client.stats = { increments: 0, reads: 0, timeouts: 0, refreshes: 0 };
  }

  dial(client: SimClient, serverId: number): ClientConn {
    const server = this.server(serverId);
    const conn = this.net.newClientConn(client.slot, client.incarnation, serverId, server.incarnation);
    if (!server.up) {
      // Refused: the client hears of it one round trip later.
      conn.acceptorClosed = true;
      this.queue.push(this.nowMs + 2 * conn.up.latencyMs, { type: "closed", conn, atAcceptor: false });
      return conn;
    }
    this.conns.set(conn.id, conn);
    let set = this.clientConns.get(serverId);
    if (!set) this.clientConns.set(serverId, (set = new Set()));
    set.add(conn);
    this.queue.push(conn.up.arrival(this.nowMs, this.netRng, 0), { type: "accept", conn });
    // The client's side of the handshake (no secret in the simulation): its hello, then the server's welcome.
    const nonce = new Uint8Array(NONCE_BYTES);
    for (let i = 0; i < nonce.length; i++) nonce[i] = Math.floor(this.netRng.next() * 256);
    this.sendBytes(conn, false, encodeMessage(helloMessage("client", 0, nonce)));
    this.maybeCutHandshake(conn);
    return conn;
  }

  send(_client: SimClient, conn: ClientConn, message: Message): void {
    this.sendBytes(conn, false, encodeMessage(message));
  }

  close(_client: SimClient, conn: ClientConn): void {
    if (conn.diallerClosed) return;
    this.markClosed(conn, false);
    if (conn.acceptorClosed) return;
    this.queue.push(conn.up.arrival(this.nowMs, this.netRng, 0), { type: "closed", conn, atAcceptor: true });
  }

  /** Runs `handle` for the client incarnation that owns `conn`, now or when it resumes from a pause. */
  private clientEvent(conn: ClientConn, handle: (client: SimClient) => void): void {
    const dialler = conn.dialler;
    if (dialler.kind !== "client") return;
    const client = this.clients[dialler.slot];
    if (!client || client.incarnation !== dialler.incarnation || !client.alive) return;
    if (client.paused) {
      client.inbox.push(() => handle(client));
      return;
    }
    handle(client);
    this.rewake(client);
  }

  private rewake(client: SimClient): void {
    if (!client.alive) return;
    const atMs = client.nextWakeMs();
    const current = this.wakeTokens.get(client);
    if (atMs === Infinity) {
      this.wakeTokens.delete(client);
      return;
    }
    if (current && current.atMs === atMs) return;
    const token = (current?.token ?? 0) + 1;
    this.wakeTokens.set(client, { token, atMs });
    this.queue.push(Math.max(atMs, this.nowMs), { type: "wake", client, token });
  }

  private crashClient(client: SimClient): void {
    this.stats.clientCrashes++;
    this.tracer.add(this.nowMs, `client ${client.name}: CRASH`);
    this.absorbClientStats(client);
    client.crash();
    this.wakeTokens.delete(client);
    if (this.faultRng.chance(0.8)) this.queue.push(this.nowMs + 50 + this.faultRng.next() * 3000, { type: "client-start", slot: client.slot });
  }

  private pauseClient(client: SimClient): void {
    this.stats.pauses++;
    const pauseMs = this.faultRng.chance(0.7) ? this.faultRng.next() * 500 : this.faultRng.next() * 2.5 * this.sessionTimeoutMs;
    this.tracer.add(this.nowMs, `client ${client.name}: PAUSE for ${pauseMs.toFixed(0)} ms`);
    client.paused = true;
    this.wakeTokens.delete(client);
    this.queue.push(this.nowMs + pauseMs, { type: "client-resume", client });
  }

  private resumeClient(client: SimClient): void {
    if (!client.paused) return;
    client.paused = false;
    this.tracer.add(this.nowMs, `client ${client.name}: resume`);
    const inbox = client.inbox.splice(0);
    for (const handle of inbox) {
      if (!client.alive) break;
      handle();
    }
    if (client.alive) {
      client.onWake();
      this.rewake(client);
    }
  }

  // ---- faults --------------------------------------------------------------------------

  private nextFaultDelay(): number {
    return this.faultRng.next() * 2 * this.faultEveryMs;
  }

  private injectFault(): void {
    const rng = this.faultRng;
    const roll = rng.next();
    const upServers = this.servers.filter((s) => s.up);
    const liveClients = this.clients.filter((c): c is SimClient => c !== null && c.alive);
    if (roll < 0.02 && this.options.disks && upServers.length === this.servers.length) {
      this.crashCluster();
    } else if (roll < 0.22) {
      const server = upServers.length > 0 ? rng.pick(upServers) : null;
      if (server && this.mayCrash(server) && this.majorityKeepsHistory(server)) this.crashServer(server);
    } else if (roll < 0.25 && this.options.serverPauses !== false) {
      const running = upServers.filter((s) => !s.paused);
      const server = running.length > 0 ? rng.pick(running) : null;
      if (server && this.mayCrash(server)) this.pauseServer(server);
    } else if (roll < 0.55) {
      this.cutPeerLink();
    } else if (roll < 0.7) {
      const conns = this.servers.flatMap((s) => [...(this.clientConns.get(s.id) ?? [])]);
      if (conns.length > 0) {
        this.stats.cuts++;
        // Any time, the handshake included: a cut may fall between the hello and the welcome.
        this.breakConn(rng.pick(conns), "cut");
      }
    } else if (roll < 0.8) {
      if (liveClients.length > 0) this.crashClient(rng.pick(liveClients));
    } else if (roll < 0.9) {
      const running = liveClients.filter((c) => !c.paused);
      if (running.length > 0) this.pauseClient(rng.pick(running));
    }
    // else: a quiet spell
  }

  private cutPeerLink(): void {
    const rng = this.faultRng;
    const from = rng.pick(this.serverIds);
    const to = rng.pick(this.serverIds.filter((id) => id !== from));
    const links = [this.net.link(from, to)];
    let blockMs = rng.next() * this.heartbeatMs;
    if (this.options.partitions && rng.chance(0.5)) {
      // A partition between two servers: both directions, for long enough to be suspected.
      links.push(this.net.link(to, from));
      blockMs = rng.next() * 3 * this.suspectMs;
    }
    // Without --partitions a cut is a reset of one connection: never while the other direction
    // is down too (two cuts overlapping would be a short partition between the two servers).
    const reverse = this.net.link(to, from);
    if (!this.options.partitions && (reverse.conn === null || this.nowMs < reverse.blockedUntilMs)) return;
    this.stats.cuts++;
    this.tracer.add(this.nowMs, `CUT ${links.map((l) => `${l.from}→${l.to}`).join(" ")} for ${blockMs.toFixed(0)} ms`);
    for (const link of links) {
      link.blockedUntilMs = this.nowMs + blockMs;
      this.breakPeerLink(link);
    }
  }

  // ---- the end: heal, wind down, converge --------------------------------------------------

  private heal(): void {
    this.faultsOn = false;
    this.tracer.add(this.nowMs, "HEAL: faults stop, links heal, crashed servers restart");
    for (const link of this.net.links.values()) link.blockedUntilMs = 0;
    for (const server of this.servers) {
      // Close together: a server restarting long before the others (with a stale disk) would form a chain alone.
      if (!server.up) this.queue.push(this.nowMs + this.faultRng.next() * (this.suspectMs / 4), { type: "server-restart", server });
    }
    for (const client of this.clients) if (client?.paused) this.queue.push(this.nowMs, { type: "client-resume", client });
    for (const server of this.servers) if (server.paused) this.queue.push(this.nowMs, { type: "server-resume", server, incarnation: server.incarnation });
    this.queue.push(this.nowMs + 1000, { type: "wind-down" });
  }

  private windDown(): void {
    this.stopping = true;
    this.tracer.add(this.nowMs, "WIND DOWN: clients finish what they do and start nothing new");
    for (const client of this.clients) if (client) client.stopping = true;
    this.queue.push(this.nowMs + 100, { type: "settle-check" });
  }

  /** What still keeps the run from being settled, or null. */
  private unsettled(): string | null {
    const first = this.servers[0]!;
    for (const server of this.servers) {
      if (!server.up) return `server ${server.id} is down`;
      if (server.replica.status !== "member") return `server ${server.id} is ${server.replica.status}`;
      if (server.replica.config.epoch !== first.replica.config.epoch) return `servers ${first.id} and ${server.id} are in epochs ${first.replica.config.epoch} and ${server.replica.config.epoch}`;
    }
    if (first.replica.config.chain.length !== this.servers.length) return `the chain [${first.replica.config.chain}] lacks servers`;
    for (const server of this.servers) {
      if (server.state.appliedSeq !== first.state.appliedSeq) return `server ${server.id} is at ${server.state.appliedSeq}, server ${first.id} at ${first.state.appliedSeq}`;
    }
    for (let slot = 0; slot < this.clients.length; slot++) {
      const client = this.clients[slot];
      if (!client) continue;
      if (client.alive && !client.opened) return `client ${client.name} has no session yet`;
      if (client.alive && !client.idle) return `client ${client.name} still waits: ${this.describeWait(client)}`;
    }
    const live = new Set(this.clients.filter((c) => c?.alive).map((c) => c!.session));
    for (const session of first.state.sessions.keys()) {
      if (!live.has(session)) return `session ${session} of a client that is gone has not expired`;
    }
    const digest = stateDigest(first.state);
    for (const server of this.servers) {
      if (stateDigest(server.state) !== digest) return `server ${server.id}'s state differs from server ${first.id}'s at the same seq`;
    }
    return null;
  }

  private describeWait(client: SimClient): string {
    const task = client.task;
    const pending = [...client.pending].map(([reqNo, p]) => `${reqNo}:${p.op.type}${p.queued ? " queued" : ""}${p.cancelled ? " cancelled" : ""}`);
    let text = `${task?.kind ?? "no task"} ${task?.key ?? ""}, pending [${pending.join(", ")}]`;
    const datum = task?.key ? this.servers[0]!.state.data.get(task.key) : undefined;
    if (datum) {
      const owner = (session: number) => this.clients.find((c) => c?.session === session)?.name ?? "nobody";
      const holders = datum.holders.map((h) => `${h.mode} hold ${h.id} of session ${h.session} (client ${owner(h.session)}, reqNo ${h.reqNo})`);
      const queue = datum.queue.map((w) => `${w.mode} ${w.session}/${w.reqNo} (client ${owner(w.session)})`);
      text += `; ${datum.name} held by [${holders.join(", ")}], queue [${queue.join(", ")}]`;
    }
    return text;
  }

  private settleCheck(): void {
    const problem = this.unsettled();
    if (problem === null) {
      this.settled = true;
      this.tracer.add(this.nowMs, "SETTLED");
      return;
    }
    if (this.nowMs > this.faultMs + this.settleMs) {
      throw new Failed("liveness", `${this.settleMs} ms after the faults stopped, the run has not settled: ${problem}`);
    }
    this.queue.push(this.nowMs + 100, { type: "settle-check" });
  }

  private finalChecks(): void {
    const state = this.servers[0]!.state;
    this.stats.appliedSeq = state.appliedSeq;
    for (const [id, hold] of state.holds) {
      if (!state.sessions.has(hold.session)) throw new Failed("3", `hold ${id} on ${hold.name} belongs to session ${hold.session}, which is gone`);
    }
    const holds = checkHolds(this.history);
    if (holds.ok === false) throw new Failed("3", `clients saw unsafe holds: ${holds.explanation}`);
    const counters = [...SHARED_COUNTERS, ...this.clients.map((_, slot) => `p${slot}`)];
    const lin = checkLinearizability(this.history, { keys: counters, maxSteps: 2_000_000 });
    if (lin.ok === false) throw new Failed("4", lin.explanation);
    if (lin.ok === "unknown") this.stats.linearizability = "unknown";
    for (const key of counters) {
      const datum = state.data.get(key);
      if (!datum) continue;
      const bytes = state.pages.read(datum.firstPage);
      const value = new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true);
      const counted = checkCounter(this.history, key, value);
      if (!counted.ok) throw new Failed("4", counted.explanation);
    }
  }

  // ---- host services -------------------------------------------------------------------------

  trace(what: string, detail?: string | (() => string)): void {
    this.tracer.add(this.nowMs, what, detail);
  }

  fail(invariant: string, message: string): never {
    throw new Failed(invariant, message);
  }
}

export function runSeed(options: SimOptions): SimResult {
  return new Simulation(options).run();
}

function describeDialler(conn: SimConn): string {
  const d = conn.dialler;
  return d.kind === "server" ? String(d.id) : `client ${d.slot}.${d.incarnation}`;
}
