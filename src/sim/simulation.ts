/**
 * The deterministic simulator (DESIGN §3, §7, §10; TigerBeetle's VOPR): N
 * real Replicas and a few real clients (src/client's ClientStore over a
 * SimClientHost, doing a workload) over a seeded network, a virtual
 * clock and one event queue. Faults: message delays and reordering across
 * connections, connection cuts, server crashes (memory lost) and restarts,
 * client crashes and pauses. The invariants are checked after every step;
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
import { drainMicrotasks } from "bun:jsc";
import { History, checkCounter, checkHolds, checkLinearizability } from "../check";
import type { StoreState } from "../core";
import { type Message, type PeerMessage, decodeMessage, encodeMessage, encodePeer } from "../wire";
import type { AppliedHistory } from "./applied";
import { type ClientSettings, type ClientWorld, SimClient } from "./client";
import type { ClientNet, SimClientHost } from "./client_host";
import { Checker, stateDigest } from "./invariants";
import { ClientConn, type Connection, Network, type PeerLink } from "./network";
import { Rng } from "./prng";
import { EventQueue } from "./queue";
import { SimServer, type ServerHost } from "./server";
import { NoDisk, SimDisk, type Storage } from "./storage";
import { Trace } from "./trace";
import { RecallWatch, UseChecker } from "./uses";

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
  /** Clients cache holds (connect's cacheHolds, default true as in production). */
  cacheHolds?: boolean;
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
  /** Accesses granted from a cached grant, without a message. */
  localGrants: number;
  /** Recalls clients got. */
  recalls: number;
  /** Crashes of a head, middle, tail, or the caching client while a recall was open. */
  recallCrashesHead: number;
  recallCrashesMiddle: number;
  recallCrashesTail: number;
  recallCrashesClient: number;
  /** EUNAVAILABLE answers clients got (a head without a majority): each starts the client's retry timer. */
  unavailableReplies: number;
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
  | { type: "tick"; server: SimServer; incarnation: number }
  | { type: "peer"; link: PeerLink; conn: Connection; frame: Uint8Array; history: AppliedHistory | undefined }
  | { type: "peer-lost"; server: SimServer; incarnation: number; peer: number }
  | { type: "peer-open"; link: PeerLink; incarnation: number }
  | { type: "to-server"; conn: ClientConn; frame: Uint8Array | null }
  | { type: "to-client"; conn: ClientConn; frame: Uint8Array; expectedHash: number | undefined }
  | { type: "client-closed"; conn: ClientConn }
  | { type: "server-closed"; conn: ClientConn }
  | { type: "wake"; client: SimClient; token: number }
  | { type: "fault" }
  | { type: "server-restart"; server: SimServer }
  | { type: "client-start"; slot: number }
  | { type: "client-resume"; client: SimClient }
  | { type: "server-resume"; server: SimServer; incarnation: number }
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

export class Simulation implements ServerHost, ClientNet, ClientWorld {
  nowMs = 0;
  private nsInMs = 0;
  private lastNsMs = -1;
  readonly history = new History();
  readonly serverIds: number[];
  private readonly servers: SimServer[];
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
  private crashedThisStep: SimServer | null = null;
  private readonly clientConns = new Map<number, Set<ClientConn>>();
  readonly uses: UseChecker;
  private readonly recalls = new RecallWatch();
  /** A violation reported from inside client code (a promise chain): thrown once the step ends. */
  private reported: Failed | null = null;
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
    this.settings = { segmentSize: SEGMENT_PAGES * PAGE_SIZE, pageSize: PAGE_SIZE, sharedCounters: SHARED_COUNTERS, extras: EXTRAS, cacheHolds: options.cacheHolds !== false };
    this.uses = new UseChecker({ currentStates: () => this.currentStates(), report: (invariant, message) => this.report(invariant, message) }, PAGE_SIZE);
    const geometry = { segmentSize: this.settings.segmentSize, pageSize: PAGE_SIZE };
    const replicaSettings = { peers: this.serverIds, quorum: options.quorum ?? "none", sessionTimeoutMsDefault: this.sessionTimeoutMs, heartbeatMs: this.heartbeatMs, suspectMs: this.suspectMs };
    this.servers = this.serverIds.map((id) => {
      const storage = options.storage?.(id, geometry) ?? (options.disks ? new SimDisk(geometry, 0.5) : new NoDisk(geometry));
      return new SimServer(id, replicaSettings, storage, this, params.range(10, Math.min(50, this.heartbeatMs)));
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
      localGrants: 0,
      recalls: 0,
      recallCrashesHead: 0,
      recallCrashesMiddle: 0,
      recallCrashesTail: 0,
      recallCrashesClient: 0,
      unavailableReplies: 0,
    };
  }

