#!/usr/bin/env bun
/**
 * Entry point of `dist/pstore` (and of `bun src/cli/main.ts`). It finds the
 * command, loads only that command's module, checks its flags, runs it and
 * turns the outcome into an exit code — the only place that calls
 * process.exit:
 *
 *   0  the command did what was asked
 *   1  it failed (a pstore error, a server that would not start, a failed shell command)
 *   2  it was called wrongly (unknown command or flag, bad flag value)
 *   130 the shell was interrupted by SIGINT while reading a script
 *   141 stdout was closed by its reader (as a process killed by SIGPIPE)
 */
import { runCommand, type CommandDef } from "citty";
import packageJson from "../../package.json" with { type: "json" };
import { checkFlags, UsageError } from "./flags.ts";
import { renderCommandHelp } from "./help.ts";
import { makeStyle, stripAnsi, useColor } from "./output.ts";
import { keepFreedMemory } from "./self.ts";

interface CommandModule {
  default: CommandDef<any>;
  /** Lines shown under EXAMPLES in `--help`. */
  examples: string[];
}

/** Commands that run servers or measure them: they keep freed memory for reuse (self.ts). */
const KEEP_FREED_MEMORY = new Set(["serve", "local", "bench", "agent"]);

// Loaded on demand, so `pstore shell` never loads the server's code.
const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  serve: { summary: "Run one storage server", load: () => import("./serve.ts") },
  local: { summary: "Run a local cluster of servers (3 by default) until Ctrl-C", load: () => import("./local.ts") },
  shell: { summary: "Interactive client: create, read and write data", load: () => import("./shell.ts") },
  status: { summary: "Show the chain of servers: epoch, head to tail, lag", load: () => import("./status.ts") },
  bench: { summary: "Measure latency and throughput: cycle, read, contended, large, failover", load: () => import("./bench.ts") },
  checkpoint: { summary: "Checkpoint every server at one seq, or list checkpoints", load: () => import("./checkpoint.ts") },
  restore: { summary: "Roll stopped servers back to a checkpoint", load: () => import("./restore.ts") },
  agent: { summary: "Serve C programs (libpstore.so) on a Unix socket", load: () => import("./agent.ts") },
  sdk: { summary: "Write pstore.h, libpstore.so and pstore.pc into a directory", load: () => import("./sdk.ts") },
};

const VERSION = packageJson.version;

function _topHelp(): string {
  const names = Object.keys(COMMANDS);
  const width = Math.max(...names.map((name) => name.length), 4);
  return [
    `pstore ${VERSION} — a replicated, page-based shared-memory store`,
    "",
    "USAGE  pstore <command> [flags]",
    "",
    "COMMANDS",
    ...names.map((name) => `  ${name.padEnd(width)}  ${COMMANDS[name]!.summary}`),
    `  ${"help".padEnd(width)}  Show the help of a command: pstore help shell`,
    "",
    "FLAGS",
    "  --help, -h     Show help (also after any command)",
    "  --version, -v  Print the version",
    "",
    "GETTING STARTED",
    "  pstore local          # terminal 1: three servers on 127.0.0.1:7401-7403",
    "  pstore shell          # terminal 2: create compteur 4, write compteur i32 1035, ...",
    "  pstore shell --local  # or both in one",
    "",
    "Exit codes: 0 ok, 1 error, 2 wrong usage.",
    'Run "pstore <command> --help" for the flags and examples of a command.',
  ].join("\n");
}

function _commandHelp(name: string, module: CommandModule): string {
  return renderCommandHelp(name, module.default, module.examples, makeStyle(useColor(process.stdout)));
}

function _print(text: string, stream: NodeJS.WriteStream): void {
  stream.write(`${useColor(stream) ? text : stripAnsi(text)}\n`);
}

function _wantsHelp(args: readonly string[]): boolean {
  const end = args.indexOf("--");
  return (end === -1 ? args : args.slice(0, end)).some((arg) => arg === "--help" || arg === "-h");
}

function _lookup(name: string): { summary: string; load: () => Promise<CommandModule> } {
  const command = COMMANDS[name];
  if (command) return command;
  const known = [...Object.keys(COMMANDS), "help"].join(", ");
  throw new UsageError(`unknown command "${name}" (commands: ${known})`);
}

/** Runs one invocation and returns its exit code; errors propagate to `_exitCodeOf`. */
async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h") {
    _print(_topHelp(), process.stdout);
    return 0;
  }
  if (name === "--version" || name === "-V" || name === "-v") {
    process.stdout.write(`${VERSION}\n`);
    return 0;
  }
  if (name === "help") {
    if (rest.length > 1) throw new UsageError("help takes at most one command name");
    if (rest[0] === undefined || rest[0] === "help") {
      _print(_topHelp(), process.stdout);
    } else {
      _print(_commandHelp(rest[0], await _lookup(rest[0]).load()), process.stdout);
    }
    return 0;
  }
  if (name.startsWith("-")) throw new UsageError(`unknown flag ${name} (flags go after the command: pstore <command> ${name})`);
  const command = _lookup(name);
  if (KEEP_FREED_MEMORY.has(name) && !_wantsHelp(rest)) keepFreedMemory();
  const module = await command.load();
  if (_wantsHelp(rest)) {
    _print(_commandHelp(name, module), process.stdout);
    return 0;
  }
  const argsDef = typeof module.default.args === "object" ? (module.default.args as Record<string, any>) : {};
  _currentCommand = name;
  checkFlags(rest, argsDef, `pstore ${name}`);
  const { result } = await runCommand(module.default, { rawArgs: [...rest] });
  return typeof result === "number" ? result : 0;
}

let _currentCommand: string | undefined;

function _report(error: unknown, verbose: boolean): number {
  if (_isBrokenPipe(error)) return _EXIT_BROKEN_PIPE;
  const where = _currentCommand ? `pstore ${_currentCommand}` : "pstore";
  if (error instanceof UsageError || (error instanceof Error && error.name === "CLIError")) {
    const help = _currentCommand ? `pstore ${_currentCommand} --help` : "pstore --help";
    process.stderr.write(`${where}: ${stripAnsi(error.message)}\nRun "${help}" for usage.\n`);
    return 2;
  }
  if (error instanceof Error) {
    process.stderr.write(`${where}: ${verbose && error.stack ? error.stack : error.message}\n`);
    return 1;
  }
  process.stderr.write(`${where}: ${String(error)}\n`);
  return 1;
}

/** Exit only once stdout has been handed to the OS, or piped output could be cut short. */
async function _exit(code: number): Promise<never> {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.writableNeedDrain) {
      await new Promise<void>((resolve) => {
        stream.once("drain", resolve);
        setTimeout(resolve, 2000).unref();
      });
    }
  }
  process.exit(code);
}

/** The reader of our stdout went away (`pstore shell < script | head -1`): stop quietly, as SIGPIPE would. */
const _EXIT_BROKEN_PIPE = 141;

function _isBrokenPipe(error: unknown): boolean {
  return (error as { code?: unknown } | null)?.code === "EPIPE";
}

if (import.meta.main) {
  process.stdout.on("error", (error) => {
    if (_isBrokenPipe(error)) process.exit(_EXIT_BROKEN_PIPE);
    throw error;
  });
  const argv = process.argv.slice(2);
  main(argv).then(
    (code) => _exit(code),
    (error) => _exit(_report(error, argv.includes("--verbose"))),
  );
}
