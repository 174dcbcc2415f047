/** The shell's `write` command. */
import { encodeValue, parseByteCount, parseValueType, writeValue } from "../values.ts";
import { notHeld } from "./holds.ts";
import { type CommandSpec, connectedStore, TYPES_LINE, takeHold } from "./spec.ts";

export const write: CommandSpec = {
  usage: "write NAME TYPE VALUE [OFFSET]",
  summary: "Take the write hold, write VALUE at OFFSET (default 0), release",
  details: [
    TYPES_LINE,
    "Waits while anyone else holds NAME; Ctrl-C cancels the wait and leaves no hold.",
    "A value out of its type's range, or that does not fit in the datum, is an error: nothing is written.",
  ],
  examples: ["write compteur i32 1035", 'write msg str "hello world"', "write buffer hex 0xdeadbeef 16"],
  args: [3, 4],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name, typeText, valueText, offsetText], signal) {
    const type = parseValueType(typeText!);
    const bytes = encodeValue(type, valueText!);
    const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
    notHeld(ctx, name!, "set");
    const store = await connectedStore(ctx, signal);
    const view = await takeHold(ctx, store, name!, "write", signal);
    try {
      writeValue(view, name!, type, bytes, offset);
    } finally {
      await store.releaseReadWrite(view);
    }
    return { text: "ok" };
  },
};