  describeSetup(): string {
    return (
      `${this.servers.length} servers, ${this.clients.length} clients, heartbeat ${this.heartbeatMs} ms, suspect ${this.suspectMs} ms, ` +
      `session timeout ${this.sessionTimeoutMs} ms, faults for ${this.faultMs} ms every ~${this.faultEveryMs} ms${this.options.partitions ? " with partitions" : ""}${this.options.disks ? ", disks" : ""}${this.options.quorum === "majority" ? ", quorum majority" : ""}${this.settings.cacheHolds ? "" : ", no cached holds"}`
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
      // What the step started in client code (promise continuations) runs to its end now.
      drainMicrotasks();
      if (this.reported) throw this.reported;
      this.checker.afterStep(this.crashedThisStep);
      this.recalls.follow(this.checker.committed.length, (seq) => this.checker.committed.updateAt(seq), () => this.currentStates());
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
      case "peer":
        return this.onPeerDelivery(event.link, event.conn, event.frame, event.history);
      case "peer-lost":
        if (event.server.up && event.server.incarnation === event.incarnation) {
          this.tracer.add(this.nowMs, `server ${event.server.id}: connection to ${event.peer} lost`);
          event.server.onPeerLost(event.peer);
        }
        return;
      case "peer-open":
        return this.onPeerOpen(event.link, event.incarnation);
      case "to-server":
        return this.onClientToServer(event.conn, event.frame);
      case "to-client":
        if (event.conn.closed) return;
        return this.clientEvent(event.conn, () => this.onServerToClient(event.conn, event.frame, event.expectedHash));
      case "client-closed":
        return this.clientEvent(event.conn, (client) => {
          this.tracer.add(this.nowMs, `client ${client.name}: connection to server ${event.conn.serverId} closed`);
          client.host.closed(event.conn);
        });
      case "server-closed": {
        const server = this.servers[event.conn.serverId - 1]!;
        if (server.up && server.incarnation === event.conn.serverIncarnation) server.onClientClosed(event.conn);
        return;
      }
      case "wake": {
        const wake = this.wakeTokens.get(event.client);
        if (!wake || wake.token !== event.token) return;
        this.wakeTokens.delete(event.client);
        event.client.host.runTimers();
        drainMicrotasks();
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
  private targetServer(event: Event): SimServer | null {
    switch (event.type) {
      case "tick":
      case "peer-lost":
        return event.server;
      case "peer":
        return this.servers[event.link.to - 1]!;
      case "peer-open":
        return this.servers[event.link.from - 1]!;
      case "to-server":
      case "server-closed":
        return this.servers[event.conn.serverId - 1]!;
      default:
        return null;
    }
  }

  // ---- servers -----------------------------------------------------------------------

  private onTick(server: SimServer, incarnation: number): void {
    if (!server.up || server.incarnation !== incarnation) return;
    this.maintainLinks(server);
    server.tick();
    this.queue.push(this.nowMs + server.tickMs, { type: "tick", server, incarnation });
  }

  /** As PeerLinks.maintain: re-dial every peer we have no connection to, once per heartbeat. */
  private maintainLinks(server: SimServer): void {
    for (const link of this.net.linksFrom(server.id)) {
      if (link.conn || link.dialling || this.nowMs - link.lastAttemptMs < this.heartbeatMs) continue;
      link.lastAttemptMs = this.nowMs;
      link.dialling = true;
      const rtt = 2 * (0.2 + this.netRng.next() * 2);
      this.queue.push(this.nowMs + rtt, { type: "peer-open", link, incarnation: server.incarnation });
    }
  }

  private onPeerOpen(link: PeerLink, incarnation: number): void {
    const from = this.servers[link.from - 1]!;
    if (!from.up || from.incarnation !== incarnation) return;
    link.dialling = false;
    const to = this.servers[link.to - 1]!;
    if (!to.up || this.nowMs < link.blockedUntilMs || link.conn) return;
    link.conn = this.net.newPeerConnection(link.from, link.to);
    link.blackHole = false;
  }

  sendPeer(from: SimServer, to: number, message: PeerMessage): void {
    if (to === from.id) return; // PeerLinks has no connection to itself
    const link = this.net.link(from.id, to);
    const conn = link.conn;
    if (!conn) return; // PeerLinks.send drops what it cannot send
    const frame = encodePeer(message);
    const history = message.type === "snapshot" ? from.history.prefix(message.seq) : undefined;
    if (message.type === "snapshot") this.stats.snapshots++;
    this.queue.push(conn.arrival(this.nowMs, this.netRng, this.stallMsMax), { type: "peer", link, conn, frame, history });
  }

  private onPeerDelivery(link: PeerLink, conn: Connection, frame: Uint8Array, history: AppliedHistory | undefined): void {
    if (conn.broken) return;
    const to = this.servers[link.to - 1]!;
    if (!to.up) return;
    const message = to.onPeerFrame(frame, history);
    if (message.type !== "heartbeat") this.tracer.add(this.nowMs, `${link.from}→${link.to}`, message);
  }

  sawConfig(server: SimServer, epoch: number, chain: number[]): void {
    this.checker.sawConfig(server, epoch, chain);
  }

  private restartServer(server: SimServer): void {
    if (server.up) return;
    server.start();
    if (server.incarnation > 1) this.stats.restarts++;
    this.tracer.add(this.nowMs, `server ${server.id}: start (incarnation ${server.incarnation}, at seq ${server.history.length})`);
    // Connections that were silently dead (their peer crashed without a reset) break now: the new process resets them.
    for (const link of this.net.linksTo(server.id)) {
      if (link.blackHole) this.breakPeerLink(link, true);
    }
    this.queue.push(this.nowMs + this.faultRng.next() * server.tickMs, { type: "tick", server, incarnation: server.incarnation });
  }

  /** Crashes `server`; it restarts at `restartAtMs` (default: drawn, mostly within 3 s). */
  private crashServer(server: SimServer, restartAtMs?: number): void {
    const flush = this.faultRng.chance(0.5);
    const silent = this.faultRng.chance(0.25);
    this.tracer.add(this.nowMs, `server ${server.id}: CRASH${silent ? " (silent)" : ""}${flush ? " (sent data flushed)" : ""}`);
    this.stats.crashes++;
    this.crashedThisStep = server;
    const lost = server.storage.crash(this.faultRng);
    this.tracer.add(this.nowMs, `server ${server.id}: ${lost}`);
    server.crash();
    for (const link of this.net.linksFrom(server.id)) {
      // A killed process's kernel may still deliver what it had sent; a lost machine does not.
      if (link.conn && !flush) link.conn.broken = true;
      link.conn = null;
      link.dialling = false;
      link.lastAttemptMs = -Infinity;
      link.blackHole = false;
    }
    for (const link of this.net.linksTo(server.id)) {
      if (!link.conn) continue;
      if (silent) {
        link.conn.broken = true;
        link.blackHole = true; // the dialler still thinks it is connected
      } else this.breakPeerLink(link, true);
    }
    for (const conn of [...(this.clientConns.get(server.id) ?? [])]) this.closeClientConn(conn, "server");
    if (this.recalls.pending) {
      const replica = server.replica;
      if (replica.isHead) this.stats.recallCrashesHead++;
      else if (replica.isTail) this.stats.recallCrashesTail++;
      else if (replica.status === "member" && replica.config.chain.includes(server.id)) this.stats.recallCrashesMiddle++;
    }
    const downMs = this.faultRng.chance(0.85) ? 100 + this.faultRng.next() * 3000 : 5000 + this.faultRng.next() * 5000;
    this.queue.push(restartAtMs ?? this.nowMs + downMs, { type: "server-restart", server });
  }

  /** Every server at once (a power cut, or all killed), then all restart close together. */
  private crashCluster(): void {
    this.tracer.add(this.nowMs, "WHOLE-CLUSTER CRASH");
    const restartAtMs = this.nowMs + 200 + this.faultRng.next() * 2000;
    for (const server of this.servers) this.crashServer(server, restartAtMs + this.faultRng.next() * (this.suspectMs / 4));
  }

  /** The dialler's connection breaks: what it carried is lost, and the dialler hears of it. */
  private breakPeerLink(link: PeerLink, notify: boolean): void {
    if (link.conn) link.conn.broken = true;
    link.conn = null;
    link.blackHole = false;
    const from = this.servers[link.from - 1]!;
    if (notify && from.up) {
      this.queue.push(this.nowMs + this.netRng.next() * 5, { type: "peer-lost", server: from, incarnation: from.incarnation, peer: link.to });
    }
  }

  /** Stops a server for a while: no ticks, no message handled; others may suspect and remove it. */
  private pauseServer(server: SimServer): void {
    const long = this.faultRng.chance(0.3);
    const pauseMs = long ? this.suspectMs * (1 + 2 * this.faultRng.next()) : (this.faultRng.next() * this.suspectMs) / 2;
    this.stats.serverPauses++;
    this.tracer.add(this.nowMs, `server ${server.id}: PAUSE for ${pauseMs.toFixed(0)} ms`);
    server.paused = true;
    this.queue.push(this.nowMs + pauseMs, { type: "server-resume", server, incarnation: server.incarnation });
  }

  private resumeServer(server: SimServer, incarnation: number): void {
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
  private mayCrash(server: SimServer): boolean {
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
  private majorityKeepsHistory(server: SimServer): boolean {
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
    const client = new SimClient(slot, incarnation, this.settings, this, this, this.clientRngs[slot]!.fork());
    client.stopping = this.stopping;
    this.clients[slot] = client;
    this.tracer.add(this.nowMs, `client ${client.name}: start`);
    client.start();
    drainMicrotasks();
    this.rewake(client);
  }

  newSessionId(): number {
    return this.nextSession++ * 7 + 3;
  }

  restartLater(client: SimClient, why: string): void {
    if (!client.alive) return;
    this.tracer.add(this.nowMs, `client ${client.name}: ${why}; starting over`);
    this.absorbClientStats(client);
    client.crash();
    this.queue.push(this.nowMs + 10 + this.faultRng.next() * 200, { type: "client-start", slot: client.slot });
  }

  private absorbClientStats(client: SimClient): void {
    this.stats.increments += client.stats.increments;
    this.stats.reads += client.stats.reads;
    this.stats.timeouts += client.stats.timeouts;
    client.stats = { increments: 0, reads: 0, timeouts: 0 };
    const store = client.store.stats();
    this.stats.sessionsLost += store.sessionsLost - client.absorbed.sessionsLost;
    this.stats.localGrants += store.localGrants - client.absorbed.localGrants;
    this.stats.recalls += store.recalls - client.absorbed.recalls;
    client.absorbed = { sessionsLost: store.sessionsLost, localGrants: store.localGrants, recalls: store.recalls };
  }

  dial(host: SimClientHost, serverId: number): ClientConn {
    const server = this.servers[serverId - 1]!;
    const conn = this.net.newClientConn(host.slot, host.incarnation, serverId, server.incarnation);
    this.tracer.add(this.nowMs, `client ${host.name} dials server ${serverId}${server.up ? "" : " (down: refused)"}`);
    if (!server.up) {
      // Refused: the client hears of it one round trip later.
      conn.closed = true;
      conn.refused = true;
      this.queue.push(this.nowMs + 2 * conn.up.latencyMs, { type: "client-closed", conn });
      return conn;
    }
    let set = this.clientConns.get(serverId);
    if (!set) this.clientConns.set(serverId, (set = new Set()));
    set.add(conn);
    // The handshake (and its optional secret) is not what this simulates: a hello event stands for it.
    this.queue.push(conn.up.arrival(this.nowMs, this.netRng, 0), { type: "to-server", conn, frame: null });
    return conn;
  }

  send(_client: SimClientHost, conn: ClientConn, message: Message): void {
    if (conn.closed) return;
    const frame = encodeMessage(message);
    this.queue.push(conn.up.arrival(this.nowMs, this.netRng, 0), { type: "to-server", conn, frame });
  }

  close(_client: SimClientHost, conn: ClientConn): void {
    if (conn.closed) return;
    conn.closed = true;
    this.clientConns.get(conn.serverId)?.delete(conn);
    this.queue.push(this.nowMs + conn.up.latencyMs, { type: "server-closed", conn });
  }

  /** A connection breaks under both ends (a reset, or the server died). */
  private closeClientConn(conn: ClientConn, why: string): void {
    if (conn.closed) return;
    conn.closed = true;
    this.clientConns.get(conn.serverId)?.delete(conn);
    this.tracer.add(this.nowMs, `connection of client ${conn.clientSlot}.${conn.clientIncarnation} to server ${conn.serverId} broken (${why})`);
    this.queue.push(this.nowMs + this.netRng.next() * 3, { type: "client-closed", conn });
    this.queue.push(this.nowMs + this.netRng.next() * 3, { type: "server-closed", conn });
  }

  sendClient(_from: SimServer, conn: ClientConn, message: Message, expectedHash?: number): void {
    if (conn.closed) return;
    if (message.type === "recall") this.recalls.sent(message.body);
    const frame = encodeMessage(message);
    this.queue.push(conn.down.arrival(this.nowMs, this.netRng, 0), { type: "to-client", conn, frame, expectedHash });
  }

  private onClientToServer(conn: ClientConn, frame: Uint8Array | null): void {
    if (conn.closed) return;
    const server = this.servers[conn.serverId - 1]!;
    if (!server.up || server.incarnation !== conn.serverIncarnation) return;
    if (frame === null) return server.onHello(conn);
    const message = server.onClientFrame(conn, frame);
    if (message.type !== "heartbeat") this.tracer.add(this.nowMs, `client ${conn.clientSlot}.${conn.clientIncarnation}→${conn.serverId}`, message);
  }

  private onServerToClient(conn: ClientConn, frame: Uint8Array, expectedHash: number | undefined): void {
    const client = this.clients[conn.clientSlot]!;
    const message = decodeMessage(frame[4]!, frame.subarray(5));
    this.tracer.add(this.nowMs, `${conn.serverId}→client ${client.name}`, message);
    if (message.type === "reply" && message.body.reply.type === "granted" && expectedHash !== undefined) client.expectedHashes.set(message.body.reply.holdId, expectedHash);
    if (message.type === "recall") this.recalls.delivered(message.body);
    if (message.type === "reply" && message.body.reply.type === "error" && message.body.reply.code === "EUNAVAILABLE") this.stats.unavailableReplies++;
    client.host.deliver(conn, message);
  }

  expectedHash(client: SimClient, holdId: number): number | undefined {
    return client.expectedHashes.get(holdId);
  }

  /** Runs `deliver` for the client incarnation that owns `conn`, now or when it resumes from a pause. */
  private clientEvent(conn: ClientConn, deliver: (client: SimClient) => void): void {
    const client = this.clients[conn.clientSlot];
    if (!client || client.incarnation !== conn.clientIncarnation || !client.alive) return;
    if (client.host.paused) {
      client.host.inbox.push(() => deliver(client));
      return;
    }
    deliver(client);
    drainMicrotasks();
    this.rewake(client);
  }

  private rewake(client: SimClient): void {
    if (!client.alive) return;
    const atMs = client.host.nextWakeMs();
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
    if (this.recalls.pendingFor(client.store.sessionId)) this.stats.recallCrashesClient++;
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
    client.host.paused = true;
    this.wakeTokens.delete(client);
    this.queue.push(this.nowMs + pauseMs, { type: "client-resume", client });
  }

  private resumeClient(client: SimClient): void {
    if (!client.host.paused) return;
    client.host.paused = false;
    this.tracer.add(this.nowMs, `client ${client.name}: resume`);
    const inbox = client.host.inbox.splice(0);
    for (const deliver of inbox) {
      if (!client.alive) break;
      deliver();
      drainMicrotasks();
    }
    if (client.alive) {
      client.host.runTimers();
      drainMicrotasks();
      this.rewake(client);
    }
  }

  /**
   * The servers whose state the clients' view is checked against: up, serving, holding every
   * acknowledged update, in the newest epoch among those.
   */
  private currentStates(): StoreState[] {
    const committed = this.checker.committed;
    const serving = this.servers.filter((s) => s.up && s.replica.status === "member" && s.history.samePrefix(committed, committed.length));
    const newest = Math.max(...serving.map((s) => s.replica.config.epoch));
    return serving.filter((s) => s.replica.config.epoch === newest).map((s) => s.state);
  }

  /** A violation seen inside client code: the step fails once it has run. */
  report(invariant: string, message: string): void {
    this.reported ??= new Failed(invariant, message);
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
        this.closeClientConn(rng.pick(conns), "cut");
      }
    } else if (roll < 0.8) {
      if (liveClients.length > 0) this.crashClient(rng.pick(liveClients));
    } else if (roll < 0.9) {
      const running = liveClients.filter((c) => !c.host.paused);
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
      this.breakPeerLink(link, true);
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
    for (const client of this.clients) if (client?.host.paused) this.queue.push(this.nowMs, { type: "client-resume", client });
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
    const live = new Set(this.clients.filter((c) => c?.alive).map((c) => c!.store.sessionId));
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
    let text = `${client.task ?? "no task"}${client.store.busy ? ", requests in flight" : ""}`;
    const owner = (session: number) => this.clients.find((c) => c?.store.sessionId === session)?.name ?? "nobody";
    for (const datum of this.servers[0]!.state.data.values()) {
      if (datum.queue.length === 0) continue;
      const holders = datum.holders.map((h) => `${h.cached ? "cached " : ""}${h.mode} hold ${h.id} of session ${h.session} (client ${owner(h.session)}, reqNo ${h.reqNo})`);
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
    const sessions = new Set(state.sessions.keys());
    const unanswered = this.recalls.unanswered(sessions);
    if (unanswered) throw new Failed("cache-recall", `the recall of hold ${unanswered.holdId} on ${unanswered.name} (session ${unanswered.session}) was never answered, and its session is still open`);
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
