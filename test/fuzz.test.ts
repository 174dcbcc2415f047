/**
 * Hostile input (DESIGN §7 invariant 5, issue 7 item 4): live servers fed random
 * and mutated frames (the decoder alone: fuzz_decoder.test.ts). Seeded and bounded:
 *   FUZZ_FRAMES=1000000 FUZZ_SEED=42 bun test fuzz --timeout 600000
 * runs a long campaign of both (default 100,000 frames each, seed 1). A failure
 * prints the seed and the frame.
 *
 * The live servers: one with --secret, fuzzed on unauthenticated connections
 * (before hello, after hello, after a server hello with a valid peer id) and
 * on authenticated ones; one without, fuzzed with frames that the server must
 * refuse or that cannot change state (a model of the server, helpers/fuzz.ts,
 * keeps every request and every well-formed peer message out). Afterwards the
 * servers still serve, applied no update at all during the fuzz, and hold the
 * same state (a hash of list(), stat() and every datum's bytes); their RSS is
 * reported before and after.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { Random } from "../src/chaos/random";
import { FRAME_BYTES_MAX } from "../src/constants";
import { PStoreError, type Store, connect } from "../src/index";
import { Greeter } from "../src/net/greeter";
import {
  FRAME_HEADER_BYTES,
  type Message,
  MessageType,
  PEER_TYPES,
  concatBytes,
  decodeMessage,
  encodeMessage,
  helloMessage,
} from "../src/wire";
import {
  CORPUS,
  FUZZ_FRAMES,
  FUZZ_SEED,
  OVER_LIMIT_LENGTHS,
  RawConnection,
  type Role,
  type ServerShape,
  chunk,
  frameOf,
  hexDump,
  judge,
  mutate,
  rssMiB,
  terminator,
} from "./helpers/fuzz";
import {
  type Child,
  pstoreCommand,
  removeDir,
  spawnChild,
  tempDir,
} from "./helpers/processes";

const SECRET = "fuzz-secret-0123456789";

interface FuzzServer {
  name: "guarded" | "open";
  child: Child;
  address: string;
  dataDir: string;
  shape: ServerShape;
  secret: string | undefined;
  store: Store;
  /** The state before the fuzz, and the seq at which it was taken. */
  before: { hash: string; seq: number };
}

const servers: FuzzServer[] = [];

async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

/**
 * A server whose --peers names a second server that never runs: a "server"
 * hello with id 2 is then one a real peer would send. A new cluster waits for
 * every server of --peers before it forms a chain; --force-boot lets it serve
 * alone once it stops waiting for that peer (--suspect-ms).
 */
async function startFuzzServer(name: FuzzServer["name"], secret: string | undefined): Promise<FuzzServer> {
  const [port, ghost] = [await freePort(), await freePort()];
  const address = `127.0.0.1:${port}`;
  const dataDir = tempDir("pstore-fuzz-");
  const child = spawnChild(
    [
      ...pstoreCommand(),
      "serve",
      "--listen",
      address,
      "--peers",
      `${address},127.0.0.1:${ghost}`,
      "--data-dir",
      dataDir,
      "--segment-size",
      "4MiB",
      "--fsync",
      "off",
      "--suspect-ms",
      "500",
      "--force-boot",
      "--die-with-parent",
    ],
    secret === undefined ? {} : { PSTORE_SECRET: secret },
  );
  await child.waitFor(/READY (\S+)/, 15_000);
  // No cached holds: the state hash reads every datum, and cached grants would stay in the state it hashes.
  const store = await connect({ servers: address, secret, connectTimeoutMs: 15_000, cacheHolds: false });
  return { name, child, address, dataDir, shape: { secret: secret !== undefined, peerIds: [2] }, secret, store, before: { hash: "", seq: 0 } };
}

/** Data of several sizes with seeded bytes: the state the fuzz must not touch. */
async function seedData(store: Store, random: Random): Promise<void> {
  for (const [name, size] of [["tiny", 4], ["odd", 1000], ["page", 4096], ["pages", 3 * 4096 + 7], ["big", 64 * 1024], ["é-unicode", 17]] as const) {
    await store.create(name, size);
    await store.withWrite(name, (view) => view.set(random.bytes(size)));
  }
}

