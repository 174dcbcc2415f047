/**
 * `pstore bench`: workloads against a cluster (--servers) or a temporary local
 * one (--local N), with a progress bar and a table, or one JSON line per
 * workload. The workloads themselves are in ../bench/.
 *
 * The clients are `connect()` stores in this process. One Bun process drove
 * 8 clients as fast as 2, 4 or 8 worker processes did on the 2-core machine
 * the issue targets (the servers, not the clients, were the bottleneck:
 * docs/benchmarks.md), and in-process clients keep the measurement simple:
 * one clock, no aggregation across processes. A process maps at most 16
 * segments, hence at most 16 clients.
 */
import { defineCommand } from "citty";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { BenchResult, BenchTarget, Progress, ServerRss } from "../bench/index.ts";
import { VICTIMS, type WorkloadName, WORKLOADS, type WorkloadSpec } from "../bench/spec.ts";
import { BENCH_CLIENTS_MAX, BENCH_DURATION_MS_MAX, BENCH_OPS_MAX, DATUM_BYTES_MAX, LOCAL_SERVERS_MAX } from "../constants.ts";
import { formatBytes, FSYNC_MODES, type FsyncMode, parseAddressList, parseCount, parseList, parseSegmentSize, parseSize, UsageError, SEGMENT_SIZE_FLAG_DEFAULT } from "./flags.ts";
import type { LocalCluster } from "./cluster.ts";
import { createLogger, logArgs } from "./log.ts";
import { makeStyle, useColor } from "./output.ts";
import { nextStopSignal } from "./signals.ts";

/** Segments one process can map (c/pstore_mem.c), so clients of one bench process. */
const DURATION_DEFAULT = "5s";
const WARMUP_DEFAULT = "1s";
const WORKLOADS_DEFAULT = "cycle,read,contended,large";
/** Clients per workload when --clients is not given. */
const CLIENTS_DEFAULT: Record<string, number> = { cycle: 1, read: 1, contended: 8, large: 1, failover: 8, pingpong: 2 };
/** The exit code of a run stopped by Ctrl-C (128 + SIGINT). */
const EXIT_INTERRUPTED = 130;

export const examples = [
  "pstore bench --local 3                               # cycle, read, contended, large on a temporary 3-server cluster",
  "pstore bench --local 3 --fsync off --clients 1,8 --workload cycle",
  "pstore bench --local 3 --json --workload contended --clients 4 --ops 200",
  "pstore bench --local 3 --workload failover --victim middle --duration 6s",
  "pstore bench --local 3 --segment-size 1GiB --workload large   # servers' RSS with a 1 GiB segment",
  "pstore bench --servers 10.0.0.1:7401,10.0.0.2:7401 --duration 30s",
  "",
  "Workloads: cycle (accessReadWrite, rewrite, releaseReadWrite; own datum per client),",
  "read (accessRead, read, releaseRead), contended (all clients increment one counter; exit 1",
  "if the final counter differs from the acknowledged increments), large (a 64 MiB datum:",
  "whole rewrites in MB/s, and the release of a 1-byte change against a 4 KiB release; one",
  "client), failover (cycle, and kill -9 of --victim a third of the way in; --local only),",
  "pingpong (2 clients take turns rewriting one datum: every access recalls the other's grant).",
  "--no-cache: the clients do not cache holds (every access and release is a request).",
  "--no-share: each client has connections of its own (by default the clients of the process share one per server).",
  "",
  "--json prints one object per workload and client count on one line: workload, clients,",
  "size, ops, seconds, ops_per_s, latency_us {p50,p90,p99,max,mean}, and the workload's own",
  "fields. Latencies are exact percentiles (nearest rank) of every measured operation.",
  "With --local the servers' RSS (VmRSS) is reported after each workload, its data still there.",
];

