/** `pstore serve`: one storage server, until SIGTERM or SIGINT. */
import { writeSync } from "node:fs";
import { defineCommand } from "citty";
import {
  HEARTBEAT_MS_DEFAULT,
  SESSION_TIMEOUT_MS_DEFAULT,
  SESSION_TIMEOUT_MS_MAX,
  SESSION_TIMEOUT_MS_MIN,
  SUSPECT_MS_DEFAULT,
  CHECKPOINT_MB_DEFAULT,
  CHECKPOINT_MB_MAX,
  INBOUND_BUFFERED_BYTES_MAX,
} from "../constants.ts";
import { formatHostPort, parseAddressList, parseCount, parseDurationMs, parseHostPort, parseSegmentSize, parseSize, FSYNC_MODES, type FsyncMode, UsageError, SEGMENT_SIZE_FLAG_DEFAULT } from "./flags.ts";
import { createLogger, logArgs } from "./log.ts";
import { nextStopSignal, PARENT_PID_ENV } from "./signals.ts";


export const examples = [
  "pstore serve --listen 127.0.0.1:7401 --data-dir ./data/1",
  "pstore serve --listen 127.0.0.1:7402 --peers 127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403 --data-dir ./data/2",
  "PSTORE_SECRET=s3cret pstore serve --listen 0.0.0.0:7401 --data-dir /var/lib/pstore --fsync batch",
  "",
  "It prints one line, READY <host>:<port>, on stdout once it accepts connections;",
  "logs go to stderr. SIGTERM or SIGINT stops it cleanly (exit 0).",
];

function tlsFlags(cert?: string, key?: string, ca?: string) {
  if ((cert === undefined) !== (key === undefined)) throw new UsageError("--tls-cert and --tls-key go together");
  if (cert !== undefined && ca === undefined) {
    throw new UsageError("--tls-cert needs --tls-ca too: peers dial each other with TLS and check certificates against it");
  }
  return cert === undefined && ca === undefined ? undefined : { cert, key, ca };
}

