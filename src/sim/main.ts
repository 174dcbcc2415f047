/**
 * The simulator's command line:
 *   bun run sim --seed S            replay one seed, print its report
 *   bun run sim --seeds N [--from S] run N seeds (S, S+1, …), report every failure
 * Options: --one-way (also long one-way cuts between servers: a server hears a peer
 * that cannot hear it); --partitions (also long two-way cuts between servers: split brain is
 * possible by design in availability mode), --disks (servers recover from
 * src/store's log, checkpoints and recovery on an in-memory file system with crash semantics; whole-cluster crashes and power
 * losses), --free-crashes (with --disks: no fault budget, servers may restart
 * alone with stale disks), --quorum majority (the replicas' majority mode),
 * --no-server-pauses (no SIGSTOP-like pauses of servers), --no-cache (clients
 * connect with cacheHolds false; cached holds are on by default, as in production),
 * --faults-ms MS, --trace LINES,
 * --fail-fast, --verbose (one line per seed).
 */
import { type SimResult, runSeed } from "./simulation";
import type { FsyncMode } from "../store/durability";

interface Args {
  seed?: number;
  seeds?: number;
  from: number;
  partitions: boolean;
  oneWay: boolean;
  disks: boolean;
  freeCrashes: boolean;
  fsync: FsyncMode;
  fullDisks: boolean;
  majority: boolean;
  noServerPauses: boolean;
  noCache: boolean;
  faultMs?: number;
  traceLines: number;
  failFast: boolean;
  verbose: boolean;
}

function usage(problem?: string): never {
  if (problem) console.error(`sim: ${problem}`);
  console.error("usage: bun run sim --seed S | --seeds N [--from S] [--partitions] [--one-way] [--disks [--free-crashes] [--fsync always|batch|off] [--full-disks]] [--quorum majority] [--no-server-pauses] [--no-cache] [--faults-ms MS] [--trace LINES] [--fail-fast] [--verbose]");
  process.exit(2);
}

