/**
 * Logging for every command: consola with one plain reporter that writes one
 * line per message to stderr (stdout is for results and the `READY` line).
 * The fancy reporter is not used: it costs ~50 ms at first log (BUN.md).
 *
 *   --quiet    warnings and errors only
 *   (default)  + info
 *   --verbose  + debug
 *
 * Components tag their logger: `logger.withTag("server:1")`.
 */
import { createConsola, LogLevels, type ConsolaInstance, type ConsolaReporter, type LogObject } from "consola/core";
import { formatWithOptions } from "node:util";
import { useColor, type Style, makeStyle } from "./output.ts";

export const logArgs = {
  verbose: { type: "boolean", description: "Log debug messages too" },
  quiet: { type: "boolean", description: "Log only warnings and errors" },
} as const;

export function logLevel(flags: { verbose?: boolean; quiet?: boolean }): number {
  if (flags.verbose) return LogLevels.debug;
  if (flags.quiet) return LogLevels.warn;
  return LogLevels.info;
}

export interface LoggerOptions {
  verbose?: boolean;
  quiet?: boolean;
  /** Where lines go; default process.stderr. */
  write?: (line: string) => void;
  /** Colour the level word; default: only when stderr is a terminal and NO_COLOR is unset. */
  color?: boolean;
  /** Prefix lines with the time (servers do, so their logs can be correlated). */
  timestamps?: boolean;
}

export function createLogger(options: LoggerOptions = {}): ConsolaInstance {
  const style = makeStyle(options.color ?? useColor(process.stderr));
  const write = options.write ?? ((line: string) => process.stderr.write(line));
  return createConsola({
    level: logLevel(options),
    reporters: [plainReporter(write, style, options.timestamps ?? false)],
    // Repeated identical lines are worth seeing in a server log (a flapping peer).
    throttle: 0,
  });
}

const _LEVEL_WORDS: Record<string, string> = {
  fatal: "FATAL",
  error: "ERROR",
  warn: "WARN",
  log: "",
  info: "INFO",
  success: "OK",
  fail: "FAIL",
  ready: "READY",
  start: "START",
  box: "",
  debug: "DEBUG",
  trace: "TRACE",
  verbose: "VERBOSE",
};

/** `2026-01-02T03:04:05.678Z WARN [server:2] peer 127.0.0.1:7403 suspected` */
export function plainReporter(write: (line: string) => void, style: Style, timestamps: boolean): ConsolaReporter {
  return {
    log(logObj: LogObject) {
      const parts: string[] = [];
      if (timestamps) parts.push(style.dim(logObj.date.toISOString()));
      const word = _LEVEL_WORDS[logObj.type] ?? logObj.type.toUpperCase();
      if (word) parts.push(_colorLevel(word, logObj.level, style));
      if (logObj.tag) parts.push(style.dim(`[${logObj.tag}]`));
      parts.push(formatWithOptions({ colors: false, breakLength: Infinity }, ...logObj.args));
      write(`${parts.join(" ")}\n`);
    },
  };
}

function _colorLevel(word: string, level: number, style: Style): string {
  if (level <= LogLevels.error) return style.red(word);
  if (level === LogLevels.warn) return style.yellow(word);
  if (level >= LogLevels.debug) return style.dim(word);
  return style.cyan(word);
}
