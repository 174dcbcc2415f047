/**
 * What a server's data belongs to (src/store/identity.ts), with real processes.
 * The segment size is part of what the log means: a server started with another
 * --segment-size than its cluster's would apply the same updates to another state
 * (a create too large for it refused, so a datum the others hold missing there);
 * such a server is kept out of the chain, loudly, on both sides. A server's number
 * is its place in --peers: lists in another order make a data dir another
 * server's, and make servers disagree on who is who; a name in --peers that does
 * not resolve is said, not waited on in silence.
 */
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { type Store, connect } from "../src/index";
import { type Child, freePort, pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";

const dataDir = tempDir();
const logs: string[] = [];
const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), segmentSize: 8 * 1024 * 1024, onLog: (_, line) => logs.push(line) });
let store: Store | null = null;
let replacement: Child | null = null;

afterAll(async () => {
  await store?.close().catch(() => {});
  await replacement?.stop();
  await cluster.stop();
  removeDir(dataDir);
});

/** Waits (bounded) until the chain, as a client sees it, is `members` (addresses), all serving. */
async function waitChain(members: string[], timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let last = "";
  while (performance.now() < deadline) {
    const chain = (await store!.status()).chain.filter((server) => server.state === "serving").map((server) => server.address);
    last = chain.join(",");
    if (last === members.join(",")) return;
    await Bun.sleep(100);
  }
  throw new Error(`the chain is not ${members.join(",")} within ${timeoutMs} ms: ${last}`);
}

test("a server with another --segment-size is kept out of the chain and says why; with the cluster's size it joins and gets the data", async () => {
  await cluster.start();
  const [first, second, third] = cluster.servers as [string, string, string];
  store = await connect({ servers: [first, second], failoverTimeoutMs: 20_000 });
  await waitChain([first, second, third], 15_000);
  await cluster.kill(2, "SIGKILL");
  await waitChain([first, second], 15_000);

  // Server 3 replaced, configured with half the segment: a 6 MiB datum would not fit there.
  const serve = (segmentSize: string, dir: string) =>
    spawnChild([...pstoreCommand(), "serve", "--listen", third, "--peers", cluster.servers.join(","), "--data-dir", dir, "--segment-size", segmentSize, "--die-with-parent"]);
  replacement = serve("4MiB", join(dataDir, "3-wrong"));
  await replacement.waitFor(/READY/, 15_000);
  await store.create("big", 6 * 1024 * 1024);
  await store.withWrite("big", (view) => view.fill(7));
  const deadline = performance.now() + 10_000;
  const refusal = /server 3 \(.*\) has a segment of 4 MiB \(pages of 4096 bytes\), this server 8 MiB \(pages of 4096 bytes\): every server of a cluster needs the same --segment-size; not connecting/;
  while (performance.now() < deadline && logs.filter((line) => refusal.test(line)).length < 2) await Bun.sleep(100);
  expect(logs.filter((line) => refusal.test(line)).map((line) => line.match(/\[server:(\d)\]/)?.[1]).sort()).toEqual(["1", "2"]);
  expect(replacement.stderr()).toMatch(/server 1 \(.*\) has a segment of 8 MiB \(pages of 4096 bytes\), this server 4 MiB/);
  await waitChain([first, second], 5_000);
  await replacement.stop();

  // Started with the cluster's size, it joins and gets the datum: with 1 and 2 gone, it serves it alone.
  replacement = serve("8MiB", join(dataDir, "3-right"));
  await replacement.waitFor(/READY/, 15_000);
  await waitChain([first, second, third], 20_000);
  await cluster.kill(0, "SIGKILL");
  await cluster.kill(1, "SIGKILL");
  await store.close();
  store = await connect({ servers: [third], failoverTimeoutMs: 20_000 });
  expect(await store.withRead("big", (view) => [view.length, view[0], view[view.length - 1]])).toEqual([6 * 1024 * 1024, 7, 7]);
}, 90_000);

/** Waits (bounded) until `child` has logged `text`. */
async function waitLogged(child: Child, text: string, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && !child.stderr().includes(text)) await Bun.sleep(100);
  expect(child.stderr()).toContain(text);
}

