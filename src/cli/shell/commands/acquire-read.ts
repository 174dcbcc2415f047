/** The shell's `acquire-read` command. */
import { acquire } from "./holds.ts";
import type { CommandSpec } from "./spec.ts";

export const acquireRead: CommandSpec = {
  usage: "acquire-read NAME",
  summary: "Take a read hold on NAME and keep it (get reads under it, release drops it)",
  details: ["Waits while a writer holds NAME; Ctrl-C cancels the wait. The prompt shows the holds kept."],
  examples: ["acquire-read compteur", "get compteur i32", "release compteur"],
  args: [1, 1],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name], signal) {
    return acquire(ctx, name!, "read", signal);
  },
};
