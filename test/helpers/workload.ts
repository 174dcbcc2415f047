/**
 * Clients that increment counters under write holds and record everything in
 * a History, for the fault tests: each increment is an rmw (saw v, wrote v+1)
 * whose outcome is ok, fail (the servers refused it) or unknown.
 */
import { History, checkCounter, checkHistory } from "../../src/check";
import { PStoreError, type Store } from "../../src/index";

/** Codes that mean "the release was not applied": the increment did not happen. */
const DEFINITE_FAILURES = new Set(["ESTALE", "ESESSION", "EINVAL"]);

export interface Counters {
  shared: string;
  privateOf(client: number): string;
}

export interface WorkloadResult {
  history: History;
  acknowledged: Map<string, number>;
  /** Longest time with no acknowledged increment, and when it started (ms since start). */
  longestGapMs: number;
  gapStartMs: number;
  errors: string[];
}

function nowNs(): number {
  return Math.round(performance.now() * 1e6);
}

export class IncrementWorkload {
  readonly history = new History();
  private readonly acknowledged = new Map<string, number>();
  private readonly ackTimes: number[] = [];
  private readonly errors: string[] = [];
  private stopping = false;
  private loops: Promise<void>[] = [];
  private readonly started = performance.now();

  constructor(
    private readonly stores: Store[],
    private readonly counters: Counters,
  ) {}

  start(): void {
    this.loops = this.stores.map((store, client) => this.run(store, client));
  }

  /** Stops the loops and waits for them (bounded by the stores' own failover timeouts). */
  async stop(): Promise<WorkloadResult> {
    this.stopping = true;
    await Promise.all(this.loops);
    let longestGapMs = 0;
    let gapStartMs = 0;
    for (let i = 1; i < this.ackTimes.length; i++) {
      const gap = this.ackTimes[i]! - this.ackTimes[i - 1]!;
      if (gap > longestGapMs) {
        longestGapMs = gap;
        gapStartMs = this.ackTimes[i - 1]! - this.started;
      }
    }
    return { history: this.history, acknowledged: this.acknowledged, longestGapMs, gapStartMs, errors: this.errors };
  }

  /** Acknowledged writes between two moments (ms since start), e.g. to see that writes resumed. */
  acknowledgedAfter(msSinceStart: number): number {
    return this.ackTimes.filter((t) => t - this.started > msSinceStart).length;
  }

  /** Longest time without an acknowledged write within [fromMs, toMs] (ms since start). */
  longestGapBetween(fromMs: number, toMs: number): number {
    let previous = fromMs;
    let longest = 0;
    for (const t of this.ackTimes.map((time) => time - this.started)) {
      if (t < fromMs || t > toMs) continue;
      longest = Math.max(longest, t - previous);
      previous = t;
    }
    return Math.round(Math.max(longest, toMs - previous));
  }

  get elapsedMs(): number {
    return performance.now() - this.started;
  }

  private async run(store: Store, client: number): Promise<void> {
    let round = 0;
    while (!this.stopping) {
      const key = round++ % 2 === 0 ? this.counters.shared : this.counters.privateOf(client);
      await this.increment(store, client, key);
    }
  }

  private async increment(store: Store, client: number, key: string): Promise<void> {
    let view: Uint8Array;
    try {
      view = await store.accessReadWrite(key, { timeoutMs: 20_000 });
    } catch (error) {
      this.errors.push(`client ${client} access ${key}: ${(error as Error).message}`);
      await Bun.sleep(50);
      return;
    }
    const counter = new Int32Array(view.buffer, view.byteOffset, 1);
    const seen = counter[0]!;
    const holdId = `${client}:${this.history.ops.length}`;
    this.history.holdGranted(client, key, "write", holdId, nowNs());
    const id = this.history.invoke(client, { kind: "rmw", key, expected: seen, value: seen + 1 }, nowNs());
    counter[0] = seen + 1;
    this.history.holdReleased(client, key, holdId, nowNs());
    try {
      await store.releaseReadWrite(view);
      this.history.ok(id, seen, nowNs());
      this.acknowledged.set(key, (this.acknowledged.get(key) ?? 0) + 1);
      this.ackTimes.push(performance.now());
    } catch (error) {
      const code = error instanceof PStoreError ? error.code : "";
      if (DEFINITE_FAILURES.has(code)) this.history.fail(id, code, nowNs());
      else this.history.unknown(id, nowNs());
      this.errors.push(`client ${client} release ${key}: ${(error as Error).message}`);
    }
  }
}

/** Reads every counter and checks the history: counts, linearizability, hold safety. */
export async function verifyCounters(store: Store, result: WorkloadResult, keys: string[]): Promise<string[]> {
  const problems: string[] = [];
  for (const key of keys) {
    const value = await store.withRead(key, (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0]!);
    const counted = checkCounter(result.history, key, value, { initial: 0 });
    if (counted.ok !== true) problems.push(`${key}: ${counted.explanation}`);
  }
  const checked = checkHistory(result.history, { maxSteps: 2_000_000 });
  if (checked.ok !== true) problems.push(checked.explanation);
  return problems;
}
