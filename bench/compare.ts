#!/usr/bin/env bun
/**
 * `npm run bench:compare`: pstore against Redis (1 primary + 2 replicas, every
 * write followed by WAIT 2 0) and etcd (3 members), all on 127.0.0.1 of this
 * machine, measured alternately in one run: several rounds, each round runs
 * every measurement once (pstore and its peer next to each other, which one
 * first alternating by round). The medians over rounds, the ratios per round
 * and their medians go to the terminal and to docs/benchmarks.md, with the
 * machine and the exact commands.
 *
 *   bun bench/compare.ts            5 rounds, about 8 minutes
 *   bun bench/compare.ts --quick    1 round of shorter measurements, about 1 minute
 *   bun bench/compare.ts --rounds 3 --no-write
 *
 * Redis and etcd come from PATH, else from `apt-get install redis-server
 * etcd-server etcd-client` when this runs as root with apt-get; a peer that
 * cannot be had is skipped with a message and its goals say "not measured".
 * Every process started here is stopped by its PID at the end, also after an
 * error or Ctrl-C.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, release, tmpdir, totalmem } from "node:os";
import { join, resolve } from "node:path";
import {
  type BenchResult,
  type LatencySummary,
  median,
  runPrefix,
  runWorkload,
  serversRss,
  type ServerRss,
  type WorkloadSpec,
} from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";
import { keepFreedMemory } from "../src/cli/self.ts";
import { connect } from "../src/index.ts";
import { measureBulk, measurePasses } from "./floor.ts";
import { etcdCycle, type PeerResult, redisContended, redisCycle, redisGet, redisLarge } from "./peers.ts";
import { type EtcdGroup, Processes, type RedisGroup, startEtcd, startRedis } from "./services.ts";

const ROOT = resolve(import.meta.dir, "..");

// The clients run in this process: it keeps the memory it frees, as `pstore bench` does
// (src/cli/self.ts), or its pstore cells would measure a slower client than the commands they
// print (and its Redis and etcd clients one slower than theirs).
keepFreedMemory([process.execPath, import.meta.path]);
const DOC = join(ROOT, "docs/benchmarks.md");
const NOTES_BEGIN = "<!-- notes:begin -->";
const NOTES_END = "<!-- notes:end -->";

// ---- options ----

interface Options {
  quick: boolean;
  rounds: number;
  write: boolean;
  /** Measured time of one measurement, and its warm-up. */
  cellMs: number;
  warmupMs: number;
  failoverMs: number;
  /** 64 MiB data written in the memory check (1 GiB segment). */
  memoryData: number;
}

function parseOptions(argv: string[]): Options {
  let quick = false;
  let rounds: number | null = null;
  let write = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--quick") quick = true;
    else if (arg === "--no-write") write = false;
    else if (arg === "--rounds") {
      rounds = Number(argv[++i]);
      if (!Number.isInteger(rounds) || rounds < 1 || rounds > 20) usage(`--rounds takes a whole number from 1 to 20`);
    } else if (arg === "--help" || arg === "-h") usage(null);
    else usage(`unknown argument ${arg}`);
  }
  return quick
    ? { quick, rounds: rounds ?? 1, write, cellMs: 1000, warmupMs: 300, failoverMs: 3000, memoryData: 1 }
    : { quick, rounds: rounds ?? 5, write, cellMs: 3000, warmupMs: 500, failoverMs: 4500, memoryData: 4 };
}

function usage(problem: string | null): never {
  const text = [
    "usage: bun bench/compare.ts [--quick] [--rounds N] [--no-write]",
    "  --quick      1 round of 1-second measurements (about a minute)",
    "  --rounds N   rounds (default 5; 1 with --quick)",
    "  --no-write   print the results but leave docs/benchmarks.md alone",
  ].join("\n");
  (problem ? process.stderr : process.stdout).write(`${problem ? `compare: ${problem}\n` : ""}${text}\n`);
  process.exit(problem ? 2 : 0);
}

// ---- what is measured ----

type System = "pstore" | "redis" | "etcd" | "floor";

/** One measurement's numbers, whatever the system. */
interface Measured {
  ops_per_s: number;
  latency_us: LatencySummary;
  extra: Record<string, unknown>;
}

interface Cell {
  key: string;
  system: System;
  title: string;
  /** How to run it by hand (pstore) or what it sends (peers). */
  command: string;
  run: (signal: AbortSignal) => Promise<Measured>;
}

