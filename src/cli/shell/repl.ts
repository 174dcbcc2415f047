/**
 * The shell's read-eval-print loop on node:readline (consola.prompt is broken
 * under Bun, BUN.md). Two modes:
 *
 * - interactive (stdin is a terminal): prompt `pstore> `, tab completion of
 *   commands and data names, history in ~/.pstore_history, Ctrl-C cancels a
 *   waiting command (or clears the line; twice on an empty line leaves),
 *   Ctrl-D or quit leaves. Exit code 0.
 * - script (stdin is a pipe or a file): no prompt, exactly one result line
 *   per command (blank lines and # comments print nothing), every command
 *   runs even after a failure. Exit code 1 if any command failed, else 0;
 *   130 if interrupted.
 */
import { appendFileSync, readFileSync, writeFileSync } from "node:fs";
import { createInterface, type Interface } from "node:readline";
import type { Store } from "../../client/types.ts";
import type { LocalCluster } from "../cluster.ts";
import { createProgress } from "../../bench/render.ts";
import { makeStyle } from "../output.ts";
import { completeLine, describeError, dropHolds, promptFor, runShellLine, type ShellContext, type ShellResult } from "./run.ts";

export interface ShellOptions {
  input: NodeJS.ReadableStream;
  output: NodeJS.WritableStream;
  /** Notices (waiting…, a server died) and the banner go here. */
  errorOutput: NodeJS.WritableStream;
  interactive: boolean;
  color: boolean;
  /** Print each result as a JSON object on one line. */
  json: boolean;
  connect(): Promise<Store>;
  cluster?: LocalCluster;
  /** Interactive history file; none when undefined. */
  historyFile?: string;
  /** Aborted on SIGINT/SIGTERM by the caller: cancels the running command and ends the loop. */
  stop?: AbortSignal;
  /** Shown once at start in interactive mode. */
  banner?: string;
}

const _HISTORY_LINES_MAX = 1000;
/** Names for completion are refreshed in the background when older than this. */
const _NAMES_STALE_MS = 5000;
const _CLOSE_TIMEOUT_MS = 5000;
/** How long the shell waits at start to learn that no server listens (refusals come in milliseconds). */
const _START_PROBE_MS = 300;

export async function runShell(options: ShellOptions): Promise<number> {
  const session = new _Session(options);
  try {
    return options.interactive ? await session.interactive() : await session.script();
  } finally {
    await session.close();
  }
}

class _Session {
  readonly ctx: ShellContext;
  private connected: Promise<Store> | undefined;
  private store: Store | undefined;
  private current: AbortController | undefined;
  private namesRefreshedAt = 0;
  private refreshingNames = false;

  constructor(private readonly options: ShellOptions) {
    this.ctx = {
      store: () => this.connect(),
      cluster: options.cluster,
      multiline: options.interactive,
      style: makeStyle(options.color),
      names: new Set(),
      holds: new Map(),
      lostHolds: new Map(),
      notice: options.interactive ? (text) => this.notice(text) : undefined,
      progress: options.interactive ? createProgress(options.errorOutput as NodeJS.WriteStream) : undefined,
    };
  }

  notice(text: string): void {
    this.options.errorOutput.write(`${this.ctx.style.dim(text)}\n`);
  }

  /** Connects on first use; a failed connection is retried by the next command. */
  private connect(): Promise<Store> {
    if (!this.connected) {
      this.connected = this.options.connect().then(
        (store) => {
          this.store = store;
          return store;
        },
        (error) => {
          this.connected = undefined;
          throw error;
        },
      );
    }
    return this.connected;
  }

  async close(): Promise<void> {
    if (this.store && this.ctx.holds.size > 0) {
      const dropped = await dropHolds(this.ctx);
      // A script that ends holding a datum says so where its one-line-per-command output is not.
      this.notice(`${this.options.interactive ? "" : "pstore shell: end of input: "}dropped: ${dropped.join(", ")}`);
    }
    const store = this.store;
    this.store = undefined;
    this.connected = undefined;
    if (!store) return;
    await Promise.race([store.close().catch(() => {}), Bun.sleep(_CLOSE_TIMEOUT_MS)]);
  }

