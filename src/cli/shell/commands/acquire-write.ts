/** The shell's `acquire-write` command. */
import { acquire } from "./holds.ts";
import type { CommandSpec } from "./spec.ts";

export const acquireWrite: CommandSpec = {
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
    return acquire(ctx, name!, "write", signal);
  },
};
