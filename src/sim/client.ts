/**
 * A simulated client program: the real ClientStore (src/client: ClusterLink,
 * GrantCache and all) over a SimClientHost, doing what a user's program does
 * through the public Store API. Only the workload is here — which operations,
 * how long a hold is kept — and what the checks need to know of them.
 *
 * Workload: sequential tasks, mostly increments of shared and private counters
 * (write hold, read the 4-byte value, write value+1, release), some reads,
 * creates/deletes/writes of extra data, abandoned writes, timed-out waits and
 * the odd close. Everything a client saw goes into the History; every use of
 * a datum goes through the UseChecker.
 */
import type { History } from "../check";
import { ClientStore } from "../client/session";
import { PStoreError } from "../errors";
import type { Mode } from "../wire";
import { type ClientNet, SimClientHost } from "./client_host";
import { PageMemory } from "./memory";
import type { Rng } from "./prng";
import type { Use, UseChecker } from "./uses";

export interface ClientSettings {
  segmentSize: number;
  pageSize: number;
  /** Counters every client increments. */
  sharedCounters: string[];
  /** Names of the extra data clients create, write and delete. */
  extras: string[];
  /** connect({ cacheHolds }): cached holds, on by default as in production. */
  cacheHolds: boolean;
  /** Paired slots run their stores in one process when both are up (their connections shared). */
  sharedProcesses: boolean;
}

/** What a client program asks of the simulation besides its network. */
export interface ClientWorld {
  /** Now, in the History's nanoseconds: strictly increasing within a run. */
  timeNs(): number;
  readonly serverIds: number[];
  readonly history: History;
  readonly uses: UseChecker;
  /** The tail's hash of a granted hold's bytes, if it came with the grant. */
  expectedHash(client: SimClient, holdId: number): number | undefined;
  trace(what: string, detail?: string): void;
  /** A violation seen inside the client's code: reported once the step ends. */
  report(invariant: string, message: string): void;
  /** The program ended (closed, or could not connect): start a fresh incarnation later. */
  restartLater(client: SimClient, why: string): void;
}

type TaskKind = "setup" | "increment" | "read" | "extra-create" | "extra-delete" | "extra-write" | "extra-read" | "extra-abandon" | "close";

/** Errors a task may meet under faults; anything else is a failure of the run. */
const EXPECTED = new Set(["ESESSION", "EUNAVAILABLE", "ETIMEDOUT", "ESTALE", "ENOENT", "EEXIST", "ENOSPC", "ELIMIT", "EBUSY"]);

export class SimClient {
  readonly host: SimClientHost;
  readonly store: ClientStore;
  /** No new tasks (the run is winding down). */
  stopping = false;
  private left = false;
  /** The store is open (connected, session opened). */
  opened = false;
  /** What the program is doing, for liveness reports; null between tasks. */
  task: string | null = "open";
  /** The rmw recorded in the History while its outcome is open. */
  private opId = -1;
  /** The use access just began (set by the store's observer). */
  private lastUse: Use | null = null;
  private uses = 0;
  stats = { increments: 0, reads: 0, timeouts: 0 };
  /** The store's counters already added to the run's stats. */
  absorbed = { sessionsLost: 0, localGrants: 0, recalls: 0 };
  /** The tail's hash of each granted hold's bytes, from the grant's frame. */
  readonly expectedHashes = new Map<number, number>();

  constructor(
    readonly slot: number,
    readonly incarnation: number,
    private readonly settings: ClientSettings,
    net: ClientNet,
    private readonly world: ClientWorld,
    private readonly rng: Rng,
    /** The process it runs in, when another client's store runs there too (their connections are shared). */
    host?: SimClientHost,
  ) {
    this.host = host ?? new SimClientHost(slot, incarnation, net);
    const memory = (size: number, pageSize: number) => new PageMemory(size, pageSize, (message) => world.report("sim", `client ${this.name}: ${message}`));
    this.store = new ClientStore({ servers: world.serverIds.map(String), cacheHolds: settings.cacheHolds }, this.host, memory, {
      onUse: ({ name, mode, holdId, local, view }) => {
        if (!this.alive) return;
        const use: Use = { client: this.name, session: this.store.sessionId, name, mode, holdId, local, fenced: false };
        this.lastUse = use;
        this.world.uses.start(use, view, local ? undefined : this.world.expectedHash(this, holdId));
      },
      onUseEnd: (holdId) => this.world.uses.endHold(this.name, holdId),
    });
  }

