/**
 * Flag validation for the citty commands. citty accepts unknown flags without
 * a word and has no number type (../shared/BUN.md), so every command's raw
 * arguments go through `checkFlags` before citty parses them, and every value
 * that is not free text goes through one of the parsers below. A bad flag is a
 * `UsageError`: main.ts prints it with a pointer to `--help` and exits 2.
 *
 * Sizes (`--segment-size`, the shell's `create NAME SIZE`) are whole numbers of
 * bytes with an optional binary unit: `4096`, `4096B`, `4KiB`, `256MiB`,
 * `1GiB`, `1TiB`; the short forms `4K`, `256M`, `1G`, `1T` (any case) mean the
 * same binary units. `KB`/`MB`/`GB` are refused as ambiguous (1000 or 1024?).
 */
import { formatBytes } from "../core/names.ts";
import type { ArgsDef } from "citty";
import { PAGE_SIZE, SEGMENT_SIZE_DEFAULT, SEGMENT_SIZE_MAX, TIMER_MS_MAX } from "../constants.ts";

export const FSYNC_MODES = ["always", "batch", "off"] as const;
export type FsyncMode = (typeof FSYNC_MODES)[number];

/** A mistake in how a command was called (exit code 2). */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "UsageError";
  }
}

/** Flags every command understands without declaring them (main.ts handles them). */
const BUILTIN_FLAGS = new Set(["help", "h"]);

/**
 * Walks the raw arguments of one command and rejects what citty would silently
 * accept: unknown flags, a string flag with no value, an empty value, an enum
 * value out of its set, a value given to a boolean, and stray positionals.
 */
export function checkFlags(rawArgs: readonly string[], argsDef: ArgsDef, command: string): void {
  const flags = _flagTable(argsDef);
  const positionalsMax = Object.values(argsDef).filter((def) => def.type === "positional").length;
  const positionals: string[] = [];
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i]!;
    if (arg === "--") {
      positionals.push(...rawArgs.slice(i + 1));
      break;
    }
    if (!arg.startsWith("-") || arg === "-") {
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const written = eq === -1 ? arg : arg.slice(0, eq);
    const name = written.replace(/^--?/, "");
    if (BUILTIN_FLAGS.has(name)) continue;
    let flag = flags.get(name);
    let negated = false;
    if (!flag && name.startsWith("no-") && flags.get(name.slice(3))?.type === "boolean") {
      flag = flags.get(name.slice(3));
      negated = true;
    }
    if (!flag) {
      throw new UsageError(`unknown flag ${written} for "${command}"${_suggestion(name, flags)}`);
    }
    if (flag.type === "boolean") {
      if (eq !== -1) {
        const value = arg.slice(eq + 1);
        if (negated || (value !== "true" && value !== "false")) {
          throw new UsageError(`${written} is a switch and takes no value (got "${arg.slice(eq + 1)}")`);
        }
      }
      continue;
    }
    let value: string | undefined;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = rawArgs[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        throw new UsageError(`${written} needs a value${flag.valueHint ? ` (${flag.valueHint})` : ""}`);
      }
      value = next;
      i++;
    }
    if (value.trim() === "") throw new UsageError(`${written} needs a value, got an empty one`);
    if (flag.options && !flag.options.includes(value)) {
      throw new UsageError(`${written} must be one of ${flag.options.join(", ")} (got "${value}")`);
    }
  }
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional" || !def.required || def.default !== undefined) continue;
    const spellings = new Set([name, _kebab(name), _camel(name)]);
    const given = rawArgs.some((arg) => arg.startsWith("--") && spellings.has(arg.slice(2).split("=")[0]!));
    if (!given) throw new UsageError(`--${name} is required${def.valueHint ? ` (${def.valueHint})` : ""}`);
  }
  if (positionals.length > positionalsMax) {
    throw new UsageError(
      positionalsMax === 0
        ? `"${command}" takes no arguments, only flags (unexpected "${positionals[0]}")`
        : `too many arguments for "${command}" (unexpected "${positionals[positionalsMax]}")`,
    );
  }
}

interface _FlagInfo {
  type: string;
  options?: string[];
  valueHint?: string;
}

/** Every spelling citty accepts for a flag: its name, kebab and camel forms, aliases. */
function _flagTable(argsDef: ArgsDef): Map<string, _FlagInfo> {
  const table = new Map<string, _FlagInfo>();
  for (const [name, def] of Object.entries(argsDef)) {
    if (def.type === "positional") continue;
    const info: _FlagInfo = {
      type: def.type ?? "string",
      options: "options" in def ? def.options : undefined,
      valueHint: def.valueHint,
    };
    const aliases = "alias" in def && def.alias ? (Array.isArray(def.alias) ? def.alias : [def.alias]) : [];
    for (const spelling of [name, _kebab(name), _camel(name), ...aliases]) table.set(spelling, info);
  }
  return table;
}

function _kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}

function _camel(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

function _suggestion(name: string, flags: Map<string, _FlagInfo>): string {
  let best: string | undefined;
  let bestDistance = 3;
  for (const known of flags.keys()) {
    if (known.length < 2 || /[A-Z]/.test(known)) continue;
    const distance = editDistance(name, known);
    if (distance < bestDistance) {
      best = known;
      bestDistance = distance;
    }
  }
  return best ? ` (did you mean --${best}?)` : "";
}

/** Levenshtein distance, for "did you mean" hints (flags here, commands in the shell). */
export function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diagonal = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const above = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, diagonal + (a[i - 1] === b[j - 1] ? 0 : 1));
      diagonal = above;
    }
  }
  return row[b.length]!;
}

