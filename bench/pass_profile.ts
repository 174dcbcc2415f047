#!/usr/bin/env bun
/**
 * One pass through the chain, hop by hop: runs a `pstore bench` workload (1-client cycle by
 * default: with cached holds each cycle is one write release through the chain) against 3
 * servers that stamp every request and update (src/server/pass_profile.ts, on the clock all
 * processes share), then joins the stamps by sequence number and prints the median of each
 * stretch of the pass, from the head's first byte to the tail's reply.
 *
 *   bun bench/pass_profile.ts [--binary dist/pstore] [--fsync off] [--seconds 6] [--clients 1]
 *                             [--workload cycle|contended|large] [--span-min-ms 0]
 *
 * `--span-min-ms`: only passes whose servers' span is at least this long (with `large`, 20
 * keeps the 64 MiB rewrites and drops the small releases between them).
 *
 * The bench's release p50 minus the servers' span is the client's own share and its two
 * hops (client → head, tail → client). "tail's reply → the client's next request at the head"
 * is a client's turn: with `contended`, a grant's hand-over to the client that waited.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { runPrefix, runWorkload } from "../src/bench/index.ts";
import { LocalCluster } from "../src/cli/cluster.ts";

const ROOT = resolve(import.meta.dir, "..");

function option(name: string, fallback: string): string {
  const index = process.argv.indexOf(name);
  return index === -1 ? fallback : process.argv[index + 1]!;
}

type Stamp = (string | number)[];

/** Per server: seq → stamps of that update there. */
interface ServerStamps {
  id: number;
  requestAt: Map<string, { bytes: number; decoded: number }>;
  forwardIn: Map<number, { bytes: number; decoded: number }>;
  forwardOut: Map<number, { at: number; key: string; op: string }>;
  replyAt: Map<string, number>;
  /** [seq, at], ascending: a write covers every seq up to its own. */
  written: [number, number][];
}

function load(dir: string, id: number): ServerStamps {
  const stamps: ServerStamps = { id, requestAt: new Map(), forwardIn: new Map(), forwardOut: new Map(), replyAt: new Map(), written: [] };
  for (const line of readFileSync(join(dir, `${id}.jsonl`), "utf8").split("\n")) {
    if (!line) continue;
    const s = JSON.parse(line) as Stamp;
    const n = (i: number) => s[i] as number;
    switch (s[0]) {
      case "request":
        stamps.requestAt.set(`${n(1)}/${n(2)}`, { bytes: n(3), decoded: n(4) });
        break;
      case "forward-in":
        stamps.forwardIn.set(n(1), { bytes: n(2), decoded: n(3) });
        break;
      case "forward-out":
        if (!stamps.forwardOut.has(n(1))) stamps.forwardOut.set(n(1), { at: n(4), key: `${n(2)}/${n(3)}`, op: s[5] as string });
        break;
      case "reply": // the last one: an acquire's "queued", then its grant
        stamps.replyAt.set(`${n(1)}/${n(2)}`, n(3));
        break;
      case "written":
        stamps.written.push([n(1), n(2)]);
        break;
    }
  }
  return stamps;
}

/** When the write that covers `seq` completed (binary search over ascending writes). */
function writtenAt(server: ServerStamps, seq: number): number | null {
  let lo = 0;
  let hi = server.written.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (server.written[mid]![0] < seq) lo = mid + 1;
    else hi = mid;
  }
  return lo < server.written.length ? server.written[lo]![1] : null;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? Number.NaN : sorted[Math.floor(sorted.length / 2)]!;
}

