/**
 * The workloads of bench/compare.ts on Redis and etcd, each the equivalent of
 * a pstore workload (the definitions), run by the same closed loop as
 * `pstore bench` (src/bench/loop.ts) so both sides are timed alike:
 *
 *   Redis cycle      SET lock NX PX (retried until OK), GET, SET, WAIT 2 0, DEL — each client
 *                    its own lock and key, commands one at a time as a plain client sends them
 *   Redis contended  one counter under one lock, two recipes:
 *                      blpop  BLPOP token (blocks), GET, SET, WAIT 2 0, RPUSH token
 *                      setnx  SET lock NX PX retried at once (spinning), GET, SET, WAIT 2 0, DEL
 *   Redis large      SET of a 64 MiB value + WAIT 2 0
 *   Redis get        GET of a 4 KiB value (the read workload's peer: a plain read, no lock)
 *   etcd cycle       Lock (with a lease per client), Range, Put, Unlock
 *
 * WAIT 2 0 makes each write reach both replicas before the next step, as a
 * pstore release reaches every server; a WAIT that counts fewer than 2
 * replicas fails the run. Each client has its own connection.
 */
import { LatencyRecorder, type LatencySummary, round1, runLoop } from "../src/bench/index.ts";
import type { Budget } from "../src/bench/index.ts";
import { EtcdClient } from "./etcd.ts";
import { RespClient } from "./resp.ts";
import { HOST } from "./services.ts";

export interface PeerResult {
  clients: number;
  size: number;
  ops: number;
  seconds: number;
  ops_per_s: number;
  latency_us: LatencySummary;
  [extra: string]: unknown;
}

export interface PeerRun {
  clients: number;
  size: number;
  budget: Budget;
  warmupMs: number;
  signal?: AbortSignal;
}

const LOCK_TTL_MS = "10000";
const REPLICAS = 2;

function _result(run: { latency: LatencyRecorder; ops: number; seconds: number }, clients: number, size: number): PeerResult {
  return {
    clients,
    size,
    ops: run.ops,
    seconds: Math.round(run.seconds * 1000) / 1000,
    ops_per_s: round1(run.ops / run.seconds),
    latency_us: run.latency.summary(),
  };
}

async function _connections(port: number, count: number): Promise<RespClient[]> {
  return Promise.all(Array.from({ length: count }, () => RespClient.connect(HOST, port)));
}

async function _wait(client: RespClient): Promise<void> {
  const acknowledged = await client.command("WAIT", String(REPLICAS), "0");
  if (acknowledged !== REPLICAS) throw new Error(`WAIT ${REPLICAS} 0 answered ${acknowledged}: a replica is missing`);
}

async function _lockNx(client: RespClient, key: string, token: string): Promise<void> {
  while ((await client.command("SET", key, token, "NX", "PX", LOCK_TTL_MS)) !== "OK");
}

export async function redisGet(port: number, run: PeerRun, prefix: string): Promise<PeerResult> {
  const clients = await _connections(port, run.clients);
  try {
    await Promise.all(clients.map((client, index) => client.command("SET", `${prefix}read-${index}`, new Uint8Array(run.size).fill(index + 1))));
    const result = await runLoop({
      clients: run.clients,
      budget: run.budget,
      warmupMs: run.warmupMs,
      signal: run.signal,
      op: async (index) => {
        const value = await clients[index]!.command("GET", `${prefix}read-${index}`);
        if (value === null) throw new Error("redis GET found no value");
      },
    });
    return _result(result, run.clients, run.size);
  } finally {
    for (const client of clients) client.close();
  }
}