interface Env {
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
const LARGE_DATUM_BYTES = 64 * 1024 * 1024;
/** When the memory check reads the servers' RSS at rest (after the writes). */
const MEMORY_REST_MS = 2500;

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
  const floorPass = (size: number) => async (): Promise<Measured> => {
    const latency_us = await measurePasses(size, cellMs, warmupMs);
    return { ops_per_s: 1e6 / latency_us.mean, latency_us, extra: {} };
  };
  const groups: Cell[][] = [
    [
      { key: "floor.pass32", system: "floor", title: "floor: 32 B through 3 bare Bun relays", command: "bun bench/floor.ts", run: floorPass(32) },
      { key: "floor.pass4k", system: "floor", title: "floor: 4 KiB through 3 bare Bun relays", command: "bun bench/floor.ts", run: floorPass(SIZE) },
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

// ---- the goals of the issue (item 3) ----

interface Goal {
  text: string;
  target: string;
  /** The per-round value compared with the target (a ratio, or ms for failover). */
  value: (round: Map<string, Measured>) => number | null;
  met: (value: number) => boolean;
  unit: "x" | "ms";
  /** What the value is made of, for the reader. */
  how: string;
}

const p50 = (m: Measured | undefined) => (m ? m.latency_us.p50 : null);
const ops = (m: Measured | undefined) => (m ? m.ops_per_s : null);
const ratio = (a: number | null, b: number | null) => (a === null || b === null || b === 0 ? null : a / b);

const extraP50 = (m: Measured | undefined, key: string) => (m ? ((m.extra[key] as LatencySummary | undefined)?.p50 ?? null) : null);

const GOALS: Goal[] = [
  {
    text: "pass: a 4 KiB write release (client → head → … → tail → client)",
    target: "≤ 1.3× the floor",
    unit: "x",
    how: "p50 releaseReadWrite in the 1-client cycle / p50 of 4 KiB through 3 bare relays",
    value: (r) => ratio(extraP50(r.get("pstore.cycle1.off"), "release_us"), p50(r.get("floor.pass4k"))),
    met: (v) => v <= 1.3,
  },
  {
    text: "pass: an acquire through the chain",
    target: "≤ 1.3× the floor",
    unit: "x",
    how: "p50 accessReadWrite in the 1-client cycle / p50 of 32 B through 3 bare relays",
    value: (r) => ratio(extraP50(r.get("pstore.cycle1.off"), "access_us"), p50(r.get("floor.pass32"))),
    met: (v) => v <= 1.3,
  },
  {
    text: "large: whole 64 MiB rewrite vs the bulk loopback floor",
    target: "≥ 0.25× the floor",
    unit: "x",
    how: "pstore MB/s / one Bun process writing to another, MB/s",
    value: (r) => ratio((r.get("pstore.large.off")?.extra.rewrite_mb_per_s as number) ?? null, (r.get("floor.bulk")?.extra.bulk_mb_per_s as number) ?? null),
    met: (v) => v >= 0.25,
  },
  {
    text: "cycle, 4 KiB, 1 client, no persistence",
    target: "≤ 0.5× Redis",
    unit: "x",
    how: "pstore p50 / Redis p50 (latency)",
    value: (r) => ratio(p50(r.get("pstore.cycle1.off")), p50(r.get("redis.cycle1.off"))),
    met: (v) => v <= 0.5,
  },
  {
    text: "pingpong: 2 clients take turns on one 4 KiB datum (every access a recall)",
    target: "≤ 1× Redis",
    unit: "x",
    how: "pstore p50 of one use (access to acknowledged release) / Redis p50 lock cycle",
    value: (r) => ratio(extraP50(r.get("pstore.pingpong.off"), "use_us"), p50(r.get("redis.cycle1.off"))),
    met: (v) => v <= 1,
  },
  {
    text: "read, 4 KiB, 1 client, unchanged datum",
    target: "≥ 10× Redis GET",
    unit: "x",
    how: "pstore reads/s / Redis GETs/s",
    value: (r) => ratio(ops(r.get("pstore.read1.off")), ops(r.get("redis.get1"))),
    met: (v) => v >= 10,
  },
  {
    text: "cycle, 8 clients on distinct data",
    target: "≥ 2× Redis",
    unit: "x",
    how: "pstore cycles/s / Redis cycles/s",
    value: (r) => ratio(ops(r.get("pstore.cycle8.off")), ops(r.get("redis.cycle8.off"))),
    met: (v) => v >= 2,
  },
  {
    text: "contended, 8 clients, one datum",
    target: "≥ 2× Redis's best lock",
    unit: "x",
    how: "pstore increments/s / max(BLPOP, SET NX) increments/s",
    value: (r) => {
      const best = Math.max(ops(r.get("redis.contended8.blpop")) ?? -1, ops(r.get("redis.contended8.setnx")) ?? -1);
      return ratio(ops(r.get("pstore.contended8.off")), best < 0 ? null : best);
    },
    met: (v) => v >= 2,
  },
  {
    text: "cycle with --fsync always vs Redis appendfsync always",
    target: "≤ 0.5× Redis",
    unit: "x",
    how: "pstore p50 / Redis p50",
    value: (r) => ratio(p50(r.get("pstore.cycle1.always")), p50(r.get("redis.cycle1.always"))),
    met: (v) => v <= 0.5,
  },
  {
    text: "cycle with --fsync always vs etcd Lock/Range/Put/Unlock",
    target: "≤ 0.1× etcd",
    unit: "x",
    how: "pstore p50 / etcd p50",
    value: (r) => ratio(p50(r.get("pstore.cycle1.always")), p50(r.get("etcd.cycle1"))),
    met: (v) => v <= 0.1,
  },
  {
    text: "large: release of a 1-byte change to 64 MiB vs a 4 KiB release",
    target: "≤ 2×",
    unit: "x",
    how: "p50 release time, 1-byte change / 4 KiB",
    value: (r) => {
      const large = r.get("pstore.large.off");
      if (!large) return null;
      return ratio((large.extra.release_1byte_us as LatencySummary).p50, (large.extra.release_4k_us as LatencySummary).p50);
    },
    met: (v) => v <= 2,
  },
  {
    text: "large: whole 64 MiB rewrite vs Redis SET + WAIT 2",
    target: "≥ 2× Redis",
    unit: "x",
    how: "pstore MB/s / Redis MB/s",
    value: (r) => ratio((r.get("pstore.large.off")?.extra.rewrite_mb_per_s as number) ?? null, (r.get("redis.large.off")?.extra.rewrite_mb_per_s as number) ?? null),
    met: (v) => v >= 2,
  },
  ...(["head", "middle", "tail"] as const).map(
    (victim): Goal => ({
      text: `failover: kill -9 of the ${victim}, default flags`,
      target: "gap < 1 s",
      unit: "ms",
      how: "longest pause in acknowledged writes after the kill",
      value: (r) => (r.get(`pstore.failover.${victim}`)?.extra.gap_ms as number | null | undefined) ?? null,
      met: (v) => v < 1000,
    }),
  ),
];

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

function describe(m: Measured | Error): string {
  if (m instanceof Error) return `FAILED: ${m.message.split("\n")[0]}`;
  const parts = [`${fmt(m.ops_per_s)} ops/s`, `p50 ${fmt(m.latency_us.p50)} µs`, `p99 ${fmt(m.latency_us.p99)} µs`];
  if (m.extra.rewrite_mb_per_s !== undefined) parts.push(`${m.extra.rewrite_mb_per_s} MB/s`);
  if (m.extra.bulk_mb_per_s !== undefined) parts.push(`${m.extra.bulk_mb_per_s} MB/s`);
  for (const half of ["access_us", "release_us"] as const) {
    const summary = m.extra[half] as LatencySummary | undefined;
    if (summary) parts.push(`${half.replace("_us", "")} p50 ${fmt(summary.p50)} µs`);
  }
  if (m.extra.release_ratio !== undefined) parts.push(`1-byte/4 KiB release x${m.extra.release_ratio}`);
  if (m.extra.gap_ms !== undefined) parts.push(`gap ${m.extra.gap_ms} ms`);
  return parts.join(", ");
}

/** Thousands separated; below 10, one decimal (a 64 MiB rewrite runs at 0.5 ops/s). */
function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  if (digits > 0) return value.toFixed(digits);
  if (Math.abs(value) < 10 && value !== Math.round(value)) return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}

/** Redis and etcd from PATH, or installed with apt-get; what is still missing is returned. */
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

// ---- the report ----

interface Report {
  options: Options;
  machine: Record<string, string>;
  cells: Cell[];
  rounds: Map<string, Measured | Error>[];
  missing: string[];
  memory: MemoryReport | null;
  env: Env;
  startedAt: Date;
  seconds: number;
}

interface MemoryReport {
  segment: number;
  idle: ServerRss[];
  loaded: ServerRss[];
  /** MEMORY_REST_MS after the writes: a server gives back the large-frame buffer it kept once idle. */
  rest: ServerRss[];
  dataBytes: number;
}

function machineInfo(): Record<string, string> {
  const cpuModel = cpus()[0]?.model ?? "unknown";
  const version = (command: string[]) => {
    try {
      const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
      return result.stdout.toString().split("\n")[0]!.trim() || "unknown";
    } catch {
      return "not installed";
    }
  };
  return {
    nproc: String(navigator.hardwareConcurrency ?? cpus().length),
    cpu: cpuModel,
    memory: `${(totalmem() / 1024 ** 3).toFixed(1)} GiB`,
    kernel: release(),
    bun: Bun.version,
    redis: Bun.which("redis-server") ? version(["redis-server", "--version"]) : "not installed",
    etcd: Bun.which("etcd") ? version(["etcd", "--version"]) : "not installed",
    "load average at start": loadavg().map((load) => load.toFixed(2)).join(", "),
  };
}

function goalRows(report: Report): { goal: Goal; values: number[]; median: number | null; met: boolean | null }[] {
  return GOALS.map((goal) => {
    const values = report.rounds.map((round) => goal.value(okOnly(round))).filter((v): v is number => v !== null && Number.isFinite(v));
    const mid = values.length > 0 ? median(values) : null;
    return { goal, values, median: mid, met: mid === null ? null : goal.met(mid) };
  });
}

function okOnly(round: Map<string, Measured | Error>): Map<string, Measured> {
  const result = new Map<string, Measured>();
  for (const [key, value] of round) if (!(value instanceof Error)) result.set(key, value);
  return result;
}

function fmtGoalValue(goal: Goal, value: number | null): string {
  if (value === null) return "not measured";
  return goal.unit === "ms" ? `${fmt(value)} ms` : `${value.toFixed(2)}×`;
}

function cellMedians(report: Report, cell: Cell) {
  const ok = report.rounds.map((round) => round.get(cell.key)).filter((m): m is Measured => m !== undefined && !(m instanceof Error));
  const failures = report.rounds.map((round) => round.get(cell.key)).filter((m): m is Error => m instanceof Error);
  const pick = (f: (m: Measured) => number | undefined) => {
    const values = ok.map(f).filter((v): v is number => typeof v === "number" && Number.isFinite(v));
    return values.length > 0 ? median(values) : null;
  };
  return {
    n: ok.length,
    failures,
    ops: pick((m) => m.ops_per_s),
    p50: pick((m) => m.latency_us.p50),
    p99: pick((m) => m.latency_us.p99),
    extra: [
      ["rewrite MB/s", pick((m) => m.extra.rewrite_mb_per_s as number | undefined)],
      ["MB/s", pick((m) => m.extra.bulk_mb_per_s as number | undefined)],
      ["access p50 µs", pick((m) => (m.extra.access_us as LatencySummary | undefined)?.p50)],
      ["release p50 µs", pick((m) => (m.extra.release_us as LatencySummary | undefined)?.p50)],
      ["1-byte change release p50 µs", pick((m) => (m.extra.release_1byte_us as LatencySummary | undefined)?.p50)],
      ["4 KiB release p50 µs", pick((m) => (m.extra.release_4k_us as LatencySummary | undefined)?.p50)],
      ["gap ms", pick((m) => (m.extra.gap_ms as number | null | undefined) ?? undefined)],
    ].filter(([, value]) => value !== null) as [string, number][],
  };
}

function consoleReport(report: Report): string {
  const lines: string[] = ["", "MEDIANS OVER ROUNDS"];
  for (const cell of report.cells) {
    const m = cellMedians(report, cell);
    const extra = m.extra.map(([name, value]) => `${name} ${fmt(value, value < 100 ? 1 : 0)}`).join(", ");
    const failed = m.failures.length > 0 ? `  (${m.failures.length} failed: ${m.failures[0]!.message.split("\n")[0]})` : "";
    lines.push(`  ${cell.title.padEnd(52)} ${fmt(m.ops).padStart(8)} ops/s  p50 ${fmt(m.p50).padStart(9)} µs  p99 ${fmt(m.p99).padStart(9)} µs  ${extra}${failed}`);
  }
  lines.push("", "GOALS (median over rounds of each round's ratio)");
  for (const row of goalRows(report)) {
    const met = row.met === null ? "-" : row.met ? "met" : "NOT MET";
    lines.push(`  ${row.goal.text.padEnd(62)} ${row.goal.target.padEnd(24)} ${fmtGoalValue(row.goal, row.median).padStart(12)}  ${met}`);
  }
  if (report.memory) lines.push("", `MEMORY (1 GiB segment): ${memoryLine(report.memory)}`);
  return `${lines.join("\n")}\n`;
}

function memoryLine(memory: MemoryReport): string {
  const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
  const idle = memory.idle.map((entry) => mib(entry.rss_kib)).join(" / ");
  const loaded = memory.loaded.map((entry) => mib(entry.rss_kib)).join(" / ");
  const rest = memory.rest.map((entry) => mib(entry.rss_kib)).join(" / ");
  return `idle ${idle}; with ${(memory.dataBytes / 1024 ** 2).toFixed(0)} MiB of data ${loaded}, at rest ${rest}`;
}

function markdown(report: Report, notes: string): string {
  const { machine, options } = report;
  const rows = goalRows(report);
  const out: string[] = [];
  out.push("# Benchmarks");
  out.push("");
  out.push(
    `Generated by \`npm run bench:compare${options.quick ? " -- --quick" : ""}\` (bench/compare.ts) on ${report.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC,`,
    `${options.rounds} round${options.rounds > 1 ? "s" : ""}, ${report.seconds.toFixed(0)} s. Each round runs every measurement once, pstore next to its peer`,
    "(which one first alternates by round); the numbers are medians over the rounds, and each goal's",
    "ratio is the median of the per-round ratios. Everything ran on this one machine: 3 servers",
    "of each system and the clients, all on 127.0.0.1.",
  );
  out.push("");
  out.push("## Machine");
  out.push("");
  out.push("| | |", "|---|---|");
  for (const [key, value] of Object.entries(machine)) out.push(`| ${key} | ${value} |`);
  out.push("");
  out.push("## Goals (issues 12 and 13)");
  out.push("");
  out.push("| goal | target | measured | met | per round | what |", "|---|---|---|---|---|---|");
  for (const row of rows) {
    const perRound = row.values.map((v) => (row.goal.unit === "ms" ? fmt(v) : v.toFixed(2))).join(", ");
    const met = row.met === null ? "not measured" : row.met ? "yes" : "**no**";
    out.push(`| ${row.goal.text} | ${row.goal.target} | ${fmtGoalValue(row.goal, row.median)} | ${met} | ${perRound || "-"} | ${row.goal.how} |`);
  }
  if (report.missing.length > 0) out.push("", `Not measured: ${report.missing.join("; ")}.`);
  out.push("");
  out.push("## Medians");
  out.push("");
  out.push("| measurement | ops/s | p50 µs | p99 µs | more | rounds |", "|---|---:|---:|---:|---|---:|");
  for (const cell of report.cells) {
    const m = cellMedians(report, cell);
    const extra = m.extra.map(([name, value]) => `${name} ${fmt(value, value < 100 ? 1 : 0)}`).join(", ");
    const failed = m.failures.length > 0 ? ` (${m.failures.length} failed: ${m.failures[0]!.message.split("\n")[0]!.replace(/\|/g, "/")})` : "";
    out.push(`| ${cell.title} | ${fmt(m.ops)} | ${fmt(m.p50)} | ${fmt(m.p99)} | ${extra || "-"} | ${m.n}${failed} |`);
  }
  if (report.memory) {
    const memory = report.memory;
    out.push("", "## Server memory (issue 5, item 4)", "");
    out.push(
      `Three servers with \`--segment-size 1GiB --fsync off --suspect-ms 10000\`; RSS (VmRSS) idle, then with ${(memory.dataBytes / 1024 ** 2).toFixed(0)} MiB`,
      `of data written (${memory.dataBytes / LARGE_DATUM_BYTES} data of 64 MiB, each written once by one client), 0.5 s after the last write`,
      `and at rest ${MEMORY_REST_MS / 1000} s after it (a server keeps one 64 MiB frame buffer for the next large frame until none came for 1 s).`,
      `Goal (issue 13, item 6): data + 25% + 64 MiB = ${((memory.dataBytes * 1.25) / 1024 ** 2 + 64).toFixed(0)} MiB.`,
      "",
      "| server | RSS idle | RSS with data, 0.5 s | RSS − data | RSS at rest | RSS − data |",
      "|---|---:|---:|---:|---:|---:|",
    );
    const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;
    const over = (kib: number) => `${((kib * 1024 - memory.dataBytes) / 1024 ** 2).toFixed(0)} MiB`;
    for (const entry of memory.loaded) {
      const idle = memory.idle.find((other) => other.server === entry.server);
      const rest = memory.rest.find((other) => other.server === entry.server);
      out.push(`| ${entry.server} | ${idle ? mib(idle.rss_kib) : "-"} | ${mib(entry.rss_kib)} | ${over(entry.rss_kib)} | ${rest ? mib(rest.rss_kib) : "-"} | ${rest ? over(rest.rss_kib) : "-"} |`);
    }
  }
  out.push("", "## Commands", "");
  out.push("pstore's measurements are those of `pstore bench`, run by the same engine (src/bench/) in the", "compare process against clusters it keeps for the whole run (`--fsync off` and `--fsync always`;", "failover: a fresh cluster with default flags each time). By hand, the same measurement is:", "");
  out.push("```sh");
  for (const cell of report.cells.filter((c) => c.system === "pstore")) out.push(cell.command);
  out.push("```", "");
  out.push("Peers (each client its own connection; commands one at a time, as a plain client sends them):", "");
  for (const cell of report.cells.filter((c) => c.system !== "pstore")) out.push(`- ${cell.title}: \`${cell.command}\``);
  const env = report.env;
  if (env.redis.off || env.redis.always || env.etcd) {
    out.push("", "```sh");
    if (env.redis.off) out.push(`# Redis, no persistence (primary; replicas add --replicaof 127.0.0.1 <primary port>)`, shellLine(env.redis.off.command));
    if (env.redis.always) out.push("# Redis, appendfsync always (every node)", shellLine(env.redis.always.command));
    if (env.etcd) out.push("# etcd, member 1 of 3 (clients talk to the leader's gateway)", shellLine(env.etcd.command));
    out.push("```");
  }
  out.push("", "## Raw results per round", "", "<details><summary>every measurement of every round</summary>", "");
  report.rounds.forEach((round, index) => {
    out.push(`Round ${index + 1}:`, "");
    for (const cell of report.cells) {
      const m = round.get(cell.key);
      if (m) out.push(`- ${cell.title}: ${describe(m)}`);
    }
    out.push("");
  });
  out.push("</details>", "");
  out.push("## Notes", "", NOTES_BEGIN, notes.trim(), NOTES_END, "");
  return out.join("\n");
}

function shellLine(command: string[]): string {
  return command.map((arg) => (arg === "" ? '""' : /[\s"']/.test(arg) ? `"${arg}"` : arg)).join(" ").replace(/--dir \S+/, "--dir <dir>").replace(/--data-dir \S+/, "--data-dir <dir>");
}

function previousNotes(): string {
  if (!existsSync(DOC)) return "(Hand-written notes between the markers are kept when the file is regenerated.)";
  const text = readFileSync(DOC, "utf8");
  const begin = text.indexOf(NOTES_BEGIN);
  const end = text.indexOf(NOTES_END);
  if (begin === -1 || end === -1 || end < begin) return "";
  return text.slice(begin + NOTES_BEGIN.length, end);
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
    const rounds: Map<string, Measured | Error>[] = [];
    for (let r = 0; r < options.rounds && !stop.signal.aborted; r++) {
      const round = new Map<string, Measured | Error>();
      rounds.push(round);
      for (const group of groups) {
        // Alternate who goes first, so a drift of the machine favours no one.
        const order = r % 2 === 0 ? group : [...group].reverse();
        for (const cell of order) {
          if (stop.signal.aborted) break;
          const measured = await runCell(env, cell, stop.signal);
          round.set(cell.key, measured);
          log(`round ${r + 1}/${options.rounds}  ${cell.title}: ${describe(measured)}`);
          if (measured instanceof Error && cell.system === "pstore") await restartPstore(env);
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

