/**
 * The simulation's client processes: each incarnation of each client slot is
 * a SimClient (client.ts: the workload over the real ClientStore) whose host
 * (client_host.ts) runs on the virtual clock and dials through the simulated
 * network (wires.ts). Here: starting, crashing, pausing and resuming them,
 * waking their timers, running what their promises continue with after every
 * event (drainMicrotasks), and what the checks learn from what they receive.
 * In half the seeds paired slots share a process when both are up: two stores
 * over one host, whose connections the real pool shares (src/client/shared.ts);
 * a crash or a pause takes the whole process, a store that closes leaves it.
 */
import { drainMicrotasks } from "bun:jsc";
import { present } from "../assert";
import type { StoreState } from "../core";
import { type Message, NONCE_BYTES } from "../wire";
import { type ClientSettings, type ClientWorld, SimClient } from "./client";
import type { ClientNet, SimClientHost } from "./client_host";
import type { SimConn } from "./network";
import type { Rng } from "./prng";
import type { Simulation } from "./simulation";
import { RecallWatch, UseChecker } from "./uses";

export class SimClients implements ClientNet, ClientWorld {
  /** The current incarnation of each slot (null before its first start). */
  readonly list: (SimClient | null)[];
  private readonly incarnations: number[];
  private readonly rngs: Rng[];
  private readonly wakeTokens = new Map<SimClient, { token: number; atMs: number }>();
  readonly uses: UseChecker;
  readonly recalls = new RecallWatch();
  private nextSession = 1;
  private nsInMs = 0;
  private lastNsMs = -1;
  /** No new tasks: the run winds down. */
  stopping = false;

  constructor(
    private readonly sim: Simulation,
    count: number,
    readonly settings: ClientSettings,
    rng: Rng,
  ) {
    this.list = new Array(count).fill(null);
    this.incarnations = new Array(count).fill(0);
    this.rngs = Array.from({ length: count }, () => rng.fork());
    this.uses = new UseChecker({ currentStates: () => this.currentStates(), report: (invariant, message) => sim.report(invariant, message) }, settings.pageSize);
  }

  get live(): SimClient[] {
    return this.list.filter((c): c is SimClient => c !== null && c.alive);
  }

  // ---- lifecycle -----------------------------------------------------------------------

  start(slot: number): void {
    if (this.list[slot]?.alive) return;
    const incarnation = ++this.incarnations[slot]!;
    // Paired slots (0 and 1, 2 and 3, …) run in one process when the partner's is up: two stores
    // whose connections the real client code shares (src/client/shared.ts).
    const partner = this.settings.sharedProcesses ? this.list[slot ^ 1] : null;
    const host = partner?.alive ? partner.host : undefined;
    const client = new SimClient(slot, incarnation, this.settings, this, this, present(this.rngs[slot], "a client slot has its rng").fork(), host);
    client.stopping = this.stopping;
    this.list[slot] = client;
    if (host) this.sim.stats.sharedProcessStarts++;
    this.sim.trace(`client ${client.name}: start${host ? ` in the process of client ${present(partner, "a shared host has its client").name}` : ""}`);
    client.start();
    this.settle(client.host);
  }

  restartLater(client: SimClient, why: string): void {
    if (!client.alive) return;
    this.sim.trace(`client ${client.name}: ${why}; starting over`);
    this.absorbStats(client);
    // The process goes on while another client's store runs in it.
    if (this.onHost(client.host).length > 1) client.leave();
    else client.crash();
    this.wakeTokens.delete(client);
    this.sim.queue.push(this.sim.nowMs + 10 + this.sim.faultRng.next() * 200, { type: "client-start", slot: client.slot });
  }

  /** The client's process dies, with every store in it. */
  crash(client: SimClient): void {
    const stats = this.sim.stats;
    const rng = this.sim.faultRng;
    for (const victim of this.onHost(client.host)) {
      stats.clientCrashes++;
      if (this.recalls.pendingFor(victim.store.sessionId)) stats.recallCrashesClient++;
      this.sim.trace(`client ${victim.name}: CRASH`);
      this.absorbStats(victim);
      victim.crash();
      this.wakeTokens.delete(victim);
      if (rng.chance(0.8)) this.sim.queue.push(this.sim.nowMs + 50 + rng.next() * 3000, { type: "client-start", slot: victim.slot });
    }
  }

  /** The live clients whose stores run in `host`'s process. */
  private onHost(host: SimClientHost): SimClient[] {
    return this.list.filter((c): c is SimClient => c !== null && c.alive && c.host === host);
  }

  pause(client: SimClient, pauseMs: number): void {
    this.sim.stats.pauses++;
    this.sim.trace(`client ${client.name}: PAUSE for ${pauseMs.toFixed(0)} ms`);
    client.host.paused = true;
    this.wakeTokens.delete(client);
    this.sim.queue.push(this.sim.nowMs + pauseMs, { type: "client-resume", client });
  }

  resume(client: SimClient): void {
    const host = client.host;
    if (!host.paused) return;
    host.paused = false;
    this.sim.trace(`client ${client.name}: resume`);
    for (const handle of host.inbox.splice(0)) {
      if (!host.alive) break;
      handle();
      drainMicrotasks();
    }
    if (!host.alive) return;
    host.runTimers();
    this.settle(host);
  }

