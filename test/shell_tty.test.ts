/**
 * `pstore shell` on a real pseudo-terminal (Bun.spawn's `terminal` option):
 * prompt, completion, history across runs, colours, Ctrl-C.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster.ts";
import { stripAnsi } from "../src/cli/output.ts";
import { MAIN, ROOT, runCli, startCli, tempDir, type Running } from "./fixtures/cli_helpers.ts";
import { pstoreCommand } from "./helpers/processes.ts";

const started: Running[] = [];
afterAll(async () => {
  await Promise.all(started.map((child) => child.stop("SIGKILL", 1000)));
});

interface Tty {
  proc: Subprocess;
  /** Everything shown so far, escape sequences removed. */
  screen(): string;
  raw(): string;
  type(text: string): Promise<void>;
  /** Waits until `text` appears after position `from` of the screen text. */
  waitFor(text: string | RegExp, from?: number, timeoutMs?: number): Promise<void>;
  exited(timeoutMs?: number): Promise<number | null>;
}

function openShell(args: string[], env: Record<string, string | undefined>): Tty {
  let out = "";
  const decoder = new TextDecoder();
  const proc = Bun.spawn([process.execPath, MAIN, "shell", ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: undefined, ...env },
    terminal: { cols: 120, rows: 40, data: (_, data) => (out += decoder.decode(data, { stream: true })) },
  });
  const screen = () => stripAnsi(out).replace(/\r/g, "");
  return {
    proc,
    screen,
    raw: () => out,
    async type(text) {
      proc.terminal!.write(text);
      // One keystroke batch at a time: readline treats a tab inside a pasted chunk as text.
      await Bun.sleep(150);
    },
    async waitFor(text, from = 0, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      const found = () => {
        const rest = screen().slice(from);
        return typeof text === "string" ? rest.includes(text) : text.test(rest);
      };
      while (!found()) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${JSON.stringify(String(text))}; screen:\n${screen()}`);
        await Bun.sleep(20);
      }
    },
    async exited(timeoutMs = 10_000) {
      const done = await Promise.race([proc.exited.then(() => true), Bun.sleep(timeoutMs).then(() => false)]);
      if (!done) proc.kill("SIGKILL");
      await proc.exited;
      proc.terminal?.close();
      return proc.exitCode;
    },
  };
}

async function serve(): Promise<string> {
  const server = startCli(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "1MiB", "--die-with-parent"]);
  started.push(server);
  const [, address] = await server.waitFor(/^READY (\S+)$/m);
  return address!;
}

describe("shell on a terminal", () => {
  test("prompt, tab completion of commands and names, tables, colours, quit", async () => {
    const address = await serve();
    await runCli(["shell", "--servers", address], { stdin: "create compteur 4\ncreate counter 4\n" });
    const home = tempDir();
    const tty = openShell(["--servers", address], { HOME: home });
    await tty.waitFor("Type help for the commands, quit to leave.");
    await tty.waitFor("pstore> ");

    await tty.type("wr");
    await tty.type("\t");
    await tty.type(" compteur i32 1035\r");
    await tty.waitFor(/pstore> write compteur i32 1035\nok\n/);

    // Names come from the last list.
    let mark = tty.screen().length;
    await tty.type("list\r");
    await tty.waitFor(/NAME +SIZE +OFFSET +VERSION +HOLDS +WAITERS\ncompteur +4/, mark);
    mark = tty.screen().length;
    await tty.type("read comp");
    await tty.type("\t");
    await tty.type(" i3");
    await tty.type("\t");
    await tty.type("\r");
    await tty.waitFor("read compteur i32", mark);
    await tty.waitFor(/\n1035\n/, mark);

    // Errors are red on a terminal.
    mark = tty.raw().length;
    await tty.type("read nothing i32\r");
    await tty.waitFor('error ENOENT: no datum named "nothing"');
    expect(tty.raw().slice(mark)).toContain('\u001B[31merror ENOENT: no datum named "nothing"');

    mark = tty.screen().length;
    await tty.type("help write\r");
    await tty.waitFor(/write NAME TYPE VALUE \[OFFSET\]\n  Take the write hold/, mark);
    await tty.waitFor("Examples:", mark);

    await tty.type("quit\r");
    expect(await tty.exited()).toBe(0);
  }, 60_000);

  test("history is saved in $HOME/.pstore_history and recalled with the up arrow", async () => {
    const home = tempDir();
    const first = openShell(["--servers", "127.0.0.1:1"], { HOME: home });
    await first.waitFor("pstore> ");
    await first.type("help list\r");
    await first.waitFor("List the data");
    await first.type("quit\r");
    expect(await first.exited()).toBe(0);
    expect(readFileSync(join(home, ".pstore_history"), "utf8")).toBe("help list\nquit\n");

    const second = openShell(["--servers", "127.0.0.1:1"], { HOME: home });
    await second.waitFor("pstore> ");
    await second.type("\u001B[A"); // up: quit
    await second.type("\u001B[A"); // up: help list
    const mark = second.screen().length;
    await second.type("\r");
    await second.waitFor("List the data", mark);
    await second.type("\u0004"); // Ctrl-D leaves
    expect(await second.exited()).toBe(0);
  }, 30_000);

  test("NO_COLOR turns colours off on a terminal", async () => {
    const tty = openShell(["--servers", "127.0.0.1:1"], { HOME: tempDir(), NO_COLOR: "1" });
    await tty.waitFor("pstore> ");
    await tty.type("bogus\r");
    await tty.waitFor('error EINVAL: unknown command "bogus"');
    expect(tty.raw()).not.toContain("\u001B[31m");
    await tty.type("quit\r");
    expect(await tty.exited()).toBe(0);
  }, 30_000);

  test("Ctrl-C clears the line; twice on an empty line leaves", async () => {
    const tty = openShell(["--servers", "127.0.0.1:1"], { HOME: tempDir() });
    await tty.waitFor("pstore> ");
    await tty.type("some half-typed command");
    await tty.type("\u0003");
    await tty.type("\u0003");
    await tty.waitFor("(press Ctrl-C again, or Ctrl-D, or type quit, to leave)");
    await tty.type("\u0003");
    expect(await tty.exited()).toBe(0);
  }, 30_000);

  test("two shells on one datum: a read waits for the writer, Ctrl-C cancels it without a trace", async () => {
    const address = await serve();
    await runCli(["shell", "--servers", address], { stdin: "create c 4\n" });
    const writer = openShell(["--servers", address], { HOME: tempDir() });
    const reader = openShell(["--servers", address], { HOME: tempDir() });
    try {
      await writer.waitFor("pstore> ");
      await reader.waitFor("pstore> ");
      await writer.type("acquire-write c\r");
      await writer.waitFor("ok, write hold on c (4 bytes)\npstore [c:w]> ");

      // Cancelled with Ctrl-C: an error line, then no reader or waiter is left.
      await reader.type("read c i32\r");
      await reader.waitFor("waiting for a read hold on c… (Ctrl-C cancels)");
      await reader.type("\u0003");
      await reader.waitFor(/error ECANCELED: .*\n/);
      let mark = reader.screen().length;
      await reader.type("stat c\r");
      await reader.waitFor(/name=c size=4 offset=\d+ version=\d+ readers=0 writer=yes cached=none waiters=0/, mark);

      // Waits, and gets the value once the writer releases.
      mark = reader.screen().length;
      await reader.type("read c i32\r");
      await reader.waitFor("waiting for a read hold on c…", mark);
      await writer.type("set c i32 1035\r");
      await writer.type("release c\r");
      await writer.waitFor(/release c\nok\npstore> /);
      await reader.waitFor(/\n1035\n/, mark);

      await writer.type("quit\r");
      await reader.type("quit\r");
      expect(await writer.exited()).toBe(0);
      expect(await reader.exited()).toBe(0);
    } finally {
      writer.proc.kill("SIGKILL");
      reader.proc.kill("SIGKILL");
    }
  }, 60_000);
});

describe("shell on a terminal: waits, Ctrl-C, help", () => {
  test("Ctrl-C during acquire-write and during bench leaves no hold and no datum", async () => {
    const address = await serve();
    await runCli(["shell", "--servers", address], { stdin: "create c 4\n" });
    const holder = openShell(["--servers", address], { HOME: tempDir() });
    const waiter = openShell(["--servers", address], { HOME: tempDir() });
    try {
      await holder.waitFor("pstore> ");
      await waiter.waitFor("pstore> ");
      await holder.type("acquire-read c\r");
      await holder.waitFor("pstore [c:r]> ");

      await waiter.type("acquire-write c\r");
      await waiter.waitFor("waiting for the write hold on c… (Ctrl-C cancels)");
      await waiter.type("\u0003");
      await waiter.waitFor("error ECANCELED: stopped waiting for the write hold on c; no hold was taken\npstore> ");
      let mark = waiter.screen().length;
      await waiter.type("stat c\r");
      await waiter.waitFor(/readers=1 writer=no cached=none waiters=0/, mark);

      // bench: stopped early, it reports what it measured and deletes its datum.
      mark = waiter.screen().length;
      await waiter.type("bench 1000000\r");
      await waiter.waitFor("running 1000000 cycles… (Ctrl-C stops)", mark);
      // The progress bar of pstore bench, redrawn in place.
      await waiter.waitFor(/[█░]{30} +\d+%  bench 4 KiB  \d+ ops/, mark);
      await waiter.type("\u0003");
      await waiter.waitFor(/stopped after \d+ of 1000000 cycles of 4 KiB: p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ ops\/s/, mark);
      mark = waiter.screen().length;
      await waiter.type("ls\r");
      await waiter.waitFor(/NAME .*\nc +4 /, mark);
      expect(waiter.screen().slice(mark)).not.toContain("bench-");

      // help lists every command, grouped.
      mark = waiter.screen().length;
      await waiter.type("help\r");
      await waiter.waitFor("Faults, in a shell started with --local", mark);
      for (const usage of ["checkpoint", "bench [CYCLES] [SIZE]", "kill SERVER [SIGNAL]", "restart SERVER", "acquire-write NAME"]) {
        expect(waiter.screen().slice(mark)).toContain(usage);
      }

      await holder.type("quit\r");
      await waiter.type("quit\r");
      expect(await holder.exited()).toBe(0);
      expect(await waiter.exited()).toBe(0);
    } finally {
      holder.proc.kill("SIGKILL");
      waiter.proc.kill("SIGKILL");
    }
  }, 60_000);

  test("nothing running: said at start, and a command fails in under a second with the hint", async () => {
    const tty = openShell(["--servers", "127.0.0.1:1,127.0.0.1:2"], { HOME: tempDir() });
    await tty.waitFor("no server at 127.0.0.1:1-2 (connection refused) — start one with `pstore local`\npstore> ");
    const mark = tty.screen().length;
    const startedAt = performance.now();
    await tty.type("list\r");
    await tty.waitFor("error EUNAVAILABLE: no server at 127.0.0.1:1-2 (connection refused) — start one with `pstore local`", mark);
    expect(performance.now() - startedAt).toBeLessThan(1000);
    await tty.type("quit\r");
    expect(await tty.exited()).toBe(0);
  }, 30_000);

  test("a server that answers but does not serve: the shell says it waits, and Ctrl-C gives the prompt back at once", async () => {
    // Accepts connections and never says a word: the client keeps trying for its whole connect timeout.
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const tty = openShell(["--servers", `127.0.0.1:${silent.port}`], { HOME: tempDir() });
    await tty.waitFor("pstore> ");
    const mark = tty.screen().length;
    await tty.type("list\r");
    await tty.waitFor("waiting for the cluster to answer… (Ctrl-C cancels)", mark);
    await tty.type("\u0003");
    await tty.waitFor("error ECANCELED: stopped waiting for the cluster\npstore> ", mark);
    await tty.type("quit\r");
    expect(await tty.exited()).toBe(0);
    silent.stop(true);
  }, 30_000);
});

describe("shell habits on a terminal", () => {
  test("create --help shows help; Ctrl-R finds history; clear; Ctrl-D leaves on a new line", async () => {
    const home = tempDir();
    writeFileSync(join(home, ".pstore_history"), "write compteur i32 1035\nread compteur i32\nhelp list\n");
    const tty = openShell(["--servers", "127.0.0.1:1"], { HOME: home });
    await tty.waitFor("pstore> ");
    let mark = tty.screen().length;
    await tty.type("create --help\r");
    await tty.waitFor(/create NAME SIZE\n  Create a datum of SIZE bytes/, mark);
    await tty.waitFor("Examples:", mark);

    // "wri" then Ctrl-R: the newest history line with "wri" in it; Enter runs it.
    mark = tty.screen().length;
    await tty.type("i32");
    await tty.type("\u0012");
    await tty.type("\u0012");
    await tty.type("\r");
    await tty.waitFor("pstore> write compteur i32 1035", mark);
    expect(tty.screen().slice(mark)).not.toContain("read compteur i32\n");

    mark = tty.raw().length;
    await tty.type("clear\r");
    await tty.waitFor("pstore> clear");
    const deadline = Date.now() + 5000;
    while (!tty.raw().slice(mark).includes("\u001B[2J") && Date.now() < deadline) await Bun.sleep(20);
    expect(tty.raw().slice(mark)).toContain("\u001B[H\u001B[2J");

    mark = tty.screen().length;
    await tty.type("\u0004");
    expect(await tty.exited()).toBe(0);
    expect(tty.screen().slice(mark)).toEndWith("\n");
  }, 30_000);
});

describe("shell on a terminal through an outage", () => {
  test("a whole-cluster stop and start under an open shell: one command fails, the next ones work, the kept hold is reported lost", async () => {
    const cluster = new LocalCluster({ count: 3, basePort: 0, dataDir: tempDir(), command: pstoreCommand(), segmentSize: 1024 * 1024, serveArgs: ["--session-timeout-ms", "1000"] });
    await cluster.start();
    const tty = openShell(["--servers", cluster.servers.join(",")], { HOME: tempDir() });
    try {
      await tty.waitFor("pstore> ");
      await tty.type("create compteur 4\r");
      await tty.type("write compteur i32 1035\r");
      await tty.type("create kept 4\r");
      await tty.type("create fresh 4\r");
      await tty.type("acquire-read kept\r");
      await tty.waitFor("pstore [kept:r]> ");

      await cluster.stop();
      let mark = tty.screen().length;
      // A datum this shell never held: no cached grant can serve it, the cluster must.
      await tty.type("read fresh i32\r");
      // It waits for the chain, not for a holder, and says so.
      await tty.waitFor(/waiting for the cluster: no chain reachable for \d+\.\d s… \(Ctrl-C cancels\)/, mark);
      expect(tty.screen().slice(mark)).not.toContain("waiting for a read hold");
      // The client's whole failover budget (30 s), then the failure.
      await tty.waitFor(/error EUNAVAILABLE: .*\n/, mark, 45_000);
      // A server that stopped is not a TLS server: no TLS hint.
      expect(tty.screen().slice(mark)).not.toContain("TLS");
      // Said as the session goes (the holds are void from then on).
      expect(tty.screen().slice(mark)).toContain("lost with the session (the cluster was out of reach, or it expired): read hold on kept");

      await cluster.start();
      mark = tty.screen().length;
      await tty.type("read compteur i32\r");
      await tty.waitFor(/\n1035\n/, mark, 15_000);
      await tty.waitFor("pstore> ", mark);
      mark = tty.screen().length;
      await tty.type("get kept i32\r");
      await tty.waitFor("error ESTALE: the read hold on kept was lost with the session", mark);
      mark = tty.screen().length;
      await tty.type("acquire-write kept\r");
      await tty.waitFor("ok, write hold on kept (4 bytes)", mark, 15_000);
      await tty.type("quit\r");
      expect(await tty.exited()).toBe(0);
    } finally {
      tty.proc.kill("SIGKILL");
      await cluster.stop();
    }
  }, 120_000);
});

describe("history file hygiene", () => {
  test("an overgrown history is trimmed to the last 1000 lines", async () => {
    const home = tempDir();
    const file = join(home, ".pstore_history");
    writeFileSync(file, Array.from({ length: 2500 }, (_, i) => `help ${i}`).join("\n") + "\n");
    const tty = openShell(["--servers", "127.0.0.1:1"], { HOME: home });
    await tty.waitFor("pstore> ");
    await tty.type("quit\r");
    expect(await tty.exited()).toBe(0);
    const lines = readFileSync(file, "utf8").trim().split("\n");
    expect(lines).toHaveLength(1001);
    expect(lines[0]).toBe("help 1500");
    expect(lines.at(-1)).toBe("quit");
  }, 30_000);
});
