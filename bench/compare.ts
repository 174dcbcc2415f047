#!/usr/bin/env bun
/**
 * `npm run bench:compare`: pstore against Redis (1 primary + 2 replicas, every
 * write followed by WAIT 2 0) and etcd (3 members), all on 127.0.0.1 of this
 * machine, measured alternately in one run: several rounds, each round runs
 * every measurement once (pstore and its peer next to each other, which one
 * first alternating by round). The medians over rounds, the ratios per round
 * and their medians go to the terminal and to docs/benchmarks.md, with the
 * machine and the exact commands (the report and the goals: bench/compare_report.ts).
 *
 *   bun bench/compare.ts            a warm-up and 5 rounds, about 10 minutes
 *   bun bench/compare.ts --quick    1 round of shorter measurements, about 1 minute
 *   bun bench/compare.ts --rounds 3 --no-write
 *
 * Redis and etcd come from PATH, else from `apt-get install redis-server
 * etcd-server etcd-client` when this runs as root with apt-get; a peer that
 * cannot be had is skipped with a message and its goals say "not measured".
 * Every process started here is stopped by its PID at the end, also after an
 * error or Ctrl-C.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import {
  type BenchResult,
  type LatencySummary,
  runPrefix,
  runWorkload,
  serversRss,
  type WorkloadSpec,
} from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { keepFreedMemory } from "../src/cli/self.ts";
import { connect } from "../src/index.ts";
import {
  consoleReport,
  DOC,
  describe,
  LARGE_DATUM_BYTES,
  MEMORY_REST_MS,
  type MemoryReport,
  machineInfo,
  markdown,
  previousNotes,
  type Report,
} from "./compare_report.ts";
import { measureBulk, measurePasses } from "./floor.ts";
import { etcdCycle, type PeerResult, redisContended, redisCycle, redisGet, redisLarge } from "./peers.ts";
import { type EtcdGroup, Processes, type RedisGroup, startEtcd, startRedis } from "./services.ts";

const ROOT = resolve(import.meta.dir, "..");

// The clients run in this process: it keeps the memory it frees, as `pstore bench` does
// (src/cli/self.ts), or its pstore cells would measure a slower client than the commands they
// print (and its Redis and etcd clients one slower than theirs).
keepFreedMemory([process.execPath, import.meta.path]);

// ---- options ----

export interface Options {
  quick: boolean;
  rounds: number;
  write: boolean;
  /** Measured time of one measurement, and its warm-up. */
  cellMs: number;
  warmupMs: number;
  failoverMs: number;
  /** 64 MiB data written in the memory check (1 GiB segment). */
  memoryData: number;
  /** Every measurement but failover runs once, uncounted, before round 1. */
  warmUp: boolean;
}

function parseOptions(argv: string[]): Options {
  let quick = false;
  let rounds: number | null = null;
  let write = true;
  let warmUp: boolean | null = null;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") quick = true;
    else if (arg === "--no-write") write = false;
    else if (arg === "--no-warm-up") warmUp = false;
    else if (arg === "--rounds") {
      rounds = Number(argv[++i]);
      if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) usage(`--rounds takes a whole number from 1 to 20`);
    } else if (arg === "--help" || arg === "-h") usage(null);
    else usage(`unknown argument ${arg}`);
  }
  return quick
    ? { quick, rounds: rounds ?? 1, write, cellMs: 1000, warmupMs: 300, failoverMs: 3000, memoryData: 1, warmUp: warmUp ?? false }
    : { quick, rounds: rounds ?? 5, write, cellMs: 3000, warmupMs: 500, failoverMs: 4500, memoryData: 4, warmUp: warmUp ?? true };
}

