/**
 * Output conventions shared by the commands: colour only on a terminal and
 * never when NO_COLOR is set (https://no-color.org), simple aligned tables.
 */
import { accessSync, constants } from "node:fs";
import { UsageError } from "./flags.ts";

/** True when `stream` is a terminal and NO_COLOR is unset or empty. */
export function useColor(stream: { isTTY?: boolean }): boolean {
  const noColor = process.env.NO_COLOR;
  if (noColor !== undefined && noColor !== "") return false;
  if (process.env.TERM === "dumb") return false;
  return stream.isTTY === true;
}

export interface Style {
  enabled: boolean;
  bold(text: string): string;
  dim(text: string): string;
  red(text: string): string;
  green(text: string): string;
  yellow(text: string): string;
  cyan(text: string): string;
}

export function makeStyle(enabled: boolean): Style {
  const sgr = (open: number, close: number) => (text: string) =>
    enabled ? `\u001B[${open}m${text}\u001B[${close}m` : text;
  return {
    enabled,
    bold: sgr(1, 22),
    dim: sgr(2, 22),
    red: sgr(31, 39),
    green: sgr(32, 39),
    yellow: sgr(33, 39),
    cyan: sgr(36, 39),
  };
}

// biome-ignore lint: the ESC character is the point.
const _ANSI = /\u001B\[[0-9;]*[A-Za-z]/g;

export function stripAnsi(text: string): string {
  return text.replace(_ANSI, "");
}

/** Left-aligned columns separated by two spaces; the header row is styled bold. */
export function formatTable(header: string[], rows: string[][], style: Style): string {
  const widths = header.map((cell, column) =>
    Math.max(cell.length, ...rows.map((row) => stripAnsi(row[column] ?? "").length)),
  );
  const line = (cells: string[]) =>
    cells
      .map((cell, column) =>
        column === cells.length - 1 ? cell : cell + " ".repeat(widths[column]! - stripAnsi(cell).length),
      )
      .join("  ");
  return [style.bold(line(header)), ...rows.map(line)].join("\n");
}

/** A flag naming a file (or holding a PEM inline) must be readable now, not after a connect timeout. */
export function checkReadable(value: string | undefined, flag: string): void {
  if (value === undefined || value.includes("-----BEGIN")) return;
  try {
    accessSync(value, constants.R_OK);
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${value} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`);
  }
}
