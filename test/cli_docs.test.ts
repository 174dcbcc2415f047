/**
 * The docs stay true:
 * - docs/cli.md holds every command's `--help` and the shell's `help` texts
 *   verbatim, between `<!-- generated: … -->` markers. After changing a help
 *   text, regenerate them with
 *       PSTORE_UPDATE_DOCS=1 bun test test/cli_docs.test.ts
 * - the README's shell tour is a transcript: its commands, piped into
 *   `pstore shell`, print exactly the lines shown;
 * - every ```ts example of the README and docs/api.md runs against a server.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runShellLine, SHELL_COMMANDS } from "../src/cli/shell/run.ts";
import { makeStyle } from "../src/cli/output.ts";
import { ROOT, runCli, startCli, tempDir, type Running } from "./fixtures/cli_helpers.ts";

const UPDATE = process.env.PSTORE_UPDATE_DOCS === "1";
const CLI_MD = join(ROOT, "docs/cli.md");
const GENERATED = /<!-- generated: (.+?) -->\n```text\n([^]*?)```\n<!-- end generated -->/g;

const started: Running[] = [];
afterAll(async () => {
  await Promise.all(started.map((child) => child.stop("SIGTERM", 3000)));
});

async function serve(): Promise<string> {
  const server = startCli(["serve", "--listen", "127.0.0.1:0", "--data-dir", tempDir(), "--segment-size", "4MiB", "--die-with-parent"]);
  started.push(server);
  const [, address] = await server.waitFor(/^READY (\S+)$/m);
  return address!;
}

/** What a generated block shows: `pstore … --help`, `shell: help`, `shell: help CMD`. */
async function generate(source: string): Promise<string> {
  const shell = /^shell: (help.*)$/.exec(source);
  if (shell) {
    const ctx = { store: async () => Promise.reject(new Error("no store")), multiline: true, style: makeStyle(false), names: new Set<string>(), holds: new Map(), lostHolds: new Map() };
    const result = await runShellLine(ctx, shell[1]!);
    return `${result!.text}\n`;
  }
  const args = source.split(" ");
  if (args[0] !== "pstore") throw new Error(`unknown generated source "${source}"`);
  const { code, stdout } = await runCli(args.slice(1));
  expect(code).toBe(0);
  return stdout;
}

/** The commands `pstore --help` lists. */
async function commandNames(): Promise<string[]> {
  const { stdout } = await runCli(["--help"]);
  const section = stdout.split("COMMANDS\n")[1]!.split("\n\n")[0]!;
  return section.split("\n").map((line) => line.trim().split(/\s+/)[0]!).filter((name) => name !== "help");
}

describe("docs/cli.md", () => {
  test("holds the --help of every command and the shell's help, verbatim", async () => {
    let text = readFileSync(CLI_MD, "utf8");
    const blocks = [...text.matchAll(GENERATED)];
    const sources = blocks.map((block) => block[1]!);
    const wanted = [
      "pstore --help",
      ...(await commandNames()).map((name) => `pstore ${name} --help`),
      "shell: help",
      ...Object.keys(SHELL_COMMANDS).map((name) => `shell: help ${name}`),
    ];
    expect(sources.filter((source) => !wanted.includes(source))).toEqual([]);
    const missing = wanted.filter((source) => !sources.includes(source));
    if (missing.length > 0 && !UPDATE) throw new Error(`docs/cli.md has no generated block for: ${missing.join(", ")}`);
    expect(missing).toEqual([]);
    const stale: string[] = [];
    for (const [whole, source, shown] of blocks) {
      const current = await generate(source!);
      if (current === shown) continue;
      stale.push(source!);
      text = text.replace(whole, `<!-- generated: ${source} -->\n\`\`\`text\n${current}\`\`\`\n<!-- end generated -->`);
    }
    if (UPDATE) writeFileSync(CLI_MD, text);
    else if (stale.length > 0) {
      throw new Error(`docs/cli.md is out of date for: ${stale.join(", ")}; run PSTORE_UPDATE_DOCS=1 bun test test/cli_docs.test.ts`);
    }
  }, 60_000);
});

