/**
 * The deterministic simulator (DESIGN §3, §7, §10; TigerBeetle's VOPR): N
 * real server nodes (src/server/node.ts, each with its real Replica) and a few
 * real clients (src/client's ClientStore over a simulated host, doing a
 * workload) over a seeded network that carries bytes (framed by the real
 * codec at both ends, cut at arbitrary boundaries; the real handshakes), a
 * virtual clock and one event queue. Faults (faults.ts): message delays and
 * reordering across connections, frames split anywhere, connection cuts
 * (handshakes included), server crashes and restarts, pauses, client crashes
 * and pauses. The invariants are checked after every step (invariants.ts,
 * and uses.ts for what the clients see); at the end (ending.ts) the faults
 * stop, the network heals, every crashed server restarts, and within a
 * bounded virtual time every client operation must complete and every server
 * converge to one state; then the client history is checked.
 *
 * Here: the options, the run's loop and its event dispatch, the servers'
 * ticks and restarts. Clients are in clients.ts, connections in wires.ts.
 *
 * Same seed, same run: randomness comes only from the seeded Rng, time only
 * from the event queue, and iteration only over insertion-ordered maps.
 */
import { drainMicrotasks } from "bun:jsc";
import { History } from "../check";
import type { SimClient } from "./client";
import { SimClients } from "./clients";
import { Ending } from "./ending";
import { Faults } from "./faults";
import { Checker, Failed } from "./invariants";
import { type ReplicaSettings, ServerMachine } from "./machine";
import { Network } from "./network";
import { Rng } from "./prng";
import { EventQueue } from "./queue";
import { NoDisk, StoreDisk, type Storage } from "./storage";
import type { FsyncMode } from "../store/durability";
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
   * Also cut one direction between two servers for longer than the suspicion timeout,
   * the other direction working: a server hears a peer that cannot hear it (a
   * firewall rule, a half-broken link). Without --partitions the other direction of a link
   * is never cut at the same time, so the default mode must lose nothing acknowledged.
   */
  oneWay?: boolean;
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
   * Servers have disks (src/store itself, by default with --fsync always, on an in-memory
   * file system: storage.ts): restarted servers recover their state,
   * whole-cluster crashes are allowed, a power loss drops what was not synced
   * (and may keep part of it). Default: no disk.
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
  /**
   * With disks, the servers' --fsync (default always). With batch and off an acknowledged update
   * need not survive a power loss of every server that has it: the fault budget always keeps
   * one running (as without disks), and restarts recover what the log kept.
   */
  fsync?: FsyncMode;
  /**
   * With disks, a server's disk sometimes fills for a while (a few KiB left): src/server's
   * DiskQueue then holds its writes and retries, and the node refuses new data (ENOSPC).
   */
  fullDisks?: boolean;
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
  /** Of them, cuts of one direction longer than a heartbeat (--one-way). */
  oneWayCuts: number;
  clientCrashes: number;
  pauses: number;
  serverPauses: number;
  sessionsLost: number;
  increments: number;
  reads: number;
  timeouts: number;
  configurations: number;
  snapshots: number;
  /** Tails that held back their forwards to a joiner too far behind, then resynced it. */
  joinerHolds: number;
  /** Background checkpoints the servers began (--disks). */
  checkpoints: number;
  /** Disks that filled for a while (--full-disks). */
  diskFills: number;
  /** DiskQueue writes a full disk refused (each tried again later). */
  diskWritesRefused: number;
  appliedSeq: number;
  linearizability: "ok" | "unknown";
  /** Accesses granted from a cached grant, without a message. */
  localGrants: number;
  /** Recalls clients got. */
  recalls: number;
  /** Clients started in the process of another client's store (one connection per server for both). */
  sharedProcessStarts: number;
  /** Crashes of a head, middle, tail, or the caching client while a recall was open. */
  recallCrashesHead: number;
  recallCrashesMiddle: number;
  recallCrashesTail: number;
  recallCrashesClient: number;
  /** EUNAVAILABLE answers clients got (a head without a majority): each starts the client's retry timer. */
  unavailableReplies: number;
  /** Client connections cut between their hello and the welcome. */
  clientHandshakeCuts: number;
  /** Client connections whose bytes arrive one at a time (both ways). */
  clientConnsByteByByte: number;
  /** The servers ask for a secret: every handshake is authenticated. */
  secret: boolean;
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

/** The secret of the runs that use one (half of them): clients and peers answer the servers' challenge. */
const SIM_SECRET = "simulated secret";

