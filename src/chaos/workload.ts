/**
 * The chaos run's clients: K stores, each incrementing a shared counter and
 * its own private one in turn, under write holds, recording everything in a
 * History (as test/helpers/workload.ts's IncrementWorkload does): an
 * increment is an rmw (saw v, wrote v + 1) whose outcome is ok, fail (the
 * servers refused it) or unknown. A store that gives up (EUNAVAILABLE after
 * its failover timeout, or closed) is replaced by a new one for the same
 * client, as an application would reconnect.
 */
import { History } from "../check";
import { PStoreError } from "../errors";
import { type Store, connect } from "../client";

/** Codes that mean "the release was not applied": the increment did not happen. */
const DEFINITE_FAILURES = new Set(["ESTALE", "ESESSION", "EINVAL"]);
/** Codes after which the store is closed for good: reconnect. */
const STORE_GONE = new Set(["EUNAVAILABLE", "ECLOSED", "EAUTH", "EPROTO"]);

export interface WorkloadOptions {
  clients: number;
  servers: string[];
  secret?: string;
  /** How long a store keeps looking for a serving chain after a failure. */
  failoverTimeoutMs: number;
  /** How long an access may wait for its hold. */
  accessTimeoutMs: number;
  /** Pause of each client between two increments (0: as fast as it can). */
  thinkMs: number;
}

export interface WorkloadStats {
  invoked: number;
  acknowledged: number;
  failed: number;
  unknown: number;
  /** Accesses that did not get their hold (no increment invoked). */
  accessErrors: number;
  reconnects: number;
  /** Error codes seen, with counts. */
  errors: Map<string, number>;
}

export const SHARED = "chaos-shared";
export const privateKey = (client: number) => `chaos-private-${client}`;

function nowNs(): number {
  return Math.round(performance.now() * 1e6);
}

export class ChaosWorkload {
  readonly history = new History();
  readonly stats: WorkloadStats = { invoked: 0, acknowledged: 0, failed: 0, unknown: 0, accessErrors: 0, reconnects: 0, errors: new Map() };
  private readonly stores: (Store | null)[];
  private loops: Promise<void>[] = [];
  private stopping = false;
  /** Per client: what it is doing now, for a report when it does not finish. */
  readonly doing: string[];
  private readonly ackTimes: number[] = [];

  constructor(private readonly options: WorkloadOptions) {
    this.stores = new Array(options.clients).fill(null);
    this.doing = new Array(options.clients).fill("idle");
  }

  get keys(): string[] {
    return [SHARED, ...Array.from({ length: this.options.clients }, (_, i) => privateKey(i))];
  }

  /** Creates the counters (zero) and connects every client. */
  async setUp(): Promise<void> {
    const first = await this.connect();
    try {
      for (const key of this.keys) {
        await first.create(key, 4);
        this.history.initial(key, 0);
      }
    } finally {
      await first.close();
    }
    for (let i = 0; i < this.options.clients; i++) this.stores[i] = await this.connect();
  }

  start(): void {
    this.loops = this.stores.map((_, client) => this.run(client));
  }

  /** Acknowledged increments in the last `ms` milliseconds. */
  recentAcks(ms: number): number {
    const since = performance.now() - ms;
    let count = 0;
    for (let i = this.ackTimes.length - 1; i >= 0 && this.ackTimes[i]! >= since; i--) count++;
    return count;
  }

  /** Asks the loops to stop; resolves with the clients that did not finish within `timeoutMs`. */
  async stop(timeoutMs: number): Promise<number[]> {
    this.stopping = true;
    const finished = new Array(this.loops.length).fill(false);
    const all = Promise.all(this.loops.map((loop, i) => loop.then(() => (finished[i] = true))));
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([all, new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    return finished.flatMap((done, i) => (done ? [] : [i]));
  }

  async close(): Promise<void> {
    await Promise.all(this.stores.map((store) => store?.close().catch(() => {})));
  }

  private connect(): Promise<Store> {
    return connect({
      servers: this.options.servers,
      secret: this.options.secret,
      connectTimeoutMs: this.options.failoverTimeoutMs,
      failoverTimeoutMs: this.options.failoverTimeoutMs,
    });
  }

  /** What went wrong, client by client (the most recent entries), for a failure report. */
  readonly trail: string[] = [];

  private count(error: unknown, client: number, what: string): string {
    const code = error instanceof PStoreError ? error.code : `(${(error as Error)?.name ?? "error"})`;
    this.stats.errors.set(code, (this.stats.errors.get(code) ?? 0) + 1);
    this.trail.push(`${new Date(performance.timeOrigin + performance.now()).toISOString()} client ${client} ${what}: ${(error as Error)?.message ?? error}`);
    if (this.trail.length > 20_000) this.trail.splice(0, 10_000);
    return code;
  }

  private async run(client: number): Promise<void> {
    let round = 0;
    while (!this.stopping) {
      let store = this.stores[client];
      if (!store) {
        this.doing[client] = "reconnecting";
        try {
          store = await this.connect();
          this.stores[client] = store;
          this.stats.reconnects++;
        } catch (error) {
          this.count(error, client, "connect");
          await Bun.sleep(200);
          continue;
        }
      }
      const key = round++ % 2 === 0 ? SHARED : privateKey(client);
      const gone = await this.increment(store, client, key);
      if (gone) {
        this.stores[client] = null;
        await store.close().catch(() => {});
      }
      if (this.options.thinkMs > 0) {
        this.doing[client] = "thinking";
        await Bun.sleep(this.options.thinkMs);
      }
    }
    this.doing[client] = "finished";
  }

  /** One increment; true when the store is unusable and must be replaced. */
  private async increment(store: Store, client: number, key: string): Promise<boolean> {
    this.doing[client] = `access ${key}`;
    let view: Uint8Array;
    try {
      view = await store.accessReadWrite(key, { timeoutMs: this.options.accessTimeoutMs });
    } catch (error) {
      this.stats.accessErrors++;
      const code = this.count(error, client, `access ${key}`);
      if (STORE_GONE.has(code)) return true;
      await Bun.sleep(20);
      return false;
    }
    const counter = new Int32Array(view.buffer, view.byteOffset, 1);
    const seen = counter[0]!;
    const holdId = `${client}:${this.history.ops.length}`;
    this.history.holdGranted(client, key, "write", holdId, nowNs());
    const id = this.history.invoke(client, { kind: "rmw", key, expected: seen, value: seen + 1 }, nowNs());
    this.stats.invoked++;
    counter[0] = seen + 1;
    this.history.holdReleased(client, key, holdId, nowNs());
    this.doing[client] = `release ${key} (saw ${seen})`;
    try {
      await store.releaseReadWrite(view);
      this.history.ok(id, seen, nowNs());
      this.stats.acknowledged++;
      this.ackTimes.push(performance.now());
      if (this.ackTimes.length > 100_000) this.ackTimes.splice(0, 50_000);
      return false;
    } catch (error) {
      const code = this.count(error, client, `release ${key} (op #${id}, saw ${seen})`);
      if (DEFINITE_FAILURES.has(code)) {
        this.history.fail(id, code, nowNs());
        this.stats.failed++;
      } else {
        this.history.unknown(id, nowNs());
        this.stats.unknown++;
      }
      return STORE_GONE.has(code);
    }
  }
}
