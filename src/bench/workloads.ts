/**
 * The workloads of `pstore bench`, each a closed loop (loop.ts) of `connect()`
 * stores in this process:
 *
 *   cycle      accessReadWrite + rewrite every byte + releaseReadWrite, each client on its own datum
 *   read       accessRead + read every cache line + releaseRead, each client on its own datum
 *   contended  every client increments one 4-byte counter; the final counter must equal
 *              the acknowledged increments (warm-up included), else the result says counter_ok: false
 *   large      one client, a 64 MiB datum: whole rewrites (MB/s), then 1-byte changes whose
 *              release is timed against the release of a rewritten 4 KiB datum
 *   failover   cycle, and a kill -9 of the head, middle or tail server a third of the way in;
 *              reports the longest pause in acknowledged writes after the kill
 *   pingpong   2 clients take turns rewriting one datum: with cached holds every access
 *              recalls the other's grant (caching's worst case); one op is one use
 *
 * Every datum is named with the run's prefix and deleted at the end, so a run
 * against a shared cluster leaves nothing behind.
 */
import { connect } from "../client/index.ts";
import { PAGE_SIZE } from "../constants.ts";
import type { ConnectOptions, Store } from "../client/types.ts";
import { LatencyRecorder, type LatencySummary, round1 } from "./histogram.ts";
import { type Budget, runLoop } from "./loop.ts";
import type { Victim, WorkloadName, WorkloadSpec } from "./spec.ts";

/** The datum of the `large` workload. */
export const LARGE_BYTES = 64 * 1024 * 1024;
/** The small datum whose release `large` compares a 1-byte change against. */
export const SMALL_BYTES = 4096;
/** The counter of `contended`: an int32, as in the specification's example. */
export const COUNTER_BYTES = 4;
/** Bytes in a megabyte for MB/s (decimal, as network and disk rates are quoted). */
const MB = 1_000_000;
/** The failover workload waits this long at most for every server to be in the chain before it starts. */
const FAILOVER_CHAIN_WAIT_MS = 15_000;

/** A cluster whose servers the failover workload may kill (LocalCluster fits). */
export interface KillableCluster {
  readonly servers: string[];
  readonly pids: (number | null)[];
  kill(index: number, signal?: NodeJS.Signals): Promise<void>;
}

export interface BenchTarget {
  servers: string[];
  secret?: string;
  /** Only with a local cluster: the failover workload needs it. */
  cluster?: KillableCluster;
  /** Prefix of every datum name the run creates. */
  prefix: string;
  /** connect({ cacheHolds }) of every client; default true. */
  cacheHolds?: boolean;
  /** connect({ shareConnections }) of every client; default true. */
  shareConnections?: boolean;
}

export interface RunHooks {
  signal?: AbortSignal;
  /** Progress of the current workload: what it does now, fraction in [0, 1], operations done. */
  onProgress?: (label: string, fraction: number, opsDone: number) => void;
  /** Called once the workload has run, before its data is deleted, with the bytes its data covers (whole pages). */
  onLoaded?: (dataBytes: number) => void;
}

/** One workload's result; the keys are the `--json` keys. */
export interface BenchResult {
  workload: WorkloadName;
  clients: number;
  size: number;
  ops: number;
  seconds: number;
  ops_per_s: number;
  latency_us: LatencySummary;
  [extra: string]: unknown;
}

/** A unique datum-name prefix for one run: `bench-1a2b3c-`. */
export function runPrefix(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(3));
  return `bench-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}-`;
}

export async function runWorkload(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks = {}): Promise<BenchResult> {
  switch (spec.workload) {
    case "cycle":
      return _ownData(target, spec, hooks, "cycle");
    case "read":
      return _ownData(target, spec, hooks, "read");
    case "contended":
      return _contended(target, spec, hooks);
    case "large":
      return _large(target, spec, hooks);
    case "failover":
      return _failover(target, spec, hooks);
    case "pingpong":
      return _pingpong(target, spec, hooks);
  }
}

// ---- the workloads ----

