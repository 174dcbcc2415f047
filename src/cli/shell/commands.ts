/**
 * The shell's commands: one line in, one result out. Knows nothing of
 * readline or terminals (repl.ts does), so tests drive it with any `Store`.
 *
 * Every command produces exactly one result: `ok`, a value, or
 * `error CODE: what went wrong`. With `multiline` (a terminal) `list`,
 * `status` and `help` may print tables; otherwise every result is one line.
 */
import { constants } from "node:os";
import type { ClusterStatus, DatumInfo, Store } from "../../client/types.ts";
import { PStoreError } from "../../errors.ts";
import type { LocalCluster } from "../cluster.ts";
import { editDistance, formatBytes, parseSize, SIZE_SYNTAX, UsageError } from "../flags.ts";
import { formatDatumLine, formatDatumTable, formatStatusLine, formatStatusTable, quoteWord } from "../format.ts";
import type { Style } from "../output.ts";
import { tokenize } from "./tokenize.ts";
import { encodeValue, parseByteCount, parseValueType, READ_BYTES_MAX, readValue, VALUE_TYPES, writeValue } from "./values.ts";

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
  /** Says that a command is waiting (on a terminal): for the cluster, for a hold, or running long. */
  notice?(text: string): void;
}

export interface ShellHold {
  mode: "read" | "write";
  view: Uint8Array;
}

export interface ShellResult {
  ok: boolean;
  /** The line(s) to print; "" for quit. */
  text: string;
  /** The same result for `--json`: `{ ok, value }` or `{ ok: false, code, error }`. */
  json: Record<string, unknown>;
  quit?: boolean;
}

interface _Output {
  text: string;
  value?: unknown;
  quit?: boolean;
}

interface _CommandSpec {
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
  run(ctx: ShellContext, args: string[], signal: AbortSignal | undefined): Promise<_Output>;
}

/** How long a command may wait before the shell says that it is waiting. */
const _WAIT_NOTICE_MS = 250;
/** How long any other command may take before the shell says it still waits (a failover takes about a second). */
const _SLOW_NOTICE_MS = 1000;

const _TYPES_LINE = `TYPE is one of ${VALUE_TYPES.join(" ")} (little-endian numbers; str is UTF-8, NUL-terminated when it fits; hex is raw bytes)`;

