/**
 * `pstore shell --local` against real servers: the fault commands (kill,
 * restart) of the specification's experiments, checkpoint and bench. The
 * shell reads a pipe here, so it prints one line per command, and the test
 * sends the next command only after reading the previous result.
 */
import { afterAll, describe, expect, test } from "bun:test";
import type { Subprocess } from "bun";
import { outputLines } from "../src/cli/cluster.ts";
import { MAIN, ROOT, tempDir } from "./fixtures/cli_helpers.ts";

const started: Subprocess[] = [];
afterAll(() => {
  for (const proc of started) proc.kill("SIGKILL");
});

/** Three consecutive ports nobody listens on right now. */
async function freeBasePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20_000 + Math.floor(Math.random() * 30_000);
    const listeners: { stop(closeActive?: boolean): void }[] = [];
    try {
      for (let i = 0; i < 3; i++) listeners.push(Bun.listen({ hostname: "127.0.0.1", port: base + i, socket: { data() {} } }));
      return base;
    } catch {
      // In use: try another range.
    } finally {
      for (const listener of listeners) listener.stop(true);
    }
  }
  throw new Error("no three free consecutive ports");
}

interface ScriptedShell {
  /** Sends one command and resolves with its result line. */
  send(line: string, timeoutMs?: number): Promise<string>;
  /** Sends `line` until its result matches, or throws after `timeoutMs`. */
  until(line: string, pattern: RegExp, timeoutMs?: number): Promise<string>;
  close(): Promise<{ code: number | null; stderr: string }>;
}

function scriptedShell(args: string[]): ScriptedShell {
  const proc = Bun.spawn([process.execPath, MAIN, "shell", ...args], {
    cwd: ROOT,
    env: { ...process.env, NO_COLOR: undefined },
    stdin: "pipe",
    stdout: "pipe",
    stderr: "pipe",
  });
  started.push(proc);
  const lines: string[] = [];
  let waiter: (() => void) | undefined;
  void (async () => {
    for await (const line of outputLines(proc.stdout)) {
      lines.push(line);
      waiter?.();
    }
  })();
  // Kept as it comes, so that a step that times out can say what the servers were doing.
  let stderrText = "";
  const stderr = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of proc.stderr) stderrText += decoder.decode(chunk, { stream: true });
    return stderrText;
  })();
  const recentLog = () => stderrText.split("\n").slice(-40).join("\n");
  const nextLine = async (timeoutMs: number) => {
    const deadline = Date.now() + timeoutMs;
    while (lines.length === 0) {
      if (Date.now() > deadline) throw new Error(`no result within ${timeoutMs} ms; the shell's log ends:\n${recentLog()}`);
      await new Promise<void>((resolve) => {
        waiter = resolve;
        setTimeout(resolve, 50);
      });
    }
    return lines.shift()!;
  };
  const shell: ScriptedShell = {
    async send(line, timeoutMs = 20_000) {
      proc.stdin.write(`${line}\n`);
      proc.stdin.flush();
      return nextLine(timeoutMs);
    },
    async until(line, pattern, timeoutMs = 20_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const result = await shell.send(line);
        if (pattern.test(result)) return result;
        if (Date.now() > deadline) throw new Error(`"${line}" never matched ${pattern}; last: ${result}; the shell's log ends:\n${recentLog()}`);
        await Bun.sleep(200);
      }
    },
    async close() {
      proc.stdin.end();
      const code = await Promise.race([proc.exited, Bun.sleep(20_000).then(() => null)]);
      if (code === null) proc.kill("SIGKILL");
      return { code, stderr: await stderr };
    },
  };
  return shell;
}

/** `status` until it shows `servers` serving, in that order from head to tail. */
function servingPattern(...servers: string[]): RegExp {
  return new RegExp(`^epoch \\d+: ${servers.map((s) => `${s} \\w+ serving seq \\d+ lag \\d+`).join(" -> ")}`);
}

/**
 * Waits for a chain of the three servers and returns it, head first. Its order
 * is not always 1, 2, 3: a server that starts late (a loaded machine) finds the
 * others' chain formed and joins at its tail.
 */
async function chainOfThree(shell: ScriptedShell): Promise<[string, string, string]> {
  const address = "\\d+\\.\\d+\\.\\d+\\.\\d+:\\d+";
  const member = `(${address}) \\w+ serving seq \\d+ lag \\d+`;
  const line = await shell.until("status", new RegExp(`^epoch \\d+: ${member} -> ${member} -> ${member}`));
  const [, head, middle, tail] = line.match(new RegExp(`^epoch \\d+: ${member} -> ${member} -> ${member}`))!;
  return [head!, middle!, tail!];
}

