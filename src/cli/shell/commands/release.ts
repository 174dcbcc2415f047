/** The shell's `release` command. */
import { held } from "./holds.ts";
import type { CommandSpec } from "./spec.ts";

export const release: CommandSpec = {
  usage: "release NAME",
  summary: "Drop a hold taken with acquire-read or acquire-write (a write hold ships its changes first)",
  details: [],
  examples: ["release compteur"],
  args: [1, 1],
  nameArgs: [0],
  async run(ctx, [name]) {
    const hold = held(ctx, name!, "release");
    const store = await ctx.store();
    ctx.holds.delete(name!);
    if (hold.mode === "write") await store.releaseReadWrite(hold.view);
    else await store.releaseRead(hold.view);
    return { text: "ok" };
  },
};
