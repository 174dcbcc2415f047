/** The CLI as a process: help, version, exit codes and flag validation messages. */
import { describe, expect, test } from "bun:test";
import { MAIN, runCli } from "./fixtures/cli_helpers.ts";

describe("help and version", () => {
  test("pstore with no command lists the commands (exit 0)", async () => {
    const { code, stdout } = await runCli([]);
    expect(code).toBe(0);
    for (const command of ["serve", "local", "shell", "status", "help"]) expect(stdout).toContain(`  ${command} `);
    expect(stdout).toContain("Exit codes: 0 ok, 1 error, 2 wrong usage.");
    expect(await runCli(["--help"])).toEqual({ code: 0, stdout, stderr: "" });
  });

  test("--version", async () => {
    const { code, stdout } = await runCli(["--version"]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  test.each([
    ["serve", "Run one storage server", "pstore serve --listen <host:port> --data-dir <dir> [flags]"],
    ["local", "Run a local cluster", "pstore local [flags]"],
    ["shell", "Interactive client", "pstore shell [flags]"],
    ["status", "Show the chain", "pstore status [flags]"],
  ])("%s --help: description, usage, flags, examples", async (command, description, usage) => {
    const { code, stdout, stderr } = await runCli([command, "--help"]);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout.split("\n")[0]).toStartWith(`pstore ${command} — ${description}`);
    expect(stdout).toContain(`USAGE\n  ${usage}\n`);
    expect(stdout).toContain("FLAGS\n");
    expect(stdout).toContain("  -h, --help");
    expect(stdout).toContain(`EXAMPLES\n  pstore ${command}`);
    // No colour codes when stdout is not a terminal.
    expect(stdout).not.toContain("\u001B[");
    // help CMD and -h say the same.
    expect((await runCli(["help", command])).stdout).toBe(stdout);
    expect((await runCli([command, "-h"])).stdout).toBe(stdout);
  });

  test("serve --help documents the flags the issue names", async () => {
    const { stdout } = await runCli(["serve", "--help"]);
    for (const flag of [
      "--listen <host:port>",
      "--peers <host:port,...>",
      "--data-dir <dir>",
      "--segment-size <size>",
      "--session-timeout-ms <ms>",
      "--heartbeat-ms <ms>",
      "--suspect-ms <ms>",
      "--fsync <always|batch|off>",
      "--secret <secret>",
      "--die-with-parent",
      "--verbose",
      "--quiet",
    ]) {
      expect(stdout).toContain(`  ${flag}`);
    }
    expect(stdout).toContain("(default 256MiB)");
  });

  test("shell --help explains script mode and its exit code", async () => {
    const { stdout } = await runCli(["shell", "--help"]);
    expect(stdout).toContain("exactly one line per command");
    expect(stdout).toContain("1 if any command failed");
  });
});

describe("usage errors exit 2 with a pointer to --help", () => {
  test.each([
    [["bogus"], 'pstore: unknown command "bogus" (commands: serve, local, shell, status, bench, checkpoint, restore, agent, sdk, help)\nRun "pstore --help" for usage.\n'],
    [["--bogus"], "pstore: unknown flag --bogus (flags go after the command: pstore <command> --bogus)\nRun \"pstore --help\" for usage.\n"],
    [["help", "bogus"], 'pstore: unknown command "bogus" (commands: serve, local, shell, status, bench, checkpoint, restore, agent, sdk, help)\nRun "pstore --help" for usage.\n'],
    [
      ["serve", "--listen", "127.0.0.1:0", "--data-dir", "/tmp/x", "--lissen", "x"],
      'pstore serve: unknown flag --lissen for "pstore serve" (did you mean --listen?)\nRun "pstore serve --help" for usage.\n',
    ],
    [["serve", "--data-dir", "/tmp/x"], 'pstore serve: --listen is required (host:port)\nRun "pstore serve --help" for usage.\n'],
    [["serve", "--listen"], 'pstore serve: --listen needs a value (host:port)\nRun "pstore serve --help" for usage.\n'],
    [
      ["serve", "--listen", "nowhere", "--data-dir", "/tmp/x"],
      'pstore serve: --listen: "nowhere" is not host:port (e.g. 127.0.0.1:7401)\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--segment-size", "lots"],
      'pstore serve: --segment-size: "lots" is not a size; use a whole number of bytes, optionally with a unit: 4096, 4KiB, 256MiB, 1GiB (K, M, G are the same binary units)\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--fsync", "never"],
      'pstore serve: --fsync must be one of always, batch, off (got "never")\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--heartbeat-ms", "0"],
      'pstore serve: --heartbeat-ms: must be at least 1 ms (got 0)\nRun "pstore serve --help" for usage.\n',
    ],
    [
      // It said "must be at least 1 ms": a size read as a duration.
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--checkpoint-mb", "0"],
      'pstore serve: --checkpoint-mb: "0" is not a whole number from 1 to 1048576\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--session-timeout-ms", "5"],
      'pstore serve: --session-timeout-ms must be from 100 to 86400000 (got 5)\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--data-dir", "/tmp/x", "--heartbeat-ms", "500", "--suspect-ms", "400"],
      'pstore serve: --suspect-ms (400) must be longer than --heartbeat-ms (500)\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:7401", "--peers", "127.0.0.1:7402,127.0.0.1:7403", "--data-dir", "/tmp/x"],
      'pstore serve: --listen 127.0.0.1:7401 is not in --peers 127.0.0.1:7402,127.0.0.1:7403\nRun "pstore serve --help" for usage.\n',
    ],
    [
      ["serve", "--listen", "127.0.0.1:0", "--peers", "127.0.0.1:7402,,", "--data-dir", "/tmp/x"],
      'pstore serve: --peers: "127.0.0.1:7402,," has an empty item; write a,b,c with no empty entries\nRun "pstore serve --help" for usage.\n',
    ],
    [["local", "--servers", "0"], 'pstore local: --servers: "0" is not a whole number from 1 to 16\nRun "pstore local --help" for usage.\n'],
    [["local", "--rejoin", "4"], 'pstore local: --rejoin: "4" is not a whole number from 1 to 3\nRun "pstore local --help" for usage.\n'],
    [["local", "--servers", "1", "--rejoin", "1"], 'pstore local: --rejoin fetches the state from the other servers, and a single server has none (pstore restore rolls it back to a checkpoint)\nRun "pstore local --help" for usage.\n'],
    [["local", "--rejoin", "1,2,3"], 'pstore local: --rejoin: the state comes from the servers not rejoining, so at most 2 of 3 servers may rejoin\nRun "pstore local --help" for usage.\n'],
    [["local", "--base-port", "65535"], 'pstore local: --base-port: "65535" must be a port from 1 to 65533 for 3 servers\nRun "pstore local --help" for usage.\n'],
    [["local", "extra"], 'pstore local: "pstore local" takes no arguments, only flags (unexpected "extra")\nRun "pstore local --help" for usage.\n'],
    [["shell", "--local", "--servers", "127.0.0.1:1"], 'pstore shell: --local starts its own servers; leave out --servers\nRun "pstore shell --help" for usage.\n'],
    [["shell", "--data-dir", "x"], 'pstore shell: --data-dir, --base-port and --segment-size only go with --local\nRun "pstore shell --help" for usage.\n'],
    [["shell", "--segment-size", "1MiB"], 'pstore shell: --data-dir, --base-port and --segment-size only go with --local\nRun "pstore shell --help" for usage.\n'],
    [["shell", "--json=maybe"], 'pstore shell: --json is a switch and takes no value (got "maybe")\nRun "pstore shell --help" for usage.\n'],
    [["status", "--servers", ""], 'pstore status: --servers needs a value, got an empty one\nRun "pstore status --help" for usage.\n'],
    [["status", "--interval-ms", "fast"], 'pstore status: --interval-ms: "fast" is not a whole number of milliseconds (e.g. 1000)\nRun "pstore status --help" for usage.\n'],
  ])("%j", async (args, message) => {
    const { code, stdout, stderr } = await runCli(args);
    expect(stderr).toBe(message);
    expect(stdout).toBe("");
    expect(code).toBe(2);
  });
});

describe("script output through pipes", () => {
  test("a reader that is slow to start loses no result line", async () => {
    const proc = Bun.spawn([process.execPath, MAIN, "shell", "--servers", "127.0.0.1:1"], {
      stdin: new Blob(["help\n".repeat(20000)]),
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    await Bun.sleep(1000);
    const [stdout, code] = await Promise.all([new Response(proc.stdout).text(), proc.exited]);
    clearTimeout(timer);
    expect(stdout.split("\n").length - 1).toBe(20000);
    expect(code).toBe(0);
  }, 40_000);

  test("a reader that goes away ends the shell quietly (141, as SIGPIPE)", async () => {
    const proc = Bun.spawn([process.execPath, MAIN, "shell", "--servers", "127.0.0.1:1"], {
      stdin: new Blob(["help\n".repeat(20000)]),
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    const reader = proc.stdout.getReader();
    await reader.read();
    await reader.cancel();
    const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    expect(stderr).toBe("");
    expect(code).toBe(141);
  }, 40_000);
});
