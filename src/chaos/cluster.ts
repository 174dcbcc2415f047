/**
 * The cluster under chaos: N `pstore serve` processes on loopback, and
 * between every two of them a pair of LinkProxy (one per direction), so a
 * link can be cut. Server i's --peers lists its own address and, for every
 * other server j, the proxy i→j: all lists have the same order, so server
 * ids agree. Clients start from the real addresses; a server may hand them
 * a proxy's address, which lets clients through even while the link is cut.
 *
 * Faults: kill (SIGKILL), restart (same port and data), pause (SIGSTOP) and
 * resume (SIGCONT), cut and heal a link. Every server is a child of this
 * process (--die-with-parent), stopped by its pid.
 */
import type { Subprocess } from "bun";
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import type { ClusterStatus } from "../client/types";
import { Connection } from "../client/connection";
import { outputLines } from "../cli/cluster";
import { PARENT_PID_ENV } from "../cli/signals";
import { type CutMode, LinkProxy } from "./proxy";

export interface ChaosClusterOptions {
  count: number;
  dataDir: string;
  /** The program that runs `serve` (default: dist/pstore when built, else bun src/cli/main.ts). */
  command?: string[];
  segmentSize?: string;
  fsync?: "always" | "batch" | "off";
  /** More `serve` flags for every server. */
  serveArgs?: string[];
  /** Each line a server logs. */
  onLog?: (index: number, line: string) => void;
  /** A server exited on its own (not killed by us). */
  onUnexpectedExit?: (index: number, how: string) => void;
}

const ROOT = resolve(import.meta.dir, "../..");

/** The built binary when there is one, as users run it; else the source under bun. */
export function defaultCommand(): string[] {
  const binary = join(ROOT, "dist/pstore");
  if (existsSync(binary)) return [binary];
  return [process.execPath, join(ROOT, "src/cli/main.ts")];
}

interface Child {
  process: Subprocess<"ignore", "pipe", "pipe">;
  /** Killed, stopped or restarted by us: its exit is expected. */
  expected: boolean;
}

export type ServerState = "running" | "paused" | "killed";

export class ChaosCluster {
  readonly count: number;
  /** Real addresses, in chain (id) order. */
  addresses: string[] = [];
  /** proxies[i][j]: how server i reaches server j (null on the diagonal). */
  proxies: (LinkProxy | null)[][] = [];
  private readonly children: (Child | null)[];
  readonly states: ServerState[];
  /** Log lines of each server, the most recent ones (for a failure report). */
  readonly recentLog: string[][];
  private stopping = false;

  constructor(private readonly options: ChaosClusterOptions) {
    this.count = options.count;
    this.children = new Array(this.count).fill(null);
    this.states = new Array(this.count).fill("killed");
    this.recentLog = Array.from({ length: this.count }, () => []);
  }

  /** Picks ports, starts the proxies, then every server; resolves when all printed READY. */
  async start(): Promise<void> {
    // The servers' ports stay taken while the proxies pick theirs: a proxy that took a port
    // just freed for a server made --peers list it twice.
    const held = holdFreePorts(this.count);
    this.addresses = held.ports.map((port) => `127.0.0.1:${port}`);
    this.proxies = this.addresses.map((_, i) =>
      this.addresses.map((target, j) => {
        if (i === j) return null;
        const proxy = new LinkProxy(target, `${i + 1}→${j + 1}`);
        proxy.listen();
        return proxy;
      }),
    );
    held.release();
    await Promise.all(this.addresses.map((_, i) => this.spawn(i)));
  }

  /** Which server an address (real or proxy) leads to. */
  indexOf(address: string): number {
    const real = this.addresses.indexOf(address);
    if (real >= 0) return real;
    for (const row of this.proxies) {
      for (const [j, proxy] of row.entries()) if (proxy?.address === address) return j;
    }
    return -1;
  }

  pid(index: number): number | null {
    const child = this.children[index];
    return child && child.process.exitCode === null && child.process.signalCode === null ? child.process.pid : null;
  }

  async kill(index: number): Promise<void> {
    const child = this.children[index];
    this.states[index] = "killed";
    if (!child) return;
    child.expected = true;
    if (child.process.exitCode === null && child.process.signalCode === null) child.process.kill("SIGKILL");
    await child.process.exited;
    this.children[index] = null;
  }

  /** Starts a killed server again (same port, same data directory). */
  async restart(index: number): Promise<void> {
    if (this.children[index]) await this.kill(index);
    await this.spawn(index);
  }

  pause(index: number): void {
    const pid = this.pid(index);
    if (pid === null) return;
    process.kill(pid, "SIGSTOP");
    this.states[index] = "paused";
  }

  resume(index: number): void {
    const pid = this.pid(index);
    if (pid !== null) process.kill(pid, "SIGCONT");
    if (this.states[index] === "paused") this.states[index] = "running";
  }

  /** Cuts the server traffic between i and j, both ways. */
  cut(i: number, j: number, mode: CutMode): void {
    this.proxies[i]![j]!.startCut(mode);
    this.proxies[j]![i]!.startCut(mode);
  }

  heal(i: number, j: number): void {
    this.proxies[i]![j]!.heal();
    this.proxies[j]![i]!.heal();
  }

