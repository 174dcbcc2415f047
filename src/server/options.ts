import type { ConsolaInstance } from "consola";
import type { TlsFiles } from "../net/tls";
import type { FsyncMode } from "../store";

export type { FsyncMode };

export interface ServerOptions {
  listen: { host: string; port: number };
  /** Every server's address in initial chain order; includes this one. */
  peers: string[];
  dataDir: string;
  segmentSize: number;
  sessionTimeoutMs: number;
  heartbeatMs: number;
  suspectMs: number;
  /** "majority": configurations need a majority of --peers, and writes a chain holding one (default "none"). */
  quorum?: "none" | "majority";
  /** --force-boot: form a chain without waiting for servers that may hold acknowledged updates. */
  forceBoot?: boolean;
  fsync: FsyncMode;
  /** Log bytes after which a checkpoint is written (default CHECKPOINT_MB_DEFAULT MiB). */
  checkpointBytes?: number;
  /** A corrupt log or checkpoint is moved aside and the state fetched from the other servers. */
  rejoin?: boolean;
  /** Bytes clients' incomplete frames may hold at once (default INBOUND_BUFFERED_BYTES_MAX). */
  inboundBufferedBytesMax?: number;
  secret?: string;
  /** Stamps of each request and update, written here at stop (bench/pass_profile.ts; $PSTORE_PASS_PROFILE). */
  passProfileDir?: string;
  /** Certificate and key to serve TLS; the CA that peers' certificates must chain to. */
  tls?: TlsFiles;
  logger?: ConsolaInstance;
}

export interface RunningServer {
  /** "host:port" with the real port (when listen.port was 0). */
  address: string;
  stop(): Promise<void>;
}
