/**
 * The shell's command module and script loop against an in-memory Store:
 * parsing, the value types' encodings, the exact result lines, and that every
 * hold taken is released.
 */
import { describe, expect, test } from "bun:test";
import { PassThrough } from "node:stream";
import { promptFor, runShellLine, type ShellContext } from "../src/cli/shell/run.ts";
import { runShell } from "../src/cli/shell/repl.ts";
import { tokenize } from "../src/cli/shell/tokenize.ts";
import { encodeValue, readValue, writeValue } from "../src/cli/shell/values.ts";
import { makeStyle } from "../src/cli/output.ts";
import { FakeStore } from "./fixtures/cli_fake_store.ts";
import { context, run } from "./helpers/shell.ts";

describe("tokenize", () => {
  test("words, quotes, escapes and comments", () => {
    expect(tokenize("  write  msg str hello ")).toEqual(["write", "msg", "str", "hello"]);
    expect(tokenize('write msg str "hello world"')).toEqual(["write", "msg", "str", "hello world"]);
    expect(tokenize("write msg str 'a \"b\" c'")).toEqual(["write", "msg", "str", 'a "b" c']);
    expect(tokenize('x "tab\\there\\n\\u00e9\\\\"')).toEqual(["x", "tab\there\n\u00e9\\"]);
    expect(tokenize('x ""')).toEqual(["x", ""]);
    expect(tokenize("list # the rest is a comment")).toEqual(["list"]);
    expect(tokenize("# only a comment")).toEqual([]);
    expect(tokenize("")).toEqual([]);
  });

  test("unterminated quotes and unknown escapes are errors", () => {
    expect(() => tokenize('write a str "oops')).toThrow('EINVAL: unterminated " quote');
    expect(() => tokenize("write a str 'oops")).toThrow("EINVAL: unterminated ' quote");
    expect(() => tokenize('x "\\q"')).toThrow("EINVAL: unknown escape \\q in a quoted word");
  });
});

describe("value types", () => {
  const roundTrip = (type: Parameters<typeof encodeValue>[0], text: string, size = 8) => {
    const view = new Uint8Array(size);
    writeValue(view, "d", type, encodeValue(type, text), 0);
    return readValue(view, "d", type, 0).text;
  };

  test("integers are little-endian and range-checked", () => {
    expect([...encodeValue("i32", "1035")]).toEqual([0x0b, 0x04, 0, 0]);
    expect(roundTrip("i32", "-2147483648")).toBe("-2147483648");
    expect(roundTrip("i32", "2147483647")).toBe("2147483647");
    expect(roundTrip("i32", "0x10")).toBe("16");
    expect(roundTrip("u32", "4294967295")).toBe("4294967295");
    expect(roundTrip("i64", "-9223372036854775808")).toBe("-9223372036854775808");
    expect(roundTrip("i64", "9223372036854775807")).toBe("9223372036854775807");
    expect(() => encodeValue("i32", "2147483648")).toThrow("EINVAL: 2147483648 is out of range for i32 (-2147483648..2147483647)");
    expect(() => encodeValue("u32", "-1")).toThrow("EINVAL: -1 is out of range for u32 (0..4294967295)");
    expect(() => encodeValue("i64", "9223372036854775808")).toThrow("out of range for i64");
    expect(() => encodeValue("i32", "1.5")).toThrow('EINVAL: "1.5" is not an integer (i32)');
    expect(() => encodeValue("i32", "12abc")).toThrow("is not an integer");
    expect(() => encodeValue("i32", "")).toThrow("is not an integer");
  });

  test("f64", () => {
    expect(roundTrip("f64", "1.5")).toBe("1.5");
    expect(roundTrip("f64", "-2e10")).toBe("-20000000000");
    expect(roundTrip("f64", "0.1")).toBe("0.1");
    expect(roundTrip("f64", "inf")).toBe("Infinity");
    expect(roundTrip("f64", "-Infinity")).toBe("-Infinity");
    expect(roundTrip("f64", "nan")).toBe("NaN");
    expect(roundTrip("f64", "-0")).toBe("-0");
    expect(() => encodeValue("f64", "1e400")).toThrow("EINVAL: 1e400 is out of range for f64");
    expect(() => encodeValue("f64", "one")).toThrow('EINVAL: "one" is not a number');
  });

  test("str is NUL-terminated when it fits and read back to the NUL", () => {
    const view = new Uint8Array(8);
    expect(writeValue(view, "d", "str", encodeValue("str", "hello"), 0)).toBe(6);
    expect(writeValue(view, "d", "str", encodeValue("str", "hi"), 0)).toBe(3);
    expect(readValue(view, "d", "str", 0).text).toBe('"hi"');
    expect(readValue(view, "d", "str", 3).text).toBe('"lo"');
    expect(writeValue(view, "d", "str", encodeValue("str", "12345678"), 0)).toBe(8);
    expect(readValue(view, "d", "str", 0).text).toBe('"12345678"');
    expect(readValue(view, "d", "str", 8).text).toBe('""');
    expect(writeValue(view, "d", "str", encodeValue("str", "é\n"), 0)).toBe(4);
    expect(readValue(view, "d", "str", 0)).toEqual({ text: '"é\\n"', json: "é\n" });
    expect(() => writeValue(view, "d", "str", encodeValue("str", "123456789"), 0)).toThrow(
      "EINVAL: str at offset 0 needs bytes 0..8 but d is 8 bytes",
    );
  });

  test("hex", () => {
    const view = new Uint8Array(6);
    writeValue(view, "d", "hex", encodeValue("hex", "0xDEADbeef"), 1);
    expect(readValue(view, "d", "hex", 0).text).toBe("0x00deadbeef00");
    expect(readValue(view, "d", "hex", 1, 2).text).toBe("0xdead");
    expect(readValue(view, "d", "hex", 6).text).toBe("(0 bytes)");
    expect(() => encodeValue("hex", "abc")).toThrow("is not hex bytes");
    expect(() => encodeValue("hex", "0x")).toThrow("is not hex bytes");
    expect(() => encodeValue("hex", "zz")).toThrow("is not hex bytes");
    expect(() => readValue(view, "d", "hex", 4, 3)).toThrow("EINVAL: hex at offset 4 needs bytes 4..6 but d is 6 bytes");
    expect(() => readValue(view, "d", "hex", 7)).toThrow("EINVAL: offset 7 is past the end of \"d\" (6 bytes)");
    expect(() => readValue(view, "d", "i32", 0, 4)).toThrow("a LENGTH is only for str and hex");
  });

  test("offsets past the datum are errors, not truncation", () => {
    const view = new Uint8Array(4);
    expect(() => writeValue(view, "d", "i32", encodeValue("i32", "1"), 1)).toThrow(
      "EINVAL: i32 at offset 1 needs bytes 1..4 but d is 4 bytes",
    );
    expect(() => readValue(view, "d", "i64", 0)).toThrow("EINVAL: i64 at offset 0 needs bytes 0..7 but d is 4 bytes");
    expect(view).toEqual(new Uint8Array(4));
  });
});