function usage(problem: string | null): never {
  const text = [
    "usage: bun bench/compare.ts [--quick] [--rounds N] [--no-warm-up] [--no-write]",
    "  --quick       1 round of 1-second measurements (about a minute), no warm-up",
    "  --rounds N    rounds (default 5; 1 with --quick)",
    "  --no-warm-up  round 1 starts at once (by default every measurement but failover runs once",
    "                first, uncounted: the servers' and the clients' JIT compilers settle)",
    "  --no-write   print the results but leave docs/benchmarks.md alone",
  ].join("\n");
  (problem ? process.stderr : process.stdout).write(`${problem ? `compare: ${problem}\n` : ""}${text}\n`);
  process.exit(problem ? 2 : 0);
}

// ---- what is measured ----

export type System = "pstore" | "redis" | "etcd" | "floor";

/** One measurement's numbers, whatever the system. */
export interface Measured {
  ops_per_s: number;
  latency_us: LatencySummary;
  extra: Record<string, unknown>;
}

export interface Cell {
  key: string;
  system: System;
  title: string;
  /** How to run it by hand (pstore) or what it sends (peers). */
  command: string;
  run: (signal: AbortSignal) => Promise<Measured>;
}

export interface Env {
  options: Options;
  root: string;
  processes: Processes;
  pstoreCommand: string[];
  pstore: { off: LocalCluster | null; always: LocalCluster | null };
  redis: { off: RedisGroup | null; always: RedisGroup | null };
  etcd: EtcdGroup | null;
  /** What could not be started, for the report. */
  missing: string[];
}

const SIZE = 4096;

function pstoreCell(
  env: Env,
  key: string,
  title: string,
  fsync: "off" | "always",
  spec: Omit<WorkloadSpec, "warmupMs" | "victim" | "budget">,
  cacheHolds = true,
): Cell {
  const { cellMs, warmupMs } = env.options;
  const budgetMs = spec.workload === "large" ? cellMs * 2 : cellMs;
  return {
    key,
    system: "pstore",
    title,
    command: `pstore bench --local 3 --fsync ${fsync} --workload ${spec.workload} --clients ${spec.clients} --duration ${budgetMs}ms --warmup ${warmupMs}ms${cacheHolds ? "" : " --no-cache"}`,
    run: async (signal) => {
      const cluster = await ensurePstore(env, fsync);
      const result = await runWorkload(
        { servers: cluster.servers, cluster, prefix: runPrefix(), cacheHolds },
        { ...spec, budget: { durationMs: budgetMs }, warmupMs, victim: "head" },
        { signal },
      );
      if (result.workload === "contended" && result.counter_ok !== true) {
        throw new Error(`LOST UPDATES: counter ${result.counter} != ${result.acknowledged} acknowledged`);
      }
      return measuredOf(result);
    },
  };
}

function failoverCell(env: Env, victim: "head" | "middle" | "tail"): Cell {
  const { failoverMs, warmupMs } = env.options;
  return {
    key: `pstore.failover.${victim}`,
    system: "pstore",
    title: `failover: kill -9 the ${victim} (default flags, 8 clients)`,
    command: `pstore bench --local 3 --workload failover --victim ${victim} --duration ${failoverMs}ms --warmup ${warmupMs}ms`,
    run: async (signal) => {
      // A cluster of its own with the servers' default flags; the victim stays dead.
      const dataDir = mkdtempSync(join(env.root, "failover-"));
      const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: env.pstoreCommand });
      try {
        await cluster.start();
        const result = await runWorkload(
          { servers: cluster.servers, cluster, prefix: runPrefix() },
          { workload: "failover", clients: 8, size: SIZE, budget: { durationMs: failoverMs }, warmupMs, victim },
          { signal },
        );
        return measuredOf(result);
      } finally {
        await cluster.stop();
        rmSync(dataDir, { recursive: true, force: true });
      }
    },
  };
}

function measuredOf(result: BenchResult | PeerResult): Measured {
  const { ops_per_s, latency_us, workload: _w, clients: _c, size: _s, ops: _o, seconds: _t, ...extra } = result as BenchResult;
  return { ops_per_s, latency_us, extra: { ops: result.ops, ...extra } };
}

