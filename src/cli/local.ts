/** `pstore local`: N servers on loopback as child processes, until Ctrl-C or SIGTERM. */
import { defineCommand } from "citty";
import { realpathSync } from "node:fs";
import { relative, resolve } from "node:path";
import { DEFAULT_PORT, LOCAL_SERVERS_MAX } from "../constants.ts";
import { FSYNC_MODES, type FsyncMode, parseCount, parseDurationMs, parseList, parseSegmentSize, UsageError, SEGMENT_SIZE_FLAG_DEFAULT } from "./flags.ts";
import { selfCommand } from "./self.ts";
import { createLogger, logArgs } from "./log.ts";
import { nextStopSignal } from "./signals.ts";


export const examples = [
  "pstore local                          # 3 servers on 127.0.0.1:7401-7403, data in ./pstore-data",
  "pstore local --servers 5 --base-port 8000 --data-dir /tmp/pstore",
  "pstore local --fsync off              # fastest, for experiments",
  "pstore local --rejoin 2               # server 2's log is corrupt: set it aside, fetch the state from 1 and 3",
  "",
  "Then, in another terminal: pstore shell. The data is kept for the next start.",
];

export default defineCommand({
  meta: { name: "local", description: "Run a local cluster: N servers on loopback, stopped together by Ctrl-C" },
  args: {
    servers: { type: "string", valueHint: "n", default: "3", description: `How many servers (1 to ${LOCAL_SERVERS_MAX})` },
    "base-port": { type: "string", valueHint: "port", default: String(DEFAULT_PORT), description: "Port of server 1; the others follow" },
    "data-dir": { type: "string", valueHint: "dir", default: "./pstore-data", description: "Data of server n goes in <dir>/n (reused on the next start)" },
    "segment-size": {
      type: "string",
      valueHint: "size",
      default: SEGMENT_SIZE_FLAG_DEFAULT,
      description: "Size of the shared segment",
    },
    fsync: { type: "enum", options: [...FSYNC_MODES], default: "always", description: "Passed to every server" },
    "ready-timeout-ms": { type: "string", valueHint: "ms", default: "15000", description: "How long a server may take to start" },
    secret: { type: "string", valueHint: "secret", description: "Shared secret (default: $PSTORE_SECRET)" },
    rejoin: {
      type: "string",
      valueHint: "n,...",
      description: "Servers whose corrupt log or checkpoints are moved aside, their state fetched from the others (pstore serve --rejoin)",
    },
    ...logArgs,
  },
  async run({ args }) {
    const count = parseCount(args.servers, "--servers", LOCAL_SERVERS_MAX);
    const basePort = Number(args["base-port"]);
    if (!/^\d+$/.test(args["base-port"]) || basePort < 1 || basePort + count - 1 > 65535) {
      throw new UsageError(`--base-port: "${args["base-port"]}" must be a port from 1 to ${65536 - count} for ${count} servers`);
    }
    const rejoin = args.rejoin === undefined ? [] : [...new Set(parseList(args.rejoin, "--rejoin").map((n) => parseCount(n, "--rejoin", count) - 1))];
    if (rejoin.length > 0 && count === 1) {
      throw new UsageError("--rejoin fetches the state from the other servers, and a single server has none (pstore restore rolls it back to a checkpoint)");
    }
    if (rejoin.length >= count) {
      throw new UsageError(`--rejoin: the state comes from the servers not rejoining, so at most ${count - 1} of ${count} servers may rejoin`);
    }
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet, timestamps: true }).withTag("local");
    const { ClusterStartError, LocalCluster } = await import("./cluster.ts");
    const cluster = new LocalCluster({
      count,
      basePort,
      dataDir: args["data-dir"],
      fsync: args.fsync as FsyncMode,
      segmentSize: parseSegmentSize(args["segment-size"]),
      secret: args.secret ?? (process.env.PSTORE_SECRET || undefined),
      rejoin,
      readyTimeoutMs: parseDurationMs(args["ready-timeout-ms"], "--ready-timeout-ms"),
      // The servers' own log lines, tagged [server:n], go straight to our stderr.
      onLog: args.quiet ? undefined : (_, line) => process.stderr.write(`${line}\n`),
      logShown: !args.quiet,
      onUnexpectedExit: (index, how) =>
        logger.warn(`server ${index + 1} (${cluster.servers[index]}) stopped unexpectedly: ${how}; the others go on`),
    });

    // Ctrl-C during start-up must also stop the children that did start.
    const stopRequested = nextStopSignal();
    const started = cluster.start().then(
      () => "started" as const,
      (error) => {
        const corrupt = error instanceof ClusterStartError ? error.corrupt : [];
        if (corrupt.length === 0) throw error;
        const list = [...new Set([...rejoin, ...corrupt])].map((index) => index + 1).join(",");
        throw new Error(`${error.message}\nIf the other servers hold the history, start again with --rejoin ${list}: ${corrupt.length > 1 ? "those servers then fetch" : "that server then fetches"} the state from them.`);
      },
    );
    const first = await Promise.race([started, stopRequested]);
    if (first !== "started") {
      logger.info(`${first}: stopping`);
      await started.catch(() => {});
      await cluster.stop();
      return 0;
    }

    const servers = cluster.servers.join(",");
    process.stdout.write(
      [
        `pstore: ${count} server${count > 1 ? "s" : ""} ready on ${servers} (data in ${resolve(args["data-dir"])})`,
        `pids: ${cluster.pids.join(" ")}`,
        "Connect with:",
        `  export PSTORE_SERVERS=${servers}`,
        `  ${_howToRun()} shell`,
        "Ctrl-C stops them all.",
        "",
      ].join("\n"),
    );
    const signal = await stopRequested;
    logger.info(`${signal}: stopping ${count} server${count > 1 ? "s" : ""}`);
    await cluster.stop();
    logger.info("stopped");
    return 0;
  },
});

/**
 * How the user runs this pstore: `pstore` when that is what PATH finds, else
 * the path it was started by (`./dist/pstore`, or `bun src/cli/main.ts` from a
 * checkout), so the printed command works as it is.
 */
function _howToRun(): string {
  const [program, ...rest] = selfCommand();
  const same = (found: string | null, path: string) => {
    try {
      return found !== null && realpathSync(found) === realpathSync(path);
    } catch {
      return false;
    }
  };
  if (rest.length === 0 && same(Bun.which("pstore"), program!)) return "pstore";
  const short = (path: string) => {
    const inside = relative(process.cwd(), path);
    return inside.startsWith("..") || inside.startsWith("/") ? path : `./${inside}`;
  };
  const runner = rest.length > 0 && same(Bun.which("bun"), program!) ? "bun" : short(program!);
  return [runner, ...rest.map((path) => short(path).replace(/^\.\//, ""))].join(" ");
}
