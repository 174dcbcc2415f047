/**
 * Runs one shell line: one line in, one result out. Knows nothing of
 * readline or terminals (repl.ts does), so tests drive it with any `Store`.
 * The commands themselves are in commands/, one a file.
 *
 * Every command produces exactly one result: `ok`, a value, or
 * `error CODE: what went wrong`. With `multiline` (a terminal) `list`,
 * `status` and `help` may print tables; otherwise every result is one line.
 */
import { PStoreError } from "../../errors.ts";
import { editDistance, UsageError } from "../flags.ts";
import { quoteWord } from "../format.ts";
import { forgetLostHolds } from "./commands/holds.ts";
import { ALIASES, SHELL_COMMANDS } from "./commands/index.ts";
import { type CommandSpec, noticeIfSlow, type ShellContext, SLOW_NOTICE_MS, untilAborted } from "./commands/spec.ts";
import { tokenize } from "./tokenize.ts";
import { VALUE_TYPES } from "./values.ts";

export { SHELL_COMMANDS } from "./commands/index.ts";
export { dropHolds, promptFor } from "./commands/holds.ts";
export type { ShellContext, ShellHold } from "./commands/spec.ts";

export interface ShellResult {
  ok: boolean;
  /** The line(s) to print; "" for quit. */
  text: string;
  /** The same result for `--json`: `{ ok, value }` or `{ ok: false, code, error }`. */
  json: Record<string, unknown>;
  quit?: boolean;
  /** Clear the screen instead of printing text. */
  clear?: boolean;
}

/** Runs one line. Returns null for a blank line or a comment (nothing to print). */
export async function runShellLine(ctx: ShellContext, line: string, signal?: AbortSignal): Promise<ShellResult | null> {
  let command = "";
  try {
    const words = tokenize(line);
    if (words.length === 0) return null;
    command = ALIASES[words[0]!] ?? words[0]!;
    const spec = SHELL_COMMANDS[command];
    if (!spec) throw new PStoreError("EINVAL", `unknown command "${words[0]}"${_suggestCommand(words[0]!)} (help lists the commands)`);
    const args = words.slice(1);
    // `create --help`: the help, not a datum called --help.
    if (command !== "help" && args.some((arg) => arg === "--help" || arg === "-h")) return await runShellLine(ctx, `help ${command}`, signal);
    _checkArgCount(command, spec, args);
    await _noticeLostHolds(ctx);
    const running = spec.run(ctx, args, signal);
    const output = await (spec.cancellable
      ? running
      : noticeIfSlow(
          ctx,
          `waiting for ${spec.waitsFor ?? "the cluster to answer"}… (Ctrl-C stops waiting)`,
          SLOW_NOTICE_MS,
          untilAborted(running, signal, `stopped waiting for the answer${spec.readsOnly ? "" : " (the command may still take effect)"}`),
          true,
        ));
    await _noticeLostHolds(ctx);
    return {
      ok: true,
      text: output.text,
      json: { ok: true, command, ...(output.value === undefined ? {} : { value: output.value }) },
      quit: output.quit,
      clear: output.clear,
    };
  } catch (error) {
    await _noticeLostHolds(ctx).catch(() => {});
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

/** Says (on a terminal) which kept holds went with a lost session; get, set and release then say so too. */
async function _noticeLostHolds(ctx: ShellContext): Promise<void> {
  const lost = await forgetLostHolds(ctx);
  if (lost.length > 0) ctx.notice?.(`lost with the session (the cluster was out of reach, or it expired): ${lost.join(", ")}`);
}

/** `missing TYPE VALUE; usage: write NAME TYPE VALUE [OFFSET]`, or too many words. */
function _checkArgCount(command: string, spec: CommandSpec, args: string[]): void {
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
  for (const name of [...Object.keys(SHELL_COMMANDS), ...Object.keys(ALIASES)]) {
    const distance = editDistance(word.toLowerCase(), name);
    if (distance < bestDistance) {
      best = ALIASES[name] ?? name;
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
    candidates = [...Object.keys(SHELL_COMMANDS), ...Object.keys(ALIASES).filter((alias) => alias !== "?")];
  } else {
    const command = ALIASES[words[0]!] ?? words[0]!;
    const spec = SHELL_COMMANDS[command];
    if (command === "help" && position === 1) candidates = Object.keys(SHELL_COMMANDS);
    else if (spec?.nameArgs?.includes(position - 1)) candidates = [...names].map(quoteWord);
    else if (["write", "read", "get", "set"].includes(command) && position === 2) candidates = [...VALUE_TYPES];
  }
  const hits = candidates.filter((candidate) => candidate.startsWith(fragment)).sort();
  return [hits, fragment];
}