function _ownData(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks, kind: "cycle" | "read"): Promise<BenchResult> {
  const names = Array.from({ length: spec.clients }, (_, i) => `${target.prefix}${kind}-${i}`);
  return _withStores(target, hooks, spec.clients, names, spec.size, async (stores) => {
    if (kind === "read") {
      // Something to read: fill each datum once.
      await Promise.all(stores.map((store, i) => store.withWrite(names[i]!, (view) => view.fill(i + 1))));
    }
    // A cycle's two halves apart: each is one chain pass, compared with the relay floor (bench/floor.ts).
    const phases = kind === "cycle" ? { access: new LatencyRecorder(), release: new LatencyRecorder() } : undefined;
    const op = kind === "cycle" ? cycleOp(stores, names, phases) : readOp(stores, names);
    const run = await runLoop({ ...loopBase(spec, hooks, kind), op });
    const result = resultOf(spec.workload, spec.clients, spec.size, run);
    if (phases) Object.assign(result, { access_us: phases.access.summary(), release_us: phases.release.summary() });
    return result;
  });
}

/**
 * accessReadWrite, rewrite every byte, releaseReadWrite (which ships every
 * page); with `phases`, each half's latency is recorded once measuring.
 */
export function cycleOp(
  stores: Store[],
  names: string[],
  phases?: { access: LatencyRecorder; release: LatencyRecorder },
): (client: number, iteration: number, measuring?: boolean) => Promise<void> {
  return async (client, iteration, measuring) => {
    const store = stores[client]!;
    const t0 = performance.now();
    const view = await store.accessReadWrite(names[client]!);
    const t1 = performance.now();
    view.fill(iteration & 0xff);
    const t2 = performance.now();
    await store.releaseReadWrite(view);
    if (phases && measuring) {
      phases.access.add((t1 - t0) * 1000);
      phases.release.add((performance.now() - t2) * 1000);
    }
  };
}

/** accessRead, read one byte of every 64 (every cache line), releaseRead. */
function readOp(stores: Store[], names: string[]): (client: number) => Promise<void> {
  let sink = 0;
  return async (client) => {
    const store = stores[client]!;
    const view = await store.accessRead(names[client]!);
    for (let i = 0; i < view.length; i += 64) sink ^= view[i]!;
    await store.releaseRead(view);
    if (sink === -1) throw new Error("unreachable: keeps the reads from being optimised away");
  };
}

async function _contended(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks): Promise<BenchResult> {
  const name = `${target.prefix}counter`;
  return _withStores(target, hooks, spec.clients, [name], COUNTER_BYTES, async (stores) => {
    let acknowledged = 0;
    const op = async (client: number) => {
      const store = stores[client]!;
      const view = await store.accessReadWrite(name);
      const counter = new Int32Array(view.buffer, view.byteOffset, 1);
      counter[0] = counter[0]! + 1;
      await store.releaseReadWrite(view);
      acknowledged++;
    };
    const run = await runLoop({ ...loopBase(spec, hooks, "contended"), op });
    const counter = await stores[0]!.withRead(name, (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0]!);
    return {
      ...resultOf("contended", spec.clients, COUNTER_BYTES, run),
      counter,
      acknowledged,
      counter_ok: counter === acknowledged,
    };
  });
}

/**
 * Two clients take strict turns on one datum: access for writing, rewrite it, release,
 * pass the turn. An op's latency includes waiting for the turn; `use_us` is one use alone
 * (access to acknowledged release), the figure to compare with a lock cycle.
 */
async function _pingpong(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks): Promise<BenchResult> {
  const name = `${target.prefix}pingpong`;
  return _withStores(target, hooks, 2, [name], spec.size, async (stores) => {
    let turn = 0;
    const waiting: ((() => void) | null)[] = [null, null];
    const use = new LatencyRecorder();
    const access = new LatencyRecorder();
    const op = async (client: number, iteration: number, measuring: boolean) => {
      if (turn !== client) await new Promise<void>((resolve) => (waiting[client] = resolve));
      const store = stores[client]!;
      const t0 = performance.now();
      const view = await store.accessReadWrite(name);
      const t1 = performance.now();
      view.fill(iteration & 0xff);
      await store.releaseReadWrite(view);
      if (measuring) {
        access.add((t1 - t0) * 1000);
        use.add((performance.now() - t0) * 1000);
      }
      turn = 1 - client;
      const next = waiting[turn];
      waiting[turn] = null;
      next?.();
    };
    const run = await runLoop({ ...loopBase({ ...spec, clients: 2 }, hooks, "pingpong"), op });
    const recalls = stores.reduce((total, store) => total + store.stats().recalls, 0);
    return { ...resultOf("pingpong", 2, spec.size, run), use_us: use.summary(), access_us: access.summary(), recalls };
  });
}

