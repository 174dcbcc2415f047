/** The shell's `create` command. */
import { parseSize, SIZE_SYNTAX } from "../../flags.ts";
import { type CommandSpec, connectedStore, usage } from "./spec.ts";

export const create: CommandSpec = {
  usage: "create NAME SIZE",
  summary: "Create a datum of SIZE bytes (4, 4096, 64KiB, 1MiB)",
  details: ["The datum starts zeroed and covers whole 4 KiB pages.", `SIZE is ${SIZE_SYNTAX}.`],
  examples: ["create compteur 4", "create buffer 64KiB"],
  args: [2, 2],
  async run(ctx, [name, sizeText], signal) {
    const size = usage(() => parseSize(sizeText!, "SIZE"));
    await (await connectedStore(ctx, signal)).create(name!, size);
    ctx.names.add(name!);
    return { text: "ok" };
  },
};
