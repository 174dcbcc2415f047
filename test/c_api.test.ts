/**
 * libpstore.so and pstore.h (issue 14) against a real 3-server cluster: C
 * programs compiled with `cc` from test/fixtures, the agent started by hand
 * (--die-with-parent) or by init_persistant, TypeScript and Python (ctypes)
 * clients side by side. Needs `bun build.ts` (dist/libpstore.so, dist/pstore.h).
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster, outputLines } from "../src/cli/cluster";
import { AGENT_PROTOCOL_VERSION } from "../src/agent/protocol";
import { CACHE_BACKOFF_MS, SEGMENTS_PER_PROCESS_MAX } from "../src/constants";
import { type Store, connect } from "../src/index";
import { type Child, ROOT, finished, pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";

const DIST = join(ROOT, "dist");
const BINARY = join(DIST, "pstore");
let dir = "";
let cluster: LocalCluster;
let agent: Child;
let env: Record<string, string>;
let store: Store;

function compile(source: string, output: string): void {
  const cc = process.env.CC || "cc";
  const result = Bun.spawnSync([cc, "-O2", "-Wall", "-Werror", "-I", DIST, "-o", output, join(ROOT, "test/fixtures", source), "-L", DIST, "-lpstore", `-Wl,-rpath,${DIST}`], {
    stderr: "pipe",
  });
  if (result.exitCode !== 0) throw new Error(`${cc} ${source}: ${result.stderr.toString()}`);
}

beforeAll(async () => {
  if (!existsSync(join(DIST, "libpstore.so")) || !existsSync(join(DIST, "pstore.h"))) {
    throw new Error("dist/libpstore.so or dist/pstore.h is missing: run `bun build.ts` first");
  }
  dir = tempDir("pstore-capi-");
  compile("seed_example.c", join(dir, "seed_example"));
  compile("c_tool.c", join(dir, "c_tool"));
  cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: join(dir, "data"), command: pstoreCommand(), segmentSize: 16 * 1024 * 1024, serveArgs: ["--session-timeout-ms", "5000"] });
  await cluster.start();
  const socket = join(dir, "agent.sock");
  agent = spawnChild([...pstoreCommand(), "agent", "--socket", socket, "--die-with-parent"]);
  await agent.waitFor(/READY/, 15_000);
  env = { PSTORE_SERVERS: cluster.servers.join(","), PSTORE_AGENT_SOCKET: socket, PSTORE_BIN: BINARY };
  store = await connect({ servers: cluster.servers, failoverTimeoutMs: 20_000 });
}, 60_000);

afterAll(async () => {
  await store?.close().catch(() => {});
  await agent?.stop();
  await cluster?.stop();
  removeDir(dir);
});

/** A C client (test/fixtures/c_tool.c) with this cluster's environment. */
function runC(args: string[], extraEnv: Record<string, string> = {}) {
  const child = spawnChild([join(dir, "c_tool"), ...args], { ...env, ...extraEnv });
  return { ...child, done: (timeoutMs?: number) => finished(child, timeoutMs) };
}

async function readInt(name: string): Promise<number> {
  return store.withRead(name, (view) => new DataView(view.buffer, view.byteOffset, 4).getInt32(0, true));
}

/** Reads `name` while the C `writer` holds it: nothing comes for `waitMs`; SIGUSR1 releases, and the read gets what it wrote. */
async function readOnceReleased(name: string, writer: ReturnType<typeof runC>, waitMs: number): Promise<number> {
  let read: number | null = null;
  const reading = readInt(name).then((value) => (read = value));
  await Bun.sleep(waitMs);
  expect(read).toBeNull();
  writer.proc.kill("SIGUSR1");
  return reading;
}