function peerCell(key: string, system: System, title: string, command: string, run: (signal: AbortSignal) => Promise<PeerResult>): Cell {
  return { key, system, title, command, run: async (signal) => measuredOf(await run(signal)) };
}

/** The measurements of one round, grouped so that each pstore one sits next to its peers. */
function cellGroups(env: Env): Cell[][] {
  const { cellMs, warmupMs } = env.options;
  const run = (clients: number, size = SIZE, budgetMs = cellMs) => ({ clients, size, budget: { durationMs: budgetMs }, warmupMs });
  const redisOff = () => need(env.redis.off, "redis").primaryPort;
  const redisAlways = () => need(env.redis.always, "redis").primaryPort;
  const floorPass = (size: number, logging = false) => async (): Promise<Measured> => {
    const latency_us = await measurePasses(size, cellMs, warmupMs, logging);
    return { ops_per_s: 1e6 / latency_us.mean, latency_us, extra: {} };
  };
  const groups: Cell[][] = [
    [
      { key: "floor.pass32", system: "floor", title: "floor: 32 B through 3 bare Bun relays", command: "bun bench/floor.ts", run: floorPass(32) },
      { key: "floor.pass4k", system: "floor", title: "floor: 4 KiB through 3 bare Bun relays", command: "bun bench/floor.ts", run: floorPass(SIZE) },
      // The least a logging chain adds: each relay writes what it relays to a file (the last one before it forwards).
      { key: "floor.pass4k.logged", system: "floor", title: "floor: 4 KiB through 3 Bun relays that log it", command: "bun bench/floor.ts --logging", run: floorPass(SIZE, true) },
      {
        key: "floor.bulk",
        system: "floor",
        title: "floor: 256 MiB from one Bun process to another",
        command: "bun bench/floor.ts",
        run: async () => {
          const mbPerS = await measureBulk();
          // A throughput, no latency: NaN prints as "-".
          const none = { p50: Number.NaN, p90: Number.NaN, p99: Number.NaN, max: Number.NaN, mean: Number.NaN };
          return { ops_per_s: Number.NaN, latency_us: none, extra: { bulk_mb_per_s: mbPerS } };
        },
      },
    ],
    [
      pstoreCell(env, "pstore.cycle1.off", "cycle, 1 client, 4 KiB, --fsync off", "off", { workload: "cycle", clients: 1, size: SIZE }),
      peerCell("redis.cycle1.off", "redis", "Redis cycle, 1 client, no persistence", "SET lock NX PX; GET; SET 4 KiB; WAIT 2 0; DEL", (signal) =>
        redisCycle(redisOff(), { ...run(1), signal }, runPrefix()),
      ),
      // Caching's worst case (every access recalls the other client's grant), and no caching at all.
      pstoreCell(env, "pstore.pingpong.off", "pingpong, 2 clients take turns on one 4 KiB datum, --fsync off", "off", { workload: "pingpong", clients: 2, size: SIZE }),
      pstoreCell(env, "pstore.cycle1.nocache", "cycle, 1 client, 4 KiB, --fsync off, --no-cache", "off", { workload: "cycle", clients: 1, size: SIZE }, false),
    ],
    [
      pstoreCell(env, "pstore.read1.off", "read, 1 client, 4 KiB unchanged, --fsync off", "off", { workload: "read", clients: 1, size: SIZE }),
      peerCell("redis.get1", "redis", "Redis GET 4 KiB, 1 client", "GET <4 KiB value>", (signal) => redisGet(redisOff(), { ...run(1), signal }, runPrefix())),
    ],
    [
      pstoreCell(env, "pstore.cycle8.off", "cycle, 8 clients, distinct data, --fsync off", "off", { workload: "cycle", clients: 8, size: SIZE }),
      peerCell("redis.cycle8.off", "redis", "Redis cycle, 8 clients, distinct keys", "same, 8 connections", (signal) =>
        redisCycle(redisOff(), { ...run(8), signal }, runPrefix()),
      ),
    ],
    [
      pstoreCell(env, "pstore.contended8.off", "contended, 8 clients, one counter, --fsync off", "off", { workload: "contended", clients: 8, size: 4 }),
      peerCell("redis.contended8.blpop", "redis", "Redis contended, BLPOP token", "BLPOP token 0; GET; SET; WAIT 2 0; RPUSH token", (signal) =>
        redisContended(redisOff(), { ...run(8), signal }, runPrefix(), "blpop"),
      ),
      peerCell("redis.contended8.setnx", "redis", "Redis contended, spinning SET NX", "SET lock NX PX (retry at once); GET; SET; WAIT 2 0; DEL", (signal) =>
        redisContended(redisOff(), { ...run(8), signal }, runPrefix(), "setnx"),
      ),
    ],
    [
      pstoreCell(env, "pstore.large.off", "large: 64 MiB datum, --fsync off", "off", { workload: "large", clients: 1, size: 64 * 1024 * 1024 }),
      peerCell("redis.large.off", "redis", "Redis SET 64 MiB + WAIT 2 0", "SET large <64 MiB>; WAIT 2 0", (signal) =>
        redisLarge(redisOff(), { ...run(1, 64 * 1024 * 1024), warmupMs: 1, signal }, runPrefix()),
      ),
    ],
    [
      pstoreCell(env, "pstore.cycle1.always", "cycle, 1 client, 4 KiB, --fsync always", "always", { workload: "cycle", clients: 1, size: SIZE }),
      peerCell("redis.cycle1.always", "redis", "Redis cycle, appendfsync always", "SET lock NX PX; GET; SET 4 KiB; WAIT 2 0; DEL", (signal) =>
        redisCycle(redisAlways(), { ...run(1), signal }, runPrefix()),
      ),
      peerCell("etcd.cycle1", "etcd", "etcd cycle, 1 client (WAL fsync)", "Lock; Range; Put 4 KiB; Unlock (HTTP/JSON gateway)", (signal) =>
        etcdCycle(need(env.etcd, "etcd").leader, { ...run(1), signal }, runPrefix()),
      ),
    ],
    [failoverCell(env, "head"), failoverCell(env, "middle"), failoverCell(env, "tail")],
  ];
  return groups.map((group) => group.filter((cell) => available(env, cell.system)));
}