test("--peers in another order: a data dir refuses to become another server's; servers whose lists differ refuse each other", async () => {
  const [a, b, c] = (await Promise.all([freePort(), freePort(), freePort()])).map((port) => `127.0.0.1:${port}`) as [string, string, string];
  const root = tempDir();
  const running: Child[] = [];
  const serve = (address: string, peers: string[], dirs: string) => {
    const child = spawnChild([...pstoreCommand(), "serve", "--listen", address, "--peers", peers.join(","), "--data-dir", join(root, dirs, address.split(":")[1]!), "--segment-size", "4MiB", "--die-with-parent"]);
    running.push(child);
    return child;
  };
  try {
    const first = [a, b, c].map((address) => serve(address, [a, b, c], "kept"));
    await Promise.all(first.map((server) => server.waitFor(/READY/, 15_000)));
    const client = await connect({ servers: [a, b, c], failoverTimeoutMs: 20_000 });
    await client.create("x", 4);
    await client.withWrite("x", (view) => view.set([1, 2, 3, 4]));
    await client.close();
    await Promise.all(first.map((server) => server.stop()));

    // Every server given the list reversed: a and c would swap numbers, and refuse to start.
    const reversed = [a, c].map((address) => serve(address, [c, b, a], "kept"));
    for (const [server, was, now, address] of [[reversed[0]!, 1, 3, a], [reversed[1]!, 3, 1, c]] as const) {
      expect(await server.proc.exited).toBe(1);
      expect(server.stderr()).toContain(
        `holds the data of server ${was} (${address} in the --peers it was created with, ${a},${b},${c}); here --peers makes this server ${now}: give every server the same --peers, in the same order`,
      );
    }

    // A new cluster where one server has the list in another order: each side that dials the other says why.
    const servers = [serve(a, [a, b, c], "new"), serve(b, [a, b, c], "new"), serve(c, [c, b, a], "new")];
    await Promise.all(servers.map((server) => server.waitFor(/READY/, 15_000)));
    // a and c both take 1 for their own number and refuse each other's hello; b's hello says 2, as c
    // has it, but when b dials c, c says it is 1.
    const own = "refused us: EPROTO server id 1 is this server's own: every server needs the same --peers, in the same order";
    await waitLogged(servers[0]!, `server 3 (${c}) ${own}`, 10_000);
    await waitLogged(servers[2]!, `server 3 (${a}) ${own}`, 10_000);
    await waitLogged(servers[1]!, `server 3 (${c}) says it is server 1: every server needs the same --peers, in the same order; not connecting`, 10_000);
  } finally {
    await Promise.all(running.map((child) => child.stop()));
    removeDir(root);
  }
}, 90_000);

test("a --peers name that does not resolve is said in the log, with whom the server waits for", async () => {
  const self = `127.0.0.1:${await freePort()}`;
  // .invalid never resolves (RFC 2606): the server dialled it every tick without a word.
  const unresolvable = "pstore-test.invalid:7402";
  const root = tempDir();
  const server = spawnChild([...pstoreCommand(), "serve", "--listen", self, "--peers", `${self},${unresolvable}`, "--data-dir", join(root, "1"), "--segment-size", "4MiB", "--die-with-parent"]);
  try {
    await server.waitFor(/READY/, 15_000);
    await waitLogged(server, `server 2 (${unresolvable}) cannot be dialled: pstore-test.invalid does not resolve`, 10_000);
    await waitLogged(server, "waiting for server(s) 2 of --peers: no configuration is known here", 10_000);
    // Once, not every tick.
    await Bun.sleep(1000);
    expect(server.stderr().split("does not resolve").length - 1).toBe(1);
    // A client (and `pstore status`) is told why too, not only that it does not serve.
    const refusal = await connect({ servers: self, connectTimeoutMs: 1000 }).then(() => null, (error: Error) => error.message);
    expect(refusal).toContain(`${self} is not serving yet (waiting for server(s) 2 of --peers: no configuration is known here`);
  } finally {
    await server.stop();
    removeDir(root);
  }
}, 60_000);
