/**
 * Splits a shell line into words. Words are separated by spaces; a word in
 * double quotes may hold spaces and JSON escapes (`"a \"b\"\n"`), a word in
 * single quotes is taken literally. `#` at the start of a word starts a
 * comment. This is the inverse of `quoteWord` in ../format.ts.
 */
import { PStoreError } from "../../errors.ts";

const _ESCAPES: Record<string, string> = { '"': '"', "\\": "\\", "/": "/", b: "\b", f: "\f", n: "\n", r: "\r", t: "\t", "0": "\0" };

export function tokenize(line: string): string[] {
  const words: string[] = [];
  let i = 0;
  while (i < line.length) {
    const c = line[i]!;
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if (c === "#") break;
    let word = "";
    while (i < line.length && !/\s/.test(line[i]!)) {
      const ch = line[i]!;
      if (ch === "'") {
        const end = line.indexOf("'", i + 1);
        if (end === -1) throw new PStoreError("EINVAL", "unterminated ' quote");
        word += line.slice(i + 1, end);
        i = end + 1;
      } else if (ch === '"') {
        const [text, next] = _doubleQuoted(line, i + 1);
        word += text;
        i = next;
      } else {
        word += ch;
        i++;
      }
    }
    words.push(word);
  }
  return words;
}

function _doubleQuoted(line: string, start: number): [string, number] {
  let text = "";
  let i = start;
  while (i < line.length) {
    const ch = line[i]!;
    if (ch === '"') return [text, i + 1];
    if (ch !== "\\") {
      text += ch;
      i++;
      continue;
    }
    const escape = line[i + 1];
    if (escape === "u" && /^[0-9a-fA-F]{4}$/.test(line.slice(i + 2, i + 6))) {
      text += String.fromCharCode(Number.parseInt(line.slice(i + 2, i + 6), 16));
      i += 6;
      continue;
    }
    const replacement = escape === undefined ? undefined : _ESCAPES[escape];
    if (replacement === undefined) throw new PStoreError("EINVAL", `unknown escape \\${escape ?? ""} in a quoted word`);
    text += replacement;
    i += 2;
  }
  throw new PStoreError("EINVAL", 'unterminated " quote');
}
