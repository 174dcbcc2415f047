/**
 * The end of a run: at the heal the faults stop, links heal and every crashed
 * server restarts; at the wind-down the clients start nothing new; then every
 * 100 ms the run is checked for settled (every server up, one epoch, one
 * chain of all of them, one state; every client idle; no session of a gone
 * client left), and must be within settleMs. Then the final checks of the
 * client history: hold safety, linearizability of the counters, exact counts,
 * and every recall a client got answered or its session ended.
 */
import { checkCounter, checkHolds, checkLinearizability } from "../check";
import type { SimClient } from "./client";
import { Failed, stateDigest } from "./invariants";
import type { Simulation } from "./simulation";

export class Ending {
  constructor(private readonly sim: Simulation) {}

  heal(): void {
    const sim = this.sim;
    sim.faultsOn = false;
    sim.trace("HEAL: faults stop, links heal, crashed servers restart");
    for (const link of sim.net.links.values()) link.blockedUntilMs = 0;
    for (const server of sim.servers) {
      // Close together: a server restarting long before the others (with a stale disk) would form a chain alone.
      if (!server.up) sim.queue.push(sim.nowMs + sim.faultRng.next() * (sim.suspectMs / 4), { type: "server-restart", server });
    }
    for (const client of sim.clients.list) if (client?.host.paused) sim.queue.push(sim.nowMs, { type: "client-resume", client });
    for (const server of sim.servers) if (server.paused) sim.queue.push(sim.nowMs, { type: "server-resume", server, incarnation: server.incarnation });
    for (const server of sim.servers) server.storage.freeSpace();
    sim.queue.push(sim.nowMs + 1000, { type: "wind-down" });
  }

  windDown(): void {
    this.sim.trace("WIND DOWN: clients finish what they do and start nothing new");
    this.sim.clients.windDown();
    this.sim.queue.push(this.sim.nowMs + 100, { type: "settle-check" });
  }

  /** True once settled; throws once settling took longer than settleMs. */
  settleCheck(): boolean {
    const sim = this.sim;
    const problem = this.unsettled();
    if (problem === null) {
      sim.trace("SETTLED");
      return true;
    }
    if (sim.nowMs > sim.faultMs + sim.settleMs) {
      throw new Failed("liveness", `${sim.settleMs} ms after the faults stopped, the run has not settled: ${problem}`);
    }
    sim.queue.push(sim.nowMs + 100, { type: "settle-check" });
    return false;
  }

  /** What still keeps the run from being settled, or null. */
  private unsettled(): string | null {
    const { servers, clients } = this.sim;
    const first = servers[0]!;
    for (const server of servers) {
      if (!server.up) return `server ${server.id} is down`;
      if (server.replica.status !== "member") return `server ${server.id} is ${server.replica.status}`;
      if (server.replica.config.epoch !== first.replica.config.epoch) return `servers ${first.id} and ${server.id} are in epochs ${first.replica.config.epoch} and ${server.replica.config.epoch}`;
    }
    if (first.replica.config.chain.length !== servers.length) return `the chain [${first.replica.config.chain}] lacks servers`;
    for (const server of servers) {
      if (server.state.appliedSeq !== first.state.appliedSeq) return `server ${server.id} is at ${server.state.appliedSeq}, server ${first.id} at ${first.state.appliedSeq}`;
    }
    for (const client of clients.list) {
      if (!client) continue;
      if (client.alive && !client.opened) return `client ${client.name} has no session yet`;
      if (client.alive && !client.idle) return `client ${client.name} still waits: ${this.describeWait(client)}`;
    }
    const live = new Set(clients.live.map((c) => c.store.sessionId));
    for (const session of first.state.sessions.keys()) {
      if (!live.has(session)) return `session ${session} of a client that is gone has not expired`;
    }
    const digest = stateDigest(first.state);
    for (const server of servers) {
      if (stateDigest(server.state) !== digest) return `server ${server.id}'s state differs from server ${first.id}'s at the same seq`;
    }
    return null;
  }

  private describeWait(client: SimClient): string {
    const clients = this.sim.clients.list;
    let text = `${client.task ?? "no task"}${client.store.busy ? ", requests in flight" : ""}`;
    const owner = (session: number) => clients.find((c) => c?.store.sessionId === session)?.name ?? "nobody";
    for (const datum of this.sim.servers[0]!.state.data.values()) {
      if (datum.queue.length === 0) continue;
      const holders = datum.holders.map((h) => `${h.cached ? "cached " : ""}${h.mode} hold ${h.id} of session ${h.session} (client ${owner(h.session)}, reqNo ${h.reqNo})`);
      const queue = datum.queue.map((w) => `${w.mode} ${w.session}/${w.reqNo} (client ${owner(w.session)})`);
      text += `; ${datum.name} held by [${holders.join(", ")}], queue [${queue.join(", ")}]`;
    }
    return text;
  }

  finalChecks(): void {
    const sim = this.sim;
    const state = sim.servers[0]!.state;
    sim.stats.appliedSeq = state.appliedSeq;
    for (const [id, hold] of state.holds) {
      if (!state.sessions.has(hold.session)) throw new Failed("3", `hold ${id} on ${hold.name} belongs to session ${hold.session}, which is gone`);
    }
    const unanswered = sim.clients.recalls.unanswered(new Set(state.sessions.keys()));
    if (unanswered) throw new Failed("cache-recall", `the recall of hold ${unanswered.holdId} on ${unanswered.name} (session ${unanswered.session}) was never answered, and its session is still open`);
    const holds = checkHolds(sim.history);
    if (holds.ok === false) throw new Failed("3", `clients saw unsafe holds: ${holds.explanation}`);
    const counters = [...sim.clients.settings.sharedCounters, ...sim.clients.list.map((_, slot) => `p${slot}`)];
    const lin = checkLinearizability(sim.history, { keys: counters, maxSteps: 2_000_000 });
    if (lin.ok === false) throw new Failed("4", lin.explanation);
    if (lin.ok === "unknown") sim.stats.linearizability = "unknown";
    for (const key of counters) {
      const datum = state.data.get(key);
      if (!datum) continue;
      const bytes = state.pages.read(datum.firstPage);
      const value = new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true);
      const counted = checkCounter(sim.history, key, value);
      if (!counted.ok) throw new Failed("4", counted.explanation);
    }
  }
}
