/**
 * A cluster of `pstore serve` child processes on loopback: used by
 * `pstore local`, `pstore shell --local`, `pstore bench --local` and tests.
 *
 * Each child runs the same executable (`selfCommand()`), listens on its own
 * port, keeps its data in `<dataDir>/<n>` (n from 1) and dies with its parent.
 * Children are started in their own process group, so a Ctrl-C at the
 * terminal reaches only the parent, which then stops exactly its children, by
 * pid: SIGTERM, then SIGKILL after `stopTimeoutMs`.
 *
 * Indexes in this API are 0-based; messages for people say "server 1".
 */
import type { Subprocess } from "bun";
import { mkdirSync, rmSync } from "node:fs";
import { join, resolve } from "node:path";
import { SEGMENT_SIZE_DEFAULT } from "../constants.ts";
import type { FsyncMode } from "./flags.ts";
import { selfCommand } from "./self.ts";
import { PARENT_PID_ENV } from "./signals.ts";

export interface LocalClusterOptions {
  /** How many servers; default 3. */
  count?: number;
  /** Port of server 1; the others follow. 0: pick free ports (tests). Default 7401. */
  basePort?: number;
  host?: string;
  /** Parent of the servers' data directories; default ./pstore-data. */
  dataDir?: string;
  fsync?: FsyncMode;
  segmentSize?: number;
  secret?: string;
  /** Servers (0-based) started with `--rejoin`: a corrupt log or checkpoint is moved aside, the state fetched from the others. */
  rejoin?: number[];
  /** More `serve` flags for every child, e.g. ["--session-timeout-ms", "2000"]. */
  serveArgs?: string[];
  /** The program to run as `serve` (default: this very program, selfCommand()). */
  command?: string[];
  /** How long a child may take to print READY; default 15 s. */
  readyTimeoutMs?: number;
  /** onLog prints the lines where the user sees them: a start error then does not repeat them. */
  logShown?: boolean;
  /** How long a child may take to stop after SIGTERM before SIGKILL; default 5 s. */
  stopTimeoutMs?: number;
  /** Each line a child writes on stderr (its log); default: kept only for error messages. */
  onLog?: (index: number, line: string) => void;
  /** A child exited while it was meant to run (not through stop/kill/restart). */
  onUnexpectedExit?: (index: number, how: string) => void;
}

interface _Child {
  process: Subprocess<"ignore", "pipe", "pipe">;
  /** Last lines of stderr, for the error message when it fails. */
  recentLog: string[];
  expectedExit: boolean;
  /** Printed READY: only then is an exit "unexpected" (before, start() reports it). */
  ready: boolean;
  exited: Promise<string>;
}

const _RECENT_LOG_LINES = 20;

export class LocalCluster {
  readonly host: string;
  readonly dataDir: string;
  private readonly count: number;
  private readonly basePort: number;
  private ports: number[] = [];
  private readonly children: (_Child | null)[];
  private stopping = false;
  /** The top directories start() created: a failed start removes them again. */
  private readonly createdDirs: string[] = [];

  constructor(private readonly options: LocalClusterOptions = {}) {
    this.count = options.count ?? 3;
    this.basePort = options.basePort ?? 7401;
    this.host = options.host ?? "127.0.0.1";
    this.dataDir = options.dataDir ?? "./pstore-data";
    if (!Number.isInteger(this.count) || this.count < 1) throw new Error(`count must be at least 1, got ${this.count}`);
    if (this.basePort !== 0 && this.basePort + this.count - 1 > 65535) {
      throw new Error(`ports ${this.basePort}..${this.basePort + this.count - 1} go past 65535`);
    }
    this.children = new Array(this.count).fill(null);
  }

  /** "127.0.0.1:7401", … in chain order (known once start() has chosen the ports). */
  get servers(): string[] {
    return this.ports.map((port) => `${this.host}:${port}`);
  }

  /** Pid of each running child, null for a stopped one. */
  get pids(): (number | null)[] {
    return this.children.map((child) => (child && child.process.exitCode === null && !child.process.signalCode ? child.process.pid : null));
  }

