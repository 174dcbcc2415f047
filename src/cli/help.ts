/**
 * `--help` text. citty's renderUsage right-aligns flags and measures colour
 * codes as text, so the CLI renders its own, plainer help from the same
 * citty definitions.
 */
import type { ArgsDef, CommandDef } from "citty";
import type { Style } from "./output.ts";

export function renderCommandHelp(name: string, command: CommandDef<any>, examples: string[], style: Style): string {
  const meta = (command.meta ?? {}) as { description?: string };
  const argsDef = (typeof command.args === "object" ? command.args : {}) as ArgsDef;
  const entries = Object.entries(argsDef).filter(([, def]) => def.type !== "positional");
  const required = entries.filter(([, def]) => def.required && def.default === undefined);
  const flagColumn = ([flag, def]: [string, ArgsDef[string]]) => {
    if (def.type === "boolean") return `--${flag}`;
    const hint = "options" in def && def.options ? def.options.join("|") : (def.valueHint ?? flag);
    return `--${flag} <${hint}>`;
  };
  const rows = entries.map((entry) => {
    const [, def] = entry;
    const notes = [
      def.required && def.default === undefined ? "required" : "",
      def.default !== undefined && def.type !== "boolean" ? `default ${def.default}` : "",
    ].filter(Boolean);
    return [flagColumn(entry), `${def.description ?? ""}${notes.length > 0 ? ` (${notes.join(", ")})` : ""}`];
  });
  rows.push(["-h, --help", "Show this help"]);
  const width = Math.max(...rows.map(([flag]) => flag!.length));
  const positionals = Object.entries(argsDef).flatMap(([arg, def]) => (def.type === "positional" ? [`<${def.valueHint ?? arg}>`] : []));
  const usage = [`pstore ${name}`, ...positionals, ...required.map(flagColumn), entries.length > required.length ? "[flags]" : ""]
    .filter(Boolean)
    .join(" ");
  return [
    `${style.bold(`pstore ${name}`)} — ${meta.description ?? ""}`,
    "",
    style.bold("USAGE"),
    `  ${usage}`,
    "",
    style.bold("FLAGS"),
    ...rows.map(([flag, text]) => `  ${style.cyan(flag!.padEnd(width))}  ${text}`),
    ...(examples.length > 0 ? ["", style.bold("EXAMPLES"), ...examples.map((line) => (line ? `  ${line}` : ""))] : []),
  ].join("\n");
}
