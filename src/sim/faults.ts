/**
 * The faults of a run, drawn from the fault rng every ~faultEveryMs while
 * faults are on: server crashes (alone, or the whole cluster with disks) and
 * pauses, cuts of peer links (partitions with --partitions, long one-way cuts
 * with --one-way) and of client connections (handshakes included), client
 * crashes and pauses.
 *
 * Fault budget (invariant 1 must not be vacuous): without disks a crash is
 * never allowed to take the last copy of the acknowledged history — a server
 * is crashed only if another live server holds every acknowledged update. With
 * --disks --free-crashes any server crashes at any time.
 */
import type { ServerMachine } from "./machine";
import type { Simulation } from "./simulation";

export class Faults {
  constructor(private readonly sim: Simulation) {}

  private get rng() {
    return this.sim.faultRng;
  }

  nextDelay(): number {
    return this.rng.next() * 2 * this.sim.faultEveryMs;
  }

  inject(): void {
    const { sim, rng } = this;
    const roll = rng.next();
    const upServers = sim.servers.filter((s) => s.up);
    const liveClients = sim.clients.live;
    if (roll < 0.02 && sim.options.disks && upServers.length === sim.servers.length) {
      this.crashCluster();
    } else if (roll < 0.22) {
      const server = upServers.length > 0 ? rng.pick(upServers) : null;
      if (server && this.mayCrash(server) && this.majorityKeepsHistory(server)) this.crashServer(server);
    } else if (roll < 0.25 && sim.options.serverPauses !== false) {
      const running = upServers.filter((s) => !s.paused);
      const server = running.length > 0 ? rng.pick(running) : null;
      if (server && this.mayCrash(server)) this.pauseServer(server);
    } else if (roll < 0.55) {
      this.cutPeerLink();
    } else if (roll < 0.7) {
      const conns = sim.servers.flatMap((s) => sim.wires.clientConnsOf(s.id));
      if (conns.length > 0) {
        sim.stats.cuts++;
        // Any time, the handshake included: a cut may fall between the hello and the welcome.
        sim.wires.breakConn(rng.pick(conns), "cut");
      }
    } else if (roll < 0.8) {
      if (liveClients.length > 0) sim.clients.crash(rng.pick(liveClients));
    } else if (roll < 0.9) {
      const running = liveClients.filter((c) => !c.host.paused);
      if (running.length > 0) {
        const client = rng.pick(running);
        sim.clients.pause(client, rng.chance(0.7) ? rng.next() * 500 : rng.next() * 2.5 * sim.sessionTimeoutMs);
      }
    } else if (roll < 0.97 && sim.options.fullDisks && upServers.length > 0) {
      this.fillDisk(rng.pick(upServers));
    }
    // else: a quiet spell
  }

  /**
   * Crashes `server`; it restarts at `restartAtMs` (default: drawn, mostly within 3 s). Its
   * machine may lose power too, unless `processOnly`.
   */
  crashServer(server: ServerMachine, restartAtMs?: number, processOnly = false): void {
    const { sim, rng } = this;
    const flush = rng.chance(0.5);
    const silent = rng.chance(0.25);
    sim.trace(`server ${server.id}: CRASH${silent ? " (silent)" : ""}${flush ? " (sent data flushed)" : ""}`);
    sim.stats.crashes++;
    sim.crashedThisStep = server;
    if (sim.clients.recalls.pending) {
      // A head, middle or tail failing while a recall is open (issue 12 asks for each).
      const replica = server.replica;
      if (replica.isHead) sim.stats.recallCrashesHead++;
      else if (replica.isTail) sim.stats.recallCrashesTail++;
      else if (replica.status === "member" && replica.config.chain.includes(server.id)) sim.stats.recallCrashesMiddle++;
    }
    const lost = server.storage.crash(rng, processOnly);
    sim.trace(`server ${server.id}: ${lost}`);
    server.crash();
    sim.wires.crashed(server, flush, silent);
    const downMs = rng.chance(0.85) ? 100 + rng.next() * 3000 : 5000 + rng.next() * 5000;
    sim.queue.push(restartAtMs ?? sim.nowMs + downMs, { type: "server-restart", server });
  }

