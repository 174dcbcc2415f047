/**
 * The peers bench/compare.ts measures pstore against, as child processes on
 * 127.0.0.1 in a temporary folder: Redis (1 primary + 2 replicas) and etcd
 * (3 members). Every child is recorded by PID in a `Processes` and stopped by
 * that PID (SIGTERM, then SIGKILL); `setpriv --pdeathsig KILL` (util-linux)
 * also kills a child if this process dies without cleaning up. Logs go to
 * files beside the data, so no pipe can fill and block a child.
 */
import type { Subprocess } from "bun";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { join } from "node:path";
import { EtcdClient } from "./etcd.ts";
import { RespClient } from "./resp.ts";

export const HOST = "127.0.0.1";

interface _Child {
  name: string;
  proc: Subprocess;
  log: string;
}

export class Processes {
  private readonly children = new Map<number, _Child>();
  private readonly deathSignal = Bun.which("setpriv") ? ["setpriv", "--pdeathsig", "KILL"] : [];

  spawn(name: string, command: string[], logFile: string): Subprocess {
    const fd = openSync(logFile, "a");
    let proc: Subprocess;
    try {
      proc = Bun.spawn([...this.deathSignal, ...command], {
        stdin: "ignore",
        stdout: fd,
        stderr: fd,
        // Own process group: a Ctrl-C reaches only compare.ts, which stops the children itself.
        detached: true,
      });
    } finally {
      closeSync(fd);
    }
    this.children.set(proc.pid, { name, proc, log: logFile });
    void proc.exited.then(() => this.children.delete(proc.pid));
    return proc;
  }

  get pids(): number[] {
    return [...this.children.keys()];
  }

  /** Stops the given children (by PID), or all of them: SIGTERM, then SIGKILL after `graceMs`. */
  async stop(pids: number[] = this.pids, graceMs = 3000): Promise<void> {
    const targets = pids.map((pid) => this.children.get(pid)).filter((child): child is _Child => child !== undefined);
    for (const child of targets) child.proc.kill("SIGTERM");
    await Promise.all(
      targets.map(async (child) => {
        const exited = await Promise.race([child.proc.exited.then(() => true), Bun.sleep(graceMs).then(() => false)]);
        if (!exited) {
          child.proc.kill("SIGKILL");
          await child.proc.exited;
        }
      }),
    );
  }

  /** Last lines of a child's log, for an error message. */
  async tail(pid: number, lines = 15): Promise<string> {
    const child = this.children.get(pid);
    if (!child) return "";
    const text = await Bun.file(child.log).text().catch(() => "");
    return text.trimEnd().split("\n").slice(-lines).join("\n");
  }
}

/** Ports free right now (a small race with other programs remains). */
export async function freePorts(count: number): Promise<number[]> {
  const listeners = Array.from({ length: count }, () => Bun.listen({ hostname: HOST, port: 0, socket: { data() {} } }));
  const ports = listeners.map((listener) => listener.port);
  for (const listener of listeners) listener.stop(true);
  return ports;
}

