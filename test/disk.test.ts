/**
 * A full disk (issue 11): a real server on a small tmpfs. It starts without
 * the 64 MiB spare log segment, refuses data with ENOSPC while the disk is
 * full, serves reads and deletes meanwhile, holds back (never acknowledges)
 * what it cannot write, leaves no partial file, and goes on by itself once
 * space is freed. Needs root for mount(8); without it the test says so.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { spawnSync } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, rmSync, symlinkSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { waitServing } from "./helpers/cluster";
import { codeOf } from "./helpers/errors";
import { PStoreError, type Store, connect } from "../src/index";
import { type ServerProcess, pstoreCommand, removeDir, spawnChild, startServer, tempDir } from "./helpers/processes";

const root = tempDir("pstore-disk-");
const mount = spawnSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", root]);
const mounted = mount.status === 0;
if (!mounted) {
  removeDir(root);
  console.warn(`disk tests skipped: cannot mount a tmpfs (${mount.stderr?.toString().trim()}); they need root`);
}

/** Fills the disk up to the last byte with a file; returns its path. */
function fillDisk(name: string): string {
  return fillDiskAt(root, name);
}

function fillDiskAt(dir: string, name: string): string {
  const file = join(dir, name);
  const chunk = new Uint8Array(64 * 1024);
  const fd = openSync(file, "w");
  try {
    for (;;) writeSync(fd, chunk);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOSPC") throw error;
  } finally {
    closeSync(fd);
  }
  // Small writes can still find room in partly used blocks: fill them too.
  const fd2 = openSync(`${file}.tail`, "w");
  try {
    for (;;) writeSync(fd2, new Uint8Array(512));
  } catch {
    // full
  } finally {
    closeSync(fd2);
  }
  return file;
}