export default defineCommand({
  meta: { name: "bench", description: "Measure latency and throughput of workloads against a cluster" },
  args: {
    servers: {
      type: "string",
      valueHint: "host:port,...",
      description: "Servers of the cluster to measure (default: $PSTORE_SERVERS, else 127.0.0.1:7401-7403)",
    },
    local: { type: "string", valueHint: "n", description: `Start a temporary cluster of n servers (1 to ${LOCAL_SERVERS_MAX}) and remove it at the end` },
    fsync: { type: "enum", options: [...FSYNC_MODES], default: "always", description: "With --local: the servers' --fsync" },
    "segment-size": {
      type: "string",
      valueHint: "size",
      default: SEGMENT_SIZE_FLAG_DEFAULT,
      description: "With --local: the servers' --segment-size",
    },
    workload: { type: "string", valueHint: "a,b,...", default: WORKLOADS_DEFAULT, description: "Workloads to run, in order (failover: with --local)" },
    clients: {
      type: "string",
      valueHint: "n[,n...]",
      description: `Clients (1 to ${BENCH_CLIENTS_MAX}); a list runs each workload at each count (default: 8 for contended and failover, else 1)`,
    },
    ops: { type: "string", valueHint: "n", description: "Measure this many operations per workload (all clients together)" },
    duration: { type: "string", valueHint: "time", description: `Measure for this long per workload: 10s, 500ms, 1m (default ${DURATION_DEFAULT})` },
    warmup: { type: "string", valueHint: "time", default: WARMUP_DEFAULT, description: "Run unmeasured for this long first (0 for none)" },
    size: { type: "string", valueHint: "size", default: "4KiB", description: "Datum size of cycle, read and failover" },
    victim: { type: "enum", options: [...VICTIMS], default: "head", description: "The server failover kills" },
    json: { type: "boolean", description: "One JSON object per workload on one line, on stdout" },
    cache: { type: "boolean", default: true, description: "Clients cache holds after release (--no-cache: every access is a request)" },
    share: { type: "boolean", default: true, description: "Clients share one connection per server (--no-share: one each)" },
    secret: { type: "string", valueHint: "secret", description: "Shared secret (default: $PSTORE_SECRET)" },
    ...logArgs,
  },
  async run({ args, rawArgs }) {
    const plan = _plan(args, rawArgs);
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet }).withTag("bench");
    const bench = await import("../bench/index.ts");
    const stop = new AbortController();
    const stopped = nextStopSignal().then((signal) => {
      stop.abort(new Error(`${signal}: stopped`));
      return "stopped" as const;
    });
    const progress = bench.createProgress(process.stderr);
    let local: _Local | null = null;
    try {
      if (plan.local !== null) {
        const starting = _startLocal(plan, args.verbose === true);
        starting.catch(() => {});
        if ((await Promise.race([starting, stopped])) === "stopped") {
          await (await starting.catch(() => null))?.cluster.stop();
          return EXIT_INTERRUPTED;
        }
        local = await starting;
        logger.debug(`servers ${local.cluster.servers.join(",")}, data in ${local.dataDir}`);
      }
      const target = {
        servers: local?.cluster.servers ?? plan.servers ?? bench.resolveServers(),
        secret: plan.secret,
        cluster: local?.cluster,
        prefix: bench.runPrefix(),
        cacheHolds: plan.cacheHolds,
        shareConnections: plan.shareConnections,
      };
      const results: BenchResult[] = [];
      for (const spec of plan.specs) {
        const measuring = _measure(bench, target, spec, plan, local, progress, stop.signal);
        measuring.catch(() => {});
        if ((await Promise.race([measuring, stopped])) === "stopped") return EXIT_INTERRUPTED;
        const result = await measuring;
        progress.clear();
        results.push(result);
        if (args.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      }
      if (!args.json) _printTable(results, plan, makeStyle(useColor(process.stdout)), bench);
      const lost = results.filter((result) => result.workload === "contended" && result.counter_ok !== true);
      for (const result of lost) {
        logger.error(`lost updates: the counter is ${result.counter} but ${result.acknowledged} increments were acknowledged`);
      }
      return lost.length > 0 ? 1 : 0;
    } finally {
      progress.clear();
      await local?.cluster.stop();
      if (local) rmSync(local.dataDir, { recursive: true, force: true });
    }
  },
});