export default defineCommand({
  meta: { name: "serve", description: "Run one storage server (a link of the replication chain)" },
  args: {
    listen: {
      type: "string",
      required: true,
      valueHint: "host:port",
      description: "Address to accept clients and peers on (port 0: any free port, alone only)",
    },
    peers: {
      type: "string",
      valueHint: "host:port,...",
      description: "Every server of the chain, this one included, in chain order (default: just --listen)",
    },
    "data-dir": { type: "string", required: true, valueHint: "dir", description: "Where this server keeps its log and checkpoints" },
    "segment-size": {
      type: "string",
      valueHint: "size",
      default: SEGMENT_SIZE_FLAG_DEFAULT,
      description: "Size of the shared segment (whole 4 KiB pages; 4096, 64KiB, 256MiB, 1GiB); the same on every server, and kept by the data dir",
    },
    "session-timeout-ms": {
      type: "string",
      valueHint: "ms",
      default: String(SESSION_TIMEOUT_MS_DEFAULT),
      description: "A client silent this long loses its holds",
    },
    "heartbeat-ms": { type: "string", valueHint: "ms", default: String(HEARTBEAT_MS_DEFAULT), description: "Heartbeat period between servers" },
    "suspect-ms": { type: "string", valueHint: "ms", default: String(SUSPECT_MS_DEFAULT), description: "A peer silent this long is declared down" },
    quorum: {
      type: "enum",
      options: ["none", "majority"],
      default: "none",
      description: "none: serve while one server is alive (a partition can split the chain); majority: reconfigure and accept writes only with a majority of --peers",
    },
    fsync: {
      type: "enum",
      options: [...FSYNC_MODES],
      default: "always",
      description: "always: sync before acknowledging; batch: every few ms; off: leave it to the OS",
    },
    "checkpoint-mb": {
      type: "string",
      valueHint: "MiB",
      default: String(CHECKPOINT_MB_DEFAULT),
      description: "Write a checkpoint (and drop the log before it) when the log grows past this and twice the last one",
    },
    "inbound-max": {
      type: "string",
      valueHint: "size",
      description: `Memory that clients' incomplete incoming frames may hold at once (default ${INBOUND_BUFFERED_BYTES_MAX}, twice the largest frame); a client whose frame does not fit gets ELIMIT`,
    },
    secret: { type: "string", valueHint: "secret", description: "Shared secret of the cluster (default: $PSTORE_SECRET; prefer the variable, argv is visible in ps)" },
    "tls-cert": { type: "string", valueHint: "file", description: "Serve TLS with this certificate (PEM; its names must include the address clients dial)" },
    "tls-key": { type: "string", valueHint: "file", description: "The certificate's private key (PEM)" },
    "tls-ca": { type: "string", valueHint: "file", description: "Dial peers with TLS, checking their certificates against this CA (PEM)" },
    rejoin: {
      type: "boolean",
      description: "If this server's log or checkpoints are corrupt, move them aside and fetch the state from the other servers (needs --peers; they must be serving)",
    },
    "force-boot": {
      type: "boolean",
      description:
        "After a total outage whose other servers are gone for good: form a chain from the servers that answer without waiting for the others. MAY LOSE DATA: what only the missing servers hold (the server logs which servers and from which seq)",
    },
    "die-with-parent": { type: "boolean", description: "Exit when the parent process dies (used by pstore local and tests)" },
    ...logArgs,
  },
  async run({ args }) {
    const listen = parseHostPort(args.listen, "--listen", { allowPortZero: true });
    const listenAddress = formatHostPort(listen);
    const peers = args.peers === undefined ? [listenAddress] : parseAddressList(args.peers, "--peers");
    if (args.peers !== undefined && listen.port === 0) {
      throw new UsageError("--listen with port 0 only works alone, without --peers (the peers must know the port)");
    }
    if (!peers.includes(listenAddress)) {
      throw new UsageError(`--listen ${listenAddress} is not in --peers ${peers.join(",")}`);
    }
    const heartbeatMs = parseDurationMs(args["heartbeat-ms"], "--heartbeat-ms");
    const suspectMs = parseDurationMs(args["suspect-ms"], "--suspect-ms");
    if (suspectMs <= heartbeatMs) {
      throw new UsageError(`--suspect-ms (${suspectMs}) must be longer than --heartbeat-ms (${heartbeatMs})`);
    }
    const sessionTimeoutMs = parseDurationMs(args["session-timeout-ms"], "--session-timeout-ms");
    if (sessionTimeoutMs < SESSION_TIMEOUT_MS_MIN || sessionTimeoutMs > SESSION_TIMEOUT_MS_MAX) {
      throw new UsageError(
        `--session-timeout-ms must be from ${SESSION_TIMEOUT_MS_MIN} to ${SESSION_TIMEOUT_MS_MAX} (got ${sessionTimeoutMs})`,
      );
    }
    if (args.rejoin && peers.length < 2) {
      throw new UsageError("--rejoin needs --peers: the state comes from the other servers (alone, restore a checkpoint with pstore restore)");
    }
    const options = {
      rejoin: Boolean(args.rejoin),
      listen,
      peers,
      dataDir: args["data-dir"],
      segmentSize: parseSegmentSize(args["segment-size"]),
      sessionTimeoutMs,
      heartbeatMs,
      suspectMs,
      quorum: args.quorum as "none" | "majority",
      forceBoot: args["force-boot"] === true,
      fsync: args.fsync as FsyncMode,
      checkpointBytes: parseCount(args["checkpoint-mb"], "--checkpoint-mb", CHECKPOINT_MB_MAX) * 1024 * 1024,
      inboundBufferedBytesMax: _inboundBufferMax(args["inbound-max"]),
      secret: args.secret ?? (process.env.PSTORE_SECRET || undefined),
      passProfileDir: process.env.PSTORE_PASS_PROFILE || undefined,
      tls: tlsFlags(args["tls-cert"], args["tls-key"], args["tls-ca"]),
    };
    const tag = peers.length > 1 ? `server:${peers.indexOf(listenAddress) + 1}` : "server";
    const logger = createLogger({ verbose: args.verbose, quiet: args.quiet, timestamps: true }).withTag(tag);

    // Listening before starting: a SIGTERM during start-up stops the server once it is up.
    const stopSignal = nextStopSignal();
    if (args["die-with-parent"]) await _dieWithParent(logger);
    const { startServer } = await import("../server/index.ts");
    const server = await startServer({ ...options, logger }).catch((error: unknown) => {
      throw _explainListenError(error, listenAddress);
    });
    _stopOnDiskFailure(options.dataDir);
    process.stdout.write(`READY ${server.address}\n`);
    logger.debug(`chain ${peers.join(" -> ")}`);

    const signal = await stopSignal;
    logger.info(`${signal}: stopping`);
    // A second signal while stopping gives up on a clean stop.
    const again = nextStopSignal().then((second) => {
      logger.warn(`${second} again: exiting without a clean stop`);
      return 1;
    });
    return Promise.race([server.stop().then(() => 0), again]);
  },
});

