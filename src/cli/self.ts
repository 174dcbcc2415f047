/**
 * This very program: how to run it again (a local cluster's servers, a re-execution
 * with the allocator setting below).
 */
import { fileURLToPath } from "node:url";
import { present } from "../assert.ts";

/** The command line that runs this very program: the compiled binary, or bun + main.ts. */
export function selfCommand(): string[] {
  // In a `bun build --compile` binary modules live under /$bunfs/ (B:/~BUN/ on Windows)
  // and process.argv[1] is not a script path: the executable is the program.
  const compiled = import.meta.path.startsWith("/$bunfs/") || import.meta.path.includes("~BUN");
  if (compiled) return [process.execPath];
  return [process.execPath, fileURLToPath(new URL("./main.ts", import.meta.url))];
}

/** Bun's allocator (mimalloc) reads its options from the environment at start only. */
export const PURGE_DELAY_ENV = "MIMALLOC_PURGE_DELAY";

/**
 * Servers and the programs that measure them keep the memory they free for reuse.
 * By default mimalloc gives freed pages back to the system (an madvise, whose TLB
 * shootdown reaches every thread) and the next use faults them in again: ~11 µs a page
 * on the VM of docs/benchmarks.md, 2 to 5 pages an update per server, about 20% of a
 * server's CPU on a busy chain. With purging off a process keeps its peak heap instead
 * (docs/benchmarks.md, "memory"). The option must be in the environment when the
 * process starts, so the process executes itself once more with it: the same PID
 * (execve), before it opened anything. A value the user set is kept (0: give back at once).
 */
export function keepFreedMemory(command: string[] = selfCommand()): void {
  if (process.env[PURGE_DELAY_ENV] !== undefined) return;
  const execve = (process as { execve?: (file: string, args: string[], env: Record<string, string | undefined>) => never }).execve;
  if (typeof execve !== "function") return;
  const [program, ...script] = command;
  const file = present(program, "selfCommand() names the program");
  execve(file, [file, ...script, ...process.argv.slice(2)], { ...process.env, [PURGE_DELAY_ENV]: "-1" });
}