export type Event =
  | WireEvent
  | { type: "tick"; server: ServerMachine; incarnation: number }
  | { type: "wake"; client: SimClient; token: number }
  | { type: "fault" }
  | { type: "server-restart"; server: ServerMachine }
  | { type: "client-start"; slot: number }
  | { type: "client-resume"; client: SimClient }
  | { type: "server-resume"; server: ServerMachine; incarnation: number }
  | { type: "disk-space"; server: ServerMachine }
  /** Disk work of a server completes: a sync, background I/O, a batch sync (--disks). */
  | { type: "disk"; server: ServerMachine; incarnation: number; run: () => void }
  | { type: "heal" }
  | { type: "wind-down" }
  | { type: "settle-check" };

export class Simulation {
  nowMs = 0;
  readonly history = new History();
  readonly serverIds: number[];
  readonly servers: ServerMachine[];
  readonly clients: SimClients;
  readonly queue = new EventQueue<Event>();
  readonly net: Network;
  readonly wires: Wires;
  readonly checker: Checker;
  private readonly faults: Faults;
  private readonly ending: Ending;
  readonly tracer: Trace;
  private readonly rng: Rng;
  readonly netRng: Rng;
  readonly faultRng: Rng;
  readonly heartbeatMs: number;
  readonly suspectMs: number;
  readonly sessionTimeoutMs: number;
  readonly faultMs: number;
  readonly settleMs: number;
  readonly faultEveryMs: number;
  private readonly eventsMax: number;
  readonly stallMsMax: number;
  /** What the servers ask clients and peers to prove they know (undefined: no challenge). */
  readonly secret: string | undefined;
  faultsOn = true;
  private settled = false;
  crashedThisStep: ServerMachine | null = null;
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
    this.secret = params.chance(0.5) ? SIM_SECRET : undefined;
    this.eventsMax = options.eventsMax ?? 2_000_000;
    this.tracer = new Trace(options.traceLines ?? 400);
    this.serverIds = Array.from({ length: serverCount }, (_, i) => i + 1);
    this.net = new Network(this.serverIds, this.netRng);
    const geometry = { segmentSize: SEGMENT_PAGES * PAGE_SIZE, pageSize: PAGE_SIZE };
    const replicaSettings: ReplicaSettings = { peers: this.serverIds, quorum: options.quorum ?? "none", sessionTimeoutMsDefault: this.sessionTimeoutMs, heartbeatMs: this.heartbeatMs, suspectMs: this.suspectMs, secret: this.secret, ...geometry };
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
        clientEvent: (conn, handle) => this.clients.event(conn, handle),
        sawConfig: (server, epoch, chain) => this.checker.sawConfig(server, epoch, chain),
        sentRecall: (recall) => this.clients.recalls.sent(recall),
        replied: (server, session, reqNo, reply) => this.checker.replied(server, session, reqNo, reply),
        diskAt: (server, atMs, run) => this.queue.push(atMs, { type: "disk", server, incarnation: server.incarnation, run }),
        fail: (invariant, message) => this.fail(invariant, message),
        report: (invariant, message) => this.report(invariant, message),
      },
      this.net,
      this.netRng,
      this.faultRng,
    );
    const world = this.wires.world();
    let checkpointBytes = 0; // drawn below, read when the servers first start
    this.servers = this.serverIds.map((id) => {
      const storage = options.storage?.(id, geometry) ?? (options.disks ? new StoreDisk(geometry, 0.5, () => checkpointBytes, options.fsync, () => this.nowMs) : new NoDisk(geometry));
      return new ServerMachine(id, replicaSettings, storage, world, params.range(10, Math.min(50, this.heartbeatMs)), this.rng.fork());
    });
    this.checker = new Checker(this.servers, (invariant, message) => this.fail(invariant, message), () => this.nowMs);
    // Drawn after everything else from params: the draws before it, and so older seeds' setups, stay as they were.
    const settings = { ...geometry, sharedCounters: SHARED_COUNTERS, extras: EXTRAS, cacheHolds: options.cacheHolds !== false, sharedProcesses: params.chance(0.5) };
    // --checkpoint-mb: small, so that servers checkpoint (in the background) every few dozen updates.
    checkpointBytes = Math.round(params.range(512, 8192));
    // A few updates' worth (read when the servers first start): a joiner that lags gets its forwards held back, then a resync.
    if (params.chance(0.5)) replicaSettings.joinerBacklogBytes = Math.round(params.range(256, 16_384));
    this.clients = new SimClients(this, clientCount, settings, this.rng);
    this.faults = new Faults(this);
    this.ending = new Ending(this);
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
      oneWayCuts: 0,
      clientCrashes: 0,
      pauses: 0,
      serverPauses: 0,
      sessionsLost: 0,
      increments: 0,
      reads: 0,
      timeouts: 0,
      configurations: 0,
      snapshots: 0,
      joinerHolds: 0,
      checkpoints: 0,
      diskFills: 0,
      diskWritesRefused: 0,
      appliedSeq: 0,
      linearizability: "ok",
      localGrants: 0,
      recalls: 0,
      sharedProcessStarts: 0,
      recallCrashesHead: 0,
      recallCrashesMiddle: 0,
      recallCrashesTail: 0,
      recallCrashesClient: 0,
      unavailableReplies: 0,
      clientHandshakeCuts: 0,
      clientConnsByteByByte: 0,
      secret: this.secret !== undefined,
    };
  }

  describeSetup(): string {
    const o = this.options;
    return (
      `${this.servers.length} servers, ${this.stats.clients} clients, heartbeat ${this.heartbeatMs} ms, suspect ${this.suspectMs} ms, ` +
      `session timeout ${this.sessionTimeoutMs} ms, faults for ${this.faultMs} ms every ~${this.faultEveryMs} ms${o.partitions ? " with partitions" : ""}${o.oneWay ? " and one-way cuts" : ""}${o.disks ? `, disks (--fsync ${o.fsync ?? "always"}${o.fullDisks ? ", filling" : ""})` : ""}` +
      `${o.quorum === "majority" ? ", quorum majority" : ""}${o.cacheHolds === false ? ", no cached holds" : ""}${this.secret ? ", a secret" : ""}`
    );
  }

  // ---- running ---------------------------------------------------------------------

  run(): SimResult {
    let failure: SimFailure | undefined;
    try {
      this.begin();
      this.loop();
      this.ending.finalChecks();
    } catch (error) {
      if (!(error instanceof Failed)) {
        // An exception inside the replica, the client (or the simulator) is a failure of this seed too.
        const message = error instanceof Error ? `${error.message}\n${error.stack ?? ""}` : String(error);
        failure = { invariant: "exception", message, atMs: this.nowMs, trace: this.tracer.lines() };
      } else {
        failure = { invariant: error.invariant, message: error.message, atMs: this.nowMs, trace: this.tracer.lines() };
      }
    }
    this.stats.virtualMs = Math.round(this.nowMs);
    this.stats.configurations = this.checker.configurations;
    for (const client of this.clients.list) if (client) this.clients.absorbStats(client);
    this.tracer.hash.add(this.stats.appliedSeq);
    return { seed: this.options.seed, ok: failure === undefined, failure, stats: this.stats, traceHash: this.tracer.hash.hex() };
  }

  private begin(): void {
    this.tracer.add(0, "setup", this.describeSetup());
    for (const server of this.servers) {
      this.queue.push(this.faultRng.next() * 50, { type: "server-restart", server });
    }
    for (let slot = 0; slot < this.stats.clients; slot++) {
      this.queue.push(100 + this.faultRng.next() * 400, { type: "client-start", slot });
    }
    this.queue.push(this.faults.nextDelay(), { type: "fault" });
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
      this.clients.recalls.follow(this.checker.committed.length, (seq) => this.checker.committed.updateAt(seq), () => this.clients.currentStates());
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
      case "wake":
        return this.clients.wake(event.client, event.token);
      case "fault":
        if (!this.faultsOn) return;
        this.faults.inject();
        this.queue.push(this.nowMs + this.faults.nextDelay(), { type: "fault" });
        return;
      case "server-restart":
        return this.restartServer(event.server);
      case "client-start":
        return this.clients.start(event.slot);
      case "client-resume":
        return this.clients.resume(event.client);
      case "server-resume":
        return this.resumeServer(event.server, event.incarnation);
      case "disk-space":
        this.trace(`server ${event.server.id}: disk space back`);
        return event.server.storage.freeSpace();
      case "disk":
        if (event.server.up && event.server.incarnation === event.incarnation) event.server.run(() => event.run());
        return;
      case "heal":
        return this.ending.heal();
      case "wind-down":
        return this.ending.windDown();
      case "settle-check":
        this.settled = this.ending.settleCheck();
        return;
    }
  }

  /** The server an event runs on, if any (held while it is paused). */
  private targetServer(event: Event): ServerMachine | null {
    switch (event.type) {
      case "tick":
      case "disk":
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

  private resumeServer(server: ServerMachine, incarnation: number): void {
    if (!server.up || server.incarnation !== incarnation || !server.paused) return;
    server.paused = false;
    const held = server.held.splice(0) as Event[];
    this.tracer.add(this.nowMs, `server ${server.id}: resume (${held.length} events waited)`);
    for (const event of held) this.handle(event);
  }

  // ---- host services -------------------------------------------------------------------------

  trace(what: string, detail?: string | (() => string)): void {
    this.tracer.add(this.nowMs, what, detail);
  }

  fail(invariant: string, message: string): never {
    throw new Failed(invariant, message);
  }

  /** A violation seen inside client code: the step fails once it has run. */
  report(invariant: string, message: string): void {
    this.reported ??= new Failed(invariant, message);
  }
}

export function runSeed(options: SimOptions): SimResult {
  return new Simulation(options).run();
}