export const SHELL_COMMANDS: Record<string, _CommandSpec> = {
  create: {
    usage: "create NAME SIZE",
    summary: "Create a datum of SIZE bytes (4, 4096, 64KiB, 1MiB)",
    details: ["The datum starts zeroed and covers whole 4 KiB pages.", `SIZE is ${SIZE_SYNTAX}.`],
    examples: ["create compteur 4", "create buffer 64KiB"],
    args: [2, 2],
    async run(ctx, [name, sizeText], signal) {
      const size = _usage(() => parseSize(sizeText!, "SIZE"));
      await (await _store(ctx, signal)).create(name!, size);
      ctx.names.add(name!);
      return { text: "ok" };
    },
  },
  write: {
    usage: "write NAME TYPE VALUE [OFFSET]",
    summary: "Take the write hold, write VALUE at OFFSET (default 0), release",
    details: [
      _TYPES_LINE,
      "Waits while anyone else holds NAME; Ctrl-C cancels the wait and leaves no hold.",
      "A value out of its type's range, or that does not fit in the datum, is an error: nothing is written.",
    ],
    examples: ["write compteur i32 1035", 'write msg str "hello world"', "write buffer hex 0xdeadbeef 16"],
    args: [3, 4],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name, typeText, valueText, offsetText], signal) {
      const type = parseValueType(typeText!);
      const bytes = encodeValue(type, valueText!);
      const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
      _notHeld(ctx, name!, "set");
      const store = await _store(ctx, signal);
      const view = await _waitForHold(ctx, `the write hold on ${quoteWord(name!)}`, store.accessReadWrite(name!, { signal }));
      try {
        writeValue(view, name!, type, bytes, offset);
      } finally {
        await store.releaseReadWrite(view);
      }
      return { text: "ok" };
    },
  },
  read: {
    usage: "read NAME TYPE [OFFSET] [LENGTH]",
    summary: "Take a read hold, print the value at OFFSET (default 0), release",
    details: [
      _TYPES_LINE,
      `LENGTH (str and hex only) reads that many bytes; without it str stops at the first NUL, hex reads to the end (at most ${READ_BYTES_MAX} bytes).`,
      "Waits while a writer holds NAME; Ctrl-C cancels the wait.",
    ],
    examples: ["read compteur i32", "read msg str", "read buffer hex 16 4"],
    args: [2, 4],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name, typeText, offsetText, lengthText], signal) {
      const type = parseValueType(typeText!);
      const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
      const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
      _notHeld(ctx, name!, "get");
      const store = await _store(ctx, signal);
      const view = await _waitForHold(ctx, `a read hold on ${quoteWord(name!)}`, store.accessRead(name!, { signal }));
      let result: ReturnType<typeof readValue>;
      try {
        result = readValue(view, name!, type, offset, length);
      } finally {
        await store.releaseRead(view);
      }
      return { text: result.text, value: result.json };
    },
  },
  "acquire-read": {
    usage: "acquire-read NAME",
    summary: "Take a read hold on NAME and keep it (get reads under it, release drops it)",
    details: ["Waits while a writer holds NAME; Ctrl-C cancels the wait. The prompt shows the holds kept."],
    examples: ["acquire-read compteur", "get compteur i32", "release compteur"],
    args: [1, 1],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name], signal) {
      return _acquire(ctx, name!, "read", signal);
    },
  },
  "acquire-write": {
    usage: "acquire-write NAME",
    summary: "Take the write hold on NAME and keep it (set writes under it, release ships the changes)",
    details: [
      "Waits while anyone else holds NAME; Ctrl-C cancels the wait.",
      "quit with a write hold kept discards its changes, as a client that closes without releasing.",
    ],
    examples: ["acquire-write compteur", "set compteur i32 1035", "release compteur"],
    args: [1, 1],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name], signal) {
      return _acquire(ctx, name!, "write", signal);
    },
  },
  get: {
    usage: "get NAME TYPE [OFFSET] [LENGTH]",
    summary: "Print a value of a datum this shell holds (acquire-read or acquire-write first)",
    details: [_TYPES_LINE],
    examples: ["get compteur i32", "get msg str 0 5"],
    args: [2, 4],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name, typeText, offsetText, lengthText]) {
      const type = parseValueType(typeText!);
      const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
      const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
      const hold = _held(ctx, name!, "get");
      const result = readValue(hold.view, name!, type, offset, length);
      return { text: result.text, value: result.json };
    },
  },
  set: {
    usage: "set NAME TYPE VALUE [OFFSET]",
    summary: "Write a value into a datum this shell holds for writing (acquire-write first)",
    details: [_TYPES_LINE, "Other clients see it once release ships it."],
    examples: ["set compteur i32 1035", 'set msg str "hello"'],
    args: [3, 4],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name, typeText, valueText, offsetText]) {
      const type = parseValueType(typeText!);
      const bytes = encodeValue(type, valueText!);
      const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
      const hold = _held(ctx, name!, "set");
      if (hold.mode !== "write") {
        throw new PStoreError("EINVAL", `this shell holds ${quoteWord(name!)} for reading only; release it and acquire-write`);
      }
      writeValue(hold.view, name!, type, bytes, offset);
      return { text: "ok" };
    },
  },
  release: {
    usage: "release NAME",
    summary: "Drop a hold taken with acquire-read or acquire-write (a write hold ships its changes first)",
    details: [],
    examples: ["release compteur"],
    args: [1, 1],
    nameArgs: [0],
    async run(ctx, [name]) {
      const hold = _held(ctx, name!, "release");
      const store = await ctx.store();
      ctx.holds.delete(name!);
      if (hold.mode === "write") await store.releaseReadWrite(hold.view);
      else await store.releaseRead(hold.view);
      return { text: "ok" };
    },
  },
  dump: {
    usage: "dump NAME [OFFSET] [LENGTH]",
    summary: "Show a datum's bytes in hex (on a terminal: 16 a line with their offsets and text)",
    details: [`At most ${READ_BYTES_MAX} bytes; uses the shell's hold if it has one, else takes a read hold.`],
    examples: ["dump compteur", "dump buffer 4096 64"],
    args: [1, 3],
    cancellable: true,
    nameArgs: [0],
    async run(ctx, [name, offsetText, lengthText], signal) {
      const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
      const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
      const dump = (view: Uint8Array): _Output => {
        const { text, json } = readValue(view, name!, "hex", offset, length);
        const bytes = view.subarray(offset, offset + String(json).length / 2);
        return { text: ctx.multiline ? _hexDump(bytes, offset) : text, value: json };
      };
      const hold = ctx.holds.get(name!);
      if (hold) return dump(hold.view);
      const store = await _store(ctx, signal);
      const view = await _waitForHold(ctx, `a read hold on ${quoteWord(name!)}`, store.accessRead(name!, { signal }));
      try {
        return dump(view);
      } finally {
        await store.releaseRead(view);
      }
    },
  },
  list: {
    usage: "list",
    summary: "List the data (one line: their names; on a terminal: a table)",
    details: ["Use stat NAME for the details of one datum."],
    examples: ["list"],
    args: [0, 0],
    async run(ctx, _args, signal) {
      const data = await (await _store(ctx, signal)).list();
      ctx.names.clear();
      for (const info of data) ctx.names.add(info.name);
      return { text: _listText(data, ctx), value: data };
    },
  },
  stat: {
    usage: "stat NAME",
    summary: "Show a datum's size, offset, version and holds",
    details: [],
    examples: ["stat compteur"],
    args: [1, 1],
    nameArgs: [0],
    async run(ctx, [name], signal) {
      const info = await (await _store(ctx, signal)).stat(name!);
      return { text: formatDatumLine(info), value: info };
    },
  },
  delete: {
    usage: "delete NAME",
    summary: "Delete a datum and free its pages",
    details: [],
    examples: ["delete compteur"],
    args: [1, 1],
    nameArgs: [0],
    async run(ctx, [name], signal) {
      await (await _store(ctx, signal)).delete(name!);
      ctx.names.delete(name!);
      return { text: "ok" };
    },
  },
  status: {
    usage: "status",
    summary: "Show the chain of servers: epoch, head to tail, lag",
    details: [],
    examples: ["status"],
    args: [0, 0],
    async run(ctx, _args, signal) {
      const status: ClusterStatus = await (await _store(ctx, signal)).status();
      return { text: ctx.multiline ? formatStatusTable(status, ctx.style) : formatStatusLine(status), value: status };
    },
  },
  checkpoint: {
    usage: "checkpoint",
    summary: "Write a checkpoint on every server at one sequence number (a recovery line), print it",
    details: ["The same as pstore checkpoint. pstore checkpoint --list shows them; pstore restore rolls back to one."],
    examples: ["checkpoint"],
    args: [0, 0],
    async run(ctx, _args, signal) {
      const { seq } = await (await _store(ctx, signal)).checkpoint();
      return { text: `checkpoint at seq ${seq} on every server of the chain`, value: { seq } };
    },
  },
  bench: {
    usage: "bench [CYCLES] [SIZE]",
    summary: "Time CYCLES write cycles on a temporary datum of SIZE bytes (default 1000 of 4KiB)",
    details: [
      "A cycle is acquire-write, rewrite every byte, release (which ships every page to every server).",
      "It prints the median and 99th percentile latency of a cycle and the cycles per second.",
      "The datum (bench-…) is deleted afterwards. Ctrl-C stops early and prints what was measured.",
      "More workloads, clients and a JSON report: pstore bench --help.",
    ],
    examples: ["bench", "bench 200 64KiB"],
    args: [0, 2],
    cancellable: true,
    async run(ctx, [cyclesText, sizeText], signal) {
      const cycles = cyclesText === undefined ? _BENCH_CYCLES_DEFAULT : _benchCycles(cyclesText);
      const size = sizeText === undefined ? _BENCH_SIZE_DEFAULT : _usage(() => parseSize(sizeText, "SIZE"));
      return _bench(ctx, await _store(ctx, signal), cycles, size, signal);
    },
  },
  kill: {
    usage: "kill SERVER [SIGNAL]",
    summary: "Stop server SERVER of the local cluster (SIGKILL by default) to test a failure; shell --local only",
    details: [
      "SERVER is 1 for the local cluster's first port (7401 by default), 2 for the next, 3 for the last;",
      "status shows which one is head and which is tail. SIGNAL: SIGKILL (a crash), SIGTERM (a clean stop),",
      "or SIGSTOP to pause the server (it looks dead to the others) and SIGCONT to resume it.",
      "The clients go on once the chain is rebuilt without it (about a second); restart SERVER brings it back.",
    ],
    examples: ["kill 1", "kill 2 SIGTERM", "kill 3 SIGSTOP", "kill 3 SIGCONT"],
    args: [1, 2],
    waitsFor: "the server to exit",
    async run(ctx, [serverText, signalText]) {
      const cluster = _cluster(ctx, "kill");
      const index = _serverIndex(serverText!, cluster);
      const label = `server ${index + 1} (${cluster.servers[index]})`;
      const signal = (signalText ?? "SIGKILL").toUpperCase().replace(/^(?!SIG)/, "SIG");
      if (!/^SIG[A-Z0-9]+$/.test(signal) || !(signal in constants.signals)) {
        throw new PStoreError("EINVAL", `unknown signal "${signalText}" (e.g. SIGKILL, SIGTERM, SIGSTOP, SIGCONT)`);
      }
      const pid = cluster.pids[index];
      if (pid === null || pid === undefined) {
        throw new PStoreError("EINVAL", `${label} is not running; restart ${index + 1} starts it again`);
      }
      if (signal === "SIGSTOP" || signal === "SIGCONT") {
        // Pause or resume: the process stays, so there is no exit to wait for.
        process.kill(pid, signal);
        return { text: signal === "SIGSTOP" ? `${label} paused (kill ${index + 1} SIGCONT resumes it)` : `${label} resumed` };
      }
      await cluster.kill(index, signal as NodeJS.Signals);
      return { text: `${label} stopped by ${signal}` };
    },
  },
  restart: {
    usage: "restart SERVER",
    summary: "Start server SERVER of the local cluster again (stopping it first if it runs); shell --local only",
    details: ["The server recovers from its data directory and rejoins the chain at its tail."],
    examples: ["restart 1"],
    args: [1, 1],
    waitsFor: "the server to start",
    async run(ctx, [serverText]) {
      const cluster = _cluster(ctx, "restart");
      const index = _serverIndex(serverText!, cluster);
      _resume(cluster, index); // a paused server could not even take the SIGTERM
      try {
        await cluster.restart(index);
      } catch (error) {
        throw new PStoreError("EUNAVAILABLE", `could not restart: ${(error as Error).message}`);
      }
      return { text: `server ${index + 1} (${cluster.servers[index]}) restarted, pid ${cluster.pids[index]}` };
    },
  },
  help: {
    usage: "help [COMMAND]",
    summary: "List the commands, or explain one",
    details: [],
    examples: ["help", "help write"],
    args: [0, 1],
    cancellable: true,
    async run(ctx, [command]) {
      return { text: command === undefined ? _helpAll(ctx) : _helpOne(command, ctx) };
    },
  },
  quit: {
    usage: "quit",
    summary: "Leave the shell (also: exit, Ctrl-D); kept holds are dropped, unreleased writes discarded",
    details: [],
    examples: ["quit"],
    args: [0, 0],
    cancellable: true,
    async run() {
      return { text: "", quit: true };
    },
  },
};