describe("shell --local", () => {
  test("kill the head and restart it, kill the middle and the head: the shell goes on, down to one server", async () => {
    const base = await freeBasePort();
    const servers = [base, base + 1, base + 2].map((port) => `127.0.0.1:${port}`);
    const number = (address: string) => servers.indexOf(address) + 1;
    // --verbose: the servers' log lines too, for the message of a step that times out.
    const shell = scriptedShell(["--local", "--base-port", String(base), "--data-dir", tempDir(), "--verbose"]);

    expect(await shell.send("create compteur 4", 30_000)).toBe("ok");
    expect(await shell.send("write compteur i32 1")).toBe("ok");
    const [head, middle, tail] = await chainOfThree(shell);

    // The head: the next write waits for the chain to be rebuilt, then goes through.
    const h = number(head);
    expect(await shell.send(`kill ${h}`)).toBe(`server ${h} (${head}) stopped by SIGKILL`);
    expect(await shell.send("write compteur i32 2")).toBe("ok");
    expect(await shell.send("read compteur i32")).toBe("2");
    expect(await shell.send(`kill ${h}`)).toBe(`error EINVAL: server ${h} (${head}) is not running; restart ${h} starts it again`);

    // Back at the tail once it has caught up.
    expect(await shell.send(`restart ${h}`)).toMatch(new RegExp(`^server ${h} \\(${head}\\) restarted, pid \\d+$`));
    await shell.until("status", servingPattern(middle, tail, head));

    // The middle (SIGTERM), then the head: the restarted server alone serves everything acknowledged.
    const [newHead, newMiddle] = [middle, tail];
    expect(await shell.send(`kill ${number(newMiddle)} SIGTERM`)).toBe(`server ${number(newMiddle)} (${newMiddle}) stopped by SIGTERM`);
    expect(await shell.send("write compteur i32 3")).toBe("ok");
    expect(await shell.send(`kill ${number(newHead)}`)).toBe(`server ${number(newHead)} (${newHead}) stopped by SIGKILL`);
    expect(await shell.send("read compteur i32")).toBe("3");
    expect(await shell.send("checkpoint")).toMatch(/^checkpoint at seq \d+ on every server of the chain$/);
    expect(await shell.send("bench 20")).toMatch(/^20 cycles of 4 KiB: p50 [\d.]+ ms, p99 [\d.]+ ms, \d+ ops\/s$/);
    expect(await shell.send("list")).toBe("compteur");

    const { code, stderr } = await shell.close();
    expect(code).toBe(1); // one command failed on purpose (the same kill twice)
    // Faults the shell caused are not reported as surprises.
    expect(stderr).not.toContain("unexpectedly");
    expect(stderr).toContain(`INFO [shell] starting 3 local servers from port ${base}`);
  }, 120_000);

  test("a paused server (SIGSTOP) is taken out of the chain; SIGCONT and restart bring it back", async () => {
    const base = await freeBasePort();
    const servers = [base, base + 1, base + 2].map((port) => `127.0.0.1:${port}`);
    const shell = scriptedShell(["--local", "--base-port", String(base), "--data-dir", tempDir(), "--quiet"]);
    expect(await shell.send("create x 4", 30_000)).toBe("ok");
    const [head, middle, tail] = await chainOfThree(shell);
    const m = servers.indexOf(middle) + 1;
    expect(await shell.send(`kill ${m} SIGSTOP`)).toBe(`server ${m} (${middle}) paused (kill ${m} SIGCONT resumes it)`);
    expect(await shell.send("write x i32 5")).toBe("ok");
    expect(await shell.until("status", new RegExp(`^epoch \\d+: ${head} head serving .* -> ${tail} tail serving`))).not.toContain(`${middle} middle`);
    expect(await shell.send(`restart ${m}`)).toMatch(new RegExp(`^server ${m} .* restarted, pid \\d+$`));
    await shell.until("status", new RegExp(`${middle} tail serving`));
    expect(await shell.send("read x i32")).toBe("5");
    const { code, stderr } = await shell.close();
    expect(code).toBe(0);
    expect(stderr).toBe(""); // --quiet: warnings and errors only
  }, 120_000);
});
