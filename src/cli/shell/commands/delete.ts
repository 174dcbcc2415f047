/** The shell's `delete` command. */
import { type CommandSpec, connectedStore } from "./spec.ts";

export const deleteDatum: CommandSpec = {
  usage: "delete NAME",
  summary: "Delete a datum and free its pages",
  details: [],
  examples: ["delete compteur"],
  args: [1, 1],
  nameArgs: [0],
  async run(ctx, [name], signal) {
    await (await connectedStore(ctx, signal)).delete(name!);
    ctx.names.delete(name!);
    return { text: "ok" };
  },
};
