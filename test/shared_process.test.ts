/**
 * The stores of one process share one connection to each server (src/client/shared.ts),
 * with a real server process: counted in the kernel's table of this machine's TCP
 * connections, and each store's work unaffected by the others closing.
 */
import { afterEach, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { type Store, connect } from "../src/index";
import { type ServerProcess, removeDir, startServer } from "./helpers/processes";

let server: ServerProcess | null = null;
const stores: Store[] = [];

afterEach(async () => {
  for (const store of stores.splice(0)) await store.close().catch(() => {});
  if (server) {
    await server.stop();
    removeDir(server.dataDir);
    server = null;
  }
});

async function client(options: Parameters<typeof connect>[0] = {}): Promise<Store> {
  const store = await connect({ servers: server!.address, ...options });
  stores.push(store);
  return store;
}

/** Established TCP connections to `port` (the clients' ends: their remote port is the server's). */
function connectionsTo(port: number): number {
  const hexPort = `:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  let count = 0;
  for (const line of readFileSync("/proc/net/tcp", "utf8").split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields.length > 3 && fields[2]!.endsWith(hexPort) && fields[3] === "01") count++;
  }
  return count;
}

async function increment(store: Store, name: string): Promise<void> {
  const view = await store.accessReadWrite(name);
  const counter = new Int32Array(view.buffer, view.byteOffset, 1);
  counter[0]! += 1;
  await store.releaseReadWrite(view);
}

async function counter(store: Store, name: string): Promise<number> {
  return store.withRead(name, (view) => new Int32Array(view.buffer, view.byteOffset, 1)[0]!);
}

test("three stores in one process use one connection; shareConnections false opens their own", async () => {
  server = await startServer();
  const port = Number(server.address.split(":")[1]);
  const shared = [await client(), await client(), await client()];
  expect(connectionsTo(port)).toBe(1);
  await shared[0]!.create("c", 4);
  // Their updates interleave on the one connection; each is acknowledged to its own store.
  await Promise.all(shared.map(async (store) => {
    for (let i = 0; i < 20; i++) await increment(store, "c");
  }));
  expect(await counter(shared[1]!, "c")).toBe(60);
  const own = [await client({ shareConnections: false }), await client({ shareConnections: false })];
  expect(connectionsTo(port)).toBe(3);
  expect(await counter(own[0]!, "c")).toBe(60);
}, 30_000);

test("a store that closes leaves the shared connection to the others, mid-work; the last one closes it", async () => {
  server = await startServer();
  const port = Number(server.address.split(":")[1]);
  const [a, b] = [await client(), await client()];
  await a.create("a", 4);
  await b.create("b", 4);
  const working = (async () => {
    for (let i = 0; i < 50; i++) await increment(b, "b");
  })();
  await increment(a, "a");
  await a.close();
  await working;
  expect(await counter(b, "b")).toBe(50);
  expect(connectionsTo(port)).toBe(1);
  await b.close();
  const deadline = Date.now() + 5000;
  while (connectionsTo(port) > 0 && Date.now() < deadline) await Bun.sleep(20);
  expect(connectionsTo(port)).toBe(0);
  // A store connecting now dials anew and sees both counters.
  const c = await client();
  expect(await counter(c, "a")).toBe(1);
  expect(await counter(c, "b")).toBe(50);
}, 30_000);
