/**
 * Hostile clients against a real server (issue 11): connections that say
 * hello and then nothing, and frames announced huge and sent in part. The
 * limits are the real ones (src/constants.ts), except the session timeout
 * (1 s, so silence is judged fast) and, for the memory test, the inbound
 * buffer cap (--inbound-max 64MiB, so RSS figures stay small).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { CLIENTS_PER_ADDRESS_MAX, CONNECTIONS_MAX } from "../src/constants";
import { connect } from "../src/index";
import { MessageType } from "../src/wire";
import { HostileConnection, rssMiB } from "./helpers/hostile";
import { type ServerProcess, pstoreCommand, removeDir, spawnChild, startServer, tempDir } from "./helpers/processes";

const SESSION_TIMEOUT_MS = 1000;

describe("silent connections", () => {
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ sessionTimeoutMs: SESSION_TIMEOUT_MS, segmentSize: "4MiB" });
  });
  afterAll(async () => {
    await server?.stop();
    removeDir(server?.dataDir ?? "");
  });

  test(`past ${CONNECTIONS_MAX} connections that say hello and nothing more, a real client is served, and the silent ones are closed`, async () => {
    const silent: HostileConnection[] = [];
    const refusals = new Set<string>();
    // 4,200 from one host, in batches (a burst past the handshake limit closes the oldest handshakes: ELIMIT too).
    const total = CONNECTIONS_MAX + 104;
    let openMax = 0;
    for (let opened = 0; opened < total; opened += 100) {
      const batch = await Promise.all(Array.from({ length: 100 }, () => HostileConnection.open(server.address, "127.0.0.2")));
      for (const connection of batch) {
        const answer = await connection.answer(5000);
        expect(answer).not.toBeNull();
        if (answer!.type === "welcome") silent.push(connection);
        else {
          expect(answer!.type === "error" && answer!.body.code).toBe("ELIMIT");
          if (answer!.type === "error") refusals.add(answer!.body.message.replace(/\d+/g, "N"));
        }
      }
      // One host gets its share of the table, never more (the sweep frees slots as the flood goes on;
      // a close may reach us after the welcome of the connection that took its slot: let it arrive).
      const openNow = () => silent.filter((connection) => !connection.closed).length;
      for (let waits = 0; openNow() > CLIENTS_PER_ADDRESS_MAX && waits < 50; waits++) await Bun.sleep(10);
      const open = openNow();
      expect(open).toBeLessThanOrEqual(CLIENTS_PER_ADDRESS_MAX);
      openMax = Math.max(openMax, open);
    }
    console.log(`${total} silent connections: ${silent.length} welcomed, at most ${openMax} open at once; refusals: ${[...refusals].join(" | ")}`);
    expect(openMax).toBe(CLIENTS_PER_ADDRESS_MAX);

    // A real client (another address: 127.0.0.1) is served while they sit there...
    const store = await connect({ servers: server.address, connectTimeoutMs: 5000 });
    try {
      await store.create("counter", 8);
      const view = await store.accessReadWrite("counter");
      view[0] = 42;
      await store.releaseReadWrite(view);
      // ...and, heart-beating, stays connected past several session timeouts.
      await Bun.sleep(3 * SESSION_TIMEOUT_MS);
      const read = await store.accessRead("counter", { timeoutMs: 2000 });
      expect(read[0]).toBe(42);
      await store.releaseRead(read);

      // The silent ones were closed by the server, each told why.
      const closed = await Promise.all(silent.map((connection) => connection.closedWithin(4000)));
      expect(closed.every(Boolean)).toBe(true);
      expect(silent.every((connection) => connection.error()?.code === "ETIMEDOUT")).toBe(true);

      // Their slots are free: the same host is served again.
      const again = await HostileConnection.open(server.address, "127.0.0.2");
      expect((await again.answer(5000))?.type).toBe("welcome");
      again.destroy();
    } finally {
      await store.close();
      for (const connection of silent) connection.destroy();
    }
  }, 60_000);
});

describe("large announced frames", () => {
  const CAP_MIB = 64;
  let server: ServerProcess;
  beforeAll(async () => {
    server = await startServer({ segmentSize: "64MiB", extra: ["--inbound-max", `${CAP_MIB}MiB`] });
  });
  afterAll(async () => {
    await server?.stop();
    removeDir(server?.dataDir ?? "");
  });

  test("frames announced at 256 MiB and sent in part keep the server under its cap; over it, that client gets ELIMIT", async () => {
    const pid = server.proc.pid;
    const before = rssMiB(pid);
    const announced = 256 * 1024 * 1024; // the largest frame a client may announce
    const header = new Uint8Array(5);
    new DataView(header.buffer).setUint32(0, announced, true);
    header[4] = MessageType.request;
    const connections = await Promise.all(
      Array.from({ length: 8 }, (_, i) => HostileConnection.open(server.address, `127.0.0.${10 + i}`)),
    );
    for (const connection of connections) expect((await connection.answer(5000))?.type).toBe("welcome");
    // 8 × 48 MiB = 384 MiB sent; without a cap the server would hold all of it.
    const piece = new Uint8Array(1024 * 1024).fill(7);
    let peakMiB = before;
    await Promise.all(
      connections.map(async (connection) => {
        await connection.write(header);
        for (let sent = 0; sent < 48 && !connection.closed; sent++) {
          await connection.write(piece);
          peakMiB = Math.max(peakMiB, rssMiB(pid));
        }
      }),
    );
    await Bun.sleep(200);
    peakMiB = Math.max(peakMiB, rssMiB(pid));
    const refused = connections.filter((connection) => connection.error()?.code === "ELIMIT");
    console.log(`RSS ${before.toFixed(0)} MiB before, peak ${peakMiB.toFixed(0)} MiB; ${refused.length} of 8 refused with ELIMIT`);
    // 384 MiB sent, at most 64 MiB held (and the chunks of closed connections, until collected).
    expect(peakMiB - before).toBeLessThan(3 * CAP_MIB);
    // 48 MiB each: at most one fits under 64 MiB; the server closed the others, with
    // ELIMIT (a reset while we still write can lose that frame on our side, so count closes).
    for (const connection of refused) expect(await connection.closedWithin(2000)).toBe(true);
    expect(connections.filter((connection) => connection.closed).length).toBeGreaterThanOrEqual(7);
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]!.error()!.message).toContain(`limit ${CAP_MIB * 1024 * 1024}`);
    for (const connection of connections) connection.destroy();

    // The budget is given back when they go: a real 32 MiB release goes through.
    const store = await connect({ servers: server.address, connectTimeoutMs: 5000 });
    try {
      await store.create("big", 32 * 1024 * 1024);
      const view = await store.accessReadWrite("big");
      view.fill(9);
      await store.releaseReadWrite(view);
      const read = await store.accessRead("big");
      expect(read[read.length - 1]).toBe(9);
      await store.releaseRead(read);
    } finally {
      await store.close();
    }
  }, 60_000);
});

describe("data dirs", () => {
  const serve = (dataDir: string, listen = "127.0.0.1:0") =>
    spawnChild([...pstoreCommand(), "serve", "--listen", listen, "--data-dir", dataDir, "--segment-size", "1MiB", "--die-with-parent"]);

  test("a data dir that is a file: 'not a directory', exit 1, no stack trace", async () => {
    const root = tempDir();
    try {
      writeFileSync(join(root, "file"), "");
      const child = serve(join(root, "file"));
      expect(await child.proc.exited).toBe(1);
      expect(child.stderr()).toContain(`${join(root, "file")} is not a directory`);
      expect(child.stderr()).not.toContain("    at ");
    } finally {
      removeDir(root);
    }
  });

  test("a LOCK naming a live unrelated pid (1) is not taken for a server; a live server's lock is", async () => {
    const dir = tempDir();
    try {
      writeFileSync(join(dir, "LOCK"), "1\n");
      const first = await startServer({ dataDir: dir, segmentSize: "1MiB" });
      try {
        const second = serve(dir);
        expect(await second.proc.exited).toBe(1);
        expect(second.stderr()).toContain(`in use by another pstore server (pid ${first.proc.pid})`);
      } finally {
        await first.stop();
      }
      expect(existsSync(join(dir, "LOCK"))).toBe(false);
    } finally {
      removeDir(dir);
    }
  });

  test("a port in use leaves no data dir behind", async () => {
    const root = tempDir();
    const taken = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const child = serve(join(root, "data"), `127.0.0.1:${taken.port}`);
      expect(await child.proc.exited).toBe(1);
      expect(child.stderr()).toContain("EADDRINUSE");
      expect(existsSync(join(root, "data"))).toBe(false);
    } finally {
      taken.stop(true);
      removeDir(root);
    }
  });
});
