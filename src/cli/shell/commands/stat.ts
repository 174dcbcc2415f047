/** The shell's `stat` command. */
import { formatDatumLine } from "../../format.ts";
import { type CommandSpec, connectedStore } from "./spec.ts";

export const stat: CommandSpec = {
  usage: "stat NAME",
  summary: "Show a datum's size, offset, version and holds",
  details: [],
  examples: ["stat compteur"],
  args: [1, 1],
  nameArgs: [0],
  readsOnly: true,
  async run(ctx, [name], signal) {
    const info = await (await connectedStore(ctx, signal)).stat(name!);
    return { text: formatDatumLine(info), value: info };
  },
};
