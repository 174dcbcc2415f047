/**
 * TLS for client and server links (Bun's TLS). Servers present a certificate
 * (--tls-cert, --tls-key); whoever connects checks it against a CA
 * (--tls-ca / PSTORE_TLS_CA), the certificate naming the address dialled.
 */
import { readFileSync } from "node:fs";

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

/** Options for Bun.listen's `tls`, or undefined without a certificate. */
export function serverTls(files: TlsFiles | undefined): { cert: string; key: string } | undefined {
  if (!files?.cert || !files.key) return undefined;
  return { cert: readPem(files.cert, "--tls-cert"), key: readPem(files.key, "--tls-key") };
}

/** Options for Bun.connect's `tls`, or undefined when no CA is given (plain TCP). */
export function clientTls(ca: string | undefined): { ca: string; rejectUnauthorized: true } | undefined {
  if (!ca) return undefined;
  return { ca: readPem(ca, "--tls-ca"), rejectUnauthorized: true };
}

/** A PEM given inline, or the path of a file holding one. */
function readPem(value: string, flag: string): string {
  if (value.includes("-----BEGIN")) return value;
  try {
    return readFileSync(value, "utf8");
  } catch (error) {
    throw new Error(`${flag}: cannot read ${value}: ${(error as Error).message}`);
  }
}

/** Bun's TLS verification errors carry an OpenSSL code (e.g. DEPTH_ZERO_SELF_SIGNED_CERT). */
export function tlsErrorText(error: Error | null | undefined): string {
  if (!error) return "unknown error";
  return (error as Error & { code?: string }).code ?? error.message;
}
