/** `pstore status`: the chain as the servers see it. */
import { defineCommand } from "citty";
import { parseAddressList, parseDurationMs } from "./flags.ts";
import { formatStatusTable } from "./format.ts";
import { createLogger, logArgs } from "./log.ts";
import { makeStyle, useColor } from "./output.ts";
import { nextStopSignal } from "./signals.ts";

export const examples = [
  "pstore status",
  "pstore status --servers 10.0.0.1:7401,10.0.0.2:7401 --json",
  "pstore status --watch --interval-ms 500",
];

export const serversArg = {
  type: "string",
  valueHint: "host:port,...",
  description: "Servers of the cluster (default: $PSTORE_SERVERS, else 127.0.0.1:7401-7403)",
} as const;

export default defineCommand({
  meta: { name: "status", description: "Show the chain: epoch, head to tail, applied sequence number and lag of each server" },
  args: {
    servers: serversArg,
    json: { type: "boolean", description: "Print the status as JSON" },
    watch: { type: "boolean", description: "Refresh until Ctrl-C" },
    "interval-ms": { type: "string", valueHint: "ms", default: "1000", description: "Refresh period with --watch" },
    secret: { type: "string", valueHint: "secret", description: "Shared secret (default: $PSTORE_SECRET)" },
    ...logArgs,
  },
  async run({ args }) {
    const servers = args.servers === undefined ? undefined : parseAddressList(args.servers, "--servers");
    const intervalMs = parseDurationMs(args["interval-ms"], "--interval-ms");
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet }).withTag("status");
    const { connect } = await import("../client/index.ts");
    const store = await connect({ servers, secret: args.secret });
    try {
      const style = makeStyle(useColor(process.stdout));
      const show = async () => {
        const status = await store.status();
        if (args.json) return `${JSON.stringify(status)}\n`;
        return `${formatStatusTable(status, style)}\n`;
      };
      if (!args.watch) {
        process.stdout.write(await show());
        return 0;
      }
      let stopped = false;
      void nextStopSignal().then(() => {
        stopped = true;
      });
      const clear = process.stdout.isTTY && !args.json ? "\u001B[2J\u001B[H" : "";
      while (!stopped) {
        try {
          process.stdout.write(clear + (await show()));
        } catch (error) {
          logger.warn((error as Error).message);
        }
        for (let waited = 0; waited < intervalMs && !stopped; waited += 50) await Bun.sleep(Math.min(50, intervalMs - waited));
      }
      return 0;
    } finally {
      await store.close();
    }
  },
});
