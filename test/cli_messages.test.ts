/**
 * What a newcomer sees when something is wrong: no cluster, a wrong or
 * missing secret, a flag mistake. Each message is pinned: one line on
 * stderr, the error code, and what to do.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { ROOT, runCli, startCli, tempDir, type Running } from "./fixtures/cli_helpers.ts";

const started: Running[] = [];
afterAll(async () => {
  await Promise.all(started.map((child) => child.stop("SIGTERM", 3000)));
});

async function serve(env: Record<string, string | undefined> = {}): Promise<string> {
  const server = startCli(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "1MiB", "--die-with-parent"], env);
  started.push(server);
  const [, address] = await server.waitFor(/^READY (\S+)$/m);
  return address!;
}

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

describe("no cluster", () => {
  test("status fails at once with EUNAVAILABLE and what to do, on one line (exit 1)", async () => {
    const servers = `127.0.0.1:${await closedPort()}`;
    const startedAt = performance.now();
    const { code, stdout, stderr } = await runCli(["status", "--servers", servers], { timeoutMs: 30_000 });
    // Every connection was refused: no 5 s connect wait (the bound leaves room for the process start on a loaded machine).
    expect(performance.now() - startedAt).toBeLessThan(3000);
    expect(code).toBe(1);
    expect(stdout).toBe("");
    // stderr is not a terminal here: no "waiting…" notice, only the error.
    expect(stderr).toBe(`pstore status: EUNAVAILABLE: no server at ${servers} (connection refused) — start one with \`pstore local\`\n`);
  }, 60_000);

  test("a server that answers but does not serve: status waits the connect timeout, then says what each address said", async () => {
    const silent = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    const servers = `127.0.0.1:${silent.port}`;
    const { code, stderr } = await runCli(["status", "--servers", servers], { timeoutMs: 30_000 });
    silent.stop(true);
    expect(code).toBe(1);
    expect(stderr).toStartWith(`pstore status: EUNAVAILABLE: no serving pstore chain reachable via ${servers} (no answer from ${servers} within 1000 ms)`);
    expect(stderr).toEndWith("is the cluster running? try `pstore local`\n");
  }, 60_000);

  test("the shell's commands fail one line each with the code; help works without a cluster", async () => {
    const servers = `127.0.0.1:${await closedPort()}`;
    const { code, stdout } = await runCli(["shell", "--servers", servers], { stdin: "help create\nlist\n", timeoutMs: 30_000 });
    const lines = stdout.split("\n");
    expect(lines[0]).toStartWith("create NAME SIZE: Create a datum of SIZE bytes");
    expect(lines[1]).toBe(`error EUNAVAILABLE: no server at ${servers} (connection refused) — start one with \`pstore local\``);
    expect(lines).toHaveLength(3);
    expect(code).toBe(1);
  }, 60_000);
});

describe("a program's uncaught pstore error", () => {
  test("prints one line, not a stack trace, and exits 1", async () => {
    const address = await serve();
    const dir = tempDir();
    const program = join(dir, "program.ts");
    writeFileSync(
      program,
      `import { connect } from ${JSON.stringify(join(ROOT, "src/index.ts"))};\n` +
        `const store = await connect({ servers: ${JSON.stringify(address)} });\n` +
        `await store.create("x", 4);\nawait store.create("x", 4);\n`,
    );
    // NODE_ENV=test (set by bun test) keeps the report off: a program run by a user has none.
    const proc = Bun.spawn([process.execPath, program], { env: { ...process.env, NODE_ENV: undefined }, stdout: "pipe", stderr: "pipe" });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    expect(stderr).toBe('PStoreError: EEXIST: a datum named "x" exists already\n');
    expect(code).toBe(1);
  }, 30_000);
});

describe("secrets", () => {
  test("a wrong, a missing and an unexpected secret are EAUTH with what to change (exit 1)", async () => {
    const [guarded, open] = await Promise.all([serve({ PSTORE_SECRET: "right" }), serve({ PSTORE_SECRET: undefined })]);
    const cases: [string, Record<string, string | undefined>, string][] = [
      [guarded, { PSTORE_SECRET: "wrong" }, `EAUTH: ${guarded}: the server does not know our secret (a different --secret on each side?)`],
      [guarded, { PSTORE_SECRET: undefined }, `EAUTH: ${guarded}: the server asks for a secret: set --secret or PSTORE_SECRET`],
      [open, { PSTORE_SECRET: "right" }, `EAUTH: ${open}: the server has no secret but we have one: refusing to trust it (unset PSTORE_SECRET to connect without)`],
    ];
    for (const [servers, env, message] of cases) {
      const status = await runCli(["status", "--servers", servers], { env });
      expect(status).toEqual({ code: 1, stdout: "", stderr: `pstore status: ${message}\n` });
      const shell = await runCli(["shell", "--servers", servers], { env, stdin: "list\n" });
      expect(shell).toEqual({ code: 1, stdout: `error ${message}\n`, stderr: "" });
    }
    // The right secret, from the flag or the variable.
    expect((await runCli(["status", "--servers", guarded, "--secret", "right"])).code).toBe(0);
    expect((await runCli(["shell", "--servers", guarded], { env: { PSTORE_SECRET: "right" }, stdin: "list\n" })).stdout).toBe("(no data)\n");
  }, 60_000);
});

describe("output", () => {
  test("status piped: a plain table, no colour codes; --json is one object", async () => {
    const address = await serve();
    const table = await runCli(["status", "--servers", address]);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/^epoch \d+ {3}segment 1 MiB {3}pages 4 KiB {3}chain 127\.0\.0\.1:\d+\n#  ADDRESS +ROLE +STATE +APPLIED +LAG +HEARTBEAT\n1  127\.0\.0\.1:\d+ +single +serving +\d+ +0 +0 ms ago\n$/);
    expect(table.stdout).not.toContain("\u001B[");
    const json = JSON.parse((await runCli(["status", "--servers", address, "--json"])).stdout);
    expect(json).toMatchObject({ segmentSize: 1 << 20, pageSize: 4096, chain: [{ address, role: "single", state: "serving", lag: 0 }] });
  }, 60_000);

  test("the shell's results in a script: no prompt, no colour, one line each, --json one object each", async () => {
    const address = await serve();
    const script = "create c 4\nwrite c i32 1035\nread c i32\nstat nope\nbench 5\ncheckpoint\n";
    const plain = await runCli(["shell", "--servers", address], { stdin: script });
    const lines = plain.stdout.trimEnd().split("\n");
    expect(lines.slice(0, 4)).toEqual(["ok", "ok", "1035", 'error ENOENT: no datum named "nope"']);
    expect(lines[4]).toMatch(/^5 cycles of 4 KiB: p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ ops\/s$/);
    expect(lines[5]).toMatch(/^checkpoint at seq \d+ on every server of the chain$/);
    expect(plain.stdout).not.toContain("\u001B[");
    expect(plain.code).toBe(1);
    const json = await runCli(["shell", "--servers", address, "--json"], { stdin: "read c i32\ncheckpoint\n" });
    const [read, checkpoint] = json.stdout.trimEnd().split("\n").map((line) => JSON.parse(line));
    expect(read).toEqual({ ok: true, command: "read", value: 1035 });
    expect(checkpoint).toEqual({ ok: true, command: "checkpoint", value: { seq: expect.any(Number) } });
    expect(json.code).toBe(0);
  }, 60_000);
});

describe("flag mistakes", () => {
  test.each([
    [["checkpoint", "--list"], "pstore checkpoint: --list needs --data-dir"],
    [["restore"], "pstore restore: --checkpoint is required (seq)"],
    [["restore", "--checkpoint", "x", "--data-dir", "/tmp"], 'pstore restore: --checkpoint takes a sequence number, got "x"'],
    [["status", "--wach"], 'pstore status: unknown flag --wach for "pstore status" (did you mean --watch?)'],
    [["shell", "--locl"], 'pstore shell: unknown flag --locl for "pstore shell" (did you mean --local?)'],
    [["status", "--tls-ca", "/nonexistent/ca.pem"], "pstore status: --tls-ca: cannot read /nonexistent/ca.pem (ENOENT)"],
    [["shell", "--tls-ca", "/nonexistent/ca.pem"], "pstore shell: --tls-ca: cannot read /nonexistent/ca.pem (ENOENT)"],
    [["shell", "--local", "--tls-ca", "ca.pem"], "pstore shell: --local starts its servers without TLS; leave out --tls-ca"],
  ])("%j", async (args, message) => {
    const { code, stderr } = await runCli(args);
    expect(code).toBe(2);
    expect(stderr).toBe(`${message}\nRun "pstore ${args[0]} --help" for usage.\n`);
  });
});
