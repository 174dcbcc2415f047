/** Process plumbing shared by the long-running commands (serve, local, shell). */

/** Set by `LocalCluster` on its children: `serve --die-with-parent` checks the parent is still this pid. */
export const PARENT_PID_ENV = "PSTORE_PARENT_PID";

/** Resolves with the next SIGTERM or SIGINT (and stops listening for them). */
export function nextStopSignal(): Promise<NodeJS.Signals> {
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      process.off("SIGTERM", onSignal);
      process.off("SIGINT", onSignal);
      resolve(signal);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