  isRunning(index: number): boolean {
    return this.pids[this._check(index)] !== null;
  }

  /** Starts every server and waits for each one's READY; on any failure stops the others and throws. */
  async start(): Promise<void> {
    if (this.ports.length === 0) this.ports = this.basePort === 0 ? await _freePorts(this.host, this.count) : this._consecutivePorts();
    this.stopping = false;
    const results = await Promise.allSettled(this.children.map((_, index) => this._spawn(index)));
    const failures = results.flatMap((result) => (result.status === "rejected" ? [result.reason as Error] : []));
    if (failures.length > 0) {
      await this.stop();
      this._removeCreatedDirs();
      throw new ClusterStartError(failures);
    }
    // Started: from now on those directories hold the cluster's data.
    this.createdDirs.length = 0;
  }

  /** Stops every child: SIGTERM, then SIGKILL for those still running after stopTimeoutMs. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(this.children.map((_, index) => this._stopChild(index, "SIGTERM")));
  }

  /** Sends `signal` to server `index` (fault injection) and waits until it has exited. */
  async kill(index: number, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this._stopChild(this._check(index), signal);
  }

  /** Stops server `index` if it runs, then starts it again on the same port and data. */
  async restart(index: number): Promise<void> {
    this._check(index);
    await this._stopChild(index, "SIGTERM");
    await this._spawn(index).finally(() => (this.createdDirs.length = 0)); // only a failed start() removes dirs
  }

  /**
   * After a failed start: the directories this start created hold only what
   * its servers wrote while starting (no client was told the addresses yet),
   * so they go; a data dir that existed before is never touched.
   */
  private _removeCreatedDirs(): void {
    for (const dir of new Set(this.createdDirs)) rmSync(dir, { recursive: true, force: true });
    this.createdDirs.length = 0;
  }

