/** The shell's `kill` command. */
import { constants } from "node:os";
import { PStoreError } from "../../../errors.ts";
import type { LocalCluster } from "../../cluster.ts";
import type { CommandSpec, ShellContext } from "./spec.ts";

export const kill: CommandSpec = {
  usage: "kill SERVER [SIGNAL]",
  summary: "Stop server SERVER of the local cluster (SIGKILL by default) to test a failure; shell --local only",
  details: [
    "SERVER is 1 for the local cluster's first port (7401 by default), 2 for the next, 3 for the last;",
    "status shows which one is head and which is tail. SIGNAL: SIGKILL (a crash), SIGTERM (a clean stop),",
    "or SIGSTOP to pause the server (it looks dead to the others) and SIGCONT to resume it.",
    "The clients go on once the chain is rebuilt without it (about a second); restart SERVER brings it back.",
  ],
  examples: ["kill 1", "kill 2 SIGTERM", "kill 3 SIGSTOP", "kill 3 SIGCONT"],
  args: [1, 2],
  waitsFor: "the server to exit",
  async run(ctx, [serverText, signalText]) {
    const cluster = localCluster(ctx, "kill");
    const index = serverIndex(serverText!, cluster);
    const label = `server ${index + 1} (${cluster.servers[index]})`;
    const signal = (signalText ?? "SIGKILL").toUpperCase().replace(/^(?!SIG)/, "SIG");
    if (!/^SIG[A-Z0-9]+$/.test(signal) || !(signal in constants.signals)) {
      throw new PStoreError("EINVAL", `unknown signal "${signalText}" (e.g. SIGKILL, SIGTERM, SIGSTOP, SIGCONT)`);
    }
    const pid = cluster.pids[index];
    if (pid === null || pid === undefined) {
      throw new PStoreError("EINVAL", `${label} is not running; restart ${index + 1} starts it again`);
    }
    if (signal === "SIGSTOP" || signal === "SIGCONT") {
      // Pause or resume: the process stays, so there is no exit to wait for.
      process.kill(pid, signal);
      return { text: signal === "SIGSTOP" ? `${label} paused (kill ${index + 1} SIGCONT resumes it)` : `${label} resumed` };
    }
    await cluster.kill(index, signal as NodeJS.Signals);
    return { text: `${label} stopped by ${signal}` };
  },
};

export function localCluster(ctx: ShellContext, command: string): LocalCluster {
  if (!ctx.cluster) throw new PStoreError("EINVAL", `${command} works only in a shell started with --local`);
  return ctx.cluster;
}

export function serverIndex(text: string, cluster: LocalCluster): number {
  const count = cluster.pids.length;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > count) {
    throw new PStoreError("EINVAL", `SERVER must be a number from 1 to ${count}, got "${text}"`);
  }
  return Number(text) - 1;
}
