/**
 * The CLI against real servers: `serve` + a piped `shell`, `status`, `local`,
 * `shell --local`, and the LocalCluster module. Everything listens on
 * 127.0.0.1, lives in temp dirs, and is stopped by pid.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster.ts";
import { BATCH_HEADER_BYTES, WAL_HEADER_BYTES, listSegments, nodeFs } from "../src/store";
import { alive, runCli, startCli, tempDir, waitGone, type Running } from "./fixtures/cli_helpers.ts";

const started: Running[] = [];
const clusters: LocalCluster[] = [];
afterAll(async () => {
  await Promise.all(started.map((child) => child.stop("SIGKILL", 1000)));
  await Promise.all(clusters.map((cluster) => cluster.stop()));
});

function start(args: string[], env?: Record<string, string | undefined>): Running {
  const child = startCli(args, env);
  started.push(child);
  return child;
}

async function serve(): Promise<{ server: Running; address: string }> {
  const server = start(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "1MiB", "--die-with-parent"]);
  const [, address] = await server.waitFor(/^READY (\S+)$/m);
  return { server, address: address! };
}

/** `count` consecutive ports that are free right now, for commands that take a base port. */
async function freeConsecutivePorts(count: number): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const listeners: { stop(force?: boolean): void }[] = [];
    try {
      for (let i = 0; i < count; i++) {
        listeners.push(Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } }));
      }
      return base;
    } catch {
      // Taken: try another base.
    } finally {
      for (const listener of listeners) listener.stop(true);
    }
  }
  throw new Error("no free consecutive ports");
}

