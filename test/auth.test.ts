/**
 * Shared-secret authentication: servers with --secret admit only clients and
 * peers that prove they know it; the secret never crosses the wire.
 */
import { codeOf } from "./helpers/errors";
import { afterEach, expect, test } from "bun:test";
import type { Socket } from "bun";
import { LocalCluster } from "../src/cli/cluster";
import { PStoreError, type Store, connect } from "../src/index";
import { type ServerProcess, pstoreCommand, removeDir, startServer, tempDir } from "./helpers/processes";

const SECRET = "correct horse battery staple";
let cluster: LocalCluster | null = null;
let single: ServerProcess | null = null;
let stores: Store[] = [];
let dirs: string[] = [];

afterEach(async () => {
  for (const store of stores) await store.close().catch(() => {});
  stores = [];
  await cluster?.stop();
  cluster = null;
  await single?.stop();
  single = null;
  for (const dir of dirs) removeDir(dir);
  dirs = [];
});


test("a cluster with a secret forms its chain and serves only clients that know it", async () => {
  const dataDir = tempDir();
  dirs.push(dataDir);
  cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, command: pstoreCommand(), secret: SECRET, fsync: "off", segmentSize: 4 << 20 });
  await cluster.start();
  const good = await connect({ servers: cluster.servers, secret: SECRET });
  stores.push(good);
  await good.create("guarded", 4);
  await good.withWrite("guarded", (view) => void (view[0] = 7));
  // The servers authenticated each other: all three end up serving in one chain.
  let serving = 0;
  for (let waited = 0; waited < 10_000 && serving < 3; waited += 100) {
    serving = (await good.status()).chain.filter((server) => server.state === "serving").length;
    if (serving < 3) await Bun.sleep(100);
  }
  expect(serving).toBe(3);
  const before = await good.list();

  expect(await codeOf(connect({ servers: cluster.servers, secret: "wrong", connectTimeoutMs: 3000 }))).toBe("EAUTH");
  expect(await codeOf(connect({ servers: cluster.servers, secret: undefined, connectTimeoutMs: 3000 }))).toBe("EAUTH");
  // Refused before anything was read or changed.
  expect(await good.list()).toEqual(before);
  expect(await good.withRead("guarded", (view) => view[0])).toBe(7);
}, 60_000);

test("a client with a secret refuses a server without one", async () => {
  single = await startServer({ segmentSize: "4MiB" });
  dirs.push(single.dataDir);
  const error = await connect({ servers: single.address, secret: SECRET, connectTimeoutMs: 3000 }).catch((e) => e);
  expect(error).toBeInstanceOf(PStoreError);
  expect(error.code).toBe("EAUTH");
  expect(error.message).toContain("the server has no secret");
});

test("the secret never appears in the bytes between client and server", async () => {
  single = await startServer({ segmentSize: "4MiB", extra: ["--secret", SECRET] });
  dirs.push(single.dataDir);
  const captured: Uint8Array[] = [];
  const proxy = await startProxy(single.address, (bytes) => captured.push(bytes.slice()));
  try {
    const store = await connect({ servers: `127.0.0.1:${proxy.port}`, secret: SECRET });
    stores.push(store);
    await store.create("x", 4);
    await store.withWrite("x", (view) => void (view[0] = 1));
    await store.close();
    stores = [];
  } finally {
    proxy.stop();
  }
  const all = Buffer.concat(captured);
  expect(all.length).toBeGreaterThan(100);
  expect(all.indexOf(Buffer.from(SECRET))).toBe(-1);
  expect(all.indexOf(Buffer.from("horse"))).toBe(-1);
});

/** A TCP proxy on loopback that hands every byte, both ways, to `record`. */
async function startProxy(target: string, record: (bytes: Uint8Array) => void): Promise<{ port: number; stop(): void }> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  type Pair = { upstream: Socket<{ peer: Socket<unknown> }> | null; early: Uint8Array[] };
  const listener = Bun.listen<Pair>({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      async open(client) {
        client.data = { upstream: null, early: [] };
        const upstream = await Bun.connect<{ peer: Socket<unknown> }>({
          hostname: host,
          port,
          socket: {
            data(_s, bytes) {
              record(bytes);
              client.write(bytes);
            },
            close() {
              client.end();
            },
          },
        });
        upstream.data = { peer: client };
        client.data.upstream = upstream;
        for (const bytes of client.data.early) upstream.write(bytes);
      },
      data(client, bytes) {
        record(bytes);
        if (client.data.upstream) client.data.upstream.write(bytes);
        else client.data.early.push(bytes.slice());
      },
      close(client) {
        client.data.upstream?.end();
      },
    },
  });
  return { port: listener.port, stop: () => listener.stop(true) };
}