const _ALIASES: Record<string, string> = { exit: "quit", ls: "list", rm: "delete", "?": "help" };

/** Runs one line. Returns null for a blank line or a comment (nothing to print). */
export async function runShellLine(ctx: ShellContext, line: string, signal?: AbortSignal): Promise<ShellResult | null> {
  let command = "";
  try {
    const words = tokenize(line);
    if (words.length === 0) return null;
    command = _ALIASES[words[0]!] ?? words[0]!;
    const spec = SHELL_COMMANDS[command];
    if (!spec) throw new PStoreError("EINVAL", `unknown command "${words[0]}"${_suggestCommand(words[0]!)} (help lists the commands)`);
    const args = words.slice(1);
    _checkArgCount(command, spec, args);
    const running = spec.run(ctx, args, signal);
    const output = await (spec.cancellable
      ? running
      : _noticeIfSlow(
          ctx,
          `waiting for ${spec.waitsFor ?? "the cluster to answer"}… (Ctrl-C stops waiting)`,
          _SLOW_NOTICE_MS,
          _untilAborted(running, signal, "stopped waiting for the answer (the command may still take effect)"),
          true,
        ));
    return {
      ok: true,
      text: output.text,
      json: { ok: true, command, ...(output.value === undefined ? {} : { value: output.value }) },
      quit: output.quit,
    };
  } catch (error) {
    const { code, message } = describeError(error);
    const text = `error ${code ?? "ERROR"}: ${message}`;
    return { ok: false, text: ctx.style.red(text), json: { ok: false, ...(command ? { command } : {}), code: code ?? "ERROR", error: message } };
  }
}