describe.if(mounted)("a full disk", () => {
  let server: ServerProcess;
  let store: Store;
  const dataDir = join(root, "data");
  afterAll(async () => {
    await store?.close();
    await server?.stop();
    spawnSync("umount", [root]);
    removeDir(root);
  });

  test("a disk too small for the log: a clear error, no stack trace, no partial file", async () => {
    const small = join(root, "small");
    mkdirSync(small);
    const filler = fillDisk("filler-small");
    try {
      const child = spawnChild([...pstoreCommand(), "serve", "--listen", "127.0.0.1:0", "--data-dir", small, "--segment-size", "1MiB", "--die-with-parent"]);
      expect(await child.proc.exited).toBe(1);
      expect(child.stderr()).toContain("the disk is full");
      expect(child.stderr()).not.toContain("    at ");
      expect(readdirSync(small)).toEqual([]);
    } finally {
      rmSync(filler);
      rmSync(`${filler}.tail`, { force: true });
    }
  });

  test("a 24 MiB disk: the server starts without a spare segment and serves", async () => {
    mkdirSync(dataDir);
    server = await startServer({ dataDir, segmentSize: "4MiB" });
    store = await connect({ servers: server.address, connectTimeoutMs: 5000 });
    expect(readdirSync(dataDir).sort()).toEqual(["LOCK", "config.json", "identity.json", "wal-0000000000000001.log"]);
    await store.create("kept", 64 * 1024);
    await store.create("doomed", 256 * 1024);
    await store.withWrite("kept", (view) => view.fill(1));
    await store.withWrite("doomed", (view) => view.fill(2));
  });

  test("full: data is refused with ENOSPC, reads and deletes are served, a checkpoint waits; freed: it all goes on", async () => {
    const filler = fillDisk("filler");
    await Bun.sleep(300); // the server measures free space at most every 200 ms
    // The server keeps DISK_FREE_BYTES_MIN free: growing the data is refused at the head, with a clear error.
    expect(await codeOf(store.create("new", 4096))).toBe("ENOSPC");
    const view = await store.accessReadWrite("kept");
    view[0] = 9;
    const refused = await store.releaseReadWrite(view).catch((error: PStoreError) => error);
    expect(refused).toBeInstanceOf(PStoreError);
    expect((refused as PStoreError).code).toBe("ENOSPC");
    expect((refused as PStoreError).message).toContain("disk of server 1 is full");
    // Reads are served, with the last released value.
    expect(await store.withRead("kept", (bytes) => bytes[0])).toBe(1);
    expect((await store.list()).map((datum) => datum.name).sort()).toEqual(["doomed", "kept"]);
    // A delete frees space in the segment: served.
    await store.delete("doomed");

    // A checkpoint must write a file: it cannot, so it is not acknowledged, and no partial file stays.
    let checkpointed = false;
    const checkpoint = store.checkpoint().then((result) => {
      checkpointed = true;
      return result;
    });
    await Bun.sleep(1500);
    expect(checkpointed).toBe(false);
    expect(readdirSync(dataDir).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    expect(server.stderr()).toContain("is full");
    // The operator sees why, in the server's log and in status.
    expect(server.stderr()).toContain("less than the 8 MiB free it keeps");
    expect((await store.status()).chain[0]!.diskFull).toBe(true);

    // Space comes back: the waiting checkpoint lands, and data is accepted again — no restart.
    rmSync(filler);
    rmSync(`${filler}.tail`);
    await Bun.sleep(300);
    const { seq } = await checkpoint;
    expect(seq).toBeGreaterThan(0);
    expect(server.stderr()).toContain("disk space is back");
    await store.create("new", 4096);
    // Status says what the server's last tick measured (the create measured at once).
    let diskFull = true;
    for (const deadline = Date.now() + 5000; diskFull && Date.now() < deadline; ) {
      diskFull = (await store.status()).chain[0]!.diskFull === true;
      if (diskFull) await Bun.sleep(50);
    }
    expect(diskFull).toBe(false);
    await store.withWrite("kept", (bytes) => (bytes[0] = 7));
    expect(await store.withRead("kept", (bytes) => bytes[0])).toBe(7);
    expect(server.proc.exitCode).toBeNull();
  }, 30_000);
});


/**
 * A full disk on a follower: the head's own disk has room, but a successor
 * that cannot log would hold the whole chain back (nothing forwarded is
 * acknowledged). Its heartbeats say its disk is full, and the head refuses
 * growth with ENOSPC naming it, as for its own disk.
 */
describe.if(mounted)("a full disk on a follower", () => {
  const followerRoot = tempDir("pstore-disk-follower-");
  const clusterDir = tempDir("pstore-disk-cluster-");
  let cluster: LocalCluster | null = null;
  let store: Store | null = null;
  beforeAll(() => {
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=24m", "tmpfs", followerRoot]).status).toBe(0);
    // Server 2 keeps its data on the small disk (the cluster puts server n's data in <dir>/<n>).
    mkdirSync(join(followerRoot, "2"));
    symlinkSync(join(followerRoot, "2"), join(clusterDir, "2"));
  });
  afterAll(async () => {
    await store?.close();
    await cluster?.stop();
    spawnSync("umount", [followerRoot]);
    removeDir(followerRoot);
    removeDir(clusterDir);
  });

  test("the head refuses data with ENOSPC naming the follower, reads go on; freed: writes go on", async () => {
    cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: clusterDir, command: pstoreCommand(), fsync: "off", segmentSize: 4 * 1024 * 1024, serveArgs: ["--heartbeat-ms", "50"] });
    await cluster.start();
    store = await connect({ servers: cluster.servers });
    // The chain of three first: a reconfiguration at start-up (a server that learnt the first
    // chain second hand joins and is added again) writes configurations, and one written just
    // as the disk fills leaves that server's writes waiting, not refused at the head.
    await waitServing(store, 3, 15_000);
    await store.create("kept", 4096);
    await store.withWrite("kept", (bytes) => (bytes[0] = 1));

    const filler = fillDiskAt(followerRoot, "filler");
    let refusal: unknown = null;
    // A create the head took before it learnt of the full disk waits for the follower's disk
    // (it is in the chain's history): the next ones are refused, and it completes once freed.
    const waiting: Promise<unknown>[] = [];
    for (const deadline = Date.now() + 5000; refusal === null && Date.now() < deadline; ) {
      const attempt = store.create(`grown-${Date.now()}`, 4096).then(
        () => null,
        (error: unknown) => error,
      );
      const settled = await Promise.race([attempt, Bun.sleep(1000).then(() => "waiting" as const)]);
      if (settled === "waiting") waiting.push(attempt);
      else refusal = settled;
      if (refusal === null) await Bun.sleep(100);
    }
    expect(refusal).toBeInstanceOf(PStoreError);
    expect((refusal as PStoreError).code).toBe("ENOSPC");
    expect((refusal as PStoreError).message).toContain("disk of server 2 is full");
    expect(await store.withRead("kept", (bytes) => bytes[0])).toBe(1);
    // Status, asked of any server, names the server whose disk is full.
    expect((await store.status()).chain.filter((server) => server.diskFull).map((server) => server.id)).toEqual([2]);

    rmSync(filler);
    rmSync(`${filler}.tail`);
    expect(await Promise.all(waiting)).toEqual(waiting.map(() => null));
    let created = false;
    for (const deadline = Date.now() + 5000; !created && Date.now() < deadline; ) {
      created = await store.create("after", 4096).then(
        () => true,
        () => false,
      );
      if (!created) await Bun.sleep(100);
    }
    expect(created).toBe(true);
    await store.withWrite("kept", (bytes) => (bytes[0] = 7));
    expect(await store.withRead("kept", (bytes) => bytes[0])).toBe(7);
  }, 30_000);
});

