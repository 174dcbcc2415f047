/** The shell's `read` command. */
import { parseByteCount, parseValueType, READ_BYTES_MAX, readValue } from "../values.ts";
import { notHeld } from "./holds.ts";
import { type CommandSpec, connectedStore, TYPES_LINE, takeHold } from "./spec.ts";

export const read: CommandSpec = {
  usage: "read NAME TYPE [OFFSET] [LENGTH]",
  summary: "Take a read hold, print the value at OFFSET (default 0), release",
  details: [
    TYPES_LINE,
    `LENGTH (str and hex only) reads that many bytes; without it str stops at the first NUL, hex reads to the end (at most ${READ_BYTES_MAX} bytes).`,
    "Waits while a writer holds NAME; Ctrl-C cancels the wait.",
  ],
  examples: ["read compteur i32", "read msg str", "read buffer hex 16 4"],
  args: [2, 4],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name, typeText, offsetText, lengthText], signal) {
    const type = parseValueType(typeText!);
    const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
    const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
    notHeld(ctx, name!, "get");
    const store = await connectedStore(ctx, signal);
    const view = await takeHold(ctx, store, name!, "read", signal);
    let result: ReturnType<typeof readValue>;
    try {
      result = readValue(view, name!, type, offset, length);
    } finally {
      await store.releaseRead(view);
    }
    return { text: result.text, value: result.json };
  },
};
