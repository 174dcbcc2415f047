/** `pstore shell`: the interactive client, or a script runner when stdin is not a terminal. */
import { defineCommand } from "citty";
import { homedir } from "node:os";
import { join } from "node:path";
import { DEFAULT_PORT } from "../constants.ts";
import { parseAddressList, parseSegmentSize, UsageError, SEGMENT_SIZE_FLAG_DEFAULT } from "./flags.ts";
import { createLogger, logArgs } from "./log.ts";
import { checkReadable, useColor } from "./output.ts";
import { serversArg } from "./status.ts";

export const examples = [
  "pstore shell                                  # against PSTORE_SERVERS or 127.0.0.1:7401-7403",
  "pstore shell --local                          # start a 3-server cluster first, stop it on exit",
  "pstore shell --servers 10.0.0.1:7401,10.0.0.2:7401",
  "printf 'create compteur 4\\nwrite compteur i32 1035\\nread compteur i32\\n' | pstore shell",
  "",
  "Commands: create NAME SIZE, write NAME TYPE VALUE [OFFSET], read NAME TYPE [OFFSET] [LENGTH],",
  "dump NAME, list [PATTERN], stat NAME, delete NAME; holds kept across commands: acquire-read NAME,",
  "acquire-write NAME, get, set, release NAME; status, checkpoint, bench [CYCLES] [SIZE];",
  "with --local: kill SERVER [SIGNAL], restart SERVER; help [COMMAND] (or COMMAND --help), clear, version, quit.",
  "Types: i32 u32 i64 f64 str hex. Type help in the shell for more, help CMD for one command.",
  "",
  "When stdin is not a terminal the shell prints exactly one line per command",
  "(ok, a value, or: error CODE: message), no prompt and no colours, and exits",
  "1 if any command failed, 0 otherwise. History is kept in ~/.pstore_history.",
];

export default defineCommand({
  meta: { name: "shell", description: "Interactive client: create, read and write data (reads a script from a pipe)" },
  args: {
    servers: serversArg,
    secret: { type: "string", valueHint: "secret", description: "Shared secret (default: $PSTORE_SECRET)" },
    "tls-ca": { type: "string", valueHint: "file", description: "Connect with TLS, checking the servers' certificates against this CA (default: $PSTORE_TLS_CA)" },
    local: { type: "boolean", description: "Start a local cluster first (as pstore local) and stop it on exit" },
    "data-dir": { type: "string", valueHint: "dir", default: "./pstore-data", description: "With --local: where the servers keep their data" },
    "base-port": { type: "string", valueHint: "port", default: String(DEFAULT_PORT), description: "With --local: port of server 1" },
    "segment-size": {
      type: "string",
      valueHint: "size",
      default: SEGMENT_SIZE_FLAG_DEFAULT,
      description: "With --local: size of the shared segment (a data dir keeps the size it was created with)",
    },
    json: { type: "boolean", description: "Print each result as one JSON object per line" },
    ...logArgs,
  },
  async run({ args, rawArgs }) {
    if (args.local && args.servers !== undefined) {
      throw new UsageError("--local starts its own servers; leave out --servers");
    }
    if (args.local && args["tls-ca"] !== undefined) {
      throw new UsageError("--local starts its servers without TLS; leave out --tls-ca");
    }
    if (!args.local && rawArgs.some((arg) => /^--(data-dir|base-port|segment-size|dataDir|basePort|segmentSize)\b/.test(arg))) {
      throw new UsageError("--data-dir, --base-port and --segment-size only go with --local");
    }
    const servers = args.servers === undefined ? undefined : parseAddressList(args.servers, "--servers");
    checkReadable(args["tls-ca"], "--tls-ca");
    const secret = args.secret ?? (process.env.PSTORE_SECRET || undefined);
    const interactive = process.stdin.isTTY === true;
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet, timestamps: true }).withTag("shell");

    const stopController = new AbortController();
    const onSignal = () => stopController.abort();
    process.on("SIGINT", onSignal);
    process.on("SIGTERM", onSignal);

    let cluster: import("./cluster.ts").LocalCluster | undefined;
    try {
      if (args.local) {
        const basePort = Number(args["base-port"]);
        if (!/^\d+$/.test(args["base-port"]) || basePort < 1 || basePort > 65533) {
          throw new UsageError(`--base-port: "${args["base-port"]}" must be a port from 1 to 65533`);
        }
        const { LocalCluster } = await import("./cluster.ts");
        cluster = new LocalCluster({
          basePort,
          dataDir: args["data-dir"],
          segmentSize: parseSegmentSize(args["segment-size"]),
          secret,
          onLog: args.verbose ? (_, line) => process.stderr.write(`${line}\n`) : undefined,
          onUnexpectedExit: (index, how) => logger.warn(`server ${index + 1} stopped unexpectedly: ${how}`),
        });
        logger.info(`starting 3 local servers from port ${basePort}, data in ${args["data-dir"]}`);
        await cluster.start();
        // Ctrl-C while the servers were starting: stop them and go no further.
        if (stopController.signal.aborted) return 130;
      }
      const target = cluster?.servers ?? servers;
      const { runShell } = await import("./shell/repl.ts");
      return await runShell({
        input: process.stdin,
        output: process.stdout,
        errorOutput: process.stderr,
        interactive,
        color: interactive && useColor(process.stdout),
        json: args.json === true,
        cluster,
        stop: stopController.signal,
        historyFile: interactive ? join(process.env.HOME || homedir(), ".pstore_history") : undefined,
        banner: `pstore shell on ${(target ?? [process.env.PSTORE_SERVERS || "127.0.0.1:7401-7403"]).join(",")}${cluster ? ` (local cluster, pids ${cluster.pids.join(" ")})` : ""}. Type help for the commands, quit to leave.`,
        connect: async () => {
          const { connect } = await import("../client/index.ts");
          return connect({ servers: target, secret, tlsCa: cluster ? undefined : args["tls-ca"] });
        },
      });
    } finally {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      if (cluster) {
        // A server paused with `kill N SIGSTOP` could not take the SIGTERM that stops it.
        for (const pid of cluster.pids) if (pid !== null) _resume(pid);
        await cluster.stop();
      }
    }
  },
});

function _resume(pid: number): void {
  try {
    process.kill(pid, "SIGCONT");
  } catch {
    // Already gone.
  }
}
