/**
 * `pstore bench` and the pieces of the benchmark harness. No speed is
 * asserted here; the contended workload's counter check is (a lost update is
 * a correctness bug, not a speed one).
 */
import { describe, expect, test } from "bun:test";
import { LatencyRecorder, median } from "../src/bench/histogram.ts";
import { runLoop } from "../src/bench/loop.ts";
import { parseDuration } from "../src/cli/bench.ts";
import { UsageError } from "../src/cli/flags.ts";
import { encodeCommand, parseReply, RespError } from "../bench/resp.ts";
import { runCli, startCli, tempDir } from "./fixtures/cli_helpers.ts";

describe("pstore bench", () => {
  test("contended on a local cluster: one JSON line whose counter equals the acknowledged increments", async () => {
    const { code, stdout, stderr } = await runCli(
      ["bench", "--local", "3", "--json", "--workload", "contended", "--clients", "4", "--ops", "200"],
      { timeoutMs: 30_000 },
    );
    expect(stderr).toBe("");
    expect(code).toBe(0);
    const lines = stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    const result = JSON.parse(lines[0]!);
    expect(result).toMatchObject({ workload: "contended", clients: 4, ops: 200, counter_ok: true, servers: 3, fsync: "always" });
    for (const key of ["size", "seconds", "ops_per_s", "counter", "acknowledged"]) expect(typeof result[key]).toBe("number");
    const { p50, p90, p99, max } = result.latency_us;
    expect(0 < p50 && p50 <= p90 && p90 <= p99 && p99 <= max).toBe(true);
    // The warm-up's increments count too: every acknowledged one is in the counter, no more.
    expect(result.counter).toBe(result.acknowledged);
    expect(result.acknowledged).toBeGreaterThanOrEqual(200);
    expect(result.server_rss_kib).toHaveLength(3);
    for (const entry of result.server_rss_kib) expect(entry.rss_kib).toBeGreaterThan(0);
  }, 40_000);

  test("the table names PSTORE_SERVERS when it is the target, and says the counter includes the warm-up", async () => {
    const server = startCli(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "1MiB", "--die-with-parent"]);
    try {
      const [, address] = await server.waitFor(/^READY (\S+)$/m);
      const { code, stdout } = await runCli(["bench", "--workload", "contended", "--clients", "2", "--ops", "50"], {
        env: { PSTORE_SERVERS: address },
        timeoutMs: 30_000,
      });
      expect(code).toBe(0);
      expect(stdout).toStartWith(`pstore bench: PSTORE_SERVERS=${address}; latencies in µs`);
      expect(stdout).toMatch(/counter (\d+) = \1 acknowledged \(warm-up included\)/);
    } finally {
      await server.stop();
    }
  }, 40_000);

  test("--help: flags, workloads and examples", async () => {
    const { code, stdout } = await runCli(["bench", "--help"]);
    expect(code).toBe(0);
    for (const text of ["pstore bench [flags]", "--local <n>", "--workload <a,b,...>", "--victim <head|middle|tail>", "--json", "EXAMPLES", "failover"]) {
      expect(stdout).toContain(text);
    }
  });

  test.each([
    [["--bogus"], "unknown flag --bogus"],
    [["--workload", "nope"], 'unknown workload "nope"'],
    [["--workload", "failover"], "it needs --local"],
    [["--local", "2", "--workload", "failover", "--victim", "middle"], "needs --local 3 or more"],
    [["--ops", "10", "--duration", "1s"], "give --ops or --duration, not both"],
    [["--fsync", "off"], "--fsync only goes with --local"],
    [["--local", "3", "--servers", "127.0.0.1:7401"], "leave out --servers"],
    [["--clients", "0"], "--clients"],
    [["--duration", "soon"], "is not a duration"],
    [["--size", "4KB"], "ambiguous"],
  ])("bench %p exits 2: %s", async (args, message) => {
    const { code, stdout, stderr } = await runCli(["bench", ...args]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain(message);
    expect(stderr).toContain('Run "pstore bench --help" for usage.');
  });
});