/**
 * A disk filled by the log itself, on a user who does what the refusal says:
 * deletes data and takes a checkpoint. The checkpoint must give the log's
 * space back although the disk is too full for the next log segment (the
 * segments it covers go first), and data must be accepted again at once.
 */
describe.if(mounted)("a disk filled by the log", () => {
  const diskRoot = tempDir("pstore-disk-log-");
  let server: ServerProcess | null = null;
  let store: Store | null = null;
  beforeAll(() => {
    expect(spawnSync("mount", ["-t", "tmpfs", "-o", "size=16m", "tmpfs", diskRoot]).status).toBe(0);
  });
  afterAll(async () => {
    await store?.close();
    await server?.stop();
    spawnSync("umount", [diskRoot]);
    removeDir(diskRoot);
  });

  test("delete and checkpoint, as the refusal says: the space comes back, no restart", async () => {
    const dataDir = join(diskRoot, "data");
    mkdirSync(dataDir);
    server = await startServer({ dataDir, segmentSize: "64MiB" });
    store = await connect({ servers: server.address, cacheHolds: false });
    let written = 0;
    let refusal: unknown = null;
    const refused = (error: unknown) => (refusal = error);
    // Until the create or the write release is refused (the disk may fill between them).
    while (refusal === null && written < 64) {
      const name = `d${written}`;
      await store.create(name, 256 * 1024).catch(refused);
      if (refusal === null) await store.withWrite(name, (bytes) => bytes.fill(written + 1)).catch(refused);
      if (refusal === null) written++;
    }
    expect((refusal as PStoreError | null)?.code).toBe("ENOSPC");
    expect(written).toBeGreaterThan(4);
    for (let i = 0; i < written; i++) expect(await store.withRead(`d${i}`, (bytes) => bytes[bytes.length - 1])).toBe(i + 1);
    // The operator's side: the server says it at its next tick (the refusal measured at once).
    const said = (text: string) => server!.stderr().includes(text);
    for (const deadline = Date.now() + 5000; !said("less than the 8 MiB free it keeps") && Date.now() < deadline; ) await Bun.sleep(50);
    expect(server.stderr()).toContain("less than the 8 MiB free it keeps");

    for (const datum of await store.list()) await store.delete(datum.name);
    await store.checkpoint();
    await store.create("after", 256 * 1024);
    expect(readdirSync(dataDir).filter((name) => name.startsWith("wal-")).length).toBe(1);
    // Said at the server's next tick (waitFor would miss a line already written).
    for (const deadline = Date.now() + 5000; !said("free it keeps again") && Date.now() < deadline; ) await Bun.sleep(50);
    expect(server.stderr()).toContain("free it keeps again");
    expect((await store.status()).chain[0]!.diskFull).toBe(false);
  }, 60_000);
});