  /** Cuts server i's connections to j only: i's messages no longer reach j; j's, on its own connections, reach i. */
  cutOneWay(i: number, j: number, mode: CutMode): void {
    this.proxies[i]![j]!.startCut(mode);
  }

  healOneWay(i: number, j: number): void {
    this.proxies[i]![j]!.heal();
  }

  /** Whether i's connections to j are cut (a two-way cut cuts both i→j and j→i). */
  isCut(i: number, j: number): boolean {
    return this.proxies[i]![j]!.isCut;
  }

  /** The cluster as server `index` itself sees it, asked directly; null if it does not answer. */
  async statusOf(index: number, timeoutMs = 1000, secret?: string): Promise<ClusterStatus | null> {
    let connection: Connection | null = null;
    try {
      let answer!: (json: string) => void;
      const answered = new Promise<string>((resolve) => (answer = resolve));
      connection = await Connection.open(
        this.addresses[index]!,
        {
          onMessage: (message) => {
            if (message.type === "queryReply") answer(message.body.json);
          },
          onClose: () => {},
        },
        timeoutMs,
        secret,
      );
      connection.send({ type: "query", body: { queryId: 1, kind: "status", name: "" } });
      let timer: ReturnType<typeof setTimeout> | undefined;
      const json = await Promise.race([answered, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
      clearTimeout(timer);
      return json === null ? null : (JSON.parse(json) as ClusterStatus);
    } catch {
      return null;
    } finally {
      connection?.close();
    }
  }

  /** Kills every server and stops the proxies. */
  async stop(): Promise<void> {
    this.stopping = true;
    for (let i = 0; i < this.count; i++) this.resume(i);
    await Promise.all(this.children.map(async (child, i) => {
      if (!child) return;
      child.expected = true;
      child.process.kill("SIGTERM");
      const stopped = await Promise.race([child.process.exited.then(() => true), Bun.sleep(3000).then(() => false)]);
      if (!stopped) child.process.kill("SIGKILL");
      await child.process.exited;
      this.children[i] = null;
      this.states[i] = "killed";
    }));
    for (const row of this.proxies) for (const proxy of row) proxy?.stop();
  }

  private serveArgs(index: number): string[] {
    const peers = this.addresses.map((address, j) => (j === index ? address : this.proxies[index]![j]!.address));
    return [
      "serve",
      "--listen",
      this.addresses[index]!,
      "--peers",
      peers.join(","),
      "--data-dir",
      join(this.options.dataDir, String(index + 1)),
      "--segment-size",
      this.options.segmentSize ?? "16MiB",
      "--fsync",
      this.options.fsync ?? "always",
      "--die-with-parent",
      ...(this.options.serveArgs ?? []),
    ];
  }

  private async spawn(index: number): Promise<void> {
    mkdirSync(join(this.options.dataDir, String(index + 1)), { recursive: true });
    const child = Bun.spawn([...(this.options.command ?? defaultCommand()), ...this.serveArgs(index)], {
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
      env: { ...process.env, [PARENT_PID_ENV]: String(process.pid) },
      // Its own process group: a Ctrl-C at the terminal reaches only us, and we stop it.
      detached: true,
    });
    const record: Child = { process: child, expected: false };
    this.children[index] = record;
    void this.pump(index, child.stderr);
    const ready = this.waitReady(index, child.stdout);
    void child.exited.then(() => {
      if (!record.expected && !this.stopping) {
        const how = child.signalCode ? `killed by ${child.signalCode}` : `exit code ${child.exitCode}`;
        this.options.onUnexpectedExit?.(index, how);
      }
    });
    const ok = await Promise.race([ready, child.exited.then(() => false), Bun.sleep(30_000).then(() => false)]);
    if (!ok) {
      record.expected = true;
      child.kill("SIGKILL");
      await child.exited;
      this.children[index] = null;
      throw new Error(`server ${index + 1} did not start: ${this.recentLog[index]!.slice(-10).join("\n  ")}`);
    }
    this.states[index] = "running";
  }

  private async waitReady(index: number, stream: ReadableStream<Uint8Array>): Promise<boolean> {
    let ready = false;
    let resolveReady!: (value: boolean) => void;
    const result = new Promise<boolean>((resolve) => (resolveReady = resolve));
    void (async () => {
      for await (const line of outputLines(stream)) {
        if (!ready && line.startsWith("READY ")) {
          ready = true;
          resolveReady(true);
        }
        this.remember(index, `stdout: ${line}`);
      }
      if (!ready) resolveReady(false);
    })();
    return result;
  }

  private async pump(index: number, stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const line of outputLines(stream)) {
      this.remember(index, line);
      this.options.onLog?.(index, line);
    }
  }

  private remember(index: number, line: string): void {
    const log = this.recentLog[index]!;
    log.push(line);
    if (log.length > 200) log.splice(0, log.length - 200);
  }
}

/** Free ports, held until `release` (a small race remains after it: acceptable on loopback). */
function holdFreePorts(count: number): { ports: number[]; release: () => void } {
  const listeners = Array.from({ length: count }, () => Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } }));
  return {
    ports: listeners.map((listener) => listener.port),
    release: () => {
      for (const listener of listeners) listener.stop(true);
    },
  };
}
