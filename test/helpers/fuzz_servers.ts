/**
 * The live-server fuzz of test/fuzz.test.ts: servers to fuzz (one with --secret, one without),
 * the state they must keep, and the fuzz itself: per connection a handshake to a chosen depth,
 * then a stream of frames that helpers/fuzz.ts's model says the server must refuse or that cannot
 * change its state.
 */
import { expect } from "bun:test";
import { Random } from "../../src/chaos/random";
import { PStoreError, type Store, connect } from "../../src/index";
import { Greeter } from "../../src/net/greeter";
import { type Message, MessageType, concatBytes, decodeMessage, encodeMessage, helloMessage } from "../../src/wire";
import { OVER_LIMIT_LENGTHS, RawConnection, type Role, type ServerShape, chunk, hexDump, judge, mutate, rssMiB, terminator } from "./fuzz";
import { type Child, freePort, pstoreCommand, spawnChild, tempDir } from "./processes";

export const SECRET = "fuzz-secret-0123456789";

export interface FuzzServer {
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

/**
 * A server whose --peers names a second server that never runs: a "server"
 * hello with id 2 is then one a real peer would send. A new cluster waits for
 * every server of --peers before it forms a chain; --force-boot lets it serve
 * alone once it stops waiting for that peer (--suspect-ms).
 */
export async function startFuzzServer(name: FuzzServer["name"], secret: string | undefined): Promise<FuzzServer> {
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
export async function seedData(store: Store, random: Random): Promise<void> {
  for (const [name, size] of [["tiny", 4], ["odd", 1000], ["page", 4096], ["pages", 3 * 4096 + 7], ["big", 64 * 1024], ["é-unicode", 17]] as const) {
    await store.create(name, size);
    await store.withWrite(name, (view) => view.set(random.bytes(size)));
  }
}

/** A hash of what a client sees: list(), stat() of each datum, and its bytes. */
export async function stateHash(store: Store): Promise<string> {
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

export async function appliedSeq(store: Store): Promise<number> {
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

export async function fuzzServer(server: FuzzServer, frames: number, seed: number): Promise<FuzzTotals> {
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

export function rssOf(server: FuzzServer): number {
  return rssMiB(server.child.proc.pid);
}

export async function stillServes(server: FuzzServer): Promise<void> {
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
