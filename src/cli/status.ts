/** `pstore status`: the chain as the servers see it. */
import { defineCommand } from "citty";
import type { ConsolaInstance } from "consola/core";
import type { ClusterStatus, Store } from "../client/types.ts";
import { DISK_FREE_BYTES_MIN } from "../constants.ts";
import { formatBytes, parseAddressList, parseDurationMs } from "./flags.ts";
import { formatStatusTable } from "./format.ts";
import { createLogger, logArgs } from "./log.ts";
import { checkReadable, makeStyle, useColor } from "./output.ts";
import { nextStopSignal } from "./signals.ts";

export const examples = [
  "pstore status",
  "pstore status --servers 10.0.0.1:7401,10.0.0.2:7401 --json",
  "pstore status --watch --interval-ms 500",
  "",
  "The table lists the chain head first, then the servers outside it. #: the server's number",
  "(its place in the list of servers; kill N and restart N in shell --local use it). ROLE: head, middle,",
  "tail, single (a chain of one), joining (catching up before it joins), down. STATE says \"disk",
  `full" when the server has less free disk than it keeps (${formatBytes(DISK_FREE_BYTES_MIN)}): the chain then refuses new`,
  "data with ENOSPC until space is freed (delete data and checkpoint, or free the disk). APPLIED: the",
  "sequence number of the last update the server applied; LAG: how many updates it is behind",
  "the most advanced one. HEARTBEAT: when the answering server last heard from it. The other",
  "servers' numbers come from their heartbeats (a server before the answering one in the chain",
  "counts at least its number, so an idle cluster shows no lag). pstore status writes nothing.",
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
    "tls-ca": { type: "string", valueHint: "file", description: "Connect with TLS, checking the servers' certificates against this CA (default: $PSTORE_TLS_CA)" },
    ...logArgs,
  },
  async run({ args }) {
    const servers = args.servers === undefined ? undefined : parseAddressList(args.servers, "--servers");
    const intervalMs = parseDurationMs(args["interval-ms"], "--interval-ms");
    checkReadable(args["tls-ca"], "--tls-ca");
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet }).withTag("status");
    const style = makeStyle(useColor(process.stdout));
    const render = (status: ClusterStatus) => (args.json ? JSON.stringify(status) : formatStatusTable(status, style));
    const { connect } = await import("../client/index.ts");
    // No session: looking must not write to the log (an open and a close of a session would).
    const open = () => connect({ servers, secret: args.secret, tlsCa: args["tls-ca"], queriesOnly: true });
    if (args.watch) {
      const clear = process.stdout.isTTY && !args.json ? "\u001B[2J\u001B[H" : "";
      return _watch(open, (status) => `${clear}${render(status)}\n`, intervalMs, logger);
    }
    const store = await _sayIfSlow(open(), logger, "waiting for a serving chain… (Ctrl-C stops)");
    try {
      process.stdout.write(`${render(await store.status())}\n`);
      return 0;
    } finally {
      await store.close();
    }
  },
});

/** How long an answer may take before the user is told (a failover takes about a second). */
const _SLOW_MS = 1500;

/**
 * Logs `text` if `work` is still running after _SLOW_MS and stderr is a terminal (a person
 * waits), or `always` (a watch: whoever collects its output must learn the cluster went silent).
 */
async function _sayIfSlow<T>(work: Promise<T>, logger: ConsolaInstance, text: string, always = false): Promise<T> {
  if (process.stderr.isTTY !== true && !always) return work;
  const timer = setTimeout(() => logger.info(text), _SLOW_MS);
  try {
    return await work;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Prints the status every `intervalMs` until SIGINT/SIGTERM. A cluster that
 * stops answering is said so on stderr (the last table stays on screen), and
 * the watch reconnects by itself when the cluster comes back.
 */
async function _watch(
  open: () => Promise<Store>,
  render: (status: ClusterStatus) => string,
  intervalMs: number,
  logger: ConsolaInstance,
): Promise<number> {
  const stop = nextStopSignal().then(() => null);
  let stopped = false;
  void stop.then(() => (stopped = true));
  const untilStop = <T>(work: Promise<T>) => Promise.race([work, stop]);
  let store: Store | null = null;
  try {
    while (!stopped) {
      try {
        store ??= await untilStop(open());
        const status = store && (await untilStop(_sayIfSlow(store.status(), logger, "the cluster does not answer; still trying (Ctrl-C stops)", true)));
        if (status) process.stdout.write(render(status));
      } catch (error) {
        logger.warn((error as Error).message);
        const code = (error as { code?: unknown }).code;
        if (code === "EUNAVAILABLE" || code === "ECLOSED") {
          // The client gave up on this cluster: start over with a new connection.
          await store?.close().catch(() => {});
          store = null;
        }
      }
      await untilStop(Bun.sleep(intervalMs));
    }
    return 0;
  } finally {
    await store?.close().catch(() => {});
  }
}