/** Retries `probe` until it returns true or `timeoutMs` passes. */
export async function waitUntil(what: string, timeoutMs: number, probe: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let lastError = "";
  while (performance.now() < deadline) {
    try {
      if (await probe()) return;
    } catch (error) {
      lastError = `: ${(error as Error).message}`;
    }
    await Bun.sleep(50);
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms${lastError}`);
}

// ---- Redis ----

export type Persistence = "off" | "always";

export interface RedisGroup {
  persistence: Persistence;
  primaryPort: number;
  ports: number[];
  pids: number[];
  /** The command line of the primary, for the report. */
  command: string[];
}

/** `redis-server` flags: loopback only, persistence as asked, replicas never cut off for lag. */
export function redisArgs(port: number, dir: string, persistence: Persistence, primaryPort: number | null): string[] {
  return [
    "redis-server",
    "--port", String(port),
    "--bind", HOST,
    "--protected-mode", "no",
    "--dir", dir,
    "--save", "",
    ...(persistence === "always" ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"]),
    // A 64 MiB SET must not make the primary drop a replica (default: 256 MiB hard limit).
    "--client-output-buffer-limit", "replica 0 0 0",
    // Replicas sync at once instead of waiting 5 s for others to share a diskless transfer.
    "--repl-diskless-sync-delay", "0",
    ...(primaryPort === null ? [] : ["--replicaof", HOST, String(primaryPort)]),
  ];
}

/** Starts a primary and two replicas and waits until `WAIT 2` is answered by both. */
export async function startRedis(processes: Processes, root: string, persistence: Persistence): Promise<RedisGroup> {
  const ports = await freePorts(3);
  const pids: number[] = [];
  const commands: string[][] = [];
  for (let i = 0; i < 3; i++) {
    const dir = join(root, `redis-${persistence}-${i + 1}`);
    mkdirSync(dir, { recursive: true });
    const command = redisArgs(ports[i]!, dir, persistence, i === 0 ? null : ports[0]!);
    commands.push(command);
    pids.push(processes.spawn(`redis ${persistence} ${i + 1}`, command, join(dir, "redis.log")).pid);
  }
  const group = { persistence, primaryPort: ports[0]!, ports, pids, command: commands[0]! };
  try {
    await waitUntil(`redis (${persistence}) replicas`, 15_000, async () => {
      const client = await RespClient.connect(HOST, group.primaryPort);
      try {
        await client.command("SET", "ready", "1");
        return (await client.command("WAIT", "2", "1000")) === 2;
      } finally {
        client.close();
      }
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await processes.tail(pids[0]!)}`);
  }
  return group;
}

// ---- etcd ----

export interface EtcdGroup {
  endpoints: string[];
  /** The leader's client URL: the benchmark talks to it, saving the follower-to-leader hop. */
  leader: string;
  pids: number[];
  command: string[];
}

/** Starts 3 members with their write-ahead logs (etcd always fsyncs them) and finds the leader. */
export async function startEtcd(processes: Processes, root: string): Promise<EtcdGroup> {
  const ports = await freePorts(6);
  const names = ["m1", "m2", "m3"];
  const peerUrl = (i: number) => `http://${HOST}:${ports[3 + i]}`;
  const clientUrl = (i: number) => `http://${HOST}:${ports[i]}`;
  const initialCluster = names.map((name, i) => `${name}=${peerUrl(i)}`).join(",");
  const pids: number[] = [];
  const commands: string[][] = [];
  for (let i = 0; i < 3; i++) {
    const dir = join(root, `etcd-${names[i]}`);
    mkdirSync(dir, { recursive: true });
    const command = [
      "etcd",
      "--name", names[i]!,
      "--data-dir", join(dir, "data"),
      "--listen-client-urls", clientUrl(i),
      "--advertise-client-urls", clientUrl(i),
      "--listen-peer-urls", peerUrl(i),
      "--initial-advertise-peer-urls", peerUrl(i),
      "--initial-cluster", initialCluster,
      "--initial-cluster-token", "pstore-bench",
      "--initial-cluster-state", "new",
      "--logger", "zap",
      "--log-level", "error",
    ];
    commands.push(command);
    pids.push(processes.spawn(`etcd ${names[i]}`, command, join(dir, "etcd.log")).pid);
  }
  const endpoints = names.map((_, i) => clientUrl(i));
  let leader = "";
  try {
    await waitUntil("etcd members", 30_000, async () => {
      const statuses = await Promise.all(endpoints.map((endpoint) => new EtcdClient(endpoint).status()));
      const index = statuses.findIndex((status) => status.leader !== "0" && status.leader === status.memberId);
      if (index === -1) return false;
      leader = endpoints[index]!;
      await new EtcdClient(leader).put("ready", new Uint8Array([1]));
      return true;
    });
  } catch (error) {
    throw new Error(`${(error as Error).message}\n${await processes.tail(pids[0]!)}`);
  }
  return { endpoints, leader, pids, command: commands[0]! };
}