/** A hash of what a client sees: list(), stat() of each datum, and its bytes. */
async function stateHash(store: Store): Promise<string> {
  try {
    return await hashOnce(store);
  } catch (error) {
    // A stalled server may have expired our session: the store opens a new one on the next call.
    if (!(error instanceof PStoreError && error.code === "ESESSION")) throw error;
    return await hashOnce(store);
  }
}

async function hashOnce(store: Store): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  const list = (await store.list()).sort((a, b) => (a.name < b.name ? -1 : 1));
  hasher.update(JSON.stringify(list));
  for (const datum of list) {
    hasher.update(JSON.stringify(await store.stat(datum.name)));
    hasher.update(await store.withRead(datum.name, (view) => view.slice()));
  }
  return hasher.digest("hex");
}

async function appliedSeq(store: Store): Promise<number> {
  const status = await store.status();
  return Math.max(...status.chain.map((server) => server.appliedSeq));
}

type Mode = "raw" | "hello" | "peer" | "session";

/** Where the fuzz starts on a connection; FUZZ_MODES=raw,peer keeps some only. */
const MODE_WEIGHTS: Record<Mode, number> = (() => {
  const weights: Record<Mode, number> = { raw: 4, hello: 2, peer: 2, session: 2 };
  const only = process.env.FUZZ_MODES?.split(",").filter(Boolean);
  if (only?.length) for (const mode of Object.keys(weights) as Mode[]) if (!only.includes(mode)) weights[mode] = 0;
  return weights;
})();

/** Where a connection stands once our part of the handshake is done. */
function startRole(server: FuzzServer, mode: Mode): Role {
  if (mode === "raw") return "new";
  if (mode === "session") return "client";
  if (server.shape.secret) return "authenticating";
  return mode === "peer" ? "peer" : "client";
}

/** Frames a connected client may send that change nothing: heartbeats, queries, subscribes, with random fields. */
function harmless(random: Random): Uint8Array {
  const session = random.chance(0.5) ? random.int(1000) : random.int(2 ** 31) * 2 ** 20 + random.int(2 ** 20);
  const messages: Message[] = [
    { type: "heartbeat", body: { session, doneBelow: 1 } },
    { type: "query", body: { queryId: random.int(2 ** 32), kind: random.pick(["list", "stat", "status"] as const), name: random.pick(["", "tiny", "nope", "é", "x".repeat(300)]) } },
    { type: "subscribe", body: { session, waiting: Array.from({ length: random.int(5) }, () => random.int(2 ** 32)) } },
  ];
  return encodeMessage(random.pick(messages));
}

/**
 * Length prefixes of the live fuzz: over the limit (refused from the header) or small. Lengths
 * just under the limit stall the server (it allocates that much first): the test of announced
 * lengths below measures that on its own, so it does not drown the rest of the fuzz.
 */
const SERVER_FUZZ_LENGTHS = [...OVER_LIMIT_LENGTHS, 65_536];

interface Plan {
  mode: Mode;
  stream: Uint8Array;
  frames: number;
  /** The server must close the connection (it refused a frame). */
  expectClose: boolean;
  examined: number;
}

/** The fuzz stream of one connection, with no frame the model says the server would act on. */
function plan(server: FuzzServer, random: Random, mode: Mode, budget: number): Plan {
  const start = startRole(server, mode);
  const parts: Uint8Array[] = [];
  const wanted = Math.min(budget, 1 + random.int(random.chance(0.3) ? 60 : 12));
  let verdict = judge(server.shape, new Uint8Array(0), start);
  for (let i = 0; i < wanted; i++) {
    let accepted = false;
    for (let attempt = 0; attempt < 20 && !accepted; attempt++) {
      const candidate = verdict.role === "client" && random.chance(0.6) ? harmless(random) : mutate(random, { hugeLengths: SERVER_FUZZ_LENGTHS });
      const next = judge(server.shape, concatBytes([...parts, candidate]), start);
      // A length prefix under the limit but large (also one read out of sync) is the test below's business.
      if (next.forbidden || next.largestLength > 65_536) continue;
      parts.push(candidate);
      verdict = next;
      accepted = true;
    }
    if (!accepted) {
      // No candidate fits (e.g. every one completes a cut request into a valid one): end with a
      // frame every role refuses, unless even its bytes would complete such a frame.
      const end = terminator(random);
      const next = judge(server.shape, concatBytes([...parts, end]), start);
      if (!next.forbidden) {
        parts.push(end);
        verdict = next;
      }
      break;
    }
  }
  let expectClose = verdict.role === "closed";
  if (!expectClose && !verdict.partial) {
    // Still accepted and between frames: end with a frame every role refuses.
    parts.push(terminator(random));
    verdict = judge(server.shape, concatBytes(parts), start);
    expectClose = true;
  }
  const stream = concatBytes(parts);
  if (judge(server.shape, stream, start).forbidden) throw new Error(`the fuzz plan holds a frame the server would act on: ${hexDump(stream, 400)}`);
  return { mode, stream, frames: parts.length, expectClose, examined: verdict.examined };
}

