import type { ConsolaInstance } from "consola";

export type FsyncMode = "always" | "batch" | "off";

export interface ServerOptions {
  listen: { host: string; port: number };
  /** Every server's address in initial chain order; includes this one. */
  peers: string[];
  dataDir: string;
  segmentSize: number;
  sessionTimeoutMs: number;
  heartbeatMs: number;
  suspectMs: number;
  fsync: FsyncMode;
  secret?: string;
  logger?: ConsolaInstance;
}

export interface RunningServer {
  /** "host:port" with the real port (when listen.port was 0). */
  address: string;
  stop(): Promise<void>;
}