/**
 * PR_SET_PDEATHSIG through the memory layer's C helper; as a second line, a
 * check of the parent pid every second (also covers a parent that died before
 * the prctl call, when the spawner told us its pid).
 */
export async function _dieWithParent(logger: { debug: (...args: unknown[]) => void; warn: (...args: unknown[]) => void }): Promise<void> {
  try {
    const memory = await import("../memory/index.ts");
    memory.dieWithParent();
  } catch (error) {
    logger.debug(`dieWithParent unavailable (${(error as Error).message}); polling the parent pid`);
  }
  const expected = Number(process.env[PARENT_PID_ENV]) || process.ppid;
  const check = () => {
    if (process.ppid !== expected) {
      logger.warn(`parent process ${expected} is gone: exiting`);
      // What PR_SET_PDEATHSIG would have done; not process.exit (main.ts owns exit codes).
      process.kill(process.pid, "SIGKILL");
    }
  };
  check();
  setInterval(check, 1000).unref();
}

function _inboundBufferMax(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const bytes = parseSize(text, "--inbound-max");
  if (bytes < 1024 * 1024) throw new UsageError(`--inbound-max: ${text} is below 1MiB; a client could not send a large release`);
  return bytes;
}

const _LISTEN_ERRORS: Record<string, string> = {
  EADDRINUSE: "the port is in use (another pstore server, or pstore local already running?)",
  EADDRNOTAVAIL: "that address is not one of this machine's",
  EACCES: "permission denied (ports below 1024 need privileges)",
};

/** Bun says only "Failed to listen at 127.0.0.1": add the port and what the code means. */
function _explainListenError(error: unknown, address: string): unknown {
  const code = (error as { code?: unknown } | null)?.code;
  const syscall = (error as { syscall?: unknown } | null)?.syscall;
  if (syscall !== "listen" || typeof code !== "string") return error;
  return new Error(`cannot listen on ${address}: ${code}, ${_LISTEN_ERRORS[code] ?? (error as Error).message}`);
}

/** Errors of a disk that failed under a running server (ENOSPC is not one: the server waits for space). */
const _DISK_FAILURES = new Set(["EIO", "EROFS", "EDQUOT", "EFBIG", "ENODEV", "ENXIO"]);

/**
 * A disk that fails under a running server (I/O error, file system turned read-only) stops it:
 * a server that cannot write its log must not go on, and a failed sync must not be retried as
 * if its pages were safe (the kernel may have dropped them). What it acknowledged was written
 * before (and synced, with --fsync always); the others of its chain go on without it. Said in one line, not as Bun's
 * stack trace of an uncaught error; anything else uncaught is a bug, and keeps its stack.
 */
function _stopOnDiskFailure(dataDir: string): void {
  const onError = (error: unknown) => {
    const { code } = (error ?? {}) as { code?: unknown };
    if (typeof code === "string" && _DISK_FAILURES.has(code)) {
      writeSync(2, `pstore serve: the disk of ${dataDir} failed (${(error as Error).message}): stopping, as a server that cannot write its log must (what it acknowledged was written before). Check the disk (dmesg), then restart this server\n`);
    } else {
      writeSync(2, `pstore serve: internal error, stopping: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    }
    process.exit(1);
  };
  process.on("uncaughtException", onError);
  process.on("unhandledRejection", onError);
}
