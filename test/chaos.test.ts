/**
 * The chaos run (src/chaos, issue 7 item 6) in CI: its fault planner keeps
 * its rules, its link proxy cuts server traffic and only that, and a short
 * run against real servers ends with every server serving at one applied
 * seq, every client finished, a linearizable history with safe holds, and
 * every counter equal to its acknowledged increments plus some unknown ones.
 *
 * The CI run is chain-aware (faults only where the documented failure model
 * loses nothing; see run.ts) with 10 ms of think time per client, so that it
 * is not flaky: the full schedule (`bun run chaos`, or CHAOS_FULL=1 here) can
 * still fail now and then, e.g. when a joiner cannot catch up with a chain
 * under a sustained write load for the 60 s the run allows. CHAOS_SECONDS
 * (default 60) and CHAOS_SEED (default 1) change the length and the seed.
 */
import { expect, test } from "bun:test";
import { ChaosCluster } from "../src/chaos/cluster";
import { DEFAULT_WEIGHTS, type FaultEvent, REJOIN_MS, planFaults } from "../src/chaos/faults";
import { LinkProxy } from "../src/chaos/proxy";
import { Random, seedFrom } from "../src/chaos/random";
import { DEFAULT_OPTIONS, runChaos, splitsServingChain, summaryLine } from "../src/chaos/run";
import { connect } from "../src/index";
import { encodeMessage, helloMessage } from "../src/wire";
import { RawConnection } from "./helpers/fuzz";
import { pstoreCommand, removeDir, tempDir } from "./helpers/processes";

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 60);
const SEED = seedFrom(process.env.CHAOS_SEED ?? "1");
const FULL = process.env.CHAOS_FULL === "1";

/** Replays a schedule on a model and returns the first broken rule, if any. */
function brokenRule(events: FaultEvent[], servers: number, allowTotal: boolean): string | null {
  const killed = new Array(servers).fill(false);
  const paused = new Array(servers).fill(false);
  const cut = Array.from({ length: servers }, () => new Array(servers).fill(false));
  const oneWay = Array.from({ length: servers }, () => new Array(servers).fill(false));
  /** A server back from a kill or a pause is in the chain again only REJOIN_MS later. */
  const rejoinedAt = new Array(servers).fill(0);
  const connected = (nodes: number[]) => {
    if (nodes.length <= 1) return true;
    const seen = new Set([nodes[0]!]);
    const queue = [nodes[0]!];
    while (queue.length) {
      const i = queue.pop()!;
      for (const j of nodes) if (!seen.has(j) && !cut[i]![j] && !oneWay[i]![j] && !oneWay[j]![i]) seen.add(j) && queue.push(j);
    }
    return seen.size === nodes.length;
  };
  let last = -1;
  for (const event of events) {
    if (event.at < last) return `events out of order at ${event.at}`;
    last = event.at;
    switch (event.kind) {
      case "kill":
        killed[event.server] = true;
        paused[event.server] = false;
        break;
      case "restart":
        killed[event.server] = false;
        rejoinedAt[event.server] = event.at + REJOIN_MS;
        break;
      case "pause":
        paused[event.server] = true;
        break;
      case "resume":
        paused[event.server] = false;
        rejoinedAt[event.server] = event.at + REJOIN_MS;
        break;
      case "cut":
      case "heal":
        cut[event.a]![event.b] = cut[event.b]![event.a] = event.kind === "cut";
        break;
      case "oneway":
      case "heal-oneway":
        // One direction only, counted as a cut (connected()): with other cuts it can leave a server hearing none of its chain.
        oneWay[event.a]![event.b] = event.kind === "oneway";
        break;
      case "total":
        if (!allowTotal) return `a whole-cluster kill at ${event.at} without --allow-total`;
        killed.fill(true);
        paused.fill(false);
        break;
      case "restart-all":
        killed.fill(false);
        break;
    }
    const up = killed.flatMap((k, i) => (k || paused[i] ? [] : [i]));
    if (up.length === 0 && !killed.every(Boolean)) return `every server down at ${event.at} (not a whole-cluster kill)`;
    if (!connected(killed.map((_, i) => i))) return `cut links split the servers at ${event.at}`;
    if (!connected(up)) return `the servers up cannot all reach each other at ${event.at}`;
    // Each server still rejoining may be in the chain or not: every such chain must hold together.
    const settled = up.filter((i) => rejoinedAt[i] <= event.at);
    const rejoining = up.filter((i) => rejoinedAt[i] > event.at);
    for (let mask = 0; mask < 1 << rejoining.length; mask++) {
      if (!connected([...settled, ...rejoining.filter((_, k) => (mask >> k) & 1)])) return `a chain the servers may have is split while a server rejoins, at ${event.at}`;
    }
  }
  if (killed.some(Boolean) || paused.some(Boolean) || cut.flat().some(Boolean) || oneWay.flat().some(Boolean)) return "the schedule does not end with everything repaired";
  return null;
}

