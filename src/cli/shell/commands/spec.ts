/**
 * What every shell command is and what it may use: the context a command runs
 * in, its spec (usage, help, argument counts, how Ctrl-C stops it), and the
 * waits they share (connecting to the cluster, waiting for a hold).
 */
import type { Store } from "../../../client/types.ts";
import { PStoreError } from "../../../errors.ts";
import type { LocalCluster } from "../../cluster.ts";
import { UsageError } from "../../flags.ts";
import { quoteWord } from "../../format.ts";
import type { Progress } from "../../../bench/render.ts";
import type { Style } from "../../output.ts";
import { VALUE_TYPES } from "../values.ts";

export interface ShellContext {
  /** The store, connected on first use (so `help` works with no server). */
  store(): Promise<Store>;
  /** Set in `shell --local`: enables `kill` and `restart`. */
  cluster?: LocalCluster;
  /** A terminal: tables and multi-line help are fine. */
  multiline: boolean;
  style: Style;
  /** Data names seen last (`list`, `create`, `delete`), for tab completion. */
  names: Set<string>;
  /** Holds kept across commands (acquire-read, acquire-write), by datum name. */
  holds: Map<string, ShellHold>;
  /** Kept holds lost with the store's session (an outage, an expiry), by datum name, until taken again. */
  lostHolds: Map<string, ShellHold["mode"]>;
  /** Says that a command is waiting (on a terminal): for the cluster, for a hold, or running long. */
  notice?(text: string): void;
  /** A progress bar for long runs (bench), on a terminal only. */
  progress?: Progress;
}

export interface ShellHold {
  mode: "read" | "write";
  view: Uint8Array;
  /** The store's `stats().sessionsLost` when it was taken: a later session loss voids it. */
  sessionsLost: number;
}

/** What a command returns; runShellLine turns it into a ShellResult. */
export interface ShellOutput {
  text: string;
  value?: unknown;
  quit?: boolean;
  /** Clear the screen (on a terminal) instead of printing text. */
  clear?: boolean;
}

export interface CommandSpec {
  usage: string;
  summary: string;
  details: string[];
  examples: string[];
  args: [min: number, max: number];
  /** Argument positions holding a datum name (for completion). */
  nameArgs?: number[];
  /**
   * The command stops by itself, cleanly, when the signal aborts (its waits
   * are withdrawn). Any other command is only no longer waited for: Ctrl-C
   * gives the prompt back, and the request may still take effect.
   */
  cancellable?: boolean;
  /** What a slow run of a command that is not cancellable waits for; default: the cluster to answer. */
  waitsFor?: string;
  /** Changes nothing (a query): Ctrl-C just stops waiting, nothing can "still take effect". */
  readsOnly?: boolean;
  run(ctx: ShellContext, args: string[], signal: AbortSignal | undefined): Promise<ShellOutput>;
}

/** How long a command may wait before the shell says that it is waiting. */
export const WAIT_NOTICE_MS = 250;
/** How long any other command may take before the shell says it still waits (a failover takes about a second). */
export const SLOW_NOTICE_MS = 1000;

export const TYPES_LINE = `TYPE is one of ${VALUE_TYPES.join(" ")} (little-endian numbers; str is UTF-8, NUL-terminated when it fits; hex is raw bytes)`;

/** Runs a flag-style parser, turning its UsageError into the shell's EINVAL. */
export function usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof UsageError) throw new PStoreError("EINVAL", error.message);
    throw error;
  }
}

async function waiting<T>(ctx: ShellContext, what: string, wait: Promise<T>): Promise<T> {
  return noticeIfSlow(ctx, `waiting for ${what}… (Ctrl-C cancels)`, WAIT_NOTICE_MS, wait);
}

/**
 * Takes a hold, saying (on a terminal) what a slow one waits for: the hold,
 * once the servers say the access waits behind other holders, else the
 * cluster (no chain reachable, or no answer yet). Ctrl-C withdraws the wait
 * (the store cancels it on the servers before this rejects).
 */
export async function takeHold(ctx: ShellContext, store: Store, name: string, mode: "read" | "write", signal: AbortSignal | undefined): Promise<Uint8Array> {
  const what = mode === "write" ? `the write hold on ${quoteWord(name)}` : `a read hold on ${quoteWord(name)}`;
  const holdNotice = `waiting for ${what}… (Ctrl-C cancels)`;
  let queued = false;
  let saidCluster = false;
  const onQueued = () => {
    queued = true;
    // The cluster was said first: now it is a holder we wait for.
    if (saidCluster) ctx.notice?.(holdNotice);
  };
  const timer = setTimeout(() => {
    if (queued) return ctx.notice?.(holdNotice);
    saidCluster = true;
    const missingMs = store.stats().chainMissingMs;
    const cluster = missingMs === null ? "the cluster to answer" : `the cluster: no chain reachable for ${(missingMs / 1000).toFixed(1)} s`;
    ctx.notice?.(`waiting for ${cluster}… (Ctrl-C cancels)`);
  }, WAIT_NOTICE_MS);
  try {
    return await (mode === "write" ? store.accessReadWrite(name, { signal, onQueued }) : store.accessRead(name, { signal, onQueued }));
  } catch (error) {
    if (error instanceof PStoreError && error.code === "ECANCELED") {
      throw new PStoreError("ECANCELED", `stopped waiting for ${what}; no hold was taken`);
    }
    throw error;
  } finally {
    clearTimeout(timer);
  }
}

/** Notices shown by each shell, so the generic "still waiting" one is not said twice. */
const _noticeCounts = new WeakMap<ShellContext, number>();

/** Shows `text` if `work` is still running after `afterMs` (and, with `unlessNoticed`, no notice came since). */
export async function noticeIfSlow<T>(ctx: ShellContext, text: string, afterMs: number, work: Promise<T>, unlessNoticed = false): Promise<T> {
  if (!ctx.notice) return work;
  const before = _noticeCounts.get(ctx) ?? 0;
  const timer = setTimeout(() => {
    const count = _noticeCounts.get(ctx) ?? 0;
    if (unlessNoticed && count !== before) return;
    _noticeCounts.set(ctx, count + 1);
    ctx.notice?.(text);
  }, afterMs);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The connected store. Connecting waits for a serving chain (up to the
 * client's connect timeout): on a terminal that shows, and Ctrl-C stops it.
 */
export function connectedStore(ctx: ShellContext, signal: AbortSignal | undefined): Promise<Store> {
  return waiting(ctx, "the cluster to answer", untilAborted(ctx.store(), signal, "stopped waiting for the cluster"));
}

/**
 * `work`, or ECANCELED as soon as `signal` aborts (`work` goes on, its outcome
 * ignored). The rejection waits one turn of the event loop, so a wait inside
 * `work` that the same signal stops (connecting, a hold) says so first.
 */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, message: string): Promise<T> {
  if (!signal) return work;
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => setTimeout(() => reject(new PStoreError("ECANCELED", message)), 0);
    if (signal.aborted) onAbort();
    signal.addEventListener("abort", onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener("abort", onAbort);
        resolve(value);
      },
      (error) => {
        signal.removeEventListener("abort", onAbort);
        reject(error);
      },
    );
  });
}