  /** A wake event: the client's due timers run (unless a later rewake replaced it). */
  wake(client: SimClient, token: number): void {
    const wake = this.wakeTokens.get(client);
    if (!wake || wake.token !== token) return;
    this.wakeTokens.delete(client);
    client.host.runTimers();
    this.settle(client.host);
  }

  windDown(): void {
    this.stopping = true;
    for (const client of this.list) if (client) client.stopping = true;
  }

  /** Adds what a client counted to the run's stats (at its end, or the run's). */
  absorbStats(client: SimClient): void {
    const stats = this.sim.stats;
    stats.increments += client.stats.increments;
    stats.reads += client.stats.reads;
    stats.timeouts += client.stats.timeouts;
    client.stats = { increments: 0, reads: 0, timeouts: 0 };
    const store = client.store.stats();
    stats.sessionsLost += store.sessionsLost - client.absorbed.sessionsLost;
    stats.localGrants += store.localGrants - client.absorbed.localGrants;
    stats.recalls += store.recalls - client.absorbed.recalls;
    client.absorbed = { sessionsLost: store.sessionsLost, localGrants: store.localGrants, recalls: store.recalls };
  }

  /**
   * What the step started in the process's code (promise continuations) runs to its end; then
   * each of its stores' next timer is due (their timers are the host's).
   */
  private settle(host: SimClientHost): void {
    drainMicrotasks();
    for (const client of this.onHost(host)) this.rewake(client);
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
    this.sim.queue.push(Math.max(atMs, this.sim.nowMs), { type: "wake", client, token });
  }

  /** Runs `handle` for the client incarnation that owns `conn`, now or when it resumes from a pause. */
  event(conn: SimConn, handle: (client: SimClient) => void): void {
    const dialler = conn.dialler;
    if (dialler.kind !== "client") return;
    // The process that dialled: a store of another slot may be all that runs in it now.
    const client = this.list.find((c) => c !== null && c.alive && c.host.slot === dialler.slot && c.host.incarnation === dialler.incarnation);
    if (!client) return;
    if (client.host.paused) {
      client.host.inbox.push(() => handle(client));
      return;
    }
    handle(client);
    this.settle(client.host);
  }

  // ---- ClientNet: a client process's network --------------------------------------------

  get nowMs(): number {
    return this.sim.nowMs;
  }

  get secret(): string | undefined {
    return this.sim.secret;
  }

  dial(host: SimClientHost, serverId: number): SimConn {
    return this.sim.wires.dialClient(host.slot, host.incarnation, serverId);
  }

  send(conn: SimConn, bytes: Uint8Array): void {
    this.sim.wires.sendClient(conn, bytes);
  }

  close(conn: SimConn): void {
    this.sim.wires.closeClient(conn);
  }

  nonce(): Uint8Array {
    const nonce = new Uint8Array(NONCE_BYTES);
    for (let i = 0; i < nonce.length; i++) nonce[i] = Math.floor(this.sim.netRng.next() * 256);
    return nonce;
  }

  newSessionId(): number {
    return this.nextSession++ * 7 + 3;
  }

  received(host: SimClientHost, conn: SimConn, message: Message): void {
    const expectedHash = this.sim.wires.clientReceived(host.name, conn, message);
    if (message.type === "reply") {
      const reply = message.body.reply;
      if (reply.type === "granted" && expectedHash !== undefined) {
        // The store of the reply's session: two may share the process.
        const session = message.body.session;
        this.onHost(host).find((c) => c.store.sessionId === session)?.expectedHashes.set(reply.holdId, expectedHash);
      }
      if (reply.type === "error" && reply.code === "EUNAVAILABLE") this.sim.stats.unavailableReplies++;
    }
    if (message.type === "recall") this.recalls.delivered(message.body);
  }

  sending(host: SimClientHost, message: Message): void {
    if (message.type === "request" && message.body.op.type === "release") this.uses.releasing(host.name, message.body.op.holdId);
  }

  // ---- ClientWorld: what a client program asks of the simulation ----------------------------

  get serverIds(): number[] {
    return this.sim.serverIds;
  }

  get history() {
    return this.sim.history;
  }

  timeNs(): number {
    // Several events share a virtual millisecond: number them so the History keeps their order.
    const now = this.sim.nowMs;
    if (now !== this.lastNsMs) {
      this.lastNsMs = now;
      this.nsInMs = 0;
    }
    this.nsInMs++;
    return Math.round(now * 1e6) + this.nsInMs;
  }

  expectedHash(client: SimClient, holdId: number): number | undefined {
    return client.expectedHashes.get(holdId);
  }

  trace(what: string, detail?: string): void {
    this.sim.trace(what, detail);
  }

  report(invariant: string, message: string): void {
    this.sim.report(invariant, message);
  }

  /**
   * The servers whose state the clients' view is checked against: up, serving, holding every
   * acknowledged update, in the newest epoch among those.
   */
  currentStates(): StoreState[] {
    const committed = this.sim.checker.committed;
    const serving = this.sim.servers.filter((s) => s.up && s.replica.status === "member" && s.history.samePrefix(committed, committed.length));
    const newest = Math.max(...serving.map((s) => s.replica.config.epoch));
    return serving.filter((s) => s.replica.config.epoch === newest).map((s) => s.state);
  }
}