test("the fault planner never takes more than N−1 servers down, never splits the servers (nor the chain while one rejoins), repairs everything, and replays from its seed", () => {
  const counts = { kill: 0, pause: 0, cut: 0, oneway: 0, total: 0 };
  for (let seed = 1; seed <= 300; seed++) {
    const servers = 2 + (seed % 4);
    const allowTotal = seed % 3 === 0;
    const options = {
      servers,
      durationMs: 120_000,
      allowTotal,
      allowSplit: false,
      weights: { ...DEFAULT_WEIGHTS, total: allowTotal ? 1 : 0 },
      gapMs: [100, 1500] as [number, number],
    };
    const events = planFaults(new Random(seed), options);
    expect([seed, brokenRule(events, servers, allowTotal)]).toEqual([seed, null]);
    expect(planFaults(new Random(seed), options)).toEqual(events);
    for (const event of events) if (event.kind in counts) counts[event.kind as keyof typeof counts]++;
  }
  // Every kind of fault is planned (cuts need three servers or more to leave the others connected).
  for (const kind of Object.keys(counts) as (keyof typeof counts)[]) expect(counts[kind]).toBeGreaterThan(100);
});

test("a cut link proxy drops or blackholes server connections and lets clients through", async () => {
  const received: Uint8Array[] = [];
  const target = Bun.listen({
    hostname: "127.0.0.1",
    port: 0,
    socket: {
      data(socket, bytes) {
        received.push(bytes.slice());
        socket.write(bytes); // an echo server stands for the peer
      },
    },
  });
  const proxy = new LinkProxy(`127.0.0.1:${target.port}`, "test");
  proxy.listen();
  const peerHello = encodeMessage(helloMessage("server", 2, new Uint8Array(32)));
  const clientHello = encodeMessage(helloMessage("client", 0, new Uint8Array(32)));
  const echoed = async (connection: RawConnection, bytes: Uint8Array) => {
    connection.send(bytes);
    return (await connection.waitFrame(() => true, 1000)) !== null;
  };
  try {
    const peer = await RawConnection.open(proxy.address);
    expect(await echoed(peer, peerHello)).toBe(true);

    proxy.startCut("drop");
    expect(await peer.waitClosed(1000)).toBe(true);
    const refused = await RawConnection.open(proxy.address);
    refused.send(peerHello);
    expect(await refused.waitClosed(1000)).toBe(true);
    const client = await RawConnection.open(proxy.address);
    expect(await echoed(client, clientHello)).toBe(true);

    proxy.heal();
    proxy.startCut("blackhole");
    const silent = await RawConnection.open(proxy.address);
    expect(await echoed(silent, peerHello)).toBe(false);
    expect(silent.open).toBe(true);
    proxy.heal();
    // Bytes went missing: the connection cannot be trusted any more and is closed.
    expect(await silent.waitClosed(1000)).toBe(true);
    const after = await RawConnection.open(proxy.address);
    expect(await echoed(after, peerHello)).toBe(true);
    for (const connection of [peer, refused, client, silent, after]) connection.terminate();
  } finally {
    proxy.stop();
    target.stop(true);
  }
});