describe("shell commands", () => {
  test("the seed's example: create, write i32 1035, read it back", async () => {
    const store = new FakeStore();
    expect(await run(context(store), "create compteur 4", "write compteur i32 1035", "read compteur i32")).toEqual([
      "ok",
      "ok",
      "1035",
    ]);
    expect([...store.data.get("compteur")!.bytes]).toEqual([0x0b, 0x04, 0, 0]);
    expect(store.outstanding.size).toBe(0);
  });

  test("errors are one line with the code", async () => {
    const store = new FakeStore();
    const ctx = context(store);
    expect(
      await run(
        ctx,
        "create compteur 4",
        "create compteur 4",
        "read nope i32",
        "create x 0",
        "create x lots",
        "write compteur i32 99999999999",
        "write compteur i64 1",
        "write compteur i32 1 2",
        "read compteur float",
        "write compteur",
        "frobnicate",
        'write compteur str "oops',
      ),
    ).toEqual([
      "ok",
      'error EEXIST: a datum named "compteur" exists already',
      'error ENOENT: no datum named "nope"',
      "error EINVAL: a size is a whole number of bytes above 0 (got 0)",
      'error EINVAL: SIZE: "lots" is not a size; use a whole number of bytes, optionally with a unit: 4096, 4KiB, 256MiB, 1GiB (K, M, G are the same binary units)',
      "error EINVAL: 99999999999 is out of range for i32 (-2147483648..2147483647)",
      "error EINVAL: i64 at offset 0 needs bytes 0..7 but compteur is 4 bytes",
      "error EINVAL: i32 at offset 2 needs bytes 2..5 but compteur is 4 bytes",
      'error EINVAL: unknown type "float"; use one of i32 u32 i64 f64 str hex',
      "error EINVAL: missing TYPE VALUE; usage: write NAME TYPE VALUE [OFFSET]",
      'error EINVAL: unknown command "frobnicate" (help lists the commands)',
      'error EINVAL: unterminated " quote',
    ]);
    // A failed write left the value and released its hold.
    expect([...store.data.get("compteur")!.bytes]).toEqual([0, 0, 0, 0]);
    expect(store.outstanding.size).toBe(0);
  });

  test("sizes with units, offsets, str and hex", async () => {
    const store = new FakeStore();
    expect(
      await run(
        context(store),
        "create buf 4KiB",
        'write buf str "hello world" 100',
        "read buf str 100",
        "read buf str 106 3",
        "write buf hex 0xcafe 4094",
        "read buf hex 4094",
        "write buf f64 -1.25 8",
        "read buf f64 8",
        "write buf u32 0xffffffff",
        "read buf i32",
        "read buf hex 0 4",
      ),
    ).toEqual(["ok", "ok", '"hello world"', '"wor"', "ok", "0xcafe", "ok", "-1.25", "ok", "-1", "0xffffffff"]);
    expect(store.data.get("buf")!.info.size).toBe(4096);
  });

  test("list, stat, delete, status, and names for completion", async () => {
    const ctx = context();
    expect(await run(ctx, "list", "create a 4", 'create "two words" 8', "list")).toEqual([
      "(no data)",
      "ok",
      "ok",
      'a "two words"',
    ]);
    expect([...ctx.names]).toEqual(["a", "two words"]);
    expect(await run(ctx, "stat a")).toEqual(["name=a size=4 offset=0 version=1 readers=0 writer=no cached=none waiters=0"]);
    expect(await run(ctx, 'delete "two words"', "ls", "rm a", "stat a")).toEqual(["ok", "a", "ok", 'error ENOENT: no datum named "a"']);
    expect([...ctx.names]).toEqual([]);
    expect(await run(ctx, "status")).toEqual([
      "epoch 2: 127.0.0.1:7401 head serving seq 10 lag 0 -> 127.0.0.1:7402 tail serving seq 9 lag 1",
    ]);
  });

  test("tables on a terminal", async () => {
    const ctx = context(new FakeStore(), true);
    await run(ctx, "create compteur 4");
    const [table] = await run(ctx, "list");
    expect(table!.split("\n")).toEqual([
      "NAME      SIZE  OFFSET  VERSION  HOLDS  WAITERS",
      "compteur  4     0       1        -      0",
    ]);
    const [status] = await run(ctx, "status");
    expect(status!.split("\n")[0]).toBe("epoch 2   segment 1 MiB   pages 4 KiB   chain 127.0.0.1:7401 -> 127.0.0.1:7402");
    expect(status!.split("\n")[2]).toStartWith("1  127.0.0.1:7401  head  serving  10       0    -");
  });

  test("help and help CMD: one line in a script, more on a terminal", async () => {
    const [all, one, missing] = await run(context(), "help", "help write", "help nope");
    expect(all).toBe(
      "commands: create write read dump list stat delete acquire-read acquire-write get set release status checkpoint bench kill restart help clear version quit (help COMMAND explains one)",
    );
    expect(one).toStartWith("write NAME TYPE VALUE [OFFSET]: Take the write hold, write VALUE at OFFSET (default 0), release.");
    expect(one).not.toContain("\n");
    expect(missing).toBe('error EINVAL: no command "nope"; help lists them');
    const [long] = await run(context(new FakeStore(), true), "help read");
    expect(long!.split("\n")[0]).toBe("read NAME TYPE [OFFSET] [LENGTH]");
    expect(long).toContain("Examples:");
  });

  test("holds across commands: acquire, get, set, release; the prompt shows them", async () => {
    const store = new FakeStore();
    const ctx = context(store);
    expect(await run(ctx, "create c 4", "create m 16", "acquire-write c", "acquire-read m")).toEqual([
      "ok",
      "ok",
      'ok, write hold on c (4 bytes)',
      'ok, read hold on m (16 bytes)',
    ]);
    expect(promptFor(ctx)).toBe("pstore [c:w m:r]> ");
    expect(await run(ctx, "set c i32 1035", "get c i32", "get c u32 1")).toEqual([
      "ok",
      "1035",
      "error EINVAL: u32 at offset 1 needs bytes 1..4 but c is 4 bytes",
    ]);
    // Nothing is visible to others before the release.
    expect([...store.data.get("c")!.bytes]).toEqual([0, 0, 0, 0]);
    expect(await run(ctx, "set m i32 1", "write c i32 2", "read m i32", "acquire-write c")).toEqual([
      "error EINVAL: this shell holds m for reading only; release it and acquire-write",
      "error EDEADLK: this shell holds c (write): use set, or release it first",
      "error EDEADLK: this shell holds m (read): use get, or release it first",
      "error EDEADLK: this shell already holds c (write); release it first",
    ]);
    expect(await run(ctx, "release c", "release m", "release m", "get c i32")).toEqual([
      "ok",
      "ok",
      "error EINVAL: release needs a hold on m: acquire-read or acquire-write it first",
      "error EINVAL: get needs a hold on c: acquire-read or acquire-write it first",
    ]);
    expect(promptFor(ctx)).toBe("pstore> ");
    expect([...store.data.get("c")!.bytes]).toEqual([0x0b, 0x04, 0, 0]);
    expect(store.outstanding.size).toBe(0);
  });

  test("dump: one hex line in a script, offsets and text on a terminal", async () => {
    const store = new FakeStore();
    await run(context(store), "create m 20", 'write m str "pstore: hello!"');
    expect(await run(context(store), "dump m 0 8", "dump m 30")).toEqual([
      "0x7073746f72653a20",
      'error EINVAL: offset 30 is past the end of "m" (20 bytes)',
    ]);
    const [dump] = await run(context(store, true), "dump m");
    expect(dump!.split("\n")).toEqual([
      "00000000  70 73 74 6f 72 65 3a 20 68 65 6c 6c 6f 21 00 00  |pstore: hello!..|",
      "00000010  00 00 00 00                                      |....|",
    ]);
    expect(store.outstanding.size).toBe(0);
  });

  test("quitting drops kept holds", async () => {
    const store = new FakeStore();
    await run(context(store), "create c 4");
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    stdout.resume();
    stdin.end("acquire-read c\nquit\n");
    expect(await runShell({ input: stdin, output: stdout, errorOutput: new PassThrough(), interactive: false, color: false, json: false, connect: async () => store })).toBe(0);
    expect(store.outstanding.size).toBe(0);
    expect(store.data.get("c")!.readers).toBe(0);
  });

  test("a script that ends holding a datum says on stderr what it dropped, and a write hold's changes are not kept", async () => {
    const store = new FakeStore();
    await run(context(store), "create c 4", "create m 4");
    const stdin = new PassThrough();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let said = "";
    stdout.resume();
    stderr.on("data", (chunk) => (said += chunk));
    stdin.end("acquire-write c\nset c i32 99\nacquire-read m\n");
    expect(await runShell({ input: stdin, output: stdout, errorOutput: stderr, interactive: false, color: false, json: false, connect: async () => store })).toBe(0);
    expect(said).toBe("pstore shell: end of input: dropped: write hold on c (changes discarded), read hold on m\n");
    expect([...store.data.get("c")!.bytes]).toEqual([0, 0, 0, 0]);
  });

  test("kill and restart need --local", async () => {
    expect(await run(context(), "kill 1", "restart 1")).toEqual([
      "error EINVAL: kill works only in a shell started with --local",
      "error EINVAL: restart works only in a shell started with --local",
    ]);
  });

  test("blank lines and comments give no result; quit ends", async () => {
    const ctx = context();
    expect(await runShellLine(ctx, "   ")).toBeNull();
    expect(await runShellLine(ctx, "# comment")).toBeNull();
    expect((await runShellLine(ctx, "quit"))?.quit).toBe(true);
    expect((await runShellLine(ctx, "exit"))?.quit).toBe(true);
  });

  test("JSON results", async () => {
    const ctx = context();
    await runShellLine(ctx, "create c 8");
    await runShellLine(ctx, "write c i64 -5");
    expect((await runShellLine(ctx, "read c i64"))!.json).toEqual({ ok: true, command: "read", value: "-5" });
    expect((await runShellLine(ctx, "read c i32"))!.json).toEqual({ ok: true, command: "read", value: -5 });
    expect((await runShellLine(ctx, "stat x"))!.json).toEqual({
      ok: false,
      command: "stat",
      code: "ENOENT",
      error: 'no datum named "x"',
    });
  });

  test("a waiting write is cancelled by its AbortSignal and leaves no hold", async () => {
    const store = new FakeStore();
    const ctx = context(store);
    const notices: string[] = [];
    ctx.notice = (text) => notices.push(text);
    await run(ctx, "create c 4");
    const held = await store.accessRead("c");
    const controller = new AbortController();
    const pending = runShellLine(ctx, "write c i32 7", controller.signal);
    await Bun.sleep(400);
    expect(notices).toEqual(["waiting for the write hold on c… (Ctrl-C cancels)"]);
    controller.abort();
    expect((await pending)!.text).toBe("error ECANCELED: stopped waiting for the write hold on c; no hold was taken");
    await store.releaseRead(held);
    expect(store.outstanding.size).toBe(0);
    expect(store.data.get("c")!.writer).toBe(false);
    expect(await run(ctx, "read c i32")).toEqual(["0"]);
  });

  test("a connection failure is the command's error, and the next command retries", async () => {
    let attempts = 0;
    const store = new FakeStore();
    const ctx: ShellContext = {
      store: async () => {
        attempts++;
        if (attempts === 1) throw Object.assign(new Error("EUNAVAILABLE: no server answered"), { code: "EUNAVAILABLE" });
        return store;
      },
      multiline: false,
      style: makeStyle(false),
      names: new Set(),
      holds: new Map(),
      lostHolds: new Map(),
    };
    expect(await run(ctx, "list", "list")).toEqual(["error EUNAVAILABLE: no server answered", "(no data)"]);
  });
});
