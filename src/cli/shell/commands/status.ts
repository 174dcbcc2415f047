/** The shell's `status` command. */
import type { ClusterStatus } from "../../../client/types.ts";
import { formatStatusLine, formatStatusTable } from "../../format.ts";
import { type CommandSpec, connectedStore } from "./spec.ts";

export const status: CommandSpec = {
  usage: "status",
  summary: "Show the chain of servers: epoch, head to tail, lag",
  details: [],
  examples: ["status"],
  args: [0, 0],
  readsOnly: true,
  async run(ctx, _args, signal) {
    const status: ClusterStatus = await (await connectedStore(ctx, signal)).status();
    return { text: ctx.multiline ? formatStatusTable(status, ctx.style) : formatStatusLine(status), value: status };
  },
};