/**
 * The code and the message without its `CODE: ` prefix, for any thrown value,
 * on one line (a result is one line: a server's multi-line log becomes `a | b`).
 */
export function describeError(error: unknown): { code?: string; message: string } {
  const oneLine = (text: string) => text.trim().replace(/\s*\n\s*/g, " | ");
  if (error instanceof UsageError || error instanceof RangeError) return { code: "EINVAL", message: oneLine(error.message) };
  if (error instanceof Error) {
    const code = (error as { code?: unknown }).code;
    if (typeof code === "string" && /^E[A-Z]+$/.test(code)) {
      const prefix = `${code}: `;
      return { code, message: oneLine(error.message.startsWith(prefix) ? error.message.slice(prefix.length) : error.message) };
    }
    return { message: oneLine(error.message) };
  }
  return { message: oneLine(String(error)) };
}

/** `missing TYPE VALUE; usage: write NAME TYPE VALUE [OFFSET]`, or too many words. */
function _checkArgCount(command: string, spec: _CommandSpec, args: string[]): void {
  const [min, max] = spec.args;
  if (args.length >= min && args.length <= max) return;
  if (max === 0) throw new PStoreError("EINVAL", `${command} takes no arguments (got "${args[0]}")`);
  if (args.length > max) {
    throw new PStoreError("EINVAL", `too many arguments (from "${args[max]}"); usage: ${spec.usage}`);
  }
  const required = spec.usage.split(" ").slice(1).filter((word) => !word.startsWith("["));
  throw new PStoreError("EINVAL", `missing ${required.slice(args.length).join(" ")}; usage: ${spec.usage}`);
}