  get name(): string {
    return `${this.slot}.${this.incarnation}`;
  }

  /** Its process runs and its program has not ended (a program that ended leaves the process to the other's). */
  get alive(): boolean {
    return !this.left && this.host.alive;
  }

  /** Work is done when no task runs and no request waits for an answer. */
  get idle(): boolean {
    return this.task === null && !this.store.busy;
  }

  start(): void {
    this.run().catch((error) => this.world.report("exception", `client ${this.name}: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`));
  }

  /** The process died: whatever it had in flight has an unknown outcome. */
  crash(): void {
    this.leave();
    this.host.kill();
  }

  /** The program ended in a process that goes on (another client's store runs there). */
  leave(): void {
    this.endUnknown();
    this.world.uses.endClient(this.name);
    this.left = true;
  }

  private async run(): Promise<void> {
    try {
      await this.store.open();
    } catch (error) {
      this.task = null;
      this.world.restartLater(this, `connect: ${describe(error)}`);
      return;
    }
    this.opened = true;
    this.task = "setup";
    for (const name of [...this.settings.sharedCounters, `p${this.slot}`]) await this.createCounter(name);
    while (!this.stopping) {
      this.task = null;
      await this.sleep(this.rng.chance(0.9) ? this.rng.next() * 40 : this.rng.next() * 400);
      if (this.stopping) break;
      const kind = this.pickTask();
      this.task = kind;
      if (kind === "close") {
        await this.store.close();
        this.task = null;
        this.world.uses.endClient(this.name);
        this.world.restartLater(this, "closed its store");
        return;
      }
      await this.runTask(kind);
    }
    this.task = null;
  }

  private async createCounter(name: string): Promise<void> {
    for (;;) {
      try {
        await this.store.create(name, 4);
        return;
      } catch (error) {
        if (code(error) === "EEXIST") return;
        this.expect(error, `create ${name}`);
        await this.sleep(50);
      }
    }
  }

  private pickTask(): TaskKind {
    const roll = this.rng.next();
    if (roll < 0.45) return "increment";
    if (roll < 0.6) return "read";
    if (roll < 0.66) return "extra-create";
    if (roll < 0.7) return "extra-delete";
    if (roll < 0.79) return "extra-write";
    if (roll < 0.8) return "extra-abandon";
    if (roll < 0.84) return "extra-read";
    if (roll < 0.845) return "close";
    return "increment";
  }

  private async runTask(kind: TaskKind): Promise<void> {
    const { sharedCounters, extras, pageSize, segmentSize } = this.settings;
    try {
      switch (kind) {
        case "increment":
          return await this.increment(this.rng.chance(0.65) ? this.rng.pick(sharedCounters) : `p${this.slot}`);
        case "read":
          return await this.readCounter(this.rng.chance(0.8) ? this.rng.pick(sharedCounters) : `p${this.slot}`);
        case "extra-create":
          return await this.store.create(this.rng.pick(extras), this.rng.chance(0.1) ? segmentSize : 1 + this.rng.int(pageSize * 8));
        case "extra-delete":
          return await this.store.delete(this.rng.pick(extras));
        case "extra-write":
        case "extra-read":
          return await this.useExtra(this.rng.pick(extras), kind === "extra-write" ? "write" : "read");
        case "extra-abandon":
          return await this.abandonExtra(this.rng.pick(extras));
      }
    } catch (error) {
      this.expect(error, kind);
    }
  }

  private accessOptions(): { timeoutMs?: number } {
    return this.rng.chance(0.25) ? { timeoutMs: 20 + this.rng.next() * 600 } : {};
  }

  private async access(name: string, mode: Mode): Promise<{ view: Uint8Array; use: Use } | null> {
    this.lastUse = null;
    try {
      const view = mode === "write" ? await this.store.accessReadWrite(name, this.accessOptions()) : await this.store.accessRead(name, this.accessOptions());
      const use = this.lastUse as Use | null;
      if (!use || use.name !== name) {
        this.world.report("sim", `client ${this.name}: access of ${name} returned without a use beginning`);
        return null;
      }
      return { view, use };
    } catch (error) {
      if (code(error) === "ETIMEDOUT") this.stats.timeouts++;
      this.expect(error, `access ${mode} ${name}`);
      return null;
    }
  }

