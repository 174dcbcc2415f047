#!/usr/bin/env bun
/**
 * The physical floor of a chain pass on this machine, for docs/benchmarks.md:
 * what Bun processes cost with no logic at all.
 *
 * - pass: client → A → B → C → client, three relay processes that forward
 *   bytes as they come (Bun.listen/Bun.connect, as pstore's servers), one
 *   message at a time, 32 B (an acquire's size) and 4 KiB (a one-page release).
 * - bulk: one process writing 256 MiB to another over loopback, MB/s.
 *
 *   bun bench/floor.ts [--seconds 3] [--logging] [--native]
 *     prints the floor and the CPU each process spends a pass (--logging: also relays that write
 *     what they relay to a file, as a log; --native: also relays in C, bench/c_relay.c, built
 *     with cc: what a hop costs with no runtime)
 *   (bench/compare.ts imports measurePasses and measureBulk and runs them in the same run as pstore)
 *
 * The children are this same file run as `relay NEXT_PORT` or `sink`; each
 * prints `READY <port>` and exits when its input closes.
 */
import type { Socket } from "bun";
import { mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { LatencyRecorder, type LatencySummary } from "../src/bench/index.ts";

const HOST = "127.0.0.1";
const BULK_BYTES = 256 * 1024 * 1024;
const BULK_CHUNK = 1024 * 1024;
const READY_TIMEOUT_MS = 10_000;

/** A socket writer that keeps what `write` did not take (Bun keeps nothing: BUN.md). */
class Outbound {
  private queue: Uint8Array[] = [];
  constructor(private readonly socket: Socket<unknown>) {}

  send(bytes: Uint8Array): void {
    if (this.queue.length > 0) {
      this.queue.push(bytes.slice());
      return;
    }
    const written = this.socket.write(bytes);
    if (written < 0) throw new Error("floor: write after close");
    if (written < bytes.length) this.queue.push(bytes.slice(written));
  }

  /** From the socket's drain handler. */
  flush(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const written = this.socket.write(head);
      if (written < 0) return;
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        return;
      }
      this.queue.shift();
    }
  }

  get pending(): boolean {
    return this.queue.length > 0;
  }
}

// ---- children ----

/**
 * A relay that logs also writes what it relays to a file, as a server logs an update: the first
 * two after they forward it ("log-after"), the last, a tail, before ("log-before"). The file is
 * written through once first, so these writes overwrite cached pages, as a recycled log segment's do.
 */
type RelayMode = "plain" | "log-before" | "log-after";

async function relay(nextPort: number, mode: RelayMode): Promise<void> {
  let downstream: Outbound | null = null;
  const log = mode === "plain" ? null : new RelayLog();
  const next = await Bun.connect({
    hostname: HOST,
    port: nextPort,
    socket: {
      data() {},
      drain: () => downstream?.flush(),
      close: () => process.exit(0),
    },
  });
  downstream = new Outbound(next);
  const server = Bun.listen({
    hostname: HOST,
    port: 0,
    socket: {
      data: (_socket, bytes) => {
        if (mode === "log-before") log!.write(bytes);
        downstream!.send(bytes);
        if (mode === "log-after") log!.write(bytes);
      },
      close: () => {
        log?.remove();
        process.exit(0);
      },
    },
  });
  process.stdout.write(`READY ${server.port}\n`);
}

const RELAY_LOG_BYTES = 64 * 1024 * 1024;

class RelayLog {
  private readonly dir = mkdtempSync(join(tmpdir(), "pstore-floor-"));
  private readonly fd = openSync(join(this.dir, "log"), "w+");
  private offset = 0;

  constructor() {
    const zeros = new Uint8Array(1024 * 1024);
    for (let at = 0; at < RELAY_LOG_BYTES; at += zeros.length) writeSync(this.fd, zeros, 0, zeros.length, at);
  }