async function _large(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks): Promise<BenchResult> {
  const large = `${target.prefix}large`;
  const small = `${target.prefix}small`;
  return _withStores(target, hooks, 1, [], 0, async ([store]) => {
    await store!.create(large, LARGE_BYTES);
    await store!.create(small, SMALL_BYTES);
    // Half the time (or all the --ops) for whole rewrites, the other half for the release pairs.
    const budget: Budget = "ops" in spec.budget ? spec.budget : { durationMs: spec.budget.durationMs / 2 };
    const rewrites = await runLoop({
      ...loopBase({ ...spec, budget, clients: 1 }, hooks, "large: 64 MiB rewrites"),
      op: cycleOp([store!], [large]),
    });
    const releaseLarge = new LatencyRecorder();
    const releaseSmall = new LatencyRecorder();
    const pairs = await runLoop({
      ...loopBase({ ...spec, budget, clients: 1 }, hooks, "large: 1-byte change vs 4 KiB"),
      op: async (_, iteration, measuring) => {
        const big = await store!.accessReadWrite(large);
        big[(iteration * 4099) % LARGE_BYTES] = iteration & 0xff;
        await _timedRelease(store!, big, measuring ? releaseLarge : null);
        const little = await store!.accessReadWrite(small);
        little.fill(iteration & 0xff);
        await _timedRelease(store!, little, measuring ? releaseSmall : null);
      },
    });
    const change = releaseLarge.summary();
    const baseline = releaseSmall.summary();
    return {
      ...resultOf("large", 1, LARGE_BYTES, rewrites),
      rewrite_mb_per_s: round1((rewrites.ops * LARGE_BYTES) / rewrites.seconds / MB),
      release_1byte_us: change,
      release_4k_us: baseline,
      release_pairs: pairs.ops,
      /** How many times longer a 1-byte change to 64 MiB takes to release than a 4 KiB datum (medians). */
      release_ratio: baseline.p50 > 0 ? Math.round((change.p50 / baseline.p50) * 100) / 100 : null,
    };
  });
}

async function _failover(target: BenchTarget, spec: WorkloadSpec, hooks: RunHooks): Promise<BenchResult> {
  const cluster = target.cluster;
  if (!cluster) throw new Error("the failover workload needs a local cluster (--local)");
  const names = Array.from({ length: spec.clients }, (_, i) => `${target.prefix}failover-${i}`);
  return _withStores(target, hooks, spec.clients, names, spec.size, async (stores) => {
    await _waitWholeChain(stores[0]!, cluster.servers.length);
    const acks: number[] = [];
    let kill: Promise<{ atMs: number; index: number }> | null = null;
    const base = loopBase(spec, hooks, `failover (kill -9 the ${spec.victim})`);
    const run = await runLoop({
      ...base,
      op: cycleOp(stores, names),
      onAck: (_, atMs) => acks.push(atMs),
      onProgress: (phase, fraction, opsDone) => {
        base.onProgress?.(phase, fraction, opsDone);
        if (phase === "measure" && fraction >= 1 / 3 && kill === null) {
          kill = _killVictim(cluster, stores[0]!, spec.victim);
          kill.catch(() => {}); // awaited below; this only stops an "unhandled rejection" meanwhile
        }
      },
    });
    if (kill === null) throw new Error("the run ended before the kill: give failover a longer --duration or more --ops");
    const { atMs, index } = await (kill as Promise<{ atMs: number; index: number }>);
    const after = acks.filter((t) => t >= atMs);
    let gapMs = after.length > 0 ? after[0]! - atMs : Number.NaN;
    for (let i = 1; i < after.length; i++) gapMs = Math.max(gapMs, after[i]! - after[i - 1]!);
    return {
      ...resultOf("failover", spec.clients, spec.size, run),
      victim: spec.victim,
      victim_address: cluster.servers[index],
      /** The longest time with no acknowledged write, from the kill to the end of the run. */
      gap_ms: Number.isNaN(gapMs) ? null : round1(gapMs),
      first_ack_after_kill_ms: after.length > 0 ? round1(after[0]! - atMs) : null,
      acks_after_kill: after.length,
    };
  });
}

/**
 * Waits (FAILOVER_CHAIN_WAIT_MS at most) until every server is a member of the chain: a server
 * that formed it alone at start-up while the others came up late has them join it, under the
 * clients' load, and a kill before then finds no middle or tail (compare.ts, session 8).
 */
