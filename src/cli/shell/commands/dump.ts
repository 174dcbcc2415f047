/** The shell's `dump` command. */
import { parseByteCount, READ_BYTES_MAX, readValue } from "../values.ts";
import { type CommandSpec, connectedStore, type ShellOutput, takeHold } from "./spec.ts";

export const dump: CommandSpec = {
  usage: "dump NAME [OFFSET] [LENGTH]",
  summary: "Show a datum's bytes in hex (on a terminal: 16 a line with their offsets and text)",
  details: [`At most ${READ_BYTES_MAX} bytes; uses the shell's hold if it has one, else takes a read hold.`],
  examples: ["dump compteur", "dump buffer 4096 64"],
  args: [1, 3],
  cancellable: true,
  nameArgs: [0],
  async run(ctx, [name, offsetText, lengthText], signal) {
    const offset = offsetText === undefined ? 0 : parseByteCount(offsetText, "OFFSET");
    const length = lengthText === undefined ? undefined : parseByteCount(lengthText, "LENGTH");
    const dump = (view: Uint8Array): ShellOutput => {
      const { text, json } = readValue(view, name!, "hex", offset, length);
      const bytes = view.subarray(offset, offset + String(json).length / 2);
      return { text: ctx.multiline ? _hexDump(bytes, offset) : text, value: json };
    };
    const hold = ctx.holds.get(name!);
    if (hold) return dump(hold.view);
    const store = await connectedStore(ctx, signal);
    const view = await takeHold(ctx, store, name!, "read", signal);
    try {
      return dump(view);
    } finally {
      await store.releaseRead(view);
    }
  },
};

/** `00000010  de ad be ef 00 …  |....|` lines, 16 bytes each. */
function _hexDump(bytes: Uint8Array, offset: number): string {
  if (bytes.length === 0) return "(0 bytes)";
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, at + 16);
    const hex = [...row].map((byte) => byte.toString(16).padStart(2, "0")).join(" ");
    const text = [...row].map((byte) => (byte >= 0x20 && byte < 0x7f ? String.fromCharCode(byte) : ".")).join("");
    lines.push(`${(offset + at).toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  |${text}|`);
  }
  return lines.join("\n");
}
