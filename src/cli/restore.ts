/**
 * `pstore restore --checkpoint SEQ`: rolls data dirs back to a recovery line.
 * The servers must be stopped. Every dir is checked before any is changed.
 */
import { defineCommand } from "citty";
import { unlinkSync } from "node:fs";
import { UsageError } from "./flags.ts";
import { logArgs } from "./log.ts";
import { serverDataDirs } from "./datadirs.ts";

export const examples = [
  "pstore checkpoint --list --data-dir ./pstore-data   # find the recovery lines",
  "pstore restore --checkpoint 1234 --data-dir ./pstore-data",
  "",
  "Restore every server of the cluster to the same checkpoint: a server restored",
  "alone rejoins the others and catches up with what they have.",
];

export default defineCommand({
  meta: { name: "restore", description: "Roll stopped servers' data dirs back to a checkpoint (a recovery line)" },
  args: {
    checkpoint: { type: "string", required: true, valueHint: "seq", description: "Sequence number of the checkpoint (see pstore checkpoint --list)" },
    "data-dir": { type: "string", required: true, valueHint: "dir", description: "A server's data dir, or the parent of several (pstore local's layout)" },
    ...logArgs,
  },
  async run({ args }) {
    const seq = Number(args.checkpoint);
    if (!Number.isSafeInteger(seq) || seq <= 0) throw new UsageError(`--checkpoint takes a sequence number, got "${args.checkpoint}"`);
    const { dataDirOwner, listCheckpoints, listSegments, nodeFs, readCheckpoint } = await import("../store/index.ts");
    const dirs = serverDataDirs(args["data-dir"]);
    for (const dir of dirs) {
      const owner = dataDirOwner(dir);
      if (owner !== null) throw new Error(`${dir} is in use by a running server (pid ${owner}): stop the servers first`);
      const checkpoint = listCheckpoints(nodeFs, dir).find((c) => c.seq === seq);
      if (!checkpoint) throw new Error(`${dir} has no checkpoint at seq ${seq} (pstore checkpoint --list --data-dir ${dir})`);
      readCheckpoint(nodeFs, checkpoint.file); // refuses a damaged one before anything is deleted
    }
    for (const dir of dirs) {
      const newer = listCheckpoints(nodeFs, dir).filter((c) => c.seq > seq);
      const segments = listSegments(nodeFs, dir);
      for (const file of [...newer.map((c) => c.file), ...segments.map((s) => s.file)]) unlinkSync(file);
      process.stdout.write(`${dir}: back at seq ${seq} (${newer.length} newer checkpoint(s) and ${segments.length} log segment(s) removed)\n`);
    }
    return 0;
  },
});
