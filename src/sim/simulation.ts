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
import type { Message } from "../wire";
import { type ClientHost, type ClientSettings, SimClient } from "./client";
import { Checker, stateDigest } from "./invariants";
import { ServerMachine } from "./machine";
import { type ClientConn, Network } from "./network";
import { Rng } from "./prng";
import { EventQueue } from "./queue";
import { NoDisk, SimDisk, type Storage } from "./storage";
import { Trace } from "./trace";
import { type WireEvent, Wires } from "./wires";

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
  | WireEvent
  | { type: "tick"; server: ServerMachine; incarnation: number }
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
  private readonly wires: Wires;
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
  readonly stallMsMax: number;
  faultsOn = true;
  private stopping = false;
  private settled = false;
  private nextSession = 1;
  private crashedThisStep: ServerMachine | null = null;
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
    const sim = this;
    this.wires = new Wires(
      {
        get nowMs() {
          return sim.nowMs;
        },
        get faultsOn() {
          return sim.faultsOn;
        },
        stallMsMax: this.stallMsMax,
        tracer: this.tracer,
        get stats() {
          return sim.stats;
        },
        push: (atMs, event) => this.queue.push(atMs, event),
        server: (id) => this.server(id),
        clientEvent: (conn, handle) => this.clientEvent(conn, handle),
        sawConfig: (server, epoch, chain) => this.checker.sawConfig(server, epoch, chain),
        fail: (invariant, message) => this.fail(invariant, message),
      },
      this.net,
      this.netRng,
      this.faultRng,
    );
    const world = this.wires.world();
    this.servers = this.serverIds.map((id) => {
      const storage = options.storage?.(id, geometry) ?? (options.disks ? new SimDisk(geometry, 0.5) : new NoDisk(geometry));
      return new ServerMachine(id, replicaSettings, storage, world, params.range(10, Math.min(50, this.heartbeatMs)), this.rng.fork());
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
      case "accept":
      case "bytes":
      case "closed":
      case "handshake-cut":
        return this.wires.handle(event);
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
        return event.server;
      case "dialled":
      case "accept":
      case "bytes":
      case "closed":
      case "handshake-cut":
        return this.wires.target(event);
      default:
        return null;
    }
  }

  private server(id: number): ServerMachine {
    const server = this.servers[id - 1];
    if (!server) throw new Failed("sim", `no server ${id}`);
    return server;
  }


  // ---- servers -----------------------------------------------------------------------

  private onTick(server: ServerMachine, incarnation: number): void {
    if (!server.up || server.incarnation !== incarnation) return;
    server.run((node) => node.tick());
    this.queue.push(this.nowMs + server.tickMs, { type: "tick", server, incarnation });
  }

  private restartServer(server: ServerMachine): void {
    if (server.up) return;
    server.start();
    if (server.incarnation > 1) this.stats.restarts++;
    this.tracer.add(this.nowMs, `server ${server.id}: start (incarnation ${server.incarnation}, at seq ${server.history.length})`);
    this.wires.restarted(server);
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
    this.wires.crashed(server, flush, silent);
    const downMs = this.faultRng.chance(0.85) ? 100 + this.faultRng.next() * 3000 : 5000 + this.faultRng.next() * 5000;
    this.queue.push(restartAtMs ?? this.nowMs + downMs, { type: "server-restart", server });
  }

  /** Every server at once (a power cut, or all killed), then all restart close together. */
  private crashCluster(): void {
    this.tracer.add(this.nowMs, "WHOLE-CLUSTER CRASH");
    const restartAtMs = this.nowMs + 200 + this.faultRng.next() * 2000;
    for (const server of this.servers) this.crashServer(server, restartAtMs + this.faultRng.next() * (this.suspectMs / 4));
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
    return this.wires.dialClient(client, serverId);
  }

  send(_client: SimClient, conn: ClientConn, message: Message): void {
    this.wires.sendClient(conn, message);
  }

  close(_client: SimClient, conn: ClientConn): void {
    this.wires.closeClient(conn);
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
      const conns = this.servers.flatMap((s) => this.wires.clientConnsOf(s.id));
      if (conns.length > 0) {
        this.stats.cuts++;
        // Any time, the handshake included: a cut may fall between the hello and the welcome.
        this.wires.breakConn(rng.pick(conns), "cut");
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
      this.wires.breakPeerLink(link);
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