describe("serve and a piped shell", () => {
  test("serve prints exactly one READY line with the real port", async () => {
    const { server, address } = await serve();
    expect(address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(address).not.toBe("127.0.0.1:0");
    expect(server.stdout()).toBe(`READY ${address}\n`);
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(server.stdout()).toBe(`READY ${address}\n`);
  });

  // src/cli/self.ts: the allocator option must be in the environment at start, so serve
  // executes itself once more with it, in the same process (tests and users stop it by PID).
  test("serve runs in the PID it was started as, keeping freed memory unless the user chose otherwise", async () => {
    const environ = (pid: number) => readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const { server } = await serve();
    expect(environ(server.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=-1");
    const chosen = start(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "1MiB", "--die-with-parent"], { MIMALLOC_PURGE_DELAY: "0" });
    await chosen.waitFor(/^READY /m);
    expect(environ(chosen.proc.pid)).toContain("MIMALLOC_PURGE_DELAY=0");
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(await chosen.stop("SIGTERM")).toBe(0);
  });

  test("SIGINT stops serve cleanly too", async () => {
    const { server } = await serve();
    expect(await server.stop("SIGINT")).toBe(0);
  });

  test("a script of commands: one result line each, exit 1 because some failed", async () => {
    const { server, address } = await serve();
    const script = [
      "create compteur 4",
      "write compteur i32 1035",
      "read compteur i32",
      "create compteur 4",
      "read absent i32",
      "create empty 0",
      "write compteur i32 4294967296",
      'create msg 64',
      'write msg str "bonjour le monde"',
      "read msg str",
      "write msg hex 0xff00 62",
      "read msg hex 60",
      "list",
      "stat compteur",
      "delete msg",
      "list",
      "",
    ].join("\n");
    const { code, stdout, stderr } = await runCli(["shell", "--servers", address], { stdin: script });
    const lines = stdout.split("\n");
    expect(lines.slice(0, -1)).toEqual([
      "ok",
      "ok",
      "1035",
      'error EEXIST: a datum named "compteur" exists already',
      expect.stringMatching(/^error ENOENT: .*"absent"/),
      expect.stringMatching(/^error EINVAL: /),
      "error EINVAL: 4294967296 is out of range for i32 (-2147483648..2147483647)",
      "ok",
      "ok",
      '"bonjour le monde"',
      "ok",
      "0x0000ff00",
      "compteur msg",
      expect.stringMatching(/^name=compteur size=4 offset=\d+ version=\d+ readers=0 writer=no cached=(none|writer) waiters=0$/),
      "ok",
      "compteur",
    ]);
    expect(stdout).not.toContain("\u001B[");
    expect(stderr).toBe("");
    expect(code).toBe(1);
    // The value persists for the next client, and a clean script exits 0.
    const again = await runCli(["shell", "--servers", address], { stdin: "read compteur i32\n" });
    expect(again).toEqual({ code: 0, stdout: "1035\n", stderr: "" });
    await server.stop();
  });

  test("PSTORE_SERVERS is the default, --json prints objects", async () => {
    const { server, address } = await serve();
    const { code, stdout } = await runCli(["shell", "--json"], {
      stdin: "create c 8\nwrite c f64 2.5\nread c f64\n",
      env: { PSTORE_SERVERS: address },
    });
    expect(code).toBe(0);
    expect(stdout.trim().split("\n").map((line) => JSON.parse(line))).toEqual([
      { ok: true, command: "create" },
      { ok: true, command: "write" },
      { ok: true, command: "read", value: 2.5 },
    ]);
    await server.stop();
  });

  test("status prints a table, and JSON with --json", async () => {
    const { server, address } = await serve();
    const table = await runCli(["status", "--servers", address]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^epoch \d+ +segment 1 MiB +pages 4 KiB/);
    expect(table.stdout).toContain("ADDRESS");
    const json = await runCli(["status", "--servers", address, "--json"]);
    expect(json.code).toBe(0);
    const status = JSON.parse(json.stdout);
    expect(status.segmentSize).toBe(1024 * 1024);
    expect(status.chain.length).toBe(1);
    await server.stop();
  });

  test("status twice on an idle cluster: the same applied seq and no lag (status writes nothing); # is the server number kill uses", async () => {
    const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: tempDir(), command: [process.execPath, join(import.meta.dir, "../src/cli/main.ts")], segmentSize: 1024 * 1024 });
    clusters.push(cluster);
    await cluster.start();
    const servers = cluster.servers.join(",");
    await runCli(["shell", "--servers", servers], { stdin: "create c 4\nwrite c i32 7\n" });
    // Let every server's heartbeat carry the last update.
    await Bun.sleep(500);
    const rows = (stdout: string) =>
      stdout
        .trim()
        .split("\n")
        .slice(2)
        .map((line) => line.split(/\s+/));
    const first = await runCli(["status", "--servers", servers]);
    const second = await runCli(["status", "--servers", servers]);
    expect(first.code).toBe(0);
    const [before, after] = [rows(first.stdout), rows(second.stdout)];
    expect(before).toHaveLength(3);
    for (const table of [before, after]) {
      for (const [, , , , applied, lag] of table) {
        expect(applied).toBe(before[0]![4]!);
        expect(lag).toBe("0");
      }
    }
    expect(after.map((row) => row[4])).toEqual(before.map((row) => row[4]));

    // After kill 2 the table names the servers by number, not by row.
    await cluster.kill(1, "SIGKILL");
    // Until the others notice (a broken connection, else --suspect-ms) they may still list it in the chain.
    let table = rows((await runCli(["status", "--servers", servers])).stdout);
    for (const deadline = performance.now() + 10_000; table.find((row) => row[0] === "2")?.[2] !== "down" && performance.now() < deadline; ) {
      await Bun.sleep(200);
      table = rows((await runCli(["status", "--servers", servers])).stdout);
    }
    const json = JSON.parse((await runCli(["status", "--servers", servers, "--json"])).stdout);
    for (const row of table) {
      const server = json.chain.find((entry: { address: string }) => entry.address === row[1]);
      expect(row[0]).toBe(String(server.id));
      expect(row[1]).toBe(cluster.servers[server.id - 1]);
    }
    expect(table.find((row) => row[0] === "2")?.[2]).toBe("down");
    await cluster.stop();
  }, 60_000);

  test("checkpoint, then checkpoint --list: a table with a header and sizes", async () => {
    const dataDir = tempDir();
    const server = start(["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--segment-size", "1MiB", "--die-with-parent"]);
    const [, address] = await server.waitFor(/^READY (\S+)$/m);
    expect((await runCli(["checkpoint", "--servers", address!])).code).toBe(0);
    const listed = await runCli(["checkpoint", "--list", "--data-dir", dataDir]);
    expect(listed.code).toBe(0);
    const [header, row] = listed.stdout.trim().split("\n");
    expect(header).toMatch(/^DATA DIR +SEQ +SIZE$/);
    expect(row).toMatch(new RegExp(`^${dataDir} +\\d+ +[\\d.]+ (B|KiB|MiB)$`));
    await server.stop();
  });

  test("status --watch refreshes until SIGINT, then exits 0; through a pipe too it says when the cluster stops answering", async () => {
    const { server, address } = await serve();
    const watch = start(["status", "--servers", address, "--watch", "--interval-ms", "100"]);
    await watch.waitFor(/(ADDRESS[^]*){3}/);
    // Its output goes to a pipe (a log collector): the silence used to last the client's 30 s failover.
    await server.stop("SIGKILL");
    for (const deadline = Date.now() + 10_000; !watch.stderr().includes("the cluster does not answer") && Date.now() < deadline; ) await Bun.sleep(50);
    expect(watch.stderr()).toContain("the cluster does not answer; still trying");
    expect(await watch.stop("SIGINT")).toBe(0);
  });

  test("no server: the shell's commands fail with a code, the status command exits 1", async () => {
    const port = await freeConsecutivePorts(1);
    const shell = await runCli(["shell", "--servers", `127.0.0.1:${port}`], { stdin: "help\nlist\n", timeoutMs: 30_000 });
    const lines = shell.stdout.split("\n");
    expect(lines[0]).toStartWith("commands: create write read");
    expect(lines[1]).toMatch(/^error E[A-Z]+: /);
    expect(shell.code).toBe(1);
    const status = await runCli(["status", "--servers", `127.0.0.1:${port}`], { timeoutMs: 30_000 });
    expect(status.code).toBe(1);
    expect(status.stderr).toStartWith("pstore status: ");
  }, 60_000);

  test("a port in use is a clear error, exit 1", async () => {
    const { server, address } = await serve();
    const { code, stderr } = await runCli(["serve", "--listen", address, "--data-dir", tempDir()]);
    expect(code).toBe(1);
    expect(stderr).toContain(`pstore serve: cannot listen on ${address}: EADDRINUSE`);
    await server.stop();
  });
});