async function _waitWholeChain(store: Store, servers: number): Promise<void> {
  const deadline = performance.now() + FAILOVER_CHAIN_WAIT_MS;
  for (;;) {
    const { chain } = await store.status();
    const members = chain.filter((server) => server.role === "head" || server.role === "middle" || server.role === "tail").length;
    if (members === servers) return;
    if (performance.now() > deadline) {
      const roles = chain.map((server) => `${server.address} ${server.role}`).join(", ");
      throw new Error(`the chain did not take in every server within ${FAILOVER_CHAIN_WAIT_MS} ms (${roles})`);
    }
    await Bun.sleep(50);
  }
}

/** Finds which server plays `victim` now and kills it with SIGKILL; resolves with when and which. */
async function _killVictim(cluster: KillableCluster, store: Store, victim: Victim): Promise<{ atMs: number; index: number }> {
  const status = await store.status();
  const entry = status.chain.find((server) => server.role === victim);
  if (!entry) {
    const roles = status.chain.map((server) => `${server.address} ${server.role}`).join(", ");
    throw new Error(`no ${victim} to kill in the chain (${roles}); a middle needs 3 servers or more`);
  }
  const index = cluster.servers.indexOf(entry.address);
  if (index === -1) throw new Error(`the ${victim} ${entry.address} is not one of the local servers`);
  const atMs = performance.now();
  await cluster.kill(index, "SIGKILL");
  return { atMs, index };
}

// ---- plumbing ----

/** Opens `count` stores, creates `names` (each `size` bytes) through the first, runs `body`, then deletes and closes. */
async function _withStores<T>(
  target: BenchTarget,
  hooks: RunHooks,
  count: number,
  names: string[],
  size: number,
  body: (stores: Store[]) => Promise<T>,
): Promise<T> {
  const options: ConnectOptions = { servers: target.servers, secret: target.secret, failoverTimeoutMs: 20_000, cacheHolds: target.cacheHolds ?? true, shareConnections: target.shareConnections ?? true };
  const opened = await Promise.allSettled(Array.from({ length: count }, () => connect(options)));
  const stores = opened.flatMap((outcome) => (outcome.status === "fulfilled" ? [outcome.value] : []));
  const created: string[] = [];
  try {
    const failed = opened.find((outcome) => outcome.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    for (const name of names) {
      await stores[0]!.create(name, size);
      created.push(name);
    }
    const result = await body(stores);
    if (hooks.onLoaded) {
      const ours = (await stores[0]!.list()).filter((info) => info.name.startsWith(target.prefix));
      hooks.onLoaded(ours.reduce((total, info) => total + Math.ceil(info.size / PAGE_SIZE) * PAGE_SIZE, 0));
    }
    return result;
  } finally {
    // What body created itself is found by the prefix.
    const leftovers = (await stores[0]?.list().catch(() => [])) ?? [];
    for (const info of leftovers) {
      if (info.name.startsWith(target.prefix)) await stores[0]!.delete(info.name).catch(() => {});
    }
    await Promise.all(stores.map((store) => store.close().catch(() => {})));
  }
}

function loopBase(spec: Pick<WorkloadSpec, "clients" | "budget" | "warmupMs">, hooks: RunHooks, label: string) {
  return {
    clients: spec.clients,
    budget: spec.budget,
    warmupMs: spec.warmupMs,
    signal: hooks.signal,
    onProgress: hooks.onProgress
      ? (phase: "warmup" | "measure", fraction: number, opsDone: number) =>
          hooks.onProgress!(phase === "warmup" ? `${label} (warm-up)` : label, fraction, opsDone)
      : undefined,
  };
}

export function resultOf(
  workload: WorkloadName,
  clients: number,
  size: number,
  run: { latency: LatencyRecorder; ops: number; seconds: number },
): BenchResult {
  return {
    workload,
    clients,
    size,
    ops: run.ops,
    seconds: Math.round(run.seconds * 1000) / 1000,
    ops_per_s: round1(run.ops / run.seconds),
    latency_us: run.latency.summary(),
  };
}

/** releaseReadWrite, its latency recorded in `recorder` (none during the warm-up). */
async function _timedRelease(store: Store, view: Uint8Array, recorder: LatencyRecorder | null): Promise<void> {
  const t0 = performance.now();
  await store.releaseReadWrite(view);
  recorder?.add((performance.now() - t0) * 1000);
}