type _Bench = typeof import("../bench/index.ts");
type _Local = { cluster: LocalCluster; dataDir: string };

/** A temporary cluster in a fresh folder of the system's temp dir, on free ports. */
async function _startLocal(plan: _Plan, verbose: boolean): Promise<_Local> {
  const { LocalCluster } = await import("./cluster.ts");
  const { selfCommand } = await import("./self.ts");
  const dataDir = mkdtempSync(join(tmpdir(), "pstore-bench-"));
  const cluster = new LocalCluster({
    count: plan.local!,
    basePort: 0,
    dataDir,
    fsync: plan.fsync,
    segmentSize: plan.segmentSize,
    secret: plan.secret,
    command: selfCommand(),
    onLog: verbose ? (_, line) => process.stderr.write(`${line}\n`) : undefined,
  });
  try {
    await cluster.start();
  } catch (error) {
    rmSync(dataDir, { recursive: true, force: true });
    throw error;
  }
  return { cluster, dataDir };
}

/** Runs one workload; with a local cluster, adds the servers' RSS taken while the data was still there. */
async function _measure(
  bench: _Bench,
  target: BenchTarget,
  spec: WorkloadSpec,
  plan: _Plan,
  local: _Local | null,
  progress: Progress,
  signal: AbortSignal,
): Promise<BenchResult> {
  let loaded: { server_rss_kib: ServerRss[]; data_bytes: number; segment_size: number } | null = null;
  const clients = `${spec.clients} client${spec.clients > 1 ? "s" : ""}`;
  const result = await bench.runWorkload(target, spec, {
    signal,
    onProgress: (label, fraction, opsDone) => progress.update(`${label}, ${clients}`, fraction, opsDone),
    onLoaded: (dataBytes) => {
      if (local) loaded = { server_rss_kib: bench.serversRss(local.cluster.pids), data_bytes: dataBytes, segment_size: plan.segmentSize };
    },
  });
  return { ...result, servers: target.servers.length, cache: plan.cacheHolds, share: plan.shareConnections, ...(local ? { fsync: plan.fsync } : {}), ...(loaded ?? {}) };
}

