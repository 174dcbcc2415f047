/**
 * `bun run chaos [--minutes M] [--servers N] [--clients K] [--seed S]
 *                [--allow-total] [--allow-split] [--faults kill,pause,cut,oneway]
 *                [--keep-data] [--verbose] [--serve-arg FLAG]...`
 *
 * Runs a chaos run (run.ts) and prints one summary line; exits 0 when there
 * was no violation, 1 otherwise (with the seed that replays the schedule and
 * where the logs, history and schedule were kept), 2 on bad flags.
 */
import { parseArgs } from "node:util";
import { DEFAULT_WEIGHTS, type FaultKind } from "./faults";
import { seedFrom } from "./random";
import { type ChaosOptions, DEFAULT_OPTIONS, runChaos, summaryLine } from "./run";

/** The kinds --faults chooses among (a whole-cluster kill has its own flag, --allow-total). */
const CHOSEN_KINDS = ["kill", "pause", "cut", "oneway"] as const satisfies readonly FaultKind[];

const USAGE = `usage: bun run chaos [options]

Real pstore servers (--fsync always) under random kill -9, restarts, pauses
(SIGSTOP/SIGCONT) and link cuts while clients increment counters; then checks
that every server serves again at the same applied seq, every client finished,
the history is linearizable with safe holds, and no acknowledged increment is
missing. Prints a summary line; exit 1 on any violation.

  --minutes M       how long the faults go on (default 1; fractions allowed)
  --servers N       servers in the chain (default 3)
  --clients K       clients incrementing counters (default 8)
  --think-ms MS     each client pauses this long between increments (default 0)
  --seed S          the seed of the fault schedule (default: random, printed)
  --faults LIST     kinds of fault to inject: kill,pause,cut,oneway (default all
                    four; oneway cuts one server's connections to another only)
  --allow-total     also kill every server at once (and once more at the end)
  --allow-split     let link cuts split the servers in two (default: never;
                    in the default availability mode a split may serve on
                    both sides, as the README says)
  --chain-aware     faults only where the documented failure model loses
                    nothing: checked against the live chain, kills and pauses
                    hit serving members and never the last one, cuts only
                    link members of a full chain, never during a server fault
  --gap-ms MIN,MAX  time between two faults (default 300,2500)
  --serve-arg FLAG  one more flag for every server (repeatable)
  --binary PATH     the pstore executable (default dist/pstore, else the source)
  --keep-data       keep the data directories, logs and history
  --verbose         print each fault and every server log line
`;

function fail(message: string): never {
  process.stderr.write(`chaos: ${message}\n\n${USAGE}`);
  process.exit(2);
}

