/**
 * The shell as a habit: every command explains itself, the habits of other shells,
 * checkpoint and bench, waiting and Ctrl-C, kill and restart, completion, script mode.
 */
import { describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { completeLine, runShellLine, SHELL_COMMANDS, type ShellContext } from "../src/cli/shell/run.ts";
import { runShell } from "../src/cli/shell/repl.ts";
import { readValue } from "../src/cli/shell/values.ts";
import { sizeProblem } from "../src/core/names.ts";
import { FakeStore } from "./fixtures/cli_fake_store.ts";
import { context, run } from "./helpers/shell.ts";

describe("every command explains itself", () => {
  test("help lists every command, on one line in a script and in groups on a terminal", async () => {
    const [line] = await run(context(), "help");
    const [table] = await run(context(new FakeStore(), true), "help");
    for (const name of Object.keys(SHELL_COMMANDS)) {
      expect(line).toContain(` ${name} `);
      expect(table).toContain(`  ${SHELL_COMMANDS[name]!.usage} `);
      const [one] = await run(context(new FakeStore(), true), `help ${name}`);
      expect(one!.split("\n")[0]).toBe(SHELL_COMMANDS[name]!.usage);
      expect(one).toContain("Examples:");
    }
    expect(table).toContain("Faults, in a shell started with --local");
    expect(table).toContain("TYPE is one of i32 u32 i64 f64 str hex");
  });

  test("a wrong number of words says what is missing or extra", async () => {
    expect(await run(context(), "create", "create a", "create a 4 5", "list a b", "kill", "crate a 4", "relase a", "lst")).toEqual([
      "error EINVAL: missing NAME SIZE; usage: create NAME SIZE",
      "error EINVAL: missing SIZE; usage: create NAME SIZE",
      'error EINVAL: too many arguments (from "5"); usage: create NAME SIZE',
      'error EINVAL: too many arguments (from "b"); usage: list [PATTERN]',
      "error EINVAL: missing SERVER; usage: kill SERVER [SIGNAL]",
      'error EINVAL: unknown command "crate" (did you mean create?) (help lists the commands)',
      'error EINVAL: unknown command "relase" (did you mean release?) (help lists the commands)',
      'error EINVAL: unknown command "lst" (did you mean list?) (help lists the commands)',
    ]);
  });

  test("an error of several lines is printed on one", async () => {
    const store = new FakeStore();
    store.create = async () => {
      throw new Error("server 2 exited before READY; its last log lines:\n    one\n    two");
    };
    const [result] = await run(context(store), "create a 4");
    expect(result).toBe("error ERROR: server 2 exited before READY; its last log lines: | one | two");
  });
});

describe("shell habits (issue 15 item 7)", () => {
  test("COMMAND --help shows the help instead of taking --help as a name", async () => {
    const store = new FakeStore();
    const ctx = context(store);
    const [shown] = await run(ctx, "create --help 4");
    expect(shown).toStartWith("create NAME SIZE: Create a datum of SIZE bytes");
    expect(await run(ctx, "write x -h", "list")).toEqual([expect.stringMatching(/^write NAME TYPE VALUE \[OFFSET\]: /), "(no data)"]);
  });

  test("list PATTERN filters the names with a glob", async () => {
    const ctx = context();
    await run(ctx, "create compteur 4", "create counter 4", "create c[1] 4", "create msg 4");
    expect(await run(ctx, "list co*", "list ?sg", "list c[!o]*", "list 'c\\[1]'", "list zz*", "list [ab")).toEqual([
      "compteur counter",
      "msg",
      "c[1]",
      "c[1]",
      "(no datum matches zz*)",
      'error EINVAL: PATTERN "[ab" has a [ without its ]',
    ]);
  });

  test("version, -v, clear in a script", async () => {
    const [version, short, clear] = await run(context(), "version", "-v", "clear");
    expect(version).toMatch(/^pstore \d+\.\d+\.\d+/);
    expect(short).toBe(version);
    expect(clear).toBe("ok");
    const onTerminal = await runShellLine(context(new FakeStore(), true), "clear");
    expect(onTerminal?.clear).toBe(true);
  });

  test("set without a hold suggests acquire-write only; get suggests both", async () => {
    const ctx = context();
    await run(ctx, "create c 4");
    expect(await run(ctx, "set c i32 1", "get c i32")).toEqual([
      "error EINVAL: set needs a write hold on c: acquire-write it first",
      "error EINVAL: get needs a hold on c: acquire-read or acquire-write it first",
    ]);
  });

  test("sizes in messages are human-readable", () => {
    expect(sizeProblem(1024 ** 4, 256 * 1024 * 1024)?.message).toBe("1 TiB does not fit in the 256 MiB segment");
  });

  test("str of bytes that are not UTF-8 shows them escaped", () => {
    const view = new Uint8Array([0x63, 0x61, 0x66, 0xe9, 0x21, 0xc3, 0xa9, 0xff, 0]);
    expect(readValue(view, "v", "str", 0).text).toBe('"caf\\xe9!é\\xff"');
    expect(readValue(new TextEncoder().encode("ok\0"), "v", "str", 0).text).toBe('"ok"');
  });
});

describe("checkpoint and bench", () => {
  test("checkpoint prints the sequence number of the recovery line", async () => {
    const store = Object.assign(new FakeStore(), { checkpoint: async () => ({ seq: 42 }) });
    const ctx = context(store);
    expect(await run(ctx, "checkpoint", "checkpoint now")).toEqual([
      "checkpoint at seq 42 on every server of the chain",
      'error EINVAL: checkpoint takes no arguments (got "now")',
    ]);
    expect((await runShellLine(ctx, "checkpoint"))!.json).toEqual({ ok: true, command: "checkpoint", value: { seq: 42 } });
  });

  test("bench runs write cycles on a temporary datum, prints p50, p99 and ops/s, and deletes it", async () => {
    const store = new FakeStore();
    const ctx = context(store);
    const result = (await runShellLine(ctx, "bench 50 8KiB"))!;
    expect(result.text).toMatch(/^50 cycles of 8 KiB: p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ ops\/s$/);
    expect(result.json).toMatchObject({ ok: true, command: "bench", value: { cycles: 50, size: 8192 } });
    expect(store.data.size).toBe(0);
    expect(store.outstanding.size).toBe(0);
    expect(await run(ctx, "bench 0", "bench 10 lots", "bench x")).toEqual([
      'error EINVAL: CYCLES must be a whole number from 1 to 1000000, got "0"',
      'error EINVAL: SIZE: "lots" is not a size; use a whole number of bytes, optionally with a unit: 4096, 4KiB, 256MiB, 1GiB (K, M, G are the same binary units)',
      'error EINVAL: CYCLES must be a whole number from 1 to 1000000, got "x"',
    ]);
  });

  test("Ctrl-C stops bench early: it prints what it measured and leaves no datum nor hold", async () => {
    const store = new FakeStore();
    const controller = new AbortController();
    let releases = 0;
    const release = store.releaseReadWrite.bind(store);
    store.releaseReadWrite = async (view) => {
      await release(view);
      if (++releases === 5) controller.abort();
    };
    const result = (await runShellLine(context(store), "bench 1000", controller.signal))!;
    expect(result.text).toMatch(/^stopped after 5 of 1000 cycles of 4 KiB: p50 /);
    expect(store.data.size).toBe(0);
    expect(store.outstanding.size).toBe(0);
  });

  test("bench waiting for a hold someone else keeps: Ctrl-C before the first cycle is ECANCELED", async () => {
    const store = new FakeStore();
    const accessReadWrite = store.accessReadWrite.bind(store);
    const controller = new AbortController();
    // Another client reads the datum as soon as it exists: the first cycle waits.
    store.accessReadWrite = async (name, options) => {
      await store.accessRead(name);
      setTimeout(() => controller.abort(), 50);
      return accessReadWrite(name, options);
    };
    const result = (await runShellLine(context(store), "bench", controller.signal))!;
    expect(result.text).toBe("error ECANCELED: the benchmark was stopped before its first cycle");
    expect(store.data.size).toBe(0);
  });
});

describe("waiting and Ctrl-C", () => {
  test("a command that is not itself cancellable stops being waited for", async () => {
    const store = new FakeStore();
    store.create = () => new Promise(() => {});
    const ctx = context(store);
    const notices: string[] = [];
    ctx.notice = (text) => notices.push(text);
    const controller = new AbortController();
    const pending = runShellLine(ctx, "create a 4", controller.signal);
    await Bun.sleep(1200);
    expect(notices).toEqual(["waiting for the cluster to answer… (Ctrl-C stops waiting)"]);
    controller.abort();
    expect((await pending)!.text).toBe("error ECANCELED: stopped waiting for the answer (the command may still take effect)");
  });

  test("connecting shows that it waits, and Ctrl-C stops it", async () => {
    const ctx: ShellContext = { ...context(new FakeStore(), true), store: () => new Promise(() => {}) };
    const notices: string[] = [];
    ctx.notice = (text) => notices.push(text);
    const controller = new AbortController();
    const pending = runShellLine(ctx, "read c i32", controller.signal);
    await Bun.sleep(400);
    expect(notices).toEqual(["waiting for the cluster to answer… (Ctrl-C cancels)"]);
    controller.abort();
    expect((await pending)!.text).toBe("error ECANCELED: stopped waiting for the cluster");
  });
});

describe("kill and restart (shell --local)", () => {
  function fakeCluster() {
    const calls: string[] = [];
    const cluster = {
      servers: ["127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403"],
      pids: [111, 222, null] as (number | null)[],
      async kill(index: number, signal: string) {
        calls.push(`kill ${index} ${signal}`);
        cluster.pids[index] = null;
      },
      async restart(index: number) {
        calls.push(`restart ${index}`);
        if (index === 1) throw new Error("server 2 (127.0.0.1:7402) exited before READY (exit code 1); its last log lines:\n    boom");
        cluster.pids[index] = 333;
      },
    };
    return { cluster, calls };
  }

  test("server numbers, signals, and a server that is not running", async () => {
    const { cluster, calls } = fakeCluster();
    const ctx = { ...context(), cluster: cluster as never };
    expect(await run(ctx, "kill 0", "kill 4", "kill 1 SIGFOO", "kill 1 term", "kill 1", "kill 3", "restart 3", "restart 2")).toEqual([
      'error EINVAL: SERVER must be a number from 1 to 3, got "0"',
      'error EINVAL: SERVER must be a number from 1 to 3, got "4"',
      'error EINVAL: unknown signal "SIGFOO" (e.g. SIGKILL, SIGTERM, SIGSTOP, SIGCONT)',
      "server 1 (127.0.0.1:7401) stopped by SIGTERM",
      "error EINVAL: server 1 (127.0.0.1:7401) is not running; restart 1 starts it again",
      "error EINVAL: server 3 (127.0.0.1:7403) is not running; restart 3 starts it again",
      "server 3 (127.0.0.1:7403) restarted, pid 333",
      "error EUNAVAILABLE: could not restart: server 2 (127.0.0.1:7402) exited before READY (exit code 1); its last log lines: | boom",
    ]);
    expect(calls).toEqual(["kill 0 SIGTERM", "restart 2", "restart 1"]);
  });
});

describe("completion", () => {
  test("commands, data names and types", () => {
    const names = ["compteur", "counter", "two words"];
    expect(completeLine("wr", names)).toEqual([["write"], "wr"]);
    expect(completeLine("", names)[0]).toContain("create");
    expect(completeLine("read co", names)).toEqual([["compteur", "counter"], "co"]);
    expect(completeLine("stat ", names)).toEqual([['"two words"', "compteur", "counter"], ""]);
    expect(completeLine("read compteur ", names)).toEqual([["f64", "hex", "i32", "i64", "str", "u32"], ""]);
    expect(completeLine("write compteur i", names)).toEqual([["i32", "i64"], "i"]);
    expect(completeLine("help de", names)).toEqual([["delete"], "de"]);
    expect(completeLine("acq", names)).toEqual([["acquire-read", "acquire-write"], "acq"]);
    expect(completeLine("set counter ", names)[0]).toContain("i32");
    expect(completeLine("create co", names)).toEqual([[], "co"]);
  });
});

describe("script mode", () => {
  async function script(input: string, store = new FakeStore(), json = false) {
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = "";
    stdout.on("data", (chunk) => (out += chunk));
    stdin.end(input);
    const code = await runShell({
      input: stdin,
      output: stdout,
      errorOutput: stderr,
      interactive: false,
      color: false,
      json,
      connect: async () => store,
    });
    return { code, lines: out.split("\n").slice(0, -1), store };
  }

  test("one line per command, exit code 1 when one failed, store closed", async () => {
    const { code, lines, store } = await script(
      "create compteur 4\n\n# comment\nwrite compteur i32 1035\nread compteur i32\nread missing i32\nlist\n",
    );
    expect(lines).toEqual(["ok", "ok", "1035", 'error ENOENT: no datum named "missing"', "compteur"]);
    expect(code).toBe(1);
    expect(store.closed).toBe(true);
  });

  test("exit code 0 when all succeed; quit stops reading; CRLF lines", async () => {
    const { code, lines } = await script("create a 4\r\nquit\r\ncreate b 4\r\n");
    expect(lines).toEqual(["ok"]);
    expect(code).toBe(0);
  });

  test("--json prints one object per line", async () => {
    const { lines } = await script("create a 4\nstat b\n", new FakeStore(), true);
    expect(lines.map((line) => JSON.parse(line))).toEqual([
      { ok: true, command: "create" },
      { ok: false, command: "stat", code: "ENOENT", error: 'no datum named "b"' },
    ]);
  });
});