  write(bytes: Uint8Array): void {
    if (this.offset + bytes.length > RELAY_LOG_BYTES) this.offset = 0;
    this.offset += writeSync(this.fd, bytes, 0, bytes.length, this.offset);
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function sink(): void {
  let expected = -1;
  let received = 0;
  const server = Bun.listen({
    hostname: HOST,
    port: 0,
    socket: {
      data(socket, bytes) {
        let body = bytes;
        if (expected < 0) {
          expected = new DataView(bytes.buffer, bytes.byteOffset, 8).getFloat64(0);
          body = bytes.subarray(8);
        }
        received += body.length;
        if (received >= expected) socket.write(new Uint8Array([1]));
      },
      close: () => process.exit(0),
    },
  });
  process.stdout.write(`READY ${server.port}\n`);
}

// ---- the measuring side ----

/** bench/c_relay.c, compiled once into a temporary directory. */
let nativeRelay: string | null = null;

function nativeRelayPath(): string {
  if (nativeRelay) return nativeRelay;
  const program = join(mkdtempSync(join(tmpdir(), "pstore-c-relay-")), "c_relay");
  const built = Bun.spawnSync([process.env.CC || "cc", "-O2", "-o", program, resolve(import.meta.dir, "c_relay.c")], { stderr: "inherit" });
  if (built.exitCode !== 0) throw new Error("bench/c_relay.c did not compile");
  nativeRelay = program;
  return program;
}

async function spawnChild(args: string[], native = false): Promise<{ port: number; proc: ReturnType<typeof Bun.spawn> }> {
  const command = native ? [nativeRelayPath(), ...args.slice(1)] : [process.execPath, import.meta.path, ...args];
  const proc = Bun.spawn(command, { stdout: "pipe", stderr: "inherit" });
  const reader = proc.stdout.getReader();
  const deadline = setTimeout(() => proc.kill(), READY_TIMEOUT_MS);
  let text = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`floor: child ${args.join(" ")} exited before READY`);
      text += new TextDecoder().decode(value);
      const match = /READY (\d+)/.exec(text);
      if (match) return { port: Number(match[1]), proc };
    }
  } finally {
    clearTimeout(deadline);
    reader.releaseLock();
  }
}

/** Round trips of `size`-byte messages through the three relays, for `ms` milliseconds. */
export async function measurePasses(size: number, ms: number, warmupMs: number, logging = false): Promise<LatencySummary> {
  return (await measurePassesAndCpu(size, ms, warmupMs, logging)).latency;
}

/** CPU a process's threads have used, ns (/proc/PID/task/TID/schedstat, whose first field is time on a CPU). */
function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // The thread ended between the listing and the read: its time is lost to both samples.
    }
  }
  return ns;
}

export interface PassCpu {
  /** CPU each relay used per pass after the warm-up, µs, from the head to the tail. */
  relays_us: number[];
  /** CPU the sending and receiving process (this one) used per pass, µs. */
  client_us: number;
}

/** measurePasses, and what CPU each process spent per pass (to set against a pstore server's, bench/cpu_per_cycle.sh). */
export async function measurePassesAndCpu(size: number, ms: number, warmupMs: number, logging = false, native = false): Promise<{ latency: LatencySummary; cpu: PassCpu }> {
  let arrived = 0;
  let wake: (() => void) | null = null;
  const back = Bun.listen({
    hostname: HOST,
    port: 0,
    socket: {
      data(_socket, bytes) {
        arrived += bytes.length;
        if (arrived >= size && wake) wake();
      },
    },
  });
  const children: ReturnType<typeof Bun.spawn>[] = [];
  try {
    let next = back.port;
    for (let i = 0; i < 3; i++) {
      // Spawned from the last relay (the tail) back to the first.
      const mode: RelayMode = logging ? (i === 0 ? "log-before" : "log-after") : "plain";
      const child = await spawnChild(["relay", String(next), mode], native);
      children.push(child.proc);
      next = child.port;
    }
    const head = await Bun.connect({ hostname: HOST, port: next, socket: { data() {} } });
    const message = new Uint8Array(size).fill(7);
    const recorder = new LatencyRecorder();
    const start = performance.now();
    let cpuBefore: number[] | null = null;
    let passes = 0;
    for (;;) {
      const now = performance.now();
      if (now - start > warmupMs + ms) break;
      if (cpuBefore === null && now - start >= warmupMs) cpuBefore = [...children.map((child) => cpuNs(child.pid)), cpuNs(process.pid)];
      arrived = 0;
      const done = new Promise<void>((resolve) => (wake = resolve));
      const sent = head.write(message);
      if (sent !== size) throw new Error(`floor: a ${size}-byte write took ${sent} bytes`);
      await done;
      wake = null;
      if (now - start >= warmupMs) {
        recorder.add((performance.now() - now) * 1000);
        passes++;
      }
    }
    const cpuAfter = [...children.map((child) => cpuNs(child.pid)), cpuNs(process.pid)];
    head.end();
    const perPass = cpuAfter.map((ns, i) => Math.round(((ns - (cpuBefore?.[i] ?? ns)) / Math.max(passes, 1) / 1000) * 10) / 10);
    // Children were spawned tail first.
    return { latency: recorder.summary(), cpu: { relays_us: perPass.slice(0, 3).reverse(), client_us: perPass[3]! } };
  } finally {
    back.stop(true);
    for (const child of children) child.kill();
  }
}

