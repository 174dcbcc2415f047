/** The shell's `list` command. */
import type { DatumInfo } from "../../../client/types.ts";
import { PStoreError } from "../../../errors.ts";
import { formatDatumTable, quoteWord } from "../../format.ts";
import { type CommandSpec, connectedStore, type ShellContext } from "./spec.ts";

export const list: CommandSpec = {
  usage: "list [PATTERN]",
  summary: "List the data (those whose name matches PATTERN); on a terminal as a table",
  details: ["PATTERN is a glob: * any characters, ? one, [abc] one of them (as redis-cli KEYS).", "Use stat NAME for the details of one datum."],
  examples: ["list", "list comp*", "list sensor-?"],
  args: [0, 1],
  readsOnly: true,
  async run(ctx, [pattern], signal) {
    const all = await (await connectedStore(ctx, signal)).list();
    ctx.names.clear();
    for (const info of all) ctx.names.add(info.name);
    const matches = pattern === undefined ? undefined : globToRegExp(pattern);
    const data = matches ? all.filter((info) => matches.test(info.name)) : all;
    return { text: _listText(data, ctx, pattern), value: data };
  },
};

/** A glob (`*`, `?`, `[abc]`, `[!abc]`, `\*` for a literal) as an anchored RegExp. */
export function globToRegExp(glob: string): RegExp {
  let source = "";
  for (let i = 0; i < glob.length; i++) {
    const char = glob[i]!;
    if (char === "*") source += "[^]*";
    else if (char === "?") source += "[^]";
    else if (char === "\\" && i + 1 < glob.length) source += _escape(glob[++i]!);
    else if (char === "[") {
      const close = glob.indexOf("]", i + 2);
      if (close === -1) throw new PStoreError("EINVAL", `PATTERN "${glob}" has a [ without its ]`);
      const body = glob.slice(i + 1, close);
      const negated = body.startsWith("!") || body.startsWith("^");
      const members = (negated ? body.slice(1) : body).replace(/[\\\]^]/g, "\\$&");
      source += `[${negated ? "^" : ""}${members}]`;
      i = close;
    } else source += _escape(char);
  }
  return new RegExp(`^${source}$`, "u");
}

function _escape(char: string): string {
  return char.replace(/[.*+?^${}()|[\]\\/-]/g, "\\$&");
}

function _listText(data: DatumInfo[], ctx: ShellContext, pattern: string | undefined): string {
  if (data.length === 0) return pattern === undefined ? "(no data)" : `(no datum matches ${quoteWord(pattern)})`;
  if (ctx.multiline) return formatDatumTable(data, ctx.style);
  return data.map((info) => quoteWord(info.name)).join(" ");
}
