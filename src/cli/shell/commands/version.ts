/** The shell's `version` command. */
import packageJson from "../../../../package.json" with { type: "json" };
import type { CommandSpec } from "./spec.ts";

export const version: CommandSpec = {
  usage: "version",
  summary: "Print pstore's version (also: -v)",
  details: [],
  examples: ["version"],
  args: [0, 0],
  cancellable: true,
  async run() {
    return { text: `pstore ${packageJson.version}`, value: packageJson.version };
  },
};