  private _check(index: number): number {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw new RangeError(`no server ${index + 1}: the cluster has servers 1 to ${this.count}`);
    }
    return index;
  }

  private _consecutivePorts(): number[] {
    return Array.from({ length: this.count }, (_, i) => this.basePort + i);
  }

  private _label(index: number): string {
    return `server ${index + 1} (${this.servers[index]})`;
  }

  private _serveArgs(index: number): string[] {
    const args = [
      "serve",
      "--listen",
      this.servers[index]!,
      "--peers",
      this.servers.join(","),
      "--data-dir",
      join(this.dataDir, String(index + 1)),
      "--segment-size",
      String(this.options.segmentSize ?? SEGMENT_SIZE_DEFAULT),
      "--die-with-parent",
    ];
    if (this.options.fsync) args.push("--fsync", this.options.fsync);
    if (this.options.rejoin?.includes(index)) args.push("--rejoin");
    return [...args, ...(this.options.serveArgs ?? [])];
  }

  private async _spawn(index: number): Promise<void> {
    const dir = join(this.dataDir, String(index + 1));
    const first = mkdirSync(dir, { recursive: true });
    // mkdirSync returns the first (topmost) directory it had to create.
    if (first !== undefined) {
      this.createdDirs.push(resolve(first));
    }
    const env: Record<string, string | undefined> = { ...process.env, [PARENT_PID_ENV]: String(process.pid) };
    // The secret goes through the environment, not argv, where ps would show it.
    if (this.options.secret !== undefined) env.PSTORE_SECRET = this.options.secret;
    const child = Bun.spawn([...(this.options.command ?? selfCommand()), ...this._serveArgs(index)], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env,
      detached: true,
    });
    const record: _Child = { process: child, recentLog: [], expectedExit: false, ready: false, exited: Promise.resolve("") };
    record.exited = child.exited.then(() => _describeExit(child));
    this.children[index] = record;
    void this._pumpLog(index, record);
    void record.exited.then((how) => {
      if (record.ready && !record.expectedExit && !this.stopping) this.options.onUnexpectedExit?.(index, how);
    });
    await this._waitReady(index, record);
  }

  private async _pumpLog(index: number, record: _Child): Promise<void> {
    for await (const line of outputLines(record.process.stderr)) {
      record.recentLog.push(line);
      if (record.recentLog.length > _RECENT_LOG_LINES) record.recentLog.shift();
      this.options.onLog?.(index, line);
    }
  }

  /** Reads stdout until `READY <address>`; keeps draining it afterwards so the pipe never fills. */
  private async _waitReady(index: number, record: _Child): Promise<void> {
    const timeoutMs = this.options.readyTimeoutMs ?? 15_000;
    const lines = outputLines(record.process.stdout);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const ready = (async () => {
      // next() by hand: leaving a for-await would close the stream we must keep draining.
      for (;;) {
        const { done, value } = await lines.next();
        if (done) return null;
        if (value.startsWith("READY ")) return value.slice("READY ".length).trim();
      }
    })();
    const outcome = await Promise.race([ready, timeout]);
    clearTimeout(timer);
    if (outcome !== null && outcome !== "timeout") {
      record.ready = true;
      void (async () => {
        while (!(await lines.next()).done);
      })();
      return;
    }
    const how = outcome === "timeout" ? `did not print READY within ${timeoutMs} ms` : `exited before READY (${await record.exited})`;
    record.expectedExit = true;
    await this._stopChild(index, "SIGTERM");
    // Give the pipe a moment to deliver the child's last words.
    await Bun.sleep(20);
    // With onLog the lines were shown as they came: saying them again would print each error twice.
    const log = this.options.logShown ? "; its log is above" : record.recentLog.length > 0 ? `; its last log lines:\n    ${record.recentLog.join("\n    ")}` : "";
    throw new ServerStartError(`${this._label(index)} ${how}${log}`, index, [...record.recentLog]);
  }

  private async _stopChild(index: number, signal: NodeJS.Signals): Promise<void> {
    const record = this.children[index];
    if (!record) return;
    record.expectedExit = true;
    const { process: child } = record;
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timeoutMs = this.options.stopTimeoutMs ?? 5000;
    const stopped = await Promise.race([record.exited.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
    if (!stopped) {
      child.kill("SIGKILL");
      await record.exited;
    }
  }
}

/** A server that did not start: which one, and the last lines of its log. */
export class ServerStartError extends Error {
  constructor(
    message: string,
    readonly index: number,
    readonly recentLog: string[],
  ) {
    super(message);
  }
}

/** start() failed: each server that did not start (or any other error met on the way). */
export class ClusterStartError extends Error {
  constructor(readonly failures: Error[]) {
    super(failures.map((failure) => failure.message).join("\n"));
  }

  /** The servers (0-based) that refused their data dir as corrupt: `--rejoin` would let them start. */
  get corrupt(): number[] {
    return this.failures.flatMap((failure) =>
      failure instanceof ServerStartError && failure.recentLog.some((line) => line.includes("pstore serve --rejoin")) ? [failure.index] : [],
    );
  }
}

function _describeExit(child: Subprocess): string {
  if (child.signalCode) return `killed by ${child.signalCode}`;
  return `exit code ${child.exitCode}`;
}

/** Lines of a child's output stream, without their newline. */
export async function* outputLines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let pending = "";
  const reader = stream.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let newline = pending.indexOf("\n");
      while (newline !== -1) {
        yield pending.slice(0, newline);
        pending = pending.slice(newline + 1);
        newline = pending.indexOf("\n");
      }
    }
    if (pending) yield pending;
  } finally {
    reader.releaseLock();
  }
}

/** Ports the OS says are free right now (a small race remains, acceptable for tests). */
async function _freePorts(host: string, count: number): Promise<number[]> {
  const listeners = Array.from({ length: count }, () =>
    Bun.listen({ hostname: host, port: 0, socket: { data() {} } }),
  );
  const ports = listeners.map((listener) => listener.port);
  for (const listener of listeners) listener.stop(true);
  return ports;
}
