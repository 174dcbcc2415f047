/** The shell's `restart` command. */
import { PStoreError } from "../../../errors.ts";
import type { LocalCluster } from "../../cluster.ts";
import { localCluster, serverIndex } from "./kill.ts";
import type { CommandSpec } from "./spec.ts";

export const restart: CommandSpec = {
  usage: "restart SERVER",
  summary: "Start server SERVER of the local cluster again (stopping it first if it runs); shell --local only",
  details: ["The server recovers from its data directory and rejoins the chain at its tail."],
  examples: ["restart 1"],
  args: [1, 1],
  waitsFor: "the server to start",
  async run(ctx, [serverText]) {
    const cluster = localCluster(ctx, "restart");
    const index = serverIndex(serverText!, cluster);
    _resume(cluster, index); // a paused server could not even take the SIGTERM
    try {
      await cluster.restart(index);
    } catch (error) {
      throw new PStoreError("EUNAVAILABLE", `could not restart: ${(error as Error).message}`);
    }
    return { text: `server ${index + 1} (${cluster.servers[index]}) restarted, pid ${cluster.pids[index]}` };
  },
};

/** SIGCONT to a server of the local cluster, in case `kill N SIGSTOP` paused it. */
function _resume(cluster: LocalCluster, index: number): void {
  const pid = cluster.pids[index];
  if (pid === null || pid === undefined) return;
  try {
    process.kill(pid, "SIGCONT");
  } catch {
    // Gone meanwhile: restart starts it anyway.
  }
}