interface FuzzTotals {
  connections: number;
  frames: number;
  examined: number;
  refusedWithError: number;
  leftPartial: number;
  byMode: Record<Mode, number>;
  problems: string[];
}

/** Our side of the handshake for `mode`: nothing, a hello (client or peer), or a full authenticated client handshake. */
async function handshake(connection: RawConnection, server: FuzzServer, mode: Mode): Promise<string | null> {
  if (mode === "raw") return null;
  const nonce = crypto.getRandomValues(new Uint8Array(32));
  if (mode === "hello" || mode === "peer") {
    connection.send(encodeMessage(helloMessage(mode === "peer" ? "server" : "client", mode === "peer" ? 2 : 0, nonce)));
    const expected = server.shape.secret ? MessageType.challenge : MessageType.welcome;
    const answer = await connection.waitFrame((frame) => frame.type === expected || frame.type === MessageType.error, 5000);
    return answer?.type === expected ? null : `no ${server.shape.secret ? "challenge" : "welcome"} after a ${mode} hello`;
  }
  const greeter = new Greeter("client", 0, server.secret);
  connection.send(encodeMessage(greeter.hello()));
  for (let seen = 0; ; ) {
    const answered = await connection.waitFrame(() => connection.frames.length > seen, 5000);
    if (!answered) return "no answer to a client hello";
    const message = decodeMessage(connection.frames[seen]!.type, connection.frames[seen]!.body);
    seen++;
    const step = greeter.step(message);
    if (step.kind === "welcome") return null;
    if (step.kind === "refused") return `handshake refused: ${step.code} ${step.message}`;
    connection.send(encodeMessage(step.message));
  }
}

async function fuzzConnection(server: FuzzServer, random: Random, budget: number, totals: FuzzTotals): Promise<number> {
  const mode = random.weighted<Mode>(MODE_WEIGHTS);
  const connection = await RawConnection.open(server.address);
  try {
    const problem = await handshake(connection, server, mode);
    if (problem) {
      totals.problems.push(`${server.name} ${mode}: ${problem}`);
      return 1;
    }
    const welcomeFrames = connection.frames.length;
    const p = plan(server, random, mode, budget);
    for (const part of chunk(random, p.stream)) {
      connection.send(part);
      if (random.chance(0.1)) await Bun.sleep(1);
    }
    totals.connections++;
    totals.frames += p.frames;
    totals.examined += p.examined;
    totals.byMode[mode] += p.frames;
    if (p.expectClose) {
      if (!(await connection.waitClosed(10_000))) {
        totals.problems.push(`${server.name} ${mode}: the server kept a connection open after a frame it must refuse: ${hexDump(p.stream, 400)}`);
      } else {
        const refusal = connection.frames.slice(welcomeFrames).find((frame) => frame.type === MessageType.error);
        if (refusal) totals.refusedWithError++;
        else totals.problems.push(`${server.name} ${mode}: closed (${connection.closeReason}) without an error frame after ${hexDump(p.stream, 400)}`);
      }
    } else {
      totals.leftPartial++;
      await Bun.sleep(random.int(3));
    }
    return p.frames;
  } finally {
    connection.terminate();
  }
}