/** ` (did you mean create?)` for a near miss of a command name, else "". */
function _suggestCommand(word: string): string {
  let best: string | undefined;
  let bestDistance = word.length > 3 ? 3 : 2;
  for (const name of [...Object.keys(SHELL_COMMANDS), ...Object.keys(_ALIASES)]) {
    const distance = editDistance(word.toLowerCase(), name);
    if (distance < bestDistance) {
      best = _ALIASES[name] ?? name;
      bestDistance = distance;
    }
  }
  return best ? ` (did you mean ${best}?)` : "";
}


/** Candidates for tab completion: command names, then data names, then types. */
export function completeLine(line: string, names: Iterable<string>): [string[], string] {
  const words = line.split(/\s+/);
  const fragment = words[words.length - 1]!;
  const position = words.length - 1;
  let candidates: string[] = [];
  if (position === 0) {
    candidates = [...Object.keys(SHELL_COMMANDS), ...Object.keys(_ALIASES).filter((alias) => alias !== "?")];
  } else {
    const command = _ALIASES[words[0]!] ?? words[0]!;
    const spec = SHELL_COMMANDS[command];
    if (command === "help" && position === 1) candidates = Object.keys(SHELL_COMMANDS);
    else if (spec?.nameArgs?.includes(position - 1)) candidates = [...names].map(quoteWord);
    else if (["write", "read", "get", "set"].includes(command) && position === 2) candidates = [...VALUE_TYPES];
  }
  const hits = candidates.filter((candidate) => candidate.startsWith(fragment)).sort();
  return [hits, fragment];
}