  private async execute(line: string): Promise<ShellResult | null> {
    const controller = new AbortController();
    this.current = controller;
    try {
      return await runShellLine(this.ctx, line, controller.signal);
    } finally {
      this.current = undefined;
    }
  }

  /** Waits for a full pipe to drain: a slow reader must not lose results. */
  private async print(result: ShellResult): Promise<void> {
    const text = this.options.json ? JSON.stringify(result.json) : result.text;
    if (!this.options.output.write(`${text}\n`)) {
      await new Promise<void>((resolve) => this.options.output.once("drain", resolve));
    }
  }

  async script(): Promise<number> {
    const rl = createInterface({ input: this.options.input, terminal: false, crlfDelay: Number.POSITIVE_INFINITY });
    let failures = 0;
    let interrupted = false;
    const onStop = () => {
      interrupted = true;
      this.current?.abort();
      rl.close();
    };
    this.options.stop?.addEventListener("abort", onStop, { once: true });
    if (this.options.stop?.aborted) onStop();
    try {
      for await (const line of rl) {
        if (interrupted) break;
        const result = await this.execute(line);
        if (!result) continue;
        if (result.quit) break;
        await this.print(result);
        if (!result.ok) failures++;
      }
    } finally {
      this.options.stop?.removeEventListener("abort", onStop);
      rl.close();
    }
    if (interrupted) return 130;
    return failures > 0 ? 1 : 0;
  }

  async interactive(): Promise<number> {
    const rl = createInterface({
      input: this.options.input,
      output: this.options.output,
      terminal: true,
      prompt: "pstore> ",
      completer: (line: string) => this.complete(line),
      history: _loadHistory(this.options.historyFile),
      historySize: _HISTORY_LINES_MAX,
      removeHistoryDuplicates: true,
    });
    const lines = new _LineQueue(rl);
    const stopSearch = _historySearch(rl, this.options.input);
    let lastCtrlC = false;
    // Ctrl-D (readline closes) leaves the cursor after the prompt: end that line.
    let lineEnded = false;
    rl.on("SIGINT", () => {
      if (this.current) {
        this.current.abort();
        return;
      }
      if (rl.line.length > 0) {
        lastCtrlC = false;
        // Interface.clearLine (Node's and Bun's) ends the line on screen and empties it.
        const withClear = rl as unknown as { clearLine?: () => void };
        if (withClear.clearLine) withClear.clearLine();
        else this.options.output.write("\n");
        rl.prompt();
        return;
      }
      if (lastCtrlC) {
        this.options.output.write("\n");
        lineEnded = true;
        rl.close();
        return;
      }
      lastCtrlC = true;
      this.options.output.write("\n(press Ctrl-C again, or Ctrl-D, or type quit, to leave)\n");
      rl.prompt();
    });
    const onStop = () => {
      this.current?.abort();
      rl.close();
    };
    this.options.stop?.addEventListener("abort", onStop, { once: true });
    if (this.options.banner) this.options.output.write(`${this.options.banner}\n`);
    await this.sayIfNoServer();
    try {
      for (;;) {
        rl.setPrompt(promptFor(this.ctx));
        rl.prompt();
        const line = await lines.next();
        if (line === null) {
          if (!lineEnded) this.options.output.write("\n");
          break;
        }
        lastCtrlC = false;
        _appendHistory(this.options.historyFile, line);
        const result = await this.execute(line);
        if (!result) continue;
        if (result.quit) break;
        if (result.clear && !this.options.json) this.options.output.write("\u001B[H\u001B[2J");
        else await this.print(result);
      }
    } finally {
      this.options.stop?.removeEventListener("abort", onStop);
      stopSearch();
      rl.close();
    }
    return 0;
  }