const binary = resolve(option("--binary", join(ROOT, "dist/pstore")));
const fsync = option("--fsync", "off") as "off" | "always" | "batch";
const seconds = Number(option("--seconds", "6"));
const workload = option("--workload", "cycle") as "cycle" | "contended" | "large";
const spanMinUs = Number(option("--span-min-ms", "0")) * 1000;
const clients = Number(option("--clients", workload === "contended" ? "8" : "1"));
const stampDir = mkdtempSync(join(tmpdir(), "pstore-pass-"));
const dataDir = mkdtempSync(join(tmpdir(), "pstore-pass-data-"));
process.env.PSTORE_PASS_PROFILE = stampDir;
const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir, fsync, command: [binary] });
try {
  await cluster.start();
  const result = await runWorkload(
    { servers: cluster.servers, cluster, prefix: runPrefix() },
    { workload, clients, size: 4096, budget: { durationMs: seconds * 1000 }, warmupMs: 500, victim: "head" },
  );
  await cluster.stop(); // SIGTERM: each server writes its stamps
  const servers = [1, 2, 3].map((id) => load(stampDir, id));
  // The chain's order, from the first release: the head received the request, the tail replied.
  const stretches = new Map<string, number[]>();
  const add = (name: string, us: number) => {
    if (!stretches.has(name)) stretches.set(name, []);
    stretches.get(name)!.push(us);
  };
  const head = servers.find((s) => s.requestAt.size > 0 && s.forwardOut.size > 0)!;
  const middle = servers.find((s) => s !== head && s.forwardIn.size > 0 && s.forwardOut.size > 0)!;
  const tail = servers.find((s) => s !== head && s !== middle)!;
  let passes = 0; // write releases joined across the three servers
  for (const [seq, out] of head.forwardOut) {
    const request = head.requestAt.get(out.key);
    const midIn = middle.forwardIn.get(seq);
    const midOut = middle.forwardOut.get(seq);
    const tailIn = tail.forwardIn.get(seq);
    const reply = tail.replyAt.get(out.key);
    const tailWritten = writtenAt(tail, seq);
    // Releases only: an acquire's last reply may be a grant long after (contended).
    if (out.op !== "release" || !request || !midIn || !midOut || !tailIn || reply === undefined || tailWritten === null) continue;
    if (reply - request.bytes < spanMinUs) continue;
    passes++;
    add("head: bytes in → request decoded", request.decoded - request.bytes);
    add("head: decoded → forward leaves (core, encode)", out.at - request.decoded);
    add("hop head → middle (send, kernel, wake-up, read)", midIn.bytes - out.at);
    add("middle: bytes in → forward decoded", midIn.decoded - midIn.bytes);
    add("middle: decoded → forward leaves", midOut.at - midIn.decoded);
    add("hop middle → tail", tailIn.bytes - midOut.at);
    add("tail: bytes in → forward decoded", tailIn.decoded - tailIn.bytes);
    add("tail: decoded → log written (core, log write)", tailWritten - tailIn.decoded);
    add("tail: written → reply leaves", reply - tailWritten);
    add("servers' span: head's first byte → tail's reply", reply - request.bytes);
    const headWritten = writtenAt(head, seq);
    if (headWritten !== null) add("(head: forward sent → own log written)", headWritten - out.at);
  }
  for (const [key, at] of tail.replyAt) {
    const [session, reqNo] = key.split("/").map(Number);
    const next = head.requestAt.get(`${session}/${reqNo! + 1}`);
    if (next && next.bytes > at) add("tail's reply → the client's next request at the head", next.bytes - at);
  }
  console.log(`${binary}, ${workload}, --fsync ${fsync}, ${clients} client(s), ${seconds} s: ${passes} passes joined; chain ${head.id} → ${middle.id} → ${tail.id}`);
  for (const [name, values] of stretches) console.log(`${name.padEnd(52)} ${median(values).toFixed(1).padStart(7)} µs`);
  const release = (result as { release_us?: { p50: number } }).release_us?.p50;
  const span = median(stretches.get("servers' span: head's first byte → tail's reply") ?? []);
  if (release !== undefined) {
    console.log(`${"bench: release p50".padEnd(52)} ${release.toFixed(1).padStart(7)} µs`);
    console.log(`${"client and its two hops (release p50 − span)".padEnd(52)} ${(release - span).toFixed(1).padStart(7)} µs`);
  }
} finally {
  await cluster.stop();
  rmSync(stampDir, { recursive: true, force: true });
  rmSync(dataDir, { recursive: true, force: true });
}