function _usage<T>(parse: () => T): T {
  try {
    return parse();
  } catch (error) {
    if (error instanceof UsageError) throw new PStoreError("EINVAL", error.message);
    throw error;
  }
}

async function _waiting<T>(ctx: ShellContext, what: string, wait: Promise<T>): Promise<T> {
  return _noticeIfSlow(ctx, `waiting for ${what}… (Ctrl-C cancels)`, _WAIT_NOTICE_MS, wait);
}

/** A wait for a hold; Ctrl-C withdraws it (the store cancels it on the servers before this rejects). */
async function _waitForHold<T>(ctx: ShellContext, what: string, wait: Promise<T>): Promise<T> {
  try {
    return await _waiting(ctx, what, wait);
  } catch (error) {
    if (error instanceof PStoreError && error.code === "ECANCELED") {
      throw new PStoreError("ECANCELED", `stopped waiting for ${what}; no hold was taken`);
    }
    throw error;
  }
}

/** Notices shown by each shell, so the generic "still waiting" one is not said twice. */
const _noticeCounts = new WeakMap<ShellContext, number>();

/** Shows `text` if `work` is still running after `afterMs` (and, with `unlessNoticed`, no notice came since). */
async function _noticeIfSlow<T>(ctx: ShellContext, text: string, afterMs: number, work: Promise<T>, unlessNoticed = false): Promise<T> {
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
function _store(ctx: ShellContext, signal: AbortSignal | undefined): Promise<Store> {
  return _waiting(ctx, "the cluster to answer", _untilAborted(ctx.store(), signal, "stopped waiting for the cluster"));
}

/**
 * `work`, or ECANCELED as soon as `signal` aborts (`work` goes on, its outcome
 * ignored). The rejection waits one turn of the event loop, so a wait inside
 * `work` that the same signal stops (connecting, a hold) says so first.
 */
function _untilAborted<T>(work: Promise<T>, signal: AbortSignal | undefined, message: string): Promise<T> {
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

const _BENCH_CYCLES_DEFAULT = 1000;
const _BENCH_CYCLES_MAX = 1_000_000;
const _BENCH_SIZE_DEFAULT = 4096;

function _benchCycles(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > _BENCH_CYCLES_MAX) {
    throw new PStoreError("EINVAL", `CYCLES must be a whole number from 1 to ${_BENCH_CYCLES_MAX}, got "${text}"`);
  }
  return Number(text);
}

/** Write cycles on a datum of its own, deleted afterwards; stops early (keeping what it measured) on abort. */
async function _bench(ctx: ShellContext, store: Store, cycles: number, size: number, signal: AbortSignal | undefined): Promise<_Output> {
  const name = `bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  await store.create(name, size);
  const latenciesMs: number[] = [];
  const startMs = performance.now();
  const notice = setTimeout(() => ctx.notice?.(`running ${cycles} cycles… (Ctrl-C stops)`), _WAIT_NOTICE_MS);
  try {
    for (let i = 0; i < cycles && !signal?.aborted; i++) {
      const cycleStartMs = performance.now();
      let view: Uint8Array;
      try {
        view = await store.accessReadWrite(name, { signal });
      } catch (error) {
        if (error instanceof PStoreError && error.code === "ECANCELED") break;
        throw error;
      }
      view.fill(i & 0xff);
      await store.releaseReadWrite(view);
      latenciesMs.push(performance.now() - cycleStartMs);
    }
  } finally {
    clearTimeout(notice);
    await store.delete(name).catch(() => {});
  }
  const elapsedMs = performance.now() - startMs;
  if (latenciesMs.length === 0) throw new PStoreError("ECANCELED", "the benchmark was stopped before its first cycle");
  latenciesMs.sort((a, b) => a - b);
  const percentile = (p: number) => latenciesMs[Math.max(0, Math.ceil(p * latenciesMs.length) - 1)]!;
  const result = {
    cycles: latenciesMs.length,
    size,
    p50Ms: _round(percentile(0.5)),
    p99Ms: _round(percentile(0.99)),
    opsPerSec: Math.round((latenciesMs.length * 1000) / elapsedMs),
  };
  const done = result.cycles < cycles ? `stopped after ${result.cycles} of ${cycles} cycles` : `${cycles} cycles`;
  return {
    text: `${done} of ${formatBytes(size)}: p50 ${result.p50Ms} ms, p99 ${result.p99Ms} ms, ${result.opsPerSec} ops/s`,
    value: result,
  };
}

/** Three significant digits, at most 3 decimals: 0.412, 12.3, 1530. */
function _round(ms: number): number {
  if (ms >= 100) return Math.round(ms);
  return Number(ms.toPrecision(3));
}

/** SIGCONT to a server of the local cluster, in case `kill N SIGSTOP` paused it. */
function _resume(cluster: LocalCluster, index: number): void {
  const pid = cluster.pids[index];
  if (pid === null || pid === undefined) return;
  try {
    process.kill(pid, "SIGCONT");
  } catch {
    // Gone meanwhile: restart starts it anyway.
  }
}

async function _acquire(ctx: ShellContext, name: string, mode: "read" | "write", signal: AbortSignal | undefined): Promise<_Output> {
  const held = ctx.holds.get(name);
  if (held) throw new PStoreError("EDEADLK", `this shell already holds ${quoteWord(name)} (${held.mode}); release it first`);
  const store = await _store(ctx, signal);
  const view =
    mode === "write"
      ? await _waitForHold(ctx, `the write hold on ${quoteWord(name)}`, store.accessReadWrite(name, { signal }))
      : await _waitForHold(ctx, `a read hold on ${quoteWord(name)}`, store.accessRead(name, { signal }));
  ctx.holds.set(name, { mode, view });
  return { text: `ok, ${mode} hold on ${quoteWord(name)} (${view.length} bytes)` };
}

function _held(ctx: ShellContext, name: string, command: string): ShellHold {
  const hold = ctx.holds.get(name);
  if (!hold) throw new PStoreError("EINVAL", `${command} needs a hold on ${quoteWord(name)}: acquire-read or acquire-write it first`);
  return hold;
}

function _notHeld(ctx: ShellContext, name: string, instead: string): void {
  const hold = ctx.holds.get(name);
  if (hold) throw new PStoreError("EDEADLK", `this shell holds ${quoteWord(name)} (${hold.mode}): use ${instead}, or release it first`);
}

/** `00000010  de ad be ef 00 …  |....|` lines, 16 bytes each. */
function _hexDump(bytes: Uint8Array, offset: number): string {
  if (bytes.length === 0) return "(0 bytes)";
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16);
    const hex = [...row].map((byte) => byte.toString(16).padStart(2, "0")).join(" ");
    const text = [...row].map((byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ".")).join("");
    lines.push(`${(offset + at).toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  |${text}|`);
  }
  return lines.join("\n");
}

/**
 * Before quitting: releases kept read holds, and forgets kept write holds —
 * the store's close() drops those without shipping their changes (there is no
 * "release and discard"). Returns what was dropped, for a notice.
 */
export async function dropHolds(ctx: ShellContext): Promise<string[]> {
  const dropped: string[] = [];
  for (const [name, hold] of ctx.holds) {
    if (hold.mode === "read") {
      try {
        await (await ctx.store()).releaseRead(hold.view);
      } catch {
        // close() releases it anyway.
      }
    }
    dropped.push(`${hold.mode} hold on ${quoteWord(name)}${hold.mode === "write" ? " (changes discarded)" : ""}`);
  }
  ctx.holds.clear();
  return dropped;
}

/** The prompt: `pstore> `, or `pstore [compteur:w msg:r]> ` with holds kept. */
export function promptFor(ctx: ShellContext): string {
  if (ctx.holds.size === 0) return "pstore> ";
  const holds = [...ctx.holds].map(([name, hold]) => `${quoteWord(name)}:${hold.mode === "write" ? "w" : "r"}`);
  return `pstore [${holds.join(" ")}]> `;
}

function _listText(data: DatumInfo[], ctx: ShellContext): string {
  if (data.length === 0) return "(no data)";
  if (ctx.multiline) return formatDatumTable(data, ctx.style);
  return data.map((info) => quoteWord(info.name)).join(" ");
}

function _cluster(ctx: ShellContext, command: string): LocalCluster {
  if (!ctx.cluster) throw new PStoreError("EINVAL", `${command} works only in a shell started with --local`);
  return ctx.cluster;
}

function _serverIndex(text: string, cluster: LocalCluster): number {
  const count = cluster.pids.length;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > count) {
    throw new PStoreError("EINVAL", `SERVER must be a number from 1 to ${count}, got "${text}"`);
  }
  return Number(text) - 1;
}

/** `help` on a terminal shows the commands in these groups; in a script, on one line in this order. */
const _HELP_GROUPS: [title: string, commands: string[]][] = [
  ["Data (each command takes and releases its own hold)", ["create", "write", "read", "dump", "list", "stat", "delete"]],
  ["Holds kept across commands (the prompt shows them)", ["acquire-read", "acquire-write", "get", "set", "release"]],
  ["The cluster", ["status", "checkpoint", "bench"]],
  ["Faults, in a shell started with --local", ["kill", "restart"]],
  ["The shell", ["help", "quit"]],
];

function _helpAll(ctx: ShellContext): string {
  const names = _HELP_GROUPS.flatMap(([, commands]) => commands);
  if (!ctx.multiline) return `commands: ${names.join(" ")} (help COMMAND explains one)`;
  const width = Math.max(...names.map((name) => SHELL_COMMANDS[name]!.usage.length));
  const row = (name: string) => `  ${ctx.style.cyan(SHELL_COMMANDS[name]!.usage.padEnd(width))}  ${SHELL_COMMANDS[name]!.summary}`;
  return [
    ..._HELP_GROUPS.flatMap(([title, commands], i) => [...(i > 0 ? [""] : []), ctx.style.bold(title), ...commands.map(row)]),
    "",
    _TYPES_LINE,
    'Words with spaces go in quotes: write msg str "hello world". Aliases: ls list, rm delete, exit quit, ? help.',
    "help COMMAND explains one, with examples. Tab completes commands and data names; Ctrl-C cancels a wait.",
  ].join("\n");
}

function _helpOne(command: string, ctx: ShellContext): string {
  const spec = SHELL_COMMANDS[_ALIASES[command] ?? command];
  if (!spec) throw new PStoreError("EINVAL", `no command "${command}"; help lists them`);
  if (!ctx.multiline) return `${spec.usage}: ${spec.summary}${spec.details.length > 0 ? `. ${spec.details.join(" ")}` : ""}`;
  return [
    ctx.style.cyan(spec.usage),
    `  ${spec.summary}`,
    ...spec.details.map((line) => `  ${line}`),
    "",
    "  Examples:",
    ...spec.examples.map((line) => `    ${line}`),
  ].join("\n");
}
