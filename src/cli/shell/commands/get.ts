/** The shell's `get` command. */
import { parseByteCount, parseValueType, readValue } from "../values.ts";
import { held } from "./holds.ts";
import { type CommandSpec, TYPES_LINE } from "./spec.ts";

export const get: CommandSpec = {
  usage: "get NAME TYPE [OFFSET] [LENGTH]",
  summary: "Print a value of a datum this shell holds (acquire-read or acquire-write first)",
  details: [TYPES_LINE],
  examples: ["get compteur i32", "get msg str 0 5"],
  args: [2, 4],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name, typeText, offsetText, lengthText]) {
    const type = parseValueType(typeText!);
    const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
    const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
    const hold = held(ctx, name!, "get");
    const result = readValue(hold.view, name!, type, offset, length);
    return { text: result.text, value: result.json };
  },
};