describe("LocalCluster", () => {
  test("starts N servers, kills and restarts one, stops exactly its children", async () => {
    const exits: string[] = [];
    const cluster = new LocalCluster({
      count: 3,
      basePort: 0,
      dataDir: tempDir(),
      segmentSize: 1024 * 1024,
      onUnexpectedExit: (index, how) => exits.push(`${index}: ${how}`),
    });
    clusters.push(cluster);
    await cluster.start();
    expect(cluster.servers).toHaveLength(3);
    const pids = cluster.pids as number[];
    expect(pids.every((pid) => typeof pid === "number" && alive(pid))).toBe(true);

    await cluster.kill(1, "SIGKILL");
    expect(cluster.isRunning(1)).toBe(false);
    expect(alive(pids[1]!)).toBe(false);
    expect(alive(pids[0]!) && alive(pids[2]!)).toBe(true);

    await cluster.restart(1);
    const restarted = cluster.pids[1]!;
    expect(restarted).not.toBe(pids[1]);
    expect(alive(restarted)).toBe(true);
    const { stdout } = await runCli(["shell", "--servers", cluster.servers[1]!], { stdin: "create x 4\nread x i32\n" });
    expect(stdout).toBe("ok\n0\n");

    await cluster.stop();
    expect(cluster.pids).toEqual([null, null, null]);
    for (const pid of [pids[0]!, restarted, pids[2]!]) expect(alive(pid)).toBe(false);
    expect(exits).toEqual([]);
  });

  test("reports a child that dies on its own", async () => {
    const exits: string[] = [];
    const cluster = new LocalCluster({
      count: 1,
      basePort: 0,
      dataDir: tempDir(),
      segmentSize: 1024 * 1024,
      onUnexpectedExit: (index, how) => exits.push(`${index}: ${how}`),
    });
    clusters.push(cluster);
    await cluster.start();
    process.kill(cluster.pids[0]!, "SIGKILL");
    const deadline = Date.now() + 5000;
    while (exits.length === 0 && Date.now() < deadline) await Bun.sleep(20);
    expect(exits).toEqual(["0: killed by SIGKILL"]);
    await cluster.stop();
  });

  test("a server that cannot start is named, and the others are stopped", async () => {
    const base = await freeConsecutivePorts(3);
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: base + 1, socket: { data() {} } });
    const logs: string[] = [];
    const cluster = new LocalCluster({ count: 3, basePort: base, dataDir: tempDir(), segmentSize: 1024 * 1024, onLog: (_, line) => logs.push(line) });
    clusters.push(cluster);
    try {
      await expect(cluster.start()).rejects.toThrow(
        new RegExp(`^server 2 \\(127\\.0\\.0\\.1:${base + 1}\\) exited before READY \\(exit code 1\\); its last log lines:\\n.*EADDRINUSE`),
      );
      expect(cluster.pids).toEqual([null, null, null]);
    } finally {
      blocker.stop(true);
    }
  });
});

