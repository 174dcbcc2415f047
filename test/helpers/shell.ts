/**
 * The shell's command module over an in-memory Store, for the shell's tests.
 */
import { runShellLine, type ShellContext } from "../../src/cli/shell/run.ts";
import { makeStyle } from "../../src/cli/output.ts";
import { FakeStore } from "../fixtures/cli_fake_store.ts";

export function context(store = new FakeStore(), multiline = false): ShellContext {
  return { store: async () => store, multiline, style: makeStyle(false), names: new Set(), holds: new Map(), lostHolds: new Map() };
}

/** Runs lines in order and returns the printed text of each result. */
export async function run(ctx: ShellContext, ...lines: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const line of lines) {
    const result = await runShellLine(ctx, line);
    if (result) out.push(result.text);
  }
  return out;
}