  /**
   * Connects at start, in the background; if that fails at once (nobody
   * listens: the client says so within milliseconds), says why before the
   * first prompt. A slower answer is left to the first command.
   */
  private async sayIfNoServer(): Promise<void> {
    const failed = this.connect().then(
      () => undefined,
      (error: unknown) => error,
    );
    let timer: Timer | undefined;
    const later = new Promise<undefined>((resolve) => {
      timer = setTimeout(resolve, _START_PROBE_MS);
    });
    const early = await Promise.race([failed, later]);
    clearTimeout(timer);
    if (early !== undefined) this.notice(describeError(early).message);
  }

  private complete(line: string): [string[], string] {
    if (this.store && !this.refreshingNames && Date.now() - this.namesRefreshedAt > _NAMES_STALE_MS) {
      this.refreshingNames = true;
      this.store
        .list()
        .then((data) => {
          this.ctx.names.clear();
          for (const info of data) this.ctx.names.add(info.name);
        })
        .catch(() => {})
        .finally(() => {
          this.refreshingNames = false;
          this.namesRefreshedAt = Date.now();
        });
    }
    return completeLine(line, this.ctx.names);
  }
}

/**
 * Ctrl-R: replaces the line with the newest history entry that contains what
 * was typed; each further Ctrl-R goes to an older one (readline has no
 * reverse search of its own). Any other key ends the search. Returns the
 * function that removes the key listener.
 */
function _historySearch(rl: Interface, input: NodeJS.ReadableStream): () => void {
  const line = rl as unknown as { line: string; cursor: number; history: string[]; _refreshLine?: () => void };
  let term: string | null = null;
  let from = 0;
  const onKey = (_text: string, key: { ctrl?: boolean; name?: string } | undefined) => {
    if (!(key?.ctrl && key.name === "r")) {
      term = null;
      return;
    }
    if (term === null) {
      term = line.line;
      from = 0;
    }
    const history = line.history ?? [];
    for (let i = from; i < history.length; i++) {
      if (!history[i]!.includes(term)) continue;
      from = i + 1;
      line.line = history[i]!;
      line.cursor = line.line.length;
      line._refreshLine?.();
      return;
    }
  };
  // Before readline's own listener, which ignores Ctrl-R.
  input.prependListener("keypress", onKey);
  return () => input.removeListener("keypress", onKey);
}

/** Lines from readline, one at a time; null once it is closed. */
class _LineQueue {
  private readonly pending: string[] = [];
  private waiter: ((line: string | null) => void) | undefined;
  private closed = false;

  constructor(rl: Interface) {
    rl.on("line", (line) => {
      if (this.waiter) {
        const waiter = this.waiter;
        this.waiter = undefined;
        waiter(line);
      } else {
        this.pending.push(line);
      }
    });
    rl.on("close", () => {
      this.closed = true;
      this.waiter?.(null);
      this.waiter = undefined;
    });
  }

  next(): Promise<string | null> {
    const line = this.pending.shift();
    if (line !== undefined) return Promise.resolve(line);
    if (this.closed) return Promise.resolve(null);
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }
}

/** History lines, newest first as readline wants them; trims an overgrown file. */
function _loadHistory(file: string | undefined): string[] {
  if (!file) return [];
  let lines: string[];
  try {
    lines = readFileSync(file, "utf8").split("\n").filter((line) => line.trim() !== "");
  } catch {
    return [];
  }
  const kept = lines.slice(-_HISTORY_LINES_MAX);
  if (lines.length > 2 * _HISTORY_LINES_MAX) {
    try {
      writeFileSync(file, `${kept.join("\n")}\n`, { mode: 0o600 });
    } catch {
      // A read-only home keeps its history as it is.
    }
  }
  return kept.reverse();
}

let _lastHistoryLine: string | undefined;

function _appendHistory(file: string | undefined, line: string): void {
  if (!file || line.trim() === "" || line === _lastHistoryLine) return;
  _lastHistoryLine = line;
  try {
    appendFileSync(file, `${line}\n`, { mode: 0o600 });
  } catch {
    // History is a convenience: a read-only home must not break the shell.
  }
}
