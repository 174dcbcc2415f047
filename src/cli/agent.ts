/** `pstore agent`: serves C programs (libpstore.so) on a Unix socket; see docs/c.md. */
import { defineCommand } from "citty";
import { parseDurationMs } from "./flags.ts";
import { createLogger, logArgs } from "./log.ts";
import { nextStopSignal } from "./signals.ts";

export const examples = [
  "pstore agent                                   # on $XDG_RUNTIME_DIR/pstore/agent.sock (or /tmp/pstore-$UID/)",
  "pstore agent --socket /tmp/my-agent.sock       # then PSTORE_AGENT_SOCKET=/tmp/my-agent.sock ./prog",
  "",
  "init_persistant() in a C program starts an agent by itself when none answers (with",
  "--idle-exit-ms 30000); start one by hand to see its log or to keep it running. The",
  "cluster is the program's: each program sends its PSTORE_SERVERS, PSTORE_SECRET and",
  "PSTORE_TLS_CA when it connects, and gets its own session.",
];

export default defineCommand({
  meta: { name: "agent", description: "Serve C programs (libpstore.so) on a Unix socket; each gets its own session" },
  args: {
    socket: { type: "string", valueHint: "path", description: "Unix socket (default: $PSTORE_AGENT_SOCKET, else $XDG_RUNTIME_DIR/pstore/agent.sock, else /tmp/pstore-$UID/agent.sock)" },
    "idle-exit-ms": { type: "string", valueHint: "ms", description: "Exit after this long with no program connected (default: never)" },
    "die-with-parent": { type: "boolean", description: "Exit when the parent process dies (used by tests)" },
    ...logArgs,
  },
  async run({ args }) {
    const idleExitMs = args["idle-exit-ms"] === undefined ? 0 : parseDurationMs(args["idle-exit-ms"], "--idle-exit-ms");
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet }).withTag("agent");
    if (args["die-with-parent"]) {
      const { _dieWithParent } = await import("./serve.ts");
      await _dieWithParent(logger);
    }
    const { agentSocketPath } = await import("../agent/paths.ts");
    const { Agent } = await import("../agent/agent.ts");
    const socketPath = args.socket ?? agentSocketPath();
    const agent = new Agent({ socketPath, idleExitMs, log: (line) => logger.info(line) });
    await agent.start();
    process.stdout.write(`READY ${socketPath} pid ${process.pid}\n`);
    const signal = nextStopSignal().then(() => agent.stop());
    await Promise.race([agent.done, signal]);
    return 0;
  },
});