/** The README tour's commands and the result lines it shows (terminal-only notices left out). */
function readmeTour(): { commands: string[]; expected: string[]; notices: string[] } {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const tour = /## A five-minute tour\n[^]*?```sh\n([^]*?)```/.exec(readme)![1]!;
  const lines = tour.split("\n").filter((line) => line !== "");
  const commands: string[] = [];
  const expected: string[] = [];
  const notices: string[] = [];
  for (const line of lines) {
    const prompt = /^pstore(?: \[[^\]]*\])?> (.*)$/.exec(line);
    const text = line.replace(/\s+#.*$/, "");
    if (prompt) commands.push(prompt[1]!);
    // "running 500 cycles… (Ctrl-C stops)": said on a terminal only, not in a script.
    else if (/… \(Ctrl-C \w+\)$/.test(text)) notices.push(text);
    else if (commands.length > 0) expected.push(text);
  }
  return { commands, expected, notices };
}

describe("README", () => {
  test("the five-minute tour is a transcript of a real shell", async () => {
    const { commands, expected, notices } = readmeTour();
    expect(commands.length).toBeGreaterThan(5);
    expect(notices).toEqual(["running 500 cycles… (Ctrl-C stops)"]);
    const address = await serve();
    const { stdout } = await runCli(["shell", "--servers", address], { stdin: `${commands.join("\n")}\n` });
    // A fresh cluster with one client numbers its updates the same way every time, so every
    // line is exact, but bench's timings: compare their shape.
    const shape = (line: string) => (/ cycles of /.test(line) ? line.replace(/\d+(\.\d+)?/g, "N") : line);
    expect(stdout.split("\n").slice(0, -1).map(shape)).toEqual(expected.map(shape));
  }, 60_000);
});

describe("TypeScript examples", () => {
  const examples: [string, string][] = [];
  for (const file of ["README.md", "docs/api.md"]) {
    const text = readFileSync(join(ROOT, file), "utf8");
    let index = 0;
    for (const match of text.matchAll(/```ts\n([^]*?)```/g)) examples.push([`${file} example ${++index}`, match[1]!]);
  }

  test.each(examples)("%s runs", async (_, code) => {
    await runExample(await serve(), code);
  }, 60_000);

  test("a newcomer's order works: the README tour, then each README example, on one cluster", async () => {
    const address = await serve();
    const { commands } = readmeTour();
    expect((await runCli(["shell", "--servers", address], { stdin: `${commands.join("\n")}\n` })).code).toBe(0);
    for (const [name, code] of examples.filter(([name]) => name.startsWith("README.md"))) {
      await runExample(address, code).catch((error: Error) => {
        throw new Error(`${name} after the tour: ${error.message}`);
      });
    }
  }, 120_000);

  async function runExample(address: string, code: string): Promise<void> {
    // A project of its own that depends on pstore, as a user's would.
    const dir = tempDir();
    mkdirSync(join(dir, "node_modules"));
    symlinkSync(ROOT, join(dir, "node_modules/pstore"));
    // Examples that name the default servers talk to this test's server instead.
    const source = code.replace(/"127\.0\.0\.1:7401(,127\.0\.0\.1:740\d)*"/g, JSON.stringify(address));
    writeFileSync(join(dir, "example.ts"), source);
    const proc = Bun.spawn([process.execPath, join(dir, "example.ts")], {
      cwd: dir,
      env: { ...process.env, PSTORE_SERVERS: address, PSTORE_SECRET: undefined },
      stdout: "pipe",
      stderr: "pipe",
    });
    const timer = setTimeout(() => proc.kill("SIGKILL"), 30_000);
    const [stdout, stderr, exitCode] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited]);
    clearTimeout(timer);
    if (exitCode !== 0) throw new Error(`exit ${exitCode}\n${stdout}\n${stderr}`);
  }
});
