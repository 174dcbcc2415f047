/** The shell's `list` command. */
import type { DatumInfo } from "../../../client/types.ts";
import { formatDatumTable, quoteWord } from "../../format.ts";
import { type CommandSpec, connectedStore, type ShellContext } from "./spec.ts";

export const list: CommandSpec = {
  usage: "list",
  summary: "List the data (one line: their names; on a terminal: a table)",
  details: ["Use stat NAME for the details of one datum."],
  examples: ["list"],
  args: [0, 0],
  async run(ctx, _args, signal) {
    const data = await (await connectedStore(ctx, signal)).list();
    ctx.names.clear();
    for (const info of data) ctx.names.add(info.name);
    return { text: _listText(data, ctx), value: data };
  },
};

function _listText(data: DatumInfo[], ctx: ShellContext): string {
  if (data.length === 0) return "(no data)";
  if (ctx.multiline) return formatDatumTable(data, ctx.style);
  return data.map((info) => quoteWord(info.name)).join(" ");
}
