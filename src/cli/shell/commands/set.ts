/** The shell's `set` command. */
import { PStoreError } from "../../../errors.ts";
import { quoteWord } from "../../format.ts";
import { encodeValue, parseByteCount, parseValueType, writeValue } from "../values.ts";
import { held } from "./holds.ts";
import { type CommandSpec, TYPES_LINE } from "./spec.ts";

export const set: CommandSpec = {
  usage: "set NAME TYPE VALUE [OFFSET]",
  summary: "Write a value into a datum this shell holds for writing (acquire-write first)",
  details: [TYPES_LINE, "Other clients see it once release ships it."],
  examples: ["set compteur i32 1035", 'set msg str "hello"'],
  args: [3, 4],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name, typeText, valueText, offsetText]) {
    const type = parseValueType(typeText!);
    const bytes = encodeValue(type, valueText!);
    const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
    const hold = held(ctx, name!, "set");
    if (hold.mode !== "write") {
      throw new PStoreError("EINVAL", `this shell holds ${quoteWord(name!)} for reading only; release it and acquire-write`);
    }
    writeValue(hold.view, name!, type, bytes, offset);
    return { text: "ok" };
  },
};