describe("pstore local and shell --local", () => {
  test("local starts 3 servers, prints how to connect, and SIGTERM stops exactly them (exit 0)", async () => {
    const base = await freeConsecutivePorts(3);
    const dataDir = tempDir();
    const local = start(["local", "--base-port", String(base), "--data-dir", dataDir, "--segment-size", "1MiB", "--fsync", "off"]);
    await local.waitFor(/Ctrl-C stops them all/);
    const servers = `127.0.0.1:${base},127.0.0.1:${base + 1},127.0.0.1:${base + 2}`;
    // The way it was run (here bun + main.ts): a command that works as printed.
    expect(local.stdout()).toContain(`export PSTORE_SERVERS=${servers}\n  bun src/cli/main.ts shell\n`);
    const pids = local.stdout().match(/^pids: (.*)$/m)![1]!.split(" ").map(Number);
    expect(pids).toHaveLength(3);
    expect(pids.every(alive)).toBe(true);

    const { stdout } = await runCli(["shell"], { stdin: "create n 4\nwrite n u32 7\nread n u32\n", env: { PSTORE_SERVERS: servers } });
    expect(stdout).toBe("ok\nok\n7\n");

    expect(await local.stop("SIGTERM")).toBe(0);
    for (const pid of pids) expect(await waitGone(pid)).toBe(true);
    expect(local.stderr()).toContain("[server:1]");
    expect(local.stderr()).not.toContain("unexpectedly");
  });

  test("when local is killed with SIGKILL its servers die with it", async () => {
    const base = await freeConsecutivePorts(2);
    const local = start(["local", "--servers", "2", "--base-port", String(base), "--data-dir", tempDir(), "--segment-size", "1MiB"]);
    await local.waitFor(/Ctrl-C stops them all/);
    const pids = local.stdout().match(/^pids: (.*)$/m)![1]!.split(" ").map(Number);
    await local.stop("SIGKILL");
    for (const pid of pids) expect(await waitGone(pid, 5000)).toBe(true);
  });

  test("local names the server that cannot start and exits 1", async () => {
    const base = await freeConsecutivePorts(3);
    const blocker = Bun.listen({ hostname: "127.0.0.1", port: base + 2, socket: { data() {} } });
    try {
      const dataDir = join(tempDir(), "new");
      const { code, stderr } = await runCli(["local", "--base-port", String(base), "--data-dir", dataDir, "--segment-size", "1MiB"]);
      expect(code).toBe(1);
      expect(stderr).toContain(`pstore local: server 3 (127.0.0.1:${base + 2}) exited before READY (exit code 1); its log is above`);
      // The server's error line is shown once, as it came, not again in the summary.
      expect(stderr.match(/EADDRINUSE/g)).toHaveLength(1);
      // A failed start on a new data dir leaves nothing behind.
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      blocker.stop(true);
    }
  });

  test("local with a corrupt log on one server: the refusal names --rejoin N; with it, that server fetches the state and the data is there", async () => {
    const base = await freeConsecutivePorts(3);
    const dataDir = tempDir();
    const args = ["local", "--base-port", String(base), "--data-dir", dataDir, "--segment-size", "1MiB"];
    const servers = `127.0.0.1:${base},127.0.0.1:${base + 1},127.0.0.1:${base + 2}`;
    const first = start(args);
    await first.waitFor(/Ctrl-C stops them all/);
    expect((await runCli(["shell"], { stdin: "create x 4\nwrite x i32 42\n", env: { PSTORE_SERVERS: servers } })).stdout).toBe("ok\nok\n");
    expect(await first.stop("SIGTERM")).toBe(0);

    // A byte of server 2's first record flips: records follow it, so a corrupt log, not a torn tail.
    const dir2 = join(dataDir, "2");
    const segment = listSegments(nodeFs, dir2)[0]!.file;
    const bytes = readFileSync(segment);
    bytes[WAL_HEADER_BYTES + BATCH_HEADER_BYTES + 8 + 1]! ^= 0xff;
    writeFileSync(segment, bytes);

    const refused = await runCli(args, { timeoutMs: 30_000 });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("If the other servers hold the history, start again with --rejoin 2: that server then fetches the state from them.");

    const again = start([...args, "--rejoin", "2"]);
    await again.waitFor(/Ctrl-C stops them all/);
    expect(again.stderr()).toMatch(/\[server:2\].*--rejoin: .*moved the log and checkpoints aside/);
    expect((await runCli(["shell"], { stdin: "read x i32\n", env: { PSTORE_SERVERS: servers } })).stdout).toBe("42\n");
    expect(await again.stop("SIGTERM")).toBe(0);
  }, 60_000);

  test("shell --local on a data dir of another segment size is refused with the size to use; with it, the data is there", async () => {
    const base = await freeConsecutivePorts(3);
    const dataDir = tempDir();
    const local = ["shell", "--local", "--base-port", String(base), "--data-dir", dataDir, "--quiet"];
    expect((await runCli([...local, "--segment-size", "1MiB"], { stdin: "create c 600KiB\nwrite c i32 7\n", timeoutMs: 40_000 })).stdout).toBe("ok\nok\n");
    const refused = await runCli(local, { stdin: "read c i32\n", timeoutMs: 40_000 });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("holds the data of a segment of 1 MiB, not 256 MiB: start with --segment-size 1MiB");
    expect((await runCli([...local, "--segment-size", "1MiB"], { stdin: "read c i32\n", timeoutMs: 40_000 })).stdout).toBe("7\n");
  }, 90_000);

  test("shell --local runs a script against its own cluster and stops it", async () => {
    const base = await freeConsecutivePorts(3);
    const dataDir = tempDir();
    const { code, stdout } = await runCli(["shell", "--local", "--base-port", String(base), "--data-dir", dataDir, "--quiet"], {
      stdin: "create c 4\nwrite c i32 1035\nread c i32\nkill 2\nrestart 2\nkill 9\n",
      timeoutMs: 40_000,
    });
    const lines = stdout.split("\n");
    expect(lines.slice(0, 3)).toEqual(["ok", "ok", "1035"]);
    expect(lines[3]).toBe(`server 2 (127.0.0.1:${base + 1}) stopped by SIGKILL`);
    expect(lines[4]).toMatch(new RegExp(`^server 2 \\(127\\.0\\.0\\.1:${base + 1}\\) restarted, pid \\d+$`));
    expect(lines[5]).toBe('error EINVAL: SERVER must be a number from 1 to 3, got "9"');
    expect(code).toBe(1);
    // Its servers are gone: their ports are free again.
    const listener = Bun.listen({ hostname: "127.0.0.1", port: base, socket: { data() {} } });
    listener.stop(true);
    expect(join(dataDir, "1")).toBeTruthy();
  }, 60_000);
});