export async function redisCycle(port: number, run: PeerRun, prefix: string): Promise<PeerResult> {
  const clients = await _connections(port, run.clients);
  const values = clients.map(() => new Uint8Array(run.size));
  try {
    const result = await runLoop({
      clients: run.clients,
      budget: run.budget,
      warmupMs: run.warmupMs,
      signal: run.signal,
      op: async (index, iteration) => {
        const client = clients[index]!;
        const lock = `${prefix}lock-${index}`;
        const data = `${prefix}data-${index}`;
        await _lockNx(client, lock, String(iteration));
        await client.command("GET", data);
        values[index]!.fill(iteration & 0xff);
        await client.command("SET", data, values[index]!);
        await _wait(client);
        await client.command("DEL", lock);
      },
    });
    return _result(result, run.clients, run.size);
  } finally {
    for (const client of clients) client.close();
  }
}

export type LockRecipe = "blpop" | "setnx";

export async function redisContended(port: number, run: PeerRun, prefix: string, recipe: LockRecipe): Promise<PeerResult> {
  const clients = await _connections(port, run.clients);
  const counter = `${prefix}counter`;
  const token = `${prefix}token`;
  const lock = `${prefix}lock`;
  try {
    await clients[0]!.command("DEL", counter, token, lock);
    await clients[0]!.command("SET", counter, "0");
    if (recipe === "blpop") await clients[0]!.command("RPUSH", token, "1");
    await _wait(clients[0]!);
    let acknowledged = 0;
    const result = await runLoop({
      clients: run.clients,
      budget: run.budget,
      warmupMs: run.warmupMs,
      signal: run.signal,
      op: async (index, iteration) => {
        const client = clients[index]!;
        if (recipe === "blpop") await client.command("BLPOP", token, "0");
        else await _lockNx(client, lock, `${index}-${iteration}`);
        const value = Number(await client.text("GET", counter));
        await client.command("SET", counter, String(value + 1));
        await _wait(client);
        if (recipe === "blpop") await client.command("RPUSH", token, "1");
        else await client.command("DEL", lock);
        acknowledged++;
      },
    });
    const final = Number(await clients[0]!.text("GET", counter));
    return { ..._result(result, run.clients, 4), recipe, counter: final, acknowledged, counter_ok: final === acknowledged };
  } finally {
    for (const client of clients) client.close();
  }
}

/** SET of a `size`-byte value + WAIT 2 0, one client; MB/s of whole rewrites. */
export async function redisLarge(port: number, run: PeerRun, prefix: string): Promise<PeerResult> {
  const [client] = await _connections(port, 1);
  const value = new Uint8Array(run.size);
  try {
    const result = await runLoop({
      clients: 1,
      budget: run.budget,
      warmupMs: run.warmupMs,
      signal: run.signal,
      op: async (_, iteration) => {
        value.fill(iteration & 0xff);
        await client!.command("SET", `${prefix}large`, value);
        await _wait(client!);
      },
    });
    await client!.command("DEL", `${prefix}large`);
    return { ..._result(result, 1, run.size), rewrite_mb_per_s: round1((result.ops * run.size) / result.seconds / 1e6) };
  } finally {
    client!.close();
  }
}

export async function etcdCycle(endpoint: string, run: PeerRun, prefix: string): Promise<PeerResult> {
  const clients = Array.from({ length: run.clients }, () => new EtcdClient(endpoint));
  const leases = await Promise.all(clients.map((client) => client.leaseGrant(60)));
  const values = clients.map(() => new Uint8Array(run.size));
  try {
    const result = await runLoop({
      clients: run.clients,
      budget: run.budget,
      warmupMs: run.warmupMs,
      signal: run.signal,
      op: async (index, iteration) => {
        const client = clients[index]!;
        const owner = await client.lock(`${prefix}lock-${index}`, leases[index]!);
        await client.range(`${prefix}data-${index}`);
        values[index]!.fill(iteration & 0xff);
        await client.put(`${prefix}data-${index}`, values[index]!);
        await client.unlock(owner);
      },
    });
    return _result(result, run.clients, run.size);
  } finally {
    await Promise.all(clients.map((client, i) => client.leaseRevoke(leases[i]!).catch(() => {})));
  }
}