function parseArgs(argv: string[]): Args {
  const args: Args = { from: 1, partitions: false, oneWay: false, disks: false, freeCrashes: false, fsync: "always", fullDisks: false, majority: false, noServerPauses: false, noCache: false, traceLines: 60, failFast: false, verbose: false };
  const number = (flag: string, value: string | undefined): number => {
    const n = Number(value);
    if (value === undefined || value === "" || !Number.isSafeInteger(n) || n < 0) usage(`${flag} takes a whole number, got ${value ?? "nothing"}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    switch (flag) {
      case "--seed":
        args.seed = number(flag, argv[++i]);
        break;
      case "--seeds":
        args.seeds = number(flag, argv[++i]);
        break;
      case "--from":
        args.from = number(flag, argv[++i]);
        break;
      case "--faults-ms":
        args.faultMs = number(flag, argv[++i]);
        break;
      case "--trace":
        args.traceLines = number(flag, argv[++i]);
        break;
      case "--partitions":
        args.partitions = true;
        break;
      case "--one-way":
        args.oneWay = true;
        break;
      case "--disks":
        args.disks = true;
        break;
      case "--no-server-pauses":
        args.noServerPauses = true;
        break;
      case "--no-cache":
        args.noCache = true;
        break;
      case "--free-crashes":
        args.freeCrashes = true;
        break;
      case "--full-disks":
        args.fullDisks = true;
        break;
      case "--fsync": {
        const mode = argv[++i];
        if (mode !== "always" && mode !== "batch" && mode !== "off") usage(`--fsync takes always, batch or off, got ${mode ?? "nothing"}`);
        args.fsync = mode;
        break;
      }
      case "--quorum":
        if (argv[++i] !== "majority") usage("--quorum takes majority");
        args.majority = true;
        break;
      case "--fail-fast":
        args.failFast = true;
        break;
      case "--verbose":
        args.verbose = true;
        break;
      case "--help":
      case "-h":
        usage();
        break;
      default:
        usage(`unknown argument ${flag}`);
    }
  }
  if ((args.seed === undefined) === (args.seeds === undefined)) usage("give either --seed S or --seeds N");
  if (args.fsync !== "always" && !args.disks) usage("--fsync is the disks' mode: give --disks too");
  if (args.fullDisks && !args.disks) usage("--full-disks fills the disks: give --disks too");
  return args;
}

function summary(r: SimResult): string {
  const s = r.stats;
  return (
    `seed ${r.seed}: ${r.ok ? "ok" : `FAILED (${r.failure!.invariant})`} — ${s.servers} servers, ${s.clients} clients, ${s.events} events, ${s.virtualMs} virtual ms, ` +
    `${s.crashes} crashes, ${s.restarts} restarts, ${s.cuts} cuts (${s.oneWayCuts} one way), ${s.serverPauses} server pauses, ${s.clientCrashes} client crashes, ${s.pauses} client pauses, ${s.sessionsLost} sessions lost, ` +
    `${s.increments} increments, ${s.reads} reads, ${s.localGrants} local grants, ${s.recalls} recalls, ` +
    `crashes during a recall: ${s.recallCrashesHead} heads, ${s.recallCrashesMiddle} middles, ${s.recallCrashesTail} tails, ${s.recallCrashesClient} clients, ${s.timeouts} timed-out waits, ${s.configurations} configurations, ${s.snapshots} snapshots (${s.joinerHolds} to joiners held back), ${s.checkpoints} checkpoints, ${s.diskFills} disk fills (${s.diskWritesRefused} writes refused), seq ${s.appliedSeq}` +
    `${s.linearizability === "unknown" ? ", linearizability search ran out of steps" : ""}; trace ${r.traceHash}`
  );
}

function report(r: SimResult, traceLines: number, flags: string): string {
  const f = r.failure!;
  const replay = `bun run sim --seed ${r.seed}${flags}`;
  return [
    `seed ${r.seed} FAILED at ${f.atMs.toFixed(3)} ms: invariant ${f.invariant}`,
    f.message,
    ...(traceLines > 0 ? [`last ${Math.min(traceLines, f.trace.length)} events:`, ...f.trace.slice(-traceLines).map((line) => `  ${line}`)] : []),
    `replay: ${replay}`,
  ].join("\n");
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const flags = `${args.partitions ? " --partitions" : ""}${args.oneWay ? " --one-way" : ""}${args.disks ? " --disks" : ""}${args.freeCrashes ? " --free-crashes" : ""}${args.fsync !== "always" ? ` --fsync ${args.fsync}` : ""}${args.fullDisks ? " --full-disks" : ""}${args.majority ? " --quorum majority" : ""}${args.noServerPauses ? " --no-server-pauses" : ""}${args.noCache ? " --no-cache" : ""}${args.faultMs !== undefined ? ` --faults-ms ${args.faultMs}` : ""}`;
  const options = { partitions: args.partitions, oneWay: args.oneWay, disks: args.disks, freeCrashes: args.freeCrashes, fsync: args.fsync, fullDisks: args.fullDisks, quorum: args.majority ? ("majority" as const) : ("none" as const), serverPauses: !args.noServerPauses, cacheHolds: !args.noCache, faultMs: args.faultMs, traceLines: Math.max(args.traceLines, 1) };
  if (args.seed !== undefined) {
    const result = runSeed({ seed: args.seed, ...options });
    if (!result.ok) console.log(report(result, args.traceLines, flags));
    console.log(summary(result));
    process.exit(result.ok ? 0 : 1);
  }
  const started = performance.now();
  const failed: number[] = [];
  const count = args.seeds!;
  let lastProgress = started;
  for (let i = 0; i < count; i++) {
    const seed = args.from + i;
    const result = runSeed({ seed, ...options });
    if (args.verbose) console.log(summary(result));
    if (!result.ok) {
      failed.push(seed);
      console.log(report(result, args.traceLines, flags));
      console.log("");
      if (args.failFast) break;
    }
    const now = performance.now();
    if (!args.verbose && now - lastProgress > 10_000) {
      lastProgress = now;
      console.error(`… ${i + 1}/${count} seeds, ${failed.length} failed, ${((now - started) / 1000).toFixed(0)} s`);
    }
  }
  const seconds = (performance.now() - started) / 1000;
  console.log(`${count} seeds from ${args.from}: ${failed.length} failed${failed.length ? ` (${failed.slice(0, 20).join(", ")}${failed.length > 20 ? ", …" : ""})` : ""} in ${seconds.toFixed(1)} s`);
  process.exit(failed.length ? 1 : 0);
}

main();