test("the specification's example, verbatim in C, writes 1035; a second C program reads it", async () => {
  const proc = Bun.spawn([join(dir, "seed_example")], { env: { ...process.env, ...env }, stdout: "pipe", stderr: "pipe" });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
  await proc.exited;
  clearTimeout(timer);
  expect({ code: proc.exitCode, stderr: await new Response(proc.stderr).text() }).toEqual({ code: 0, stderr: "" });
  const reader = await runC(["read", "compteur"]).done();
  expect(reader.stdout).toBe("VALUE 1035\n");
  expect(reader.code).toBe(0);
  expect(await readInt("compteur")).toBe(1035);
}, 60_000);

test("errors return -1 or NULL with errno and a message (a pointer inside a held datum too); after p_close calls fail with ENOTCONN", async () => {
  const result = await runC(["errors", "compteur"]).done();
  expect(result.code).toBe(0);
  expect(result.stdout).toContain('ACCESS NULL 1 1 ENOENT: no datum named "no such datum"');
  expect(result.stdout).toContain("RELEASE -1 10 1 ESTALE: this pointer holds nothing");
  expect(result.stdout).toContain("CREATE -1 4 1 EINVAL:");
  expect(result.stdout).toContain("STRERROR no datum of that name");
  // A pointer inside the held datum is a mistake, as free(p + 1) is: refused, and the hold stays to release.
  expect(result.stdout).toContain("INSIDE -1 4 1 EINVAL: the pointer is 1 byte(s) into a held datum: release the pointer p_access returned");
  expect(result.stdout).toContain("START 0");
  expect(result.stdout).toContain("CLOSED NULL 15 1");
}, 30_000);

test("after fork the child's calls fail until it calls init_persistant; then both work", async () => {
  const result = await runC(["fork", "compteur"]).done();
  expect(result.stdout).toContain("CHILD-BEFORE NULL 15");
  expect(result.stdout).toContain("CHILD-VALUE 1035");
  expect(result.stdout).toContain("PARENT-VALUE 1035");
  expect(result.code).toBe(0);
}, 30_000);

test("a C writer holds a datum while a TypeScript reader waits, and the reverse", async () => {
  await store.create("c-vs-ts", 4);
  const writer = runC(["hold", "c-vs-ts"]);
  await writer.waitFor(/HELD/, 15_000);
  expect(await readOnceReleased("c-vs-ts", writer, 300)).toBe(7);
  expect((await writer.done()).stdout).toContain("RELEASED");

  const view = await store.accessReadWrite("c-vs-ts");
  const reader = runC(["read", "c-vs-ts"]);
  await Bun.sleep(500);
  expect(reader.stdout()).toBe("");
  new DataView(view.buffer, view.byteOffset, 4).setInt32(0, 42, true);
  await store.releaseReadWrite(view);
  const result = await reader.done();
  expect(result.stdout).toBe("VALUE 42\n");
}, 60_000);

test("a C program killed with SIGKILL while it holds the write hold: another client gets the datum within 1 s", async () => {
  await store.create("killed", 4);
  const writer = runC(["hold", "killed"]);
  await writer.waitFor(/HELD/, 15_000);
  writer.proc.kill("SIGKILL");
  await writer.proc.exited;
  const start = performance.now();
  const view = await store.accessReadWrite("killed", { timeoutMs: 5000 });
  const waitedMs = performance.now() - start;
  await store.releaseReadWrite(view);
  expect(waitedMs).toBeLessThan(1000);
}, 30_000);

// ---- uses the agent lends (src/agent/lending.ts): granted with no message ----