test("the chaos cluster: servers reach each other through the proxies, status per server, kill and restart", async () => {
  const dataDir = tempDir("pstore-chaos-test-");
  const cluster = new ChaosCluster({ count: 3, dataDir, command: pstoreCommand(), fsync: "off", segmentSize: "4MiB" });
  try {
    await cluster.start();
    const deadline = performance.now() + 15_000;
    let serving = 0;
    while (performance.now() < deadline && serving < 3) {
      const views = await Promise.all([0, 1, 2].map((i) => cluster.statusOf(i)));
      serving = views.filter((view, i) => view?.chain.find((server) => server.id === i + 1)?.state === "serving").length;
      await Bun.sleep(100);
    }
    expect(serving).toBe(3);
    const store = await connect({ servers: cluster.addresses });
    await store.create("through-proxies", 4);
    await store.withWrite("through-proxies", (view) => void (view[0] = 42));
    // Unless splits are allowed, a fault that would leave the serving servers without a path
    // between them is not injected (seed 22004: the default mode's documented split).
    const fault = (event: Partial<FaultEvent>) => splitsServingChain(cluster, { at: 0, id: 0, ...event } as FaultEvent, undefined);
    expect(await fault({ kind: "cut", a: 0, b: 2, mode: "drop" })).toBeNull();
    cluster.cut(0, 2, "drop");
    expect(await fault({ kind: "cut", a: 0, b: 1, mode: "drop" })).toBe("it would split the servers serving now");
    expect(await fault({ kind: "kill", server: 1 })).toBe("it would split the servers serving now");
    expect(await fault({ kind: "kill", server: 2 })).toBeNull();
    cluster.heal(0, 2);
    // A one-way cut counts as a cut: alone it leaves a path, with another it may leave a server
    // hearing none of the chain (seed 23006).
    expect(await fault({ kind: "oneway", a: 0, b: 1, mode: "drop" })).toBeNull();
    cluster.cutOneWay(0, 1, "drop");
    expect([cluster.isCut(0, 1), cluster.isCut(1, 0)]).toEqual([true, false]);
    expect(await fault({ kind: "oneway", a: 2, b: 0, mode: "drop" })).toBe("it would split the servers serving now");
    expect(await fault({ kind: "cut", a: 0, b: 2, mode: "drop" })).toBe("it would split the servers serving now");
    expect(await fault({ kind: "oneway", a: 1, b: 2, mode: "drop" })).toBe("it would split the servers serving now");
    cluster.healOneWay(0, 1);
    expect([cluster.isCut(0, 1), cluster.isCut(1, 0)]).toEqual([false, false]);
    expect(await fault({ kind: "oneway", a: 1, b: 2, mode: "drop" })).toBeNull();
    await cluster.kill(1);
    expect(cluster.pid(1)).toBeNull();
    expect(await store.withRead("through-proxies", (view) => view[0], { timeoutMs: 10_000 })).toBe(42);
    await cluster.restart(1);
    expect(cluster.pid(1)).not.toBeNull();
    await store.close();
  } finally {
    await cluster.stop();
    removeDir(dataDir);
  }
}, 60_000);

test(`a ${SECONDS}-second chaos run${FULL ? "" : " (chain-aware)"}: no violation`, async () => {
  const lines: string[] = [];
  const report = await runChaos({
    ...DEFAULT_OPTIONS,
    seed: SEED,
    durationMs: SECONDS * 1000,
    chainAware: !FULL,
    thinkMs: FULL ? 0 : 10,
    // Chain-aware runs skip cuts while a server is down: plan more of them.
    weights: FULL ? DEFAULT_WEIGHTS : { kill: 2, pause: 2, cut: 4, oneway: 2, total: 0 },
    command: pstoreCommand(),
    log: (line) => lines.push(line),
  });
  console.log(lines.join("\n"));
  console.log(summaryLine(report));
  if (report.violations.length > 0) {
    console.log(`violations (replay: bun run chaos --seed ${SEED} --minutes ${SECONDS / 60}${FULL ? "" : " --chain-aware --think-ms 10"}):\n${report.violations.join("\n")}`);
    console.log(`kept in ${report.keptAt}`);
  }
  expect(report.violations).toEqual([]);
  expect(report.acknowledged).toBeGreaterThan(1000);
  expect(report.faults.kill + report.faults.pause + report.faults.cut + report.faults.oneway).toBeGreaterThan(5);
}, 300_000);
