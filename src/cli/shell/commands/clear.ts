/** The shell's `clear` command. */
import type { CommandSpec } from "./spec.ts";

export const clear: CommandSpec = {
  usage: "clear",
  summary: "Clear the screen",
  details: [],
  examples: ["clear"],
  args: [0, 0],
  cancellable: true,
  async run(ctx) {
    // In a script there is no screen: one result line, as every command.
    return ctx.multiline ? { text: "", clear: true } : { text: "ok" };
  },
};