test("a C program and a TypeScript program take turns on one datum, both caching: the counter is exact", async () => {
  await store.create("turns", 4);
  const rounds = 8;
  const perTurn = 5;
  const proc = Bun.spawn([join(dir, "c_tool"), "steps", "turns", String(perTurn)], {
    env: { ...process.env, ...env },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  const lines = outputLines(proc.stdout);
  const timer = setTimeout(() => proc.kill("SIGKILL"), 50_000);
  let localGrants = 0;
  try {
    const cTurn = async () => {
      proc.stdin.write("go\n");
      proc.stdin.flush();
      const { value: line } = await lines.next();
      expect(line).toMatch(/^DONE \d+$/);
      localGrants = Number(line!.split(" ")[1]);
    };
    const tsTurn = async () => {
      for (let i = 0; i < perTurn; i++) {
        await store.withWrite("turns", (view) => {
          const data = new DataView(view.buffer, view.byteOffset, 4);
          data.setInt32(0, data.getInt32(0, true) + 1, true);
        });
      }
    };
    const recallsBefore = store.stats().recalls;
    for (let round = 0; round < rounds; round++) {
      // A client recalled from does not cache for a while: past it, each turn caches again.
      await Bun.sleep(CACHE_BACKOFF_MS + 20);
      await cTurn();
      await Bun.sleep(CACHE_BACKOFF_MS + 20);
      await tsTurn();
    }
    // Each turn's first access asks the servers (the other side had it); the others are lent.
    expect(localGrants).toBeGreaterThanOrEqual(rounds * (perTurn - 2));
    // Taking the datum from the C program recalled its grant (lent by the agent) every round.
    expect(store.stats().recalls - recallsBefore).toBeGreaterThanOrEqual(rounds - 1);
    // And at the same time: every recall lands on a lent use idle or in use.
    for (let round = 0; round < rounds; round++) await Promise.all([cTurn(), tsTurn()]);
  } finally {
    proc.stdin.end();
    await proc.exited;
    clearTimeout(timer);
  }
  expect(proc.exitCode).toBe(0);
  expect(await readInt("turns")).toBe(rounds * perTurn * 4);
}, 60_000);

test("a C program in a lent write hold keeps it: another client waits until the C release", async () => {
  await store.create("lent-held", 4);
  const writer = runC(["lendhold", "lent-held"]);
  const [held] = await writer.waitFor(/HELD \d+/, 15_000);
  expect(held).toBe("HELD 1"); // the second access was lent: no message
  expect(await readOnceReleased("lent-held", writer, 500)).toBe(2);
  const result = await writer.done();
  expect(result.stdout).toContain("RELEASED 2");
  expect(result.code).toBe(0);
}, 60_000);

test("reads of a read-cached datum are lent (no message); a writer waits until the C program's lent read ends", async () => {
  await store.create("lent-read", 4);
  await store.withWrite("lent-read", (view) => new DataView(view.buffer, view.byteOffset, 4).setInt32(0, 5, true));
  const reader = runC(["lendread", "lent-read", "10"]);
  const [held] = await reader.waitFor(/HELD \d+ -?\d+/, 15_000);
  // The first read asks the servers; its release makes the grant cached; the ten others are lent.
  expect(held).toBe("HELD 10 5");
  const start = performance.now();
  let waitedMs = -1;
  const writing = store
    .withWrite("lent-read", (view) => new DataView(view.buffer, view.byteOffset, 4).setInt32(0, 6, true))
    .then(() => (waitedMs = performance.now() - start));
  await Bun.sleep(500);
  expect(waitedMs).toBe(-1);
  // The recall found the program in its lent read: its release (no longer a local swap) gives the grant back.
  reader.proc.kill("SIGUSR1");
  await writing;
  expect((await reader.done()).stdout).toContain("RELEASED");
  expect(await readInt("lent-read")).toBe(6);
}, 60_000);

test("a C program killed with SIGKILL in a lent write hold: another client gets the datum within 1 s", async () => {
  await store.create("lent-killed", 4);
  const writer = runC(["lendhold", "lent-killed"]);
  const [held] = await writer.waitFor(/HELD \d+/, 15_000);
  expect(held).toBe("HELD 1");
  writer.proc.kill("SIGKILL");
  await writer.proc.exited;
  const start = performance.now();
  const view = await store.accessReadWrite("lent-killed", { timeoutMs: 5000 });
  const waitedMs = performance.now() - start;
  // The first cycle's +1 was acknowledged; the lent hold's write never left the program.
  expect(new DataView(view.buffer, view.byteOffset, 4).getInt32(0, true)).toBe(1);
  await store.releaseReadWrite(view);
  expect(waitedMs).toBeLessThan(1000);
}, 30_000);

test("a write through a read-only pointer stops the C program with the datum's name", async () => {
  const result = await runC(["badwrite", "compteur"]).done();
  expect(result.signal).toBe("SIGSEGV");
  expect(result.stdout).not.toContain("SURVIVED");
  expect(result.stderr).toContain('pstore: write to "compteur" under a read hold');
}, 30_000);

test("a Python program using ctypes on libpstore.so runs the write cycle", async () => {
  const result = Bun.spawnSync(["python3", join(ROOT, "test/fixtures/ctypes_cycle.py"), join(DIST, "libpstore.so"), "from-python"], {
    env: { ...process.env, ...env },
    stdout: "pipe",
    stderr: "pipe",
    timeout: 30_000,
  });
  expect({ code: result.exitCode, stderr: result.stderr.toString() }).toEqual({ code: 0, stderr: "" });
  expect(result.stdout.toString()).toBe("VALUE 3\n");
  expect(await readInt("from-python")).toBe(3);
}, 60_000);

test("init_persistant starts an agent when none answers (PSTORE_BIN), which serves the program", async () => {
  const socket = join(dir, "auto", "agent.sock");
  const result = await runC(["read", "compteur"], { PSTORE_AGENT_SOCKET: socket }).done(30_000);
  const log = readFileSync(join(dir, "auto", "agent.log"), "utf8");
  const pid = Number(log.match(/READY \S+ pid (\d+)/)?.[1]);
  if (pid > 0) process.kill(pid, "SIGTERM");
  expect(result.stdout).toBe("VALUE 1035\n");
  expect(pid).toBeGreaterThan(0);
}, 60_000);

test("agent.log, appended to by every agent started, is set aside past 1 MiB (one kept) instead of growing without bound", async () => {
  const at = join(dir, "auto-log");
  mkdirSync(at, { mode: 0o700 });
  const old = "an old line\n".repeat(100_000); // 1.2 MB
  writeFileSync(join(at, "agent.log"), old);
  const result = await runC(["read", "compteur"], { PSTORE_AGENT_SOCKET: join(at, "agent.sock") }).done(30_000);
  const log = readFileSync(join(at, "agent.log"), "utf8");
  const pid = Number(log.match(/READY \S+ pid (\d+)/)?.[1]);
  if (pid > 0) process.kill(pid, "SIGTERM");
  expect(result.stdout).toBe("VALUE 1035\n");
  expect(readFileSync(join(at, "agent.log.1"), "utf8")).toBe(old);
  expect(log.length).toBeLessThan(10_000);
  expect(pid).toBeGreaterThan(0);
}, 60_000);

test("`pstore sdk DIR` writes the header, the library and pstore.pc; a program builds against them", async () => {
  if (!existsSync(BINARY)) throw new Error("dist/pstore is missing: run `bun build.ts`");
  const sdk = join(dir, "sdk");
  const made = Bun.spawnSync([BINARY, "sdk", sdk], { stdout: "pipe", stderr: "pipe" });
  expect(made.exitCode).toBe(0);
  expect(readFileSync(join(sdk, "pstore.h"))).toEqual(readFileSync(join(DIST, "pstore.h")));
  expect(readFileSync(join(sdk, "libpstore.so"))).toEqual(readFileSync(join(DIST, "libpstore.so")));
  expect(readFileSync(join(sdk, "pstore.pc"), "utf8")).toContain("Libs: -L${prefix} -Wl,-rpath,${prefix} -lpstore");
  const cc = process.env.CC || "cc";
  const built = Bun.spawnSync([cc, "-o", join(sdk, "seed"), join(ROOT, "test/fixtures/seed_example.c"), "-I", sdk, "-L", sdk, "-lpstore"], { stderr: "pipe" });
  expect(built.stderr.toString()).toBe("");
  expect(built.exitCode).toBe(0);
}, 30_000);

test("the head killed while a C program increments a counter: no acknowledged increment is lost", async () => {
  await store.create("c-counter", 4);
  const counter = runC(["count", "c-counter", "150"]);
  await counter.waitFor(/ACK 20\n/, 30_000);
  const status = await store.status();
  const head = status.chain.find((server) => server.role === "head");
  expect(head).toBeDefined();
  await cluster.kill(cluster.servers.indexOf(head!.address));
  const result = await counter.done(60_000);
  const acks = [...result.stdout.matchAll(/ACK (\d+)/g)].map((match) => Number(match[1]));
  const lastAck = acks.at(-1)!;
  expect(await readInt("c-counter")).toBeGreaterThanOrEqual(lastAck);
  expect(result.stdout).not.toContain("ERR");
  expect(lastAck).toBe(150);
  expect(acks).toEqual(Array.from({ length: 150 }, (_, i) => i + 1));
}, 90_000);

test("a C program killed while it waits for a hold leaves no wait behind: the datum passes on at once", async () => {
  await store.create("killed-waiter", 4);
  const view = await store.accessReadWrite("killed-waiter");
  const waiter = runC(["read", "killed-waiter"]);
  await Bun.sleep(500); // connected and waiting (nothing printed yet)
  expect(waiter.stdout()).toBe("");
  expect((await store.stat("killed-waiter")).waiters).toBe(1);
  waiter.proc.kill("SIGKILL");
  await waiter.proc.exited;
  // The agent closes the program's session, which takes its wait off the queue (bounded wait).
  const deadline = performance.now() + 1000;
  while ((await store.stat("killed-waiter")).waiters > 0 && performance.now() < deadline) await Bun.sleep(20);
  expect((await store.stat("killed-waiter")).waiters).toBe(0);
  await store.releaseReadWrite(view);
  const start = performance.now();
  const again = await store.accessReadWrite("killed-waiter", { timeoutMs: 3000 });
  expect(performance.now() - start).toBeLessThan(1000);
  await store.releaseReadWrite(again);
}, 30_000);

/** Frames straight to the agent's socket, as a broken or hostile library would send them. */
async function rawExchange(frames: Uint8Array[]): Promise<{ replies: Uint8Array; closed: boolean }> {
  let replies = new Uint8Array(0);
  let closed = false;
  const socket = await Bun.connect({
    unix: env.PSTORE_AGENT_SOCKET!,
    socket: {
      data(_socket, chunk) {
        const joined = new Uint8Array(replies.length + chunk.length);
        joined.set(replies);
        joined.set(chunk, replies.length);
        replies = joined;
      },
      close() {
        closed = true;
      },
    },
  });
  for (const frame of frames) socket.write(frame);
  const deadline = performance.now() + 3000;
  while (!closed && replies.length === 0 && performance.now() < deadline) await Bun.sleep(10);
  await Bun.sleep(100);
  socket.end();
  return { replies, closed };
}

function frame(body: number[]): Uint8Array {
  const bytes = new Uint8Array(4 + body.length);
  new DataView(bytes.buffer).setUint32(0, body.length, true);
  bytes.set(body, 4);
  return bytes;
}

test("the agent answers malformed requests with EPROTO, closes on an oversized frame, and keeps serving", async () => {
  const unknown = await rawExchange([frame([99])]);
  expect(unknown.replies[4]).toBe(13); // EPROTO (ERROR_CODES index + 1)
  expect(new TextDecoder().decode(unknown.replies.subarray(7))).toContain("unknown request 99");
  const beforeHello = await rawExchange([frame([5, 1, 0, 120])]);
  expect(new TextDecoder().decode(beforeHello.replies.subarray(7))).toContain("before hello");
  const truncated = await rawExchange([frame([3, 2, 10, 0, 65])]);
  expect(new TextDecoder().decode(truncated.replies.subarray(7))).toContain("truncated");
  const huge = new Uint8Array(4);
  new DataView(huge.buffer).setUint32(0, 0xffff_ffff, true);
  expect((await rawExchange([huge])).closed).toBe(true);
  const result = await runC(["read", "compteur"]).done();
  expect(result.stdout).toBe("VALUE 1035\n");
}, 30_000);

test("the agent refuses a socket directory others may write to", async () => {
  const open = join(dir, "open");
  mkdirSync(open);
  chmodSync(open, 0o777);
  const result = await finished(spawnChild([...pstoreCommand(), "agent", "--socket", join(open, "agent.sock"), "--die-with-parent"]), 15_000);
  expect(result.code).toBe(1);
  expect(result.stderr).toContain("writable by nobody else");
}, 30_000);

test("the agent refuses a socket path it cannot serve, and leaves a file of the user's at that path as it was", async () => {
  const agentAt = (socket: string) => finished(spawnChild([...pstoreCommand(), "agent", "--socket", socket, "--die-with-parent"]), 15_000);
  // Too long for sun_path: it said READY on a socket nobody could dial.
  const long = join(dir, "l".repeat(120), "agent.sock");
  const tooLong = await agentAt(long);
  expect(tooLong.code).toBe(1);
  expect(tooLong.stderr).toContain("a Unix socket's path is at most 107");
  // A C program whose PSTORE_AGENT_SOCKET is too long is told so, not "no agent".
  const program = await runC(["read", "compteur"], { PSTORE_AGENT_SOCKET: long }).done(15_000);
  expect(program.code).not.toBe(0);
  expect(program.stdout).toContain("too long");
  // A regular file at the path was unlinked as a dead agent's socket.
  const regular = join(dir, "notes.txt");
  writeFileSync(regular, "mine");
  const inTheWay = await agentAt(regular);
  expect(inTheWay.code).toBe(1);
  expect(inTheWay.stderr).toContain("exists and is not a socket");
  expect(readFileSync(regular, "utf8")).toBe("mine");
  const underFile = await agentAt(join(regular, "agent.sock"));
  expect(underFile.code).toBe(1);
  expect(underFile.stderr).toContain("is not a directory");
}, 60_000);

test("past the agent's 64 programs a program gets ELIMIT, and the agent still serves the others", async () => {
  const servers = new TextEncoder().encode(env.PSTORE_SERVERS!);
  const hello = frame([1, AGENT_PROTOCOL_VERSION, 0, 0, 0, servers.length & 0xff, servers.length >> 8, ...servers, 0, 0, 0, 0]);
  const sockets: Array<{ end(): void }> = [];
  const codes: number[] = [];
  try {
    for (let i = 0; i <= SEGMENTS_PER_PROCESS_MAX; i++) {
      const { promise, resolve } = Promise.withResolvers<number>();
      const socket = await Bun.connect({ unix: env.PSTORE_AGENT_SOCKET!, socket: { data: (_s, chunk) => resolve(chunk[4]!), close: () => resolve(-1) } });
      sockets.push(socket);
      socket.write(hello);
      codes.push(await Promise.race([promise, Bun.sleep(15_000).then(() => -2)]));
    }
  } finally {
    for (const socket of sockets) socket.end();
  }
  // The test's own agent already maps no other program now; each hello maps one segment.
  expect(codes.slice(0, SEGMENTS_PER_PROCESS_MAX).every((code) => code === 0)).toBe(true);
  expect(codes[SEGMENTS_PER_PROCESS_MAX]).toBe(14); // ELIMIT
  await Bun.sleep(500); // the agent closes the 64 sessions
  const result = await runC(["read", "compteur"]).done();
  expect(result.stdout).toBe("VALUE 1035\n");
}, 120_000);