async function fuzzServer(server: FuzzServer, frames: number, seed: number): Promise<FuzzTotals> {
  const totals: FuzzTotals = { connections: 0, frames: 0, examined: 0, refusedWithError: 0, leftPartial: 0, byMode: { raw: 0, hello: 0, peer: 0, session: 0 }, problems: [] };
  const root = new Random(seed);
  let remaining = frames;
  const worker = async (random: Random) => {
    while (remaining > 0 && totals.problems.length < 20) {
      const budget = Math.min(remaining, 64);
      remaining -= budget;
      const used = await fuzzConnection(server, random, budget, totals);
      remaining += Math.max(0, budget - used);
    }
  };
  await Promise.all(Array.from({ length: Number(process.env.FUZZ_WORKERS ?? 32) }, () => worker(root.fork())));
  return totals;
}

function rssOf(server: FuzzServer): number {
  return rssMiB(server.child.proc.pid);
}

async function stillServes(server: FuzzServer): Promise<void> {
  expect(server.child.proc.exitCode).toBeNull();
  const fresh = await connect({ servers: server.address, secret: server.secret, connectTimeoutMs: 5000 });
  try {
    await fresh.create("after-fuzz", 8);
    await fresh.withWrite("after-fuzz", (view) => view.set([1, 2, 3, 4, 5, 6, 7, 8]));
    expect(await fresh.withRead("after-fuzz", (view) => [...view])).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    await fresh.delete("after-fuzz");
  } finally {
    await fresh.close();
  }
}

