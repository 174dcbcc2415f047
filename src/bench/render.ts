/**
 * What `pstore bench` shows people: a one-line progress bar on stderr (only
 * on a terminal) and the results table (latencies in µs, right-aligned).
 */
import { formatBytes } from "../cli/flags.ts";
import { type Style, stripAnsi } from "../cli/output.ts";
import type { ServerRss } from "./rss.ts";
import type { BenchResult } from "./workloads.ts";

export interface Progress {
  update(label: string, fraction: number, opsDone: number): void;
  /** Erases the bar (before printing anything else on the terminal). */
  clear(): void;
}

const BAR_WIDTH = 30;

/** A progress bar redrawn in place on `stream`; does nothing when `stream` is not a terminal. */
export function createProgress(stream: NodeJS.WriteStream): Progress {
  if (!stream.isTTY) return { update() {}, clear() {} };
  let shown = false;
  return {
    update(label, fraction, opsDone) {
      const filled = Math.round(Math.min(1, Math.max(0, fraction)) * BAR_WIDTH);
      const bar = `${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}`;
      const line = `${bar} ${String(Math.floor(fraction * 100)).padStart(3)}%  ${label}  ${opsDone} ops`;
      const columns = stream.columns && stream.columns > 0 ? stream.columns : 80;
      stream.write(`\r\u001B[2K${line.slice(0, Math.max(10, columns - 1))}`);
      shown = true;
    },
    clear() {
      if (shown) stream.write("\r\u001B[2K");
      shown = false;
    },
  };
}

const HEADER = ["WORKLOAD", "CLIENTS", "SIZE", "OPS", "SECONDS", "OPS/S", "P50 µs", "P90 µs", "P99 µs", "MAX µs", "NOTES"];
/** Columns aligned right (numbers). */
const NUMERIC = new Set([1, 3, 4, 5, 6, 7, 8, 9]);

export function formatResultsTable(results: BenchResult[], style: Style): string {
  const rows = results.map((result) => [
    result.workload,
    String(result.clients),
    _size(result.size),
    String(result.ops),
    result.seconds.toFixed(2),
    _number(result.ops_per_s),
    _number(result.latency_us.p50),
    _number(result.latency_us.p90),
    _number(result.latency_us.p99),
    _number(result.latency_us.max),
    notesOf(result, style),
  ]);
  const widths = HEADER.map((cell, column) => Math.max(cell.length, ...rows.map((row) => stripAnsi(row[column]!).length)));
  const line = (cells: string[]) =>
    cells
      .map((cell, column) => {
        const pad = " ".repeat(widths[column]! - stripAnsi(cell).length);
        if (column === cells.length - 1) return cell;
        return NUMERIC.has(column) ? pad + cell : cell + pad;
      })
      .join("  ")
      .trimEnd();
  return [style.bold(line(HEADER)), ...rows.map(line)].join("\n");
}

/** The workload-specific facts of one result, in a few words. */
export function notesOf(result: BenchResult, style: Style): string {
  switch (result.workload) {
    case "contended":
      return result.counter_ok
        ? style.green(`counter ${result.counter} = ${result.acknowledged} acknowledged (warm-up included)`)
        : style.red(`LOST UPDATES: counter ${result.counter} != ${result.acknowledged} acknowledged (warm-up included)`);
    case "large": {
      const change = (result.release_1byte_us as { p50: number }).p50;
      const small = (result.release_4k_us as { p50: number }).p50;
      return `rewrite ${_number(result.rewrite_mb_per_s as number)} MB/s; release of a 1-byte change ${_number(change)} µs vs 4 KiB ${_number(small)} µs (x${result.release_ratio})`;
    }
    case "failover":
      return result.gap_ms === null
        ? style.red(`kill -9 ${result.victim}: no write acknowledged after it`)
        : `kill -9 ${result.victim}: writes paused ${_number(result.gap_ms as number)} ms`;
    default:
      return "";
  }
}

/** `server 1: 45.2 MiB, server 2: 44.9 MiB (data 64 MiB)` */
export function formatRss(rss: ServerRss[], dataBytes: number | null): string {
  const servers = rss.map((entry) => `server ${entry.server}: ${(entry.rss_kib / 1024).toFixed(1)} MiB`).join(", ");
  return dataBytes === null ? servers : `${servers} (data ${_mib(dataBytes)})`;
}

/** 65540 KiB -> "64.0 MiB"; small sizes exactly. */
function _mib(bytes: number): string {
  return bytes < 1024 * 1024 ? _size(bytes) : `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

function _size(bytes: number): string {
  return formatBytes(bytes).replace(" ", "");
}

/** 12345.6 -> "12,346"; below 100 keeps one decimal. */
function _number(value: number): string {
  if (!Number.isFinite(value)) return "-";
  if (Math.abs(value) < 100) return value.toFixed(1);
  return Math.round(value).toLocaleString("en-US");
}