describe("latency percentiles", () => {
  test("nearest rank over every sample", () => {
    const recorder = new LatencyRecorder();
    for (let i = 100; i >= 1; i--) recorder.add(i);
    expect(recorder.percentile(0.5)).toBe(50);
    expect(recorder.percentile(0.9)).toBe(90);
    expect(recorder.percentile(0.99)).toBe(99);
    expect(recorder.percentile(1)).toBe(100);
    expect(recorder.summary()).toEqual({ p50: 50, p90: 90, p99: 99, max: 100, mean: 50.5 });
  });

  test("one sample, no sample, growth past the first buffer", () => {
    const one = new LatencyRecorder();
    one.add(7.25);
    expect(one.summary()).toMatchObject({ p50: 7.3, p99: 7.3, max: 7.3 });
    expect(new LatencyRecorder().summary()).toEqual({ p50: 0, p90: 0, p99: 0, max: 0, mean: 0 });
    const many = new LatencyRecorder();
    for (let i = 0; i < 10_000; i++) many.add(i % 10);
    expect(many.count).toBe(10_000);
    expect(many.percentile(1)).toBe(9);
    expect(() => many.add(-1)).toThrow(RangeError);
  });

  test("median of rounds", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 2, 3])).toBe(2.5);
    expect(median([])).toBeNaN();
  });
});

describe("the closed loop", () => {
  test("--ops is the total over all clients; warm-up operations are not measured", async () => {
    const seen: number[] = [];
    const result = await runLoop({
      clients: 3,
      budget: { ops: 30 },
      warmupMs: 20,
      op: async (client, _, measuring) => {
        if (measuring) seen.push(client);
        await Bun.sleep(1);
      },
    });
    expect(result.ops).toBe(30);
    expect(seen).toHaveLength(30);
    expect(new Set(seen)).toEqual(new Set([0, 1, 2]));
    expect(result.latency.count).toBe(30);
    expect(result.warmupOps).toBeGreaterThan(0);
  });

  test("the first failure stops every client and is thrown", async () => {
    let calls = 0;
    const run = runLoop({
      clients: 4,
      budget: { durationMs: 5000 },
      warmupMs: 0,
      op: async () => {
        const call = ++calls;
        await Bun.sleep(1);
        if (call === 10) throw new Error("boom");
      },
    });
    await expect(run).rejects.toThrow("boom");
    expect(calls).toBeLessThan(20);
  });
});

describe("durations", () => {
  test("units, bare seconds, zero only for the warm-up", () => {
    expect(parseDuration("10s", "--duration", false)).toBe(10_000);
    expect(parseDuration("500ms", "--duration", false)).toBe(500);
    expect(parseDuration("1m", "--duration", false)).toBe(60_000);
    expect(parseDuration("2.5", "--duration", false)).toBe(2500);
    expect(parseDuration("0", "--warmup", true)).toBe(0);
    expect(() => parseDuration("0", "--duration", false)).toThrow(UsageError);
    expect(() => parseDuration("2h", "--duration", false)).toThrow(UsageError);
  });
});

describe("the RESP codec of bench/compare.ts", () => {
  const concat = (parts: Uint8Array[]) => Buffer.concat(parts);

  test("commands are arrays of bulk strings; big arguments are not copied", () => {
    expect(concat(encodeCommand(["SET", "k", 12])).toString()).toBe("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n12\r\n");
    const big = new Uint8Array(64 * 1024).fill(0xff);
    const parts = encodeCommand(["SET", "k", big]);
    expect(parts).toContain(big);
    expect(concat(parts).length).toBe("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$65536\r\n".length + big.length + 2);
  });

  test("replies parse whole, and wait at every split point", () => {
    const wire = Buffer.from("+OK\r\n:2\r\n$3\r\nabc\r\n$-1\r\n*2\r\n$5\r\ntoken\r\n$1\r\n1\r\n-ERR no\r\n");
    const expected = ["OK", 2, "abc", null, ["token", "1"], "ERR no"];
    const decode = (value: unknown): unknown =>
      value instanceof Uint8Array ? Buffer.from(value).toString() : Array.isArray(value) ? value.map(decode) : value instanceof RespError ? value.message : value;
    const values: unknown[] = [];
    let at = 0;
    for (;;) {
      const parsed = parseReply(wire, at, wire.length);
      if (!parsed) break;
      values.push(decode(parsed.value));
      at = parsed.end;
    }
    expect(values).toEqual(expected);
    expect(at).toBe(wire.length);
    for (let cut = 1; cut < 5; cut++) expect(parseReply(wire, 0, cut)).toBeNull();
    // The bulk string "$3\r\nabc\r\n" starts at byte 9: every cut inside it waits for the rest.
    for (let cut = 10; cut < 18; cut++) expect(parseReply(wire, 9, cut)).toBeNull();
  });
});
