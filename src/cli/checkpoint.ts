/** `pstore checkpoint`: a recovery line on every server; `--list`: the checkpoints of data dirs. */
import { defineCommand } from "citty";
import { formatBytes, UsageError, parseAddressList } from "./flags.ts";
import { logArgs } from "./log.ts";
import { serverDataDirs } from "./datadirs.ts";
import { serversArg } from "./status.ts";
import { formatTable, makeStyle, useColor } from "./output.ts";

export const examples = [
  "pstore checkpoint                              # every server checkpoints at the same seq",
  "pstore checkpoint --list --data-dir ./pstore-data",
  "pstore checkpoint --list --data-dir ./pstore-data/2 --json",
];

export default defineCommand({
  meta: { name: "checkpoint", description: "Write a checkpoint on every server at one sequence number, or list the checkpoints of data dirs" },
  args: {
    servers: serversArg,
    list: { type: "boolean", description: "List the checkpoints in --data-dir instead (servers may be stopped)" },
    "data-dir": { type: "string", valueHint: "dir", description: "With --list: a server's data dir, or the parent of several (pstore local's layout)" },
    json: { type: "boolean", description: "Print JSON" },
    secret: { type: "string", valueHint: "secret", description: "Shared secret (default: $PSTORE_SECRET)" },
    ...logArgs,
  },
  async run({ args }) {
    if (args.list) {
      if (args["data-dir"] === undefined) throw new UsageError("--list needs --data-dir");
      const { listCheckpoints, nodeFs } = await import("../store/index.ts");
      const rows = serverDataDirs(args["data-dir"]).flatMap((dir) =>
        listCheckpoints(nodeFs, dir).map((checkpoint) => ({ dir, seq: checkpoint.seq, bytes: checkpoint.bytes, file: checkpoint.file })),
      );
      if (args.json) process.stdout.write(`${JSON.stringify(rows)}\n`);
      else if (rows.length === 0) process.stdout.write("no checkpoint yet\n");
      else {
        const table = rows.map((row) => [row.dir, String(row.seq), _approximateSize(row.bytes)]);
        process.stdout.write(`${formatTable(["DATA DIR", "SEQ", "SIZE"], table, makeStyle(useColor(process.stdout)))}\n`);
      }
      return 0;
    }
    const servers = args.servers === undefined ? undefined : parseAddressList(args.servers, "--servers");
    const { connect } = await import("../client/index.ts");
    const store = await connect({ servers, secret: args.secret });
    try {
      const { seq } = await store.checkpoint();
      process.stdout.write(args.json ? `${JSON.stringify({ seq })}\n` : `checkpoint at seq ${seq} on every server of the chain\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
});

/** "1.4 MiB", "37.2 KiB", "512 B": a checkpoint's size, to a tenth of a unit. */
function _approximateSize(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return formatBytes(bytes);
}