function _printTable(
  results: BenchResult[],
  plan: _Plan,
  style: ReturnType<typeof makeStyle>,
  bench: _Bench,
): void {
  const where = plan.local !== null ? `${plan.local} local server${plan.local > 1 ? "s" : ""}, --fsync ${plan.fsync}` : (plan.servers ?? []).join(",") || (process.env.PSTORE_SERVERS ? `PSTORE_SERVERS=${process.env.PSTORE_SERVERS}` : "default servers 127.0.0.1:7401-7403");
  const lines = [style.dim(`pstore bench: ${where}; latencies in µs`), bench.formatResultsTable(results, style)];
  for (const result of results) {
    const rss = result.server_rss_kib as ServerRss[] | undefined;
    if (rss && rss.length > 0) lines.push(style.dim(`RSS after ${result.workload}, ${result.clients} client${result.clients > 1 ? "s" : ""}: ${bench.formatRss(rss, result.data_bytes as number)}`));
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

interface _Plan {
  servers: string[] | undefined;
  local: number | null;
  fsync: FsyncMode;
  segmentSize: number;
  secret: string | undefined;
  /** The clients cache holds (--no-cache: false). */
  cacheHolds: boolean;
  /** The clients share one connection per server (--no-share: false). */
  shareConnections: boolean;
  specs: WorkloadSpec[];
}

/** Checks every flag and turns them into the list of runs; a mistake is a UsageError (exit 2). */
function _plan(args: Record<string, any>, rawArgs: string[]): _Plan {
  const given = (flag: string) => rawArgs.some((arg) => arg === `--${flag}` || arg.startsWith(`--${flag}=`));
  if (given("local") && given("servers")) throw new UsageError("--local starts its own servers; leave out --servers");
  const local = args.local === undefined ? null : parseCount(args.local, "--local", LOCAL_SERVERS_MAX);
  for (const flag of ["fsync", "segment-size"]) {
    if (local === null && given(flag)) throw new UsageError(`--${flag} only goes with --local (it configures the servers bench starts)`);
  }
  if (given("ops") && given("duration")) throw new UsageError("give --ops or --duration, not both");
  const workloads = _parseWorkloads(args.workload);
  if (workloads.includes("failover")) {
    if (local === null) throw new UsageError("the failover workload kills a server: it needs --local");
    const needed = args.victim === "middle" ? 3 : 2;
    if (local < needed) throw new UsageError(`failover with --victim ${args.victim} needs --local ${needed} or more`);
  }
  if (!workloads.includes("failover") && given("victim")) throw new UsageError("--victim only goes with the failover workload");
  const clientCounts = args.clients === undefined ? null : parseList(args.clients, "--clients").map((text) => parseCount(text, "--clients", BENCH_CLIENTS_MAX));
  const size = parseSize(args.size, "--size");
  if (size < 1 || size > DATUM_BYTES_MAX) throw new UsageError(`--size: ${args.size} is not from 1 byte to ${formatBytes(DATUM_BYTES_MAX)}`);
  const budget = args.ops !== undefined ? { ops: parseCount(args.ops, "--ops", BENCH_OPS_MAX) } : { durationMs: parseDuration(args.duration ?? DURATION_DEFAULT, "--duration", false) };
  const warmupMs = parseDuration(args.warmup, "--warmup", true);
  const specs = workloads.flatMap((workload) => {
    // large is one client on one datum, pingpong two: a client count list does not multiply them.
    const counts = workload === "large" ? [1] : workload === "pingpong" ? [2] : (clientCounts ?? [CLIENTS_DEFAULT[workload]!]);
    return counts.map((clients) => ({ workload, clients, size, budget, warmupMs, victim: args.victim }));
  });
  return {
    servers: args.servers === undefined ? undefined : parseAddressList(args.servers, "--servers"),
    local,
    fsync: args.fsync as FsyncMode,
    segmentSize: parseSegmentSize(args["segment-size"]),
    secret: args.secret ?? (process.env.PSTORE_SECRET || undefined),
    cacheHolds: args.cache !== false,
    shareConnections: args.share !== false,
    specs,
  };
}

function _parseWorkloads(text: string): WorkloadName[] {
  const names = parseList(text, "--workload");
  const seen = new Set<string>();
  for (const name of names) {
    if (!(WORKLOADS as readonly string[]).includes(name)) {
      throw new UsageError(`--workload: unknown workload "${name}" (workloads: ${WORKLOADS.join(", ")})`);
    }
    if (seen.has(name)) throw new UsageError(`--workload: ${name} is listed twice`);
    seen.add(name);
  }
  return names as WorkloadName[];
}

const _DURATION_UNITS_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000 };

/** `10s`, `500ms`, `1m`, `2.5s`; a bare number is seconds. `allowZero` for --warmup 0. */
export function parseDuration(text: string, what: string, allowZero: boolean): number {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$/.exec(text);
  if (!match) throw new UsageError(`${what}: "${text}" is not a duration; write 10s, 500ms or 1m`);
  const ms = Number(match[1]) * _DURATION_UNITS_MS[match[2] ?? "s"]!;
  if (ms === 0 && allowZero) return 0;
  if (ms < 1) throw new UsageError(`${what}: must be at least 1 ms (got "${text}")`);
  if (ms > BENCH_DURATION_MS_MAX) throw new UsageError(`${what}: "${text}" is over an hour`);
  return Math.round(ms);
}
