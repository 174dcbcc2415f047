/**
 * Test processes: servers of the built binary (or the source when it is not
 * built) and client scripts. Every wait is bounded; every process is stopped
 * by its own PID; output is always drained so a child never blocks on a pipe.
 */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Subprocess } from "bun";

export const ROOT = resolve(import.meta.dir, "../..");
const BINARY = join(ROOT, "dist/pstore");

/** The command that runs `pstore`: the built binary, as users run it. */
export function pstoreCommand(): string[] {
  if (existsSync(BINARY)) return [BINARY];
  return [process.execPath, join(ROOT, "src/cli/main.ts")];
}

export function tempDir(prefix = "pstore-test-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A loopback port free right now (another process may take it before it is used). */
export async function freePort(): Promise<number> {
  const listener = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = listener.port;
  listener.stop(true);
  return port;
}

export interface Child {
  proc: Subprocess<"ignore", "pipe", "pipe">;
  /** Everything the child printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the first stdout line matching `pattern`, or rejects after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

export function spawnChild(cmd: string[], env: Record<string, string> = {}): Child {
  const proc = Bun.spawn(cmd, {
    cwd: ROOT,
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  let out = "";
  let err = "";
  const listeners = new Set<() => void>();
  const pump = async (stream: ReadableStream<Uint8Array>, append: (text: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      append(decoder.decode(chunk, { stream: true }));
      for (const listener of listeners) listener();
    }
  };
  void pump(proc.stdout, (t) => (out += t));
  void pump(proc.stderr, (t) => (err += t));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    waitFor(pattern, timeoutMs) {
      return new Promise((resolvePromise, reject) => {
        const check = () => {
          const match = out.match(pattern);
          if (match) {
            cleanup();
            resolvePromise(match);
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${pattern}\nstdout: ${out}\nstderr: ${err}`));
        }, timeoutMs);
        const cleanup = () => {
          clearTimeout(timer);
          listeners.delete(check);
          void proc.exited.then(() => {});
        };
        listeners.add(check);
        void proc.exited.then(() => {
          setTimeout(() => {
            if (!listeners.has(check)) return;
            cleanup();
            reject(new Error(`process exited (${proc.exitCode ?? proc.signalCode}) before ${pattern}\nstdout: ${out}\nstderr: ${err}`));
          }, 50);
        });
        check();
      });
    },
    async stop(graceMs = 3000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill("SIGTERM");
      const timer = setTimeout(() => proc.kill("SIGKILL"), graceMs);
      await proc.exited;
      clearTimeout(timer);
      return proc.exitCode;
    },
  };
}

export interface ServerProcess extends Child {
  address: string;
  dataDir: string;
}

export interface ServerFlags {
  dataDir?: string;
  segmentSize?: string;
  sessionTimeoutMs?: number;
  extra?: string[];
}

/** One `pstore serve` on an ephemeral loopback port, ready to accept clients. */
export async function startServer(flags: ServerFlags = {}): Promise<ServerProcess> {
  const dataDir = flags.dataDir ?? tempDir();
  const cmd = [
    ...pstoreCommand(),
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--data-dir",
    dataDir,
    "--die-with-parent",
    "--segment-size",
    flags.segmentSize ?? "64MiB",
    ...(flags.sessionTimeoutMs ? ["--session-timeout-ms", String(flags.sessionTimeoutMs)] : []),
    ...(flags.extra ?? []),
  ];
  const child = spawnChild(cmd);
  const match = await child.waitFor(/READY (\S+)/, 15_000);
  return { ...child, address: match[1]!, dataDir };
}

/** Runs a client script under bun; resolves with its output and exit status. */
export async function runScript(
  script: string,
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  return finished(spawnChild([process.execPath, join(ROOT, script), ...args]), timeoutMs);
}

/** Waits for a child's exit (SIGKILL after `timeoutMs`); resolves with its status and output. */
export async function finished(
  child: Child,
  timeoutMs = 30_000,
): Promise<{ code: number | null; signal: string | null; stdout: string; stderr: string }> {
  const timer = setTimeout(() => child.proc.kill("SIGKILL"), timeoutMs);
  await child.proc.exited;
  clearTimeout(timer);
  await Bun.sleep(10);
  return { code: child.proc.exitCode, signal: child.proc.signalCode as string | null, stdout: child.stdout(), stderr: child.stderr() };
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