  /**
   * Every server at once (a power cut, or all killed), then all restart close together. With
   * --fsync off, the processes only: that mode promises nothing when every machine loses power.
   */
  private crashCluster(): void {
    const { sim, rng } = this;
    sim.trace("WHOLE-CLUSTER CRASH");
    const restartAtMs = sim.nowMs + 200 + rng.next() * 2000;
    for (const server of sim.servers) this.crashServer(server, restartAtMs + rng.next() * (sim.suspectMs / 4), server.storage.lossWindowMs === Number.POSITIVE_INFINITY);
  }

  /** A server's disk fills; space comes back after a while (an operator frees some), or when it crashes. */
  private fillDisk(server: ServerMachine): void {
    const { sim, rng } = this;
    sim.stats.diskFills++;
    sim.trace(`server ${server.id}: ${server.storage.fill(rng)}`);
    sim.queue.push(sim.nowMs + 100 + rng.next() * 2000, { type: "disk-space", server });
  }

  /** Stops a server for a while: no ticks, no message handled; others may suspect and remove it. */
  private pauseServer(server: ServerMachine): void {
    const { sim, rng } = this;
    const long = rng.chance(0.3);
    const pauseMs = long ? sim.suspectMs * (1 + 2 * rng.next()) : (rng.next() * sim.suspectMs) / 2;
    sim.stats.serverPauses++;
    sim.trace(`server ${server.id}: PAUSE for ${pauseMs.toFixed(0)} ms`);
    server.paused = true;
    sim.queue.push(sim.nowMs + pauseMs, { type: "server-resume", server, incarnation: server.incarnation });
  }

  /**
   * Whether stopping `server` (crash or pause) keeps the acknowledged history
   * on a running server (the fault budget).
   */
  private mayCrash(server: ServerMachine): boolean {
    const sim = this.sim;
    if (server.storage.durable && sim.options.freeCrashes) return true;
    const running = sim.servers.filter((s) => s.up && !s.paused);
    if (running.length <= 1) return false;
    return sim.checker.heldPrefix(server, true) >= sim.checker.committed.length;
  }

  /**
   * --quorum majority without disks: a crash loses the server's history like a lost disk, and
   * the mode promises nothing once a majority lost theirs (any majority may then form a chain
   * with none of it: sim seeds 1000952, 9600367). So a crash keeps a majority of live holders
   * of every acknowledged update. Real servers keep their logs on disk (--disks lifts this).
   */
  private majorityKeepsHistory(server: ServerMachine): boolean {
    const sim = this.sim;
    if (sim.options.quorum !== "majority" || server.storage.durable) return true;
    const committed = sim.checker.committed;
    const holders = sim.servers.filter((s) => s !== server && s.up && s.history.samePrefix(committed, committed.length));
    return holders.length >= Math.floor(sim.servers.length / 2) + 1;
  }

  private cutPeerLink(): void {
    const { sim, rng } = this;
    const from = rng.pick(sim.serverIds);
    const to = rng.pick(sim.serverIds.filter((id) => id !== from));
    const links = [sim.net.link(from, to)];
    let blockMs = rng.next() * sim.heartbeatMs;
    let oneWay = false;
    if (sim.options.partitions && rng.chance(0.5)) {
      // A partition between two servers: both directions, for long enough to be suspected.
      links.push(sim.net.link(to, from));
      blockMs = rng.next() * 3 * sim.suspectMs;
    } else if (sim.options.oneWay && rng.chance(0.5)) {
      // One direction only, for long enough to be suspected: `to` hears nothing from `from`.
      blockMs = rng.next() * 3 * sim.suspectMs;
      oneWay = true;
    }
    // Without --partitions a cut is a reset of one connection: never while the other direction
    // is down too (two cuts overlapping would be a short partition between the two servers).
    const reverse = sim.net.link(to, from);
    if (!sim.options.partitions && (reverse.conn === null || sim.nowMs < reverse.blockedUntilMs)) return;
    sim.stats.cuts++;
    if (oneWay) sim.stats.oneWayCuts++;
    sim.trace(`CUT ${links.map((l) => `${l.from}→${l.to}`).join(" ")} for ${blockMs.toFixed(0)} ms${oneWay ? " (one way)" : ""}`);
    for (const link of links) {
      link.blockedUntilMs = sim.nowMs + blockMs;
      sim.wires.breakPeerLink(link);
    }
  }
}