  private async increment(key: string): Promise<void> {
    const held = await this.access(key, "write");
    if (!held) return;
    const { view, use } = held;
    const data = new DataView(view.buffer, view.byteOffset, 4);
    const value = data.getInt32(0, true);
    const grantedNs = this.world.timeNs();
    this.opId = this.world.history.invoke(this.name, { kind: "rmw", key, expected: value, value: value + 1 }, grantedNs);
    data.setInt32(0, value + 1, true);
    await this.sleep(this.holdMs());
    await this.release(view, use, grantedNs, true);
  }

  private async readCounter(key: string): Promise<void> {
    const askedNs = this.world.timeNs();
    const held = await this.access(key, "read");
    if (!held) return;
    const { view, use } = held;
    const grantedNs = this.world.timeNs();
    const id = this.world.history.invoke(this.name, { kind: "read", key }, askedNs);
    this.world.history.ok(id, new DataView(view.buffer, view.byteOffset, 4).getInt32(0, true), grantedNs);
    this.stats.reads++;
    await this.sleep(this.holdMs());
    await this.release(view, use, grantedNs, true);
  }

  private async useExtra(name: string, mode: Mode): Promise<void> {
    const held = await this.access(name, mode);
    if (!held) return;
    if (mode === "write") this.scribble(held.view);
    const grantedNs = this.world.timeNs();
    await this.sleep(this.holdMs());
    await this.release(held.view, held.use, grantedNs, false);
  }

  /** A write that fails half-way: withWrite drops the hold without shipping anything. */
  private async abandonExtra(name: string): Promise<void> {
    await this.store
      .withWrite(name, (view) => {
        this.scribble(view);
        throw new Error("abandoned on purpose");
      })
      .catch((error) => {
        if (!(error instanceof Error && error.message === "abandoned on purpose")) throw error;
      });
  }

  private scribble(view: Uint8Array): void {
    for (let i = 0; i < 2; i++) view[this.rng.int(view.length)] = 1 + this.rng.int(255);
  }

  private holdMs(): number {
    return this.rng.chance(0.04) ? 100 + this.rng.next() * 1500 : this.rng.next() * 20;
  }

  private async release(view: Uint8Array, use: Use, grantedNs: number, recorded: boolean): Promise<void> {
    const releasedNs = this.world.timeNs();
    // Ended here, not only by the store's onUseEnd: a view lost with its session throws before that.
    this.world.uses.end(use);
    const holdId = `${use.holdId}.${++this.uses}`;
    try {
      if (use.mode === "write") await this.store.releaseReadWrite(view);
      else await this.store.releaseRead(view);
    } catch (error) {
      const failed = code(error);
      if (this.opId >= 0) {
        // ESTALE: the servers did not take it (or it was never sent); otherwise an earlier copy may have been applied.
        if (failed === "ESTALE") this.world.history.fail(this.opId, failed, this.world.timeNs());
        else this.world.history.unknown(this.opId, this.world.timeNs());
        this.opId = -1;
      }
      this.expect(error, `release ${use.mode} ${use.name}`);
      return;
    }
    if (use.fenced && use.mode === "write") {
      this.world.report("cache-conflict", `client ${this.name}: the write release of hold ${use.holdId} on ${use.name} was acknowledged, though the servers had dropped the hold while it was in use`);
    }
    if (recorded) {
      this.world.history.holdGranted(this.name, use.name, use.mode, holdId, grantedNs);
      // A fenced read's end is not the servers' (they had let it go): only its grant is certain.
      if (use.fenced) this.world.history.holdLost(this.name, use.name, holdId, releasedNs);
      else this.world.history.holdReleased(this.name, use.name, holdId, releasedNs);
    }
    if (this.opId >= 0) {
      this.world.history.ok(this.opId, undefined, this.world.timeNs());
      this.opId = -1;
      this.stats.increments++;
    }
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.host.after(ms, resolve));
  }

  private expect(error: unknown, what: string): void {
    const failed = code(error);
    // Nothing the simulation does warrants giving the store up: it must reconnect, or renew its session.
    if (!this.store.isOpen && this.alive) this.world.report("sim", `client ${this.name}: ${what}: the store closed itself (${describe(error)})`);
    if (failed !== null && EXPECTED.has(failed)) return;
    this.world.report("sim", `client ${this.name}: ${what}: ${describe(error)}`);
  }

  /** The open operation's outcome is unknown (a crash). */
  private endUnknown(): void {
    if (this.opId >= 0) {
      this.world.history.unknown(this.opId, this.world.timeNs());
      this.opId = -1;
    }
  }
}

function code(error: unknown): string | null {
  return error instanceof PStoreError ? error.code : null;
}

function describe(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