describe("live servers", () => {
  // Started here, not at the top: the decoder test above runs for seconds without yielding, and the
  // clients' heartbeats must not stop for a session timeout while their servers run.
  beforeAll(async () => {
    const random = new Random(FUZZ_SEED ^ 0x5eed);
    for (const [name, secret] of [["guarded", SECRET], ["open", undefined]] as const) {
      const server = await startFuzzServer(name, secret);
      servers.push(server);
      await seedData(server.store, random);
      const hash = await stateHash(server.store);
      server.before = { hash, seq: await appliedSeq(server.store) };
    }
  }, 60_000);

  afterAll(async () => {
    for (const server of servers) {
      await server.store.close().catch(() => {});
      await server.child.stop();
      // FUZZ_KEEP=1 keeps the servers' data (their logs show any update the fuzz got applied).
      if (process.env.FUZZ_KEEP === "1") console.log(`${server.name} server's data kept in ${server.dataDir}`);
      else removeDir(server.dataDir);
    }
  });

  test(`${FUZZ_FRAMES} fuzzed frames over many connections: the servers refuse them, still serve, apply nothing, keep their state; RSS bounded`, async () => {
    const rssBefore = servers.map(rssOf);
    const started = performance.now();
    const samples: number[][] = servers.map(() => []);
    const sampler = setInterval(() => servers.forEach((server, i) => samples[i]!.push(rssOf(server))), 250);
    const results = await Promise.all(servers.map((server, i) => fuzzServer(server, Math.ceil(FUZZ_FRAMES / servers.length), FUZZ_SEED * 31 + i)));
    clearInterval(sampler);
    const elapsed = Math.round(performance.now() - started);
    if (process.env.FUZZ_DEBUG_RSS) for (const [i, series] of samples.entries()) console.log(`${servers[i]!.name} RSS samples: ${series.map((v) => v.toFixed(0)).join(" ")}`);
    const rssAfter = servers.map(rssOf);
    const rssPeak = samples.map((series, i) => Math.max(rssBefore[i]!, rssAfter[i]!, ...series));
    for (const [i, server] of servers.entries()) {
      const t = results[i]!;
      console.log(
        `${server.name} server (${server.shape.secret ? "--secret, fuzzed unauthenticated and authenticated" : "no secret, malformed or harmless frames only"}), seed ${FUZZ_SEED}: ` +
          `${t.frames} frames on ${t.connections} connections (raw ${t.byMode.raw}, after hello ${t.byMode.hello}, after a peer hello ${t.byMode.peer}, in a session ${t.byMode.session}); ` +
          `${t.examined} frames reached the server's decoders; ${t.refusedWithError} connections refused with an error frame, ${t.leftPartial} left mid-frame; ` +
          `RSS ${rssBefore[i]!.toFixed(1)} MiB before, ${rssPeak[i]!.toFixed(1)} at most during, ${rssAfter[i]!.toFixed(1)} after; ${elapsed} ms`,
      );
    }
    expect(results.flatMap((t) => t.problems)).toEqual([]);
    expect(results.reduce((n, t) => n + t.frames, 0)).toBeGreaterThanOrEqual(FUZZ_FRAMES);
    for (const [i, server] of servers.entries()) {
      // Not one update applied during the fuzz (the seq is where the last hash left it), and the same state.
      const seq = await appliedSeq(server.store);
      if (seq !== server.before.seq) console.log(`${server.name} server applied ${seq - server.before.seq} update(s) during the fuzz; its log ends with:\n${server.child.stderr().split("\n").slice(-15).join("\n")}`);
      expect([server.name, seq]).toEqual([server.name, server.before.seq]);
      expect(await stateHash(server.store)).toBe(server.before.hash);
      server.before = { hash: server.before.hash, seq: await appliedSeq(server.store) };
      await stillServes(server);
      expect(rssAfter[i]! - rssBefore[i]!).toBeLessThan(128);
      // Garbage the collector has not reclaimed yet counts in a sample: spikes of 100-200 MiB come and go.
      expect(rssPeak[i]! - rssBefore[i]!).toBeLessThan(512);
    }
  }, 180_000);

  test("slowloris: connections sending one byte a second do not slow a normal client down", async () => {
    const server = servers[0]!;
    const slow: RawConnection[] = [];
    const hello = encodeMessage(helloMessage("client", 0, new Uint8Array(32)));
    for (let i = 0; i < 20; i++) slow.push(await RawConnection.open(server.address));
    const latencies: number[] = [];
    const seconds = 4;
    for (let second = 0; second < seconds; second++) {
      for (const connection of slow) connection.send(hello.subarray(second, second + 1));
      const t0 = performance.now();
      await server.store.withRead("tiny", (view) => view[0]);
      await server.store.list();
      latencies.push(performance.now() - t0);
      await Bun.sleep(1000);
    }
    const stillOpen = slow.filter((connection) => connection.open).length;
    for (const connection of slow) connection.terminate();
    console.log(
      `slowloris: 20 connections at one byte a second for ${seconds} s; a client's read + list took ${latencies.map((ms) => ms.toFixed(1)).join(", ")} ms; ` +
        `${stillOpen} of the slow connections still open (the server has no handshake timeout)`,
    );
    expect(Math.max(...latencies)).toBeLessThan(1000);
    await stillServes(server);
  }, 30_000);

  test("many half-open connections (silent, mid-header, mid-frame, waiting for a proof): the servers still serve, memory bounded", async () => {
    const rssBefore = servers.map(rssOf);
    const held: RawConnection[] = [];
    const random = new Random(FUZZ_SEED + 7);
    for (const server of servers) {
      for (let i = 0; i < 500; i++) {
        const connection = await RawConnection.open(server.address);
        const kind = i % 4;
        if (kind === 1) connection.send(new Uint8Array([0x30, 0x00, 0x00]));
        else if (kind === 2) connection.send(mutate(random, { kind: "cut" }));
        else if (kind === 3) connection.send(encodeMessage(helloMessage(i % 8 === 3 ? "server" : "client", i % 8 === 3 ? 2 : 0, random.bytes(32))));
        held.push(connection);
      }
    }
    await Bun.sleep(300);
    const rssHeld = servers.map(rssOf);
    for (const server of servers) await stillServes(server);
    for (const connection of held) connection.terminate();
    await Bun.sleep(300);
    const rssAfter = servers.map(rssOf);
    for (const [i, server] of servers.entries()) {
      console.log(
        `${server.name} server: 500 half-open connections: RSS ${rssBefore[i]!.toFixed(1)} → ${rssHeld[i]!.toFixed(1)} MiB while open, ${rssAfter[i]!.toFixed(1)} MiB after`,
      );
      expect(rssHeld[i]! - rssBefore[i]!).toBeLessThan(128);
      expect(await stateHash(server.store)).toBe(server.before.hash);
    }
  }, 60_000);

  test("length prefixes over the limit are refused from the header alone", async () => {
    for (const server of servers) {
      for (const length of [...OVER_LIMIT_LENGTHS, 0]) {
        const connection = await RawConnection.open(server.address);
        const header = new Uint8Array(FRAME_HEADER_BYTES);
        new DataView(header.buffer).setUint32(0, length, true);
        header[4] = MessageType.hello;
        connection.send(header);
        expect(await connection.waitClosed(5000)).toBe(true);
        const error = connection.frames.find((frame) => frame.type === MessageType.error);
        expect(error && decodeMessage(error.type, error.body)).toMatchObject({ type: "error", body: { code: "EPROTO" } });
        connection.terminate();
      }
    }
  }, 30_000);

  /**
   * A large length prefix before any hello: the server refuses it from the
   * header (frames before the handshake are at most HANDSHAKE_FRAME_BYTES_MAX),
   * so a client is still served within a second and RSS stays within 128 MiB
   * (FUZZ_STRICT=0 only measures). This runs last.
   */
  test("announced large lengths before any hello: refused from the header, clients still served, RSS bounded", async () => {
    const strict = process.env.FUZZ_STRICT !== "0";
    // Short and on one server in CI (the stall and its recovery take seconds); FUZZ_ATTACK_MS=3000 for more.
    const attackMs = Number(process.env.FUZZ_ATTACK_MS ?? 1000);
    for (const server of strict || process.env.FUZZ_ATTACK_MS ? servers : servers.slice(0, 1)) {
      const rssBefore = rssOf(server);
      const observer = await connect({ servers: server.address, secret: server.secret, connectTimeoutMs: 5000, failoverTimeoutMs: 3000 });
      await observer.create(`observed-${server.name}`, 4);
      server.before.hash = await stateHash(server.store);
      let stop = false;
      let cycles = 0;
      let peakRss = rssBefore;
      const attack = (async () => {
        while (!stop) {
          const connection = await RawConnection.open(server.address).catch(() => null);
          if (!connection) continue;
          const header = new Uint8Array(FRAME_HEADER_BYTES);
          new DataView(header.buffer).setUint32(0, FRAME_BYTES_MAX, true);
          header[4] = MessageType.hello;
          connection.send(header);
          await Bun.sleep(1);
          connection.terminate();
          cycles++;
          if (cycles % 20 === 0) peakRss = Math.max(peakRss, rssOf(server));
        }
      })();
      const latencies: number[] = [];
      let failures = 0;
      const until = performance.now() + attackMs;
      while (performance.now() < until) {
        const t0 = performance.now();
        const read = observer.withRead(`observed-${server.name}`, (view) => view[0]);
        const outcome = await Promise.race([read.then(() => "ok", () => "error"), Bun.sleep(1500).then(() => "slow")]);
        if (outcome !== "ok") failures++;
        latencies.push(performance.now() - t0);
        if (outcome === "slow") await read.catch(() => {});
        await Bun.sleep(50);
      }
      stop = true;
      await attack;
      await observer.close().catch(() => {});
      // How long until a new client is served again.
      const stopped = performance.now();
      let recoveredMs = -1;
      while (performance.now() - stopped < 60_000) {
        try {
          await stillServes(server);
          recoveredMs = performance.now() - stopped;
          break;
        } catch {
          await Bun.sleep(200);
        }
      }
      const rssAfter = rssOf(server);
      console.log(
        `${server.name} server: ${cycles} unauthenticated connections announcing a ${FRAME_BYTES_MAX}-byte frame in ${attackMs} ms; ` +
          `a client's reads took max ${Math.max(...latencies).toFixed(0)} ms (${failures} of ${latencies.length} failed or took over 1.5 s); ` +
          `served a new client again ${recoveredMs < 0 ? "not within 60 s" : `${Math.round(recoveredMs)} ms after the attack stopped`}; ` +
          `RSS ${rssBefore.toFixed(0)} → peak ${peakRss.toFixed(0)} → ${rssAfter.toFixed(0)} MiB`,
      );
      expect(recoveredMs).toBeGreaterThanOrEqual(0);
      expect(await stateHash(server.store)).toBe(server.before.hash);
      if (strict) {
        expect(failures).toBe(0);
        expect(Math.max(...latencies)).toBeLessThan(1000);
        expect(peakRss - rssBefore).toBeLessThan(128);
      }
    }
  }, 120_000);

  test("the corpus covers every message type, client and server", () => {
    const types = new Set(CORPUS.map((frame) => frame[4]!));
    for (const type of Object.values(MessageType)) expect(types.has(type)).toBe(true);
    for (const type of Object.values(PEER_TYPES)) expect(types.has(type)).toBe(true);
    expect(frameOf(1, new Uint8Array(0)).length).toBe(FRAME_HEADER_BYTES);
  });
});
