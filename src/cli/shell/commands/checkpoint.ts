/** The shell's `checkpoint` command. */
import { type CommandSpec, connectedStore } from "./spec.ts";

export const checkpoint: CommandSpec = {
  usage: "checkpoint",
  summary: "Write a checkpoint on every server at one sequence number (a recovery line), print it",
  details: ["The same as pstore checkpoint. pstore checkpoint --list shows them; pstore restore rolls back to one."],
  examples: ["checkpoint"],
  args: [0, 0],
  async run(ctx, _args, signal) {
    const { seq } = await (await connectedStore(ctx, signal)).checkpoint();
    return { text: `checkpoint at seq ${seq} on every server of the chain`, value: { seq } };
  },
};