const _SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kib: 1024,
  m: 1024 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tib: 1024 ** 4,
};

export const SIZE_SYNTAX = "a whole number of bytes, optionally with a unit: 4096, 4KiB, 256MiB, 1GiB (K, M, G are the same binary units)";

/** Parses `256MiB`, `4KiB`, `4096`, `64k`; `what` names the flag or argument in errors. */
export function parseSize(text: string, what: string): number {
  const match = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!match) {
    throw new UsageError(`${what}: "${text}" is not a size; use ${SIZE_SYNTAX}`);
  }
  const unit = match[2]!.toLowerCase();
  if (unit === "kb" || unit === "mb" || unit === "gb" || unit === "tb") {
    const binary = `${unit[0]!.toUpperCase()}iB`;
    throw new UsageError(`${what}: "${text}" is ambiguous (1000 or 1024?); write ${match[1]}${binary}`);
  }
  const multiplier = _SIZE_UNITS[unit];
  if (multiplier === undefined) {
    throw new UsageError(`${what}: unknown unit "${match[2]}" in "${text}"; use B, KiB, MiB, GiB or TiB`);
  }
  const bytes = Number(match[1]) * multiplier;
  if (!Number.isSafeInteger(bytes)) throw new UsageError(`${what}: "${text}" is too large`);
  return bytes;
}

/** A segment size: whole pages, at least one, at most SEGMENT_SIZE_MAX. */
export function parseSegmentSize(text: string, what = "--segment-size"): number {
  const bytes = parseSize(text, what);
  if (bytes < PAGE_SIZE || bytes % PAGE_SIZE !== 0) {
    throw new UsageError(`${what}: ${text} is not a whole number of ${PAGE_SIZE}-byte pages (e.g. 256MiB)`);
  }
  if (bytes > SEGMENT_SIZE_MAX) {
    throw new UsageError(`${what}: ${text} is over the limit of ${formatBytes(SEGMENT_SIZE_MAX)}`);
  }
  return bytes;
}

/** Parses a duration in milliseconds: a positive whole number (`10000`). */
export function parseDurationMs(text: string, what: string): number {
  if (!/^\s*\d+\s*$/.test(text)) {
    throw new UsageError(`${what}: "${text}" is not a whole number of milliseconds (e.g. 1000)`);
  }
  const ms = Number(text);
  if (ms <= 0) throw new UsageError(`${what}: must be at least 1 ms (got ${text})`);
  if (ms > TIMER_MS_MAX) throw new UsageError(`${what}: ${text} ms is over the limit of ${TIMER_MS_MAX} ms`);
  return ms;
}

/** Parses a positive whole count (`--servers 3`) with an upper bound. */
export function parseCount(text: string, what: string, max: number): number {
  if (!/^\s*\d+\s*$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(`${what}: "${text}" is not a whole number from 1 to ${max}`);
  }
  return Number(text);
}

export interface HostPort {
  host: string;
  port: number;
}

/** Parses `host:port` (`[::1]:7401` for IPv6). Port 0 only with `allowPortZero`. */
export function parseHostPort(text: string, what: string, options: { allowPortZero?: boolean } = {}): HostPort {
  const trimmed = text.trim();
  const match = /^\[([^\]]+)\]:(\d+)$/.exec(trimmed) ?? /^([^:\s]+):(\d+)$/.exec(trimmed);
  if (!match) {
    throw new UsageError(`${what}: "${text}" is not host:port (e.g. 127.0.0.1:7401)`);
  }
  const port = Number(match[2]);
  const portMin = options.allowPortZero ? 0 : 1;
  if (port < portMin || port > 65535) {
    throw new UsageError(`${what}: port ${match[2]} in "${text}" is not from ${portMin} to 65535`);
  }
  return { host: match[1]!, port };
}

/** Formats a HostPort back to its canonical `host:port` text. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Splits a comma list, rejecting empty items (`a,,b`, a trailing comma). */
export function parseList(text: string, what: string): string[] {
  const items = text.split(",").map((item) => item.trim());
  if (items.some((item) => item === "")) {
    throw new UsageError(`${what}: "${text}" has an empty item; write a,b,c with no empty entries`);
  }
  return items;
}

/** Parses `host:port,host:port`: canonical addresses, no duplicates. */
export function parseAddressList(text: string, what: string): string[] {
  const addresses = parseList(text, what).map((item) => formatHostPort(parseHostPort(item, what)));
  const seen = new Set<string>();
  for (const address of addresses) {
    if (seen.has(address)) throw new UsageError(`${what}: ${address} is listed twice`);
    seen.add(address);
  }
  return addresses;
}

/** A string flag's value, refusing an empty one (citty turns `--x` with no value into ""). */
export function requireNonEmpty(value: string | undefined, what: string): string {
  if (value === undefined || value.trim() === "") throw new UsageError(`${what} needs a value`);
  return value;
}

// 268435456 -> "256 MiB" (the core's messages use it too).
export { formatBytes };

/** The default --segment-size as the flag is written (256MiB). */
export const SEGMENT_SIZE_FLAG_DEFAULT = formatBytes(SEGMENT_SIZE_DEFAULT).replace(" ", "");
