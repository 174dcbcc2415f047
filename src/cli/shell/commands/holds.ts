/** Holds a shell keeps across commands (acquire-read, acquire-write), and the checks around them. */
import { PStoreError } from "../../../errors.ts";
import { quoteWord } from "../../format.ts";
import { connectedStore, type ShellContext, type ShellHold, type ShellOutput, takeHold } from "./spec.ts";

export async function acquire(ctx: ShellContext, name: string, mode: "read" | "write", signal: AbortSignal | undefined): Promise<ShellOutput> {
  const held = ctx.holds.get(name);
  if (held) throw new PStoreError("EDEADLK", `this shell already holds ${quoteWord(name)} (${held.mode}); release it first`);
  const store = await connectedStore(ctx, signal);
  const view = await takeHold(ctx, store, name, mode, signal);
  ctx.holds.set(name, { mode, view, sessionsLost: store.stats().sessionsLost });
  ctx.lostHolds.delete(name);
  return { text: `ok, ${mode} hold on ${quoteWord(name)} (${view.length} bytes)` };
}

export function held(ctx: ShellContext, name: string, command: string): ShellHold {
  const hold = ctx.holds.get(name);
  const lost = ctx.lostHolds.get(name);
  if (!hold && lost) {
    throw new PStoreError("ESTALE", `the ${lost} hold on ${quoteWord(name)} was lost with the session (the cluster was out of reach, or the session expired); acquire-${lost} it again`);
  }
  const how = command === "set" ? "acquire-write" : "acquire-read or acquire-write";
  if (!hold) throw new PStoreError("EINVAL", `${command} needs a ${command === "set" ? "write " : ""}hold on ${quoteWord(name)}: ${how} it first`);
  return hold;
}

export function notHeld(ctx: ShellContext, name: string, instead: string): void {
  const hold = ctx.holds.get(name);
  if (hold) throw new PStoreError("EDEADLK", `this shell holds ${quoteWord(name)} (${hold.mode}): use ${instead}, or release it first`);
}

/**
 * Forgets the kept holds that the store's session took with it (their pages
 * are closed: touching them would crash the shell). Returns what was lost.
 */
export async function forgetLostHolds(ctx: ShellContext): Promise<string[]> {
  if (ctx.holds.size === 0) return [];
  const { sessionsLost } = (await ctx.store()).stats();
  const lost: string[] = [];
  for (const [name, hold] of ctx.holds) {
    if (hold.sessionsLost === sessionsLost) continue;
    ctx.holds.delete(name);
    ctx.lostHolds.set(name, hold.mode);
    lost.push(`${hold.mode} hold on ${quoteWord(name)}`);
  }
  return lost;
}

/**
 * Before quitting: releases kept read holds, and forgets kept write holds —
 * the store's close() drops those without shipping their changes (there is no
 * "release and discard"). Returns what was dropped, for a notice.
 */
export async function dropHolds(ctx: ShellContext): Promise<string[]> {
  const dropped: string[] = [];
  for (const [name, hold] of ctx.holds) {
    if (hold.mode === "read") {
      try {
        await (await ctx.store()).releaseRead(hold.view);
      } catch {
        // close() releases it anyway.
      }
    }
    dropped.push(`${hold.mode} hold on ${quoteWord(name)}${hold.mode === "write" ? " (changes discarded)" : ""}`);
  }
  ctx.holds.clear();
  return dropped;
}

/** The prompt: `pstore> `, or `pstore [compteur:w msg:r]> ` with holds kept. */
export function promptFor(ctx: ShellContext): string {
  if (ctx.holds.size === 0) return "pstore> ";
  const holds = [...ctx.holds].map(([name, hold]) => `${quoteWord(name)}:${hold.mode === "write" ? "w" : "r"}`);
  return `pstore [${holds.join(" ")}]> `;
}
