/** The shell's `quit` command. */
import type { CommandSpec } from "./spec.ts";

export const quit: CommandSpec = {
  usage: "quit",
  summary: "Leave the shell (also: exit, Ctrl-D); kept holds are dropped, unreleased writes discarded",
  details: [],
  examples: ["quit"],
  args: [0, 0],
  cancellable: true,
  async run() {
    return { text: "", quit: true };
  },
};
