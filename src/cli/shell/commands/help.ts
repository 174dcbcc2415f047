/** The shell's `help` command. */
import { PStoreError } from "../../../errors.ts";
import { ALIASES, SHELL_COMMANDS } from "./index.ts";
import { type CommandSpec, type ShellContext, TYPES_LINE } from "./spec.ts";

export const help: CommandSpec = {
  usage: "help [COMMAND]",
  summary: "List the commands, or explain one",
  details: [],
  examples: ["help", "help write"],
  args: [0, 1],
  cancellable: true,
  async run(ctx, [command]) {
    return { text: command === undefined ? _helpAll(ctx) : _helpOne(command, ctx) };
  },
};

/** `help` on a terminal shows the commands in these groups; in a script, on one line in this order. */
const _HELP_GROUPS: [title: string, commands: string[]][] = [
  ["Data (each command takes and releases its own hold)", ["create", "write", "read", "dump", "list", "stat", "delete"]],
  ["Holds kept across commands (the prompt shows them)", ["acquire-read", "acquire-write", "get", "set", "release"]],
  ["The cluster", ["status", "checkpoint", "bench"]],
  ["Faults, in a shell started with --local", ["kill", "restart"]],
  ["The shell", ["help", "clear", "version", "quit"]],
];

function _helpAll(ctx: ShellContext): string {
  const names = _HELP_GROUPS.flatMap(([, commands]) => commands);
  if (!ctx.multiline) return `commands: ${names.join(" ")} (help COMMAND explains one)`;
  const width = Math.max(...names.map((name) => SHELL_COMMANDS[name]!.usage.length));
  const row = (name: string) => `  ${ctx.style.cyan(SHELL_COMMANDS[name]!.usage.padEnd(width))}  ${SHELL_COMMANDS[name]!.summary}`;
  return [
    ..._HELP_GROUPS.flatMap(([title, commands], i) => [...(i > 0 ? [""] : []), ctx.style.bold(title), ...commands.map(row)]),
    "",
    TYPES_LINE,
    'Words with spaces go in quotes: write msg str "hello world". Aliases: ls list, rm delete, exit quit, ? help, -v version.',
    "help COMMAND (or COMMAND --help) explains one, with examples. Tab completes commands and data names;",
    "Ctrl-R finds the last command containing what is typed; Ctrl-C cancels a wait; Ctrl-D leaves.",
  ].join("\n");
}

function _helpOne(command: string, ctx: ShellContext): string {
  const spec = SHELL_COMMANDS[ALIASES[command] ?? command];
  if (!spec) throw new PStoreError("EINVAL", `no command "${command}"; help lists them`);
  if (!ctx.multiline) return `${spec.usage}: ${spec.summary}${spec.details.length > 0 ? `. ${spec.details.join(" ")}` : ""}`;
  return [
    ctx.style.cyan(spec.usage),
    `  ${spec.summary}`,
    ...spec.details.map((line) => `  ${line}`),
    "",
    "  Examples:",
    ...spec.examples.map((line) => `    ${line}`),
  ].join("\n");
}