function available(env: Env, system: System): boolean {
  if (system === "redis") return env.redis.off !== null && env.redis.always !== null;
  if (system === "etcd") return env.etcd !== null;
  return true;
}

function need<T>(value: T | null, what: string): T {
  if (value === null) throw new Error(`${what} is not running`);
  return value;
}

// ---- running ----

async function ensurePstore(env: Env, fsync: "off" | "always"): Promise<LocalCluster> {
  const existing = env.pstore[fsync];
  if (existing && existing.pids.every((pid) => pid !== null)) return existing;
  if (existing) await existing.stop();
  const dataDir = mkdtempSync(join(env.root, `pstore-${fsync}-`));
  const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, fsync, command: env.pstoreCommand });
  await cluster.start();
  env.pstore[fsync] = cluster;
  return cluster;
}

/** Runs one cell with a time limit; a failure is recorded and the run goes on. */
async function runCell(env: Env, cell: Cell, signal: AbortSignal): Promise<Measured | Error> {
  const limitMs = env.options.cellMs * 4 + 60_000;
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal.reason);
  signal.addEventListener("abort", onAbort, { once: true });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<Error>((resolvePromise) => {
    timer = setTimeout(() => {
      controller.abort(new Error("time limit"));
      resolvePromise(new Error(`no result within ${limitMs} ms`));
    }, limitMs);
  });
  try {
    return await Promise.race([cell.run(controller.signal).catch((error: unknown) => (error instanceof Error ? error : new Error(String(error)))), timeout]);
  } finally {
    clearTimeout(timer);
    signal.removeEventListener("abort", onAbort);
  }
}