/** One process writing BULK_BYTES to another over loopback, in MB/s. */
export async function measureBulk(): Promise<number> {
  const child = await spawnChild(["sink"]);
  try {
    let acknowledged: () => void = () => {};
    const done = new Promise<void>((resolve) => (acknowledged = resolve));
    let out: Outbound | null = null;
    let remaining = BULK_BYTES;
    const chunk = new Uint8Array(BULK_CHUNK).fill(9);
    const pump = () => {
      while (remaining > 0 && !out!.pending) {
        out!.send(chunk);
        remaining -= chunk.length;
      }
    };
    const socket = await Bun.connect({
      hostname: HOST,
      port: child.port,
      socket: { data: () => acknowledged(), drain: () => (out!.flush(), pump()) },
    });
    out = new Outbound(socket);
    const header = new Uint8Array(8);
    new DataView(header.buffer).setFloat64(0, BULK_BYTES);
    const t0 = performance.now();
    out.send(header);
    pump();
    await done;
    const seconds = (performance.now() - t0) / 1000;
    socket.end();
    return Math.round(BULK_BYTES / seconds / 1e6);
  } finally {
    child.proc.kill();
  }
}

if (import.meta.main) {
  const [mode, arg] = process.argv.slice(2);
  if (mode === "relay") await relay(Number(arg), (process.argv[4] ?? "plain") as RelayMode);
  else if (mode === "sink") sink();
  else {
    const index = process.argv.indexOf("--seconds");
    const seconds = index === -1 ? 3 : Number(process.argv[index + 1]);
    if (!(seconds > 0)) throw new Error("--seconds takes a positive number");
    const cpuText = (cpu: PassCpu) => `CPU a pass: relays ${cpu.relays_us.join(" / ")} µs, client ${cpu.client_us} µs`;
    for (const size of [32, 4096]) {
      const { latency, cpu } = await measurePassesAndCpu(size, seconds * 1000, 300);
      console.log(`pass ${size === 32 ? "32 B  " : "4 KiB "}  p50 ${latency.p50} µs  p99 ${latency.p99} µs  ${cpuText(cpu)}`);
    }
    console.log(`bulk        ${await measureBulk()} MB/s`);
    if (process.argv.includes("--logging")) {
      const { latency, cpu } = await measurePassesAndCpu(4096, seconds * 1000, 300, true);
      console.log(`pass 4 KiB, relays that log it  p50 ${latency.p50} µs  p99 ${latency.p99} µs  ${cpuText(cpu)}`);
    }
    if (process.argv.includes("--native")) {
      for (const logging of [false, true]) {
        const { latency, cpu } = await measurePassesAndCpu(4096, seconds * 1000, 300, logging, true);
        console.log(`pass 4 KiB, relays in C${logging ? " that log it" : ""}  p50 ${latency.p50} µs  p99 ${latency.p99} µs  ${cpuText(cpu)}`);
      }
    }
    process.exit(0);
  }
}