/**
 * A disk that fails under a running server: an ext4 file system on a loop device, turned
 * read-only by an error the kernel is told to raise (errors=remount-ro, trigger_fs_error),
 * as it does on an I/O error. The server must stop at once, saying so in one line (it died
 * with Bun's stack trace of an uncaught EROFS), acknowledge nothing it could not write, and
 * start again on the repaired disk with everything it had acknowledged.
 */
const ext4Root = tempDir("pstore-disk-ext4-");
const ext4Image = `${ext4Root}.img`;
const ext4 = !mounted ? null : (() => {
  const made = spawnSync("sh", ["-c", `truncate -s 64M ${ext4Image} && mkfs.ext4 -q -F ${ext4Image} && mount -o loop,errors=remount-ro ${ext4Image} ${ext4Root}`]);
  if (made.status !== 0) return null;
  const device = spawnSync("findmnt", ["-n", "-o", "SOURCE", ext4Root]).stdout.toString().trim();
  const trigger = `/sys/fs/ext4/${device.replace("/dev/", "")}/trigger_fs_error`;
  if (existsSync(trigger)) return { trigger };
  spawnSync("umount", [ext4Root]);
  return null;
})();
if (mounted && !ext4) console.warn("the failing-disk test is skipped: no loop-mounted ext4 with trigger_fs_error here");

describe.if(ext4 !== null)("a disk that fails under a running server", () => {
  afterAll(() => {
    spawnSync("umount", [ext4Root]);
    removeDir(ext4Root);
    rmSync(ext4Image, { force: true });
  });

  test("it stops at once with one clear line, acknowledges nothing after, and restarts with what it acknowledged", async () => {
    const dataDir = join(ext4Root, "data");
    let server = await startServer({ dataDir, segmentSize: "4MiB" });
    let store = await connect({ servers: server.address, cacheHolds: false, failoverTimeoutMs: 2000 });
    await store.create("kept", 4096);
    await store.withWrite("kept", (bytes) => bytes.fill(5));

    writeFileSync(ext4!.trigger, "pstore test\n");
    const write = await store.withWrite("kept", (bytes) => bytes.fill(6)).then(
      () => "acknowledged",
      (error: unknown) => (error as PStoreError).code,
    );
    expect(write).not.toBe("acknowledged");
    expect(await server.proc.exited).toBe(1);
    expect(server.stderr()).toContain(`pstore serve: the disk of ${dataDir} failed (EROFS`);
    expect(server.stderr()).not.toContain("    at ");
    await store.close().catch(() => {});

    // The disk repaired (checked, mounted again): the acknowledged value is there.
    expect(spawnSync("umount", [ext4Root]).status).toBe(0);
    expect(spawnSync("e2fsck", ["-fy", ext4Image]).status).toBeLessThan(4); // 0: clean, 1-3: errors fixed
    expect(spawnSync("mount", ["-o", "loop,errors=remount-ro", ext4Image, ext4Root]).status).toBe(0);
    server = await startServer({ dataDir, segmentSize: "4MiB" });
    store = await connect({ servers: server.address });
    expect(await store.withRead("kept", (bytes) => [bytes[0], bytes[4095]])).toEqual([5, 5]);
    await store.close();
    await server.stop();
  }, 60_000);
});
