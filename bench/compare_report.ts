/**
 * What bench/compare.ts reports: the goals of issues 12 and 13 (each a per-round value and a
 * target), the console summary, and docs/benchmarks.md (whose hand-written notes it keeps).
 */
import { existsSync, readFileSync } from "node:fs";
import { cpus, loadavg, release, totalmem } from "node:os";
import { join, resolve } from "node:path";
import { type LatencySummary, median, type ServerRss } from "../src/bench/index.ts";
import type { Cell, Env, Measured, Options } from "./compare.ts";

export const DOC = join(resolve(import.meta.dir, ".."), "docs/benchmarks.md");
const NOTES_BEGIN = "<!-- notes:begin -->";
const NOTES_END = "<!-- notes:end -->";
export const LARGE_DATUM_BYTES = 64 * 1024 * 1024;
/** When the memory check reads the servers' RSS at rest (after the writes). */
export const MEMORY_REST_MS = 2500;

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

export function fmt(value: number | null | undefined, digits = 0): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return "-";
  if (digits > 0) return value.toFixed(digits);
  if (Math.abs(value) < 10 && value !== Math.round(value)) return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}

/** Redis and etcd from PATH, or installed with apt-get; what is still missing is returned. */
// ---- the report ----

export interface Report {
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

export interface MemoryReport {
  segment: number;
  idle: ServerRss[];
  loaded: ServerRss[];
  /** MEMORY_REST_MS after the writes: a server gives back the large-frame buffer it kept once idle. */
  rest: ServerRss[];
  dataBytes: number;
}

export function machineInfo(): Record<string, string> {
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

export function consoleReport(report: Report): string {
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

export function markdown(report: Report, notes: string): string {
  const { machine, options } = report;
  const rows = goalRows(report);
  const out: string[] = [];
  out.push("# Benchmarks");
  out.push("");
  out.push(
    `Generated by \`npm run bench:compare${options.quick ? " -- --quick" : ""}\` (bench/compare.ts) on ${report.startedAt.toISOString().slice(0, 16).replace("T", " ")} UTC,`,
    `${options.rounds} round${options.rounds > 1 ? "s" : ""}, ${report.seconds.toFixed(0)} s. Each round runs every measurement once, pstore next to its peer`,
    `(which one first alternates by round)${options.warmUp ? ", after a warm-up that ran every measurement but failover once, uncounted" : ""}; the numbers are medians over the rounds, and each goal's`,
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

export function shellLine(command: string[]): string {
  return command.map((arg) => (arg === "" ? '""' : /[\s"']/.test(arg) ? `"${arg}"` : arg)).join(" ").replace(/--dir \S+/, "--dir <dir>").replace(/--data-dir \S+/, "--data-dir <dir>");
}

export function previousNotes(): string {
  if (!existsSync(DOC)) return "(Hand-written notes between the markers are kept when the file is regenerated.)";
  const text = readFileSync(DOC, "utf8");
  const begin = text.indexOf(NOTES_BEGIN);
  const end = text.indexOf(NOTES_END);
  if (begin === -1 || end === -1 || end < begin) return "";
  return text.slice(begin + NOTES_BEGIN.length, end);
}

export function describe(m: Measured | Error): string {
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