function findPeers(): string[] {
  const missing = () => [Bun.which("redis-server") ? null : "redis-server", Bun.which("etcd") ? null : "etcd"].filter((x): x is string => x !== null);
  if (missing().length === 0) return [];
  const canInstall = process.getuid?.() === 0 && Bun.which("apt-get") !== null;
  if (!canInstall) return missing();
  log(`installing ${missing().join(" and ")} with apt-get (redis-server etcd-server etcd-client)`);
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const update = Bun.spawnSync(["apt-get", "update", "-qq"], { env, stdout: "ignore", stderr: "pipe" });
  if (update.exitCode === 0) {
    const install = Bun.spawnSync(["apt-get", "install", "-y", "-qq", "redis-server", "etcd-server", "etcd-client"], { env, stdout: "ignore", stderr: "pipe" });
    if (install.exitCode !== 0) log(`apt-get install failed: ${install.stderr.toString().trim().split("\n").slice(-2).join(" ")}`);
  } else {
    log(`apt-get update failed: ${update.stderr.toString().trim().split("\n").slice(-1)[0]}`);
  }
  return missing();
}

function log(line: string): void {
  process.stderr.write(`compare: ${line}\n`);
}

// ---- memory (item 4) ----

async function measureMemory(env: Env): Promise<MemoryReport> {
  const segment = 1024 ** 3;
  const dataDir = mkdtempSync(join(env.root, "memory-"));
  // A 64 MiB update keeps a server busy for over a second here, past the default --suspect-ms:
  // this check is about memory, so the servers are given time instead of being declared dead.
  const cluster = new LocalCluster({
    count: 3,
    basePort: 0,
    dataDir,
    fsync: "off",
    segmentSize: segment,
    command: env.pstoreCommand,
    serveArgs: ["--suspect-ms", "10000"],
  });
  try {
    await cluster.start();
    await Bun.sleep(500);
    const idle = serversRss(cluster.pids);
    const store = await connect({ servers: cluster.servers });
    const datumBytes = LARGE_DATUM_BYTES;
    try {
      for (let i = 0; i < env.options.memoryData; i++) {
        await store.create(`memory-${i}`, datumBytes);
        await store.withWrite(`memory-${i}`, (view) => view.fill(i + 1));
      }
      await Bun.sleep(500);
      const loaded = serversRss(cluster.pids);
      await Bun.sleep(MEMORY_REST_MS - 500);
      return { segment, idle, loaded, rest: serversRss(cluster.pids), dataBytes: env.options.memoryData * datumBytes };
    } finally {
      await store.close();
    }
  } finally {
    await cluster.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ---- main ----

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  const startedAt = new Date();
  const t0 = performance.now();
  const missingTools = findPeers();
  const machine = machineInfo();
  const binary = join(ROOT, "dist/pstore");
  const env: Env = {
    options,
    root: mkdtempSync(join(tmpdir(), "pstore-compare-")),
    processes: new Processes(),
    pstoreCommand: existsSync(binary) ? [binary] : [process.execPath, join(ROOT, "src/cli/main.ts")],
    pstore: { off: null, always: null },
    redis: { off: null, always: null },
    etcd: null,
    missing: missingTools.map((tool) => `${tool} is not installed and could not be installed (apt-get install redis-server etcd-server etcd-client as root)`),
  };
  if (!existsSync(binary)) log("dist/pstore is not built: the servers run from source (npm run build for the real binary)");
  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: stopping everything`);
    stop.abort(new Error(signal));
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    log(`machine: ${machine.nproc} CPUs (${machine.cpu}), ${machine.memory}, kernel ${machine.kernel}, Bun ${machine.bun}`);
    if (loadavg()[0]! > 0.5) log(`the machine is busy (load average ${loadavg()[0]!.toFixed(2)}): other programs will skew the numbers`);
    await startAll(env);
    const groups = cellGroups(env);
    const cells = groups.flat();
    if (options.warmUp) await warmUp(env, cells, stop.signal);
    const rounds: Map<string, Measured | Error>[] = [];
    for (let r = 0; r < options.rounds && !stop.signal.aborted; r++) {
      const round = new Map<string, Measured | Error>();
      rounds.push(round);
      for (const group of groups) {
        // Alternate who goes first, so a drift of the machine favours no one.
        const order = r % 2 === 0 ? group : [...group].reverse();
        for (const cell of order) {
          if (stop.signal.aborted) break;
          round.set(cell.key, await measure(env, cell, stop.signal, `round ${r + 1}/${options.rounds}`));
        }
      }
    }
    if (stop.signal.aborted) return 130;
    log("memory: 3 servers with a 1 GiB segment");
    const memory = await measureMemory(env).catch((error: Error) => {
      log(`memory check failed: ${error.message}`);
      return null;
    });
    // Other programs on the machine skew every number: the load averages say whether there were any.
    machine["load average at end"] = loadavg().map((load) => load.toFixed(2)).join(", ");
    const report: Report = { options, machine, cells, rounds, missing: env.missing, memory, env, startedAt, seconds: (performance.now() - t0) / 1000 };
    process.stdout.write(consoleReport(report));
    if (options.write) {
      writeFileSync(DOC, markdown(report, previousNotes()));
      log(`wrote ${DOC}`);
    }
    return 0;
  } finally {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
    await stopAll(env);
  }
}

/**
 * Every measurement but failover (a fresh cluster each time) once, uncounted. pstore's servers
 * and the compare process run JavaScript that JSC compiles in tiers over the first seconds of
 * load: without it round 1 measured them half-compiled (8 clients: 10,957, 15,347 and 19,152
 * cycles/s in rounds 1-3 of session 13's report), which is not how a store that serves for
 * days runs. Redis and etcd are compiled programs; their clients run here too and warm alike.
 */
async function warmUp(env: Env, cells: Cell[], signal: AbortSignal): Promise<void> {
  for (const cell of cells) {
    if (signal.aborted) return;
    if (cell.key.includes(".failover.")) continue;
    await measure(env, cell, signal, "warm-up");
  }
}

/** Runs one measurement and logs it; a pstore cluster that failed one is started afresh for the next. */
async function measure(env: Env, cell: Cell, signal: AbortSignal, label: string): Promise<Measured | Error> {
  const measured = await runCell(env, cell, signal);
  log(`${label}  ${cell.title}: ${describe(measured)}`);
  if (measured instanceof Error && cell.system === "pstore") await restartPstore(env);
  return measured;
}

async function startAll(env: Env): Promise<void> {
  await ensurePstore(env, "off");
  await ensurePstore(env, "always");
  if (Bun.which("redis-server")) {
    for (const persistence of ["off", "always"] as const) {
      try {
        env.redis[persistence] = await startRedis(env.processes, env.root, persistence);
      } catch (error) {
        env.missing.push(`Redis (${persistence}) did not start: ${(error as Error).message.split("\n")[0]}`);
      }
    }
  }
  if (Bun.which("etcd")) {
    try {
      env.etcd = await startEtcd(env.processes, env.root);
    } catch (error) {
      env.missing.push(`etcd did not start: ${(error as Error).message.split("\n")[0]}`);
    }
  }
  for (const line of env.missing) log(line);
}

async function restartPstore(env: Env): Promise<void> {
  for (const fsync of ["off", "always"] as const) {
    const cluster = env.pstore[fsync];
    if (!cluster) continue;
    await cluster.stop();
    env.pstore[fsync] = null;
  }
}

async function stopAll(env: Env): Promise<void> {
  await Promise.all([env.pstore.off?.stop(), env.pstore.always?.stop()]);
  await env.processes.stop();
  rmSync(env.root, { recursive: true, force: true });
}

if (import.meta.main) {
  main().then(
    (code) => process.exit(code),
    (error: Error) => {
      process.stderr.write(`compare: ${error.stack ?? error.message}\n`);
      process.exit(1);
    },
  );
}