function parse(argv: string[]): ChaosOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        minutes: { type: "string" },
        servers: { type: "string" },
        clients: { type: "string" },
        "think-ms": { type: "string" },
        seed: { type: "string" },
        faults: { type: "string" },
        "allow-total": { type: "boolean" },
        "allow-split": { type: "boolean" },
        "chain-aware": { type: "boolean" },
        "gap-ms": { type: "string" },
        "serve-arg": { type: "string", multiple: true },
        binary: { type: "string" },
        "keep-data": { type: "boolean" },
        verbose: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    fail((error as Error).message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const number = (name: string, text: string | undefined, fallback: number, min: number, integer = true): number => {
    if (text === undefined) return fallback;
    const value = Number(text);
    if (text.trim() === "" || !Number.isFinite(value) || value < min || (integer && !Number.isInteger(value))) {
      fail(`--${name} must be ${integer ? "an integer" : "a number"} of at least ${min}, got "${text}"`);
    }
    return value;
  };
  const minutes = number("minutes", values.minutes, 1, 0.05, false);
  const servers = number("servers", values.servers, DEFAULT_OPTIONS.servers, 1);
  const clients = number("clients", values.clients, DEFAULT_OPTIONS.clients, 1);
  const thinkMs = number("think-ms", values["think-ms"], DEFAULT_OPTIONS.thinkMs, 0);
  let seed: number;
  try {
    seed = seedFrom(values.seed);
  } catch (error) {
    fail((error as Error).message);
  }
  const weights: Record<FaultKind, number> = { ...DEFAULT_WEIGHTS, total: values["allow-total"] ? DEFAULT_WEIGHTS.total : 0 };
  if (values.faults !== undefined) {
    const kinds = values.faults.split(",").map((kind) => kind.trim()).filter(Boolean);
    for (const kind of kinds) if (!(CHOSEN_KINDS as readonly string[]).includes(kind)) fail(`--faults takes ${CHOSEN_KINDS.join(", ")}, not "${kind}"`);
    for (const kind of CHOSEN_KINDS) if (!kinds.includes(kind)) weights[kind] = 0;
  }
  let gapMs = DEFAULT_OPTIONS.gapMs;
  if (values["gap-ms"] !== undefined) {
    const parts = values["gap-ms"].split(",").map(Number);
    if (parts.length !== 2 || !parts.every((n) => Number.isInteger(n) && n >= 10) || parts[0]! > parts[1]!) fail(`--gap-ms takes MIN,MAX in ms, got "${values["gap-ms"]}"`);
    gapMs = [parts[0]!, parts[1]!];
  }
  return {
    ...DEFAULT_OPTIONS,
    seed,
    durationMs: Math.round(minutes * 60_000),
    servers,
    clients,
    thinkMs,
    allowTotal: values["allow-total"] ?? false,
    allowSplit: values["allow-split"] ?? false,
    chainAware: values["chain-aware"] ?? false,
    weights,
    gapMs,
    serveArgs: values["serve-arg"] ?? [],
    command: values.binary ? [values.binary] : undefined,
    keepData: values["keep-data"] ?? false,
    verbose: values.verbose ?? false,
    secret: process.env.PSTORE_SECRET || undefined,
    log: (line) => process.stderr.write(`${line}\n`),
  };
}

/** The flags that give the same schedule again. */
function replayArgs(o: ChaosOptions): string[] {
  const args = ["--seed", String(o.seed), "--minutes", String(o.durationMs / 60_000), "--servers", String(o.servers), "--clients", String(o.clients)];
  const kinds = CHOSEN_KINDS.filter((kind) => o.weights[kind] > 0);
  if (kinds.length < CHOSEN_KINDS.length) args.push("--faults", kinds.join(","));
  if (o.thinkMs > 0) args.push("--think-ms", String(o.thinkMs));
  if (o.allowTotal) args.push("--allow-total");
  if (o.allowSplit) args.push("--allow-split");
  if (o.chainAware) args.push("--chain-aware");
  if (o.gapMs.join() !== DEFAULT_OPTIONS.gapMs.join()) args.push("--gap-ms", o.gapMs.join(","));
  for (const flag of o.serveArgs) args.push(`--serve-arg=${flag}`);
  return args;
}

const options = parse(process.argv.slice(2));
// Ctrl-C: the servers die with us (--die-with-parent); say which seed was running.
process.on("SIGINT", () => {
  process.stderr.write(`\nchaos: interrupted (seed ${options.seed})\n`);
  process.exit(130);
});
const report = await runChaos(options);
const errors = [...report.errors.entries()].sort((a, b) => b[1] - a[1]).map(([code, n]) => `${code} ${n}`).join(", ");
process.stderr.write(
  `  ${report.reconnects} client reconnects, ${report.accessErrors} accesses without a hold, ${report.cutConnections} connections cut; ` +
    `errors seen by clients: ${errors || "none"}; checks took ${report.checkMs} ms\n`,
);
if (report.skipped > 0) {
  const reasons = [...report.skipReasons.entries()].map(([why, n]) => `${n} (${why})`).join(", ");
  process.stderr.write(`  ${options.chainAware ? "chain-aware: " : ""}${report.skipped} planned faults skipped: ${reasons}\n`);
}
for (const violation of report.violations) process.stderr.write(`VIOLATION: ${violation}\n`);
if (report.keptAt) process.stderr.write(`data, server logs, history and schedule kept in ${report.keptAt}\n`);
if (report.violations.length > 0) {
  process.stderr.write(`replay the schedule: bun run chaos ${replayArgs(options).join(" ")}\n`);
}
process.stdout.write(`${summaryLine(report)}\n`);
process.exit(report.violations.length > 0 ? 1 : 0);
