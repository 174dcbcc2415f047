/**
 * TLS for client and server links (Bun's TLS). Servers present a certificate
 * (--tls-cert, --tls-key); whoever connects checks it against a CA
 * (--tls-ca / PSTORE_TLS_CA), the certificate naming the address dialled.
 */
import { type KeyObject, X509Certificate, createPrivateKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";

export interface TlsFiles {
  cert?: string;
  key?: string;
  ca?: string;
}

/**
 * Options for Bun.listen's `tls`, or undefined without a certificate. `dialledHost`: the host
 * clients and peers dial this server at (its --peers entry), which the certificate must name.
 */
export function serverTls(files: TlsFiles | undefined, dialledHost: string): { cert: string; key: string } | undefined {
  if (!files?.cert || !files.key) return undefined;
  const tls = { cert: readPem(files.cert, "--tls-cert"), key: readPem(files.key, "--tls-key") };
  checkCertificate(tls, { cert: files.cert, key: files.key }, dialledHost);
  return tls;
}

/**
 * What every client and peer would refuse, said at start in words (OpenSSL's were
 * KEY_VALUES_MISMATCH, NO_START_LINE; a certificate without the server's address started
 * and was refused by everyone, ERR_TLS_CERT_ALTNAME_INVALID).
 */
function checkCertificate(pem: { cert: string; key: string }, given: { cert: string; key: string }, host: string): void {
  const where = (value: string) => (value.includes("-----BEGIN") ? "the PEM given" : value);
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(pem.cert);
  } catch {
    throw new Error(`--tls-cert: ${where(given.cert)} holds no PEM certificate`);
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(pem.key);
  } catch {
    throw new Error(`--tls-key: ${where(given.key)} holds no PEM private key (unencrypted)`);
  }
  if (!certificate.checkPrivateKey(key)) throw new Error(`--tls-key: ${where(given.key)} is not the key of the certificate in ${where(given.cert)}`);
  const now = Date.now();
  if (Date.parse(certificate.validTo) < now) throw new Error(`--tls-cert: the certificate expired on ${certificate.validTo}`);
  if (Date.parse(certificate.validFrom) > now) throw new Error(`--tls-cert: the certificate is not valid before ${certificate.validFrom}`);
  // A wildcard listen address is not what anyone dials: nothing to compare.
  if (host === "0.0.0.0" || host === "::") return;
  const named = isIP(host) ? certificate.checkIP(host) : certificate.checkHost(host);
  if (named === undefined) {
    const names = certificate.subjectAltName ?? certificate.subject.replace(/\n/g, ", ");
    throw new Error(`--tls-cert: the certificate names ${names}, not ${host}, the address clients and peers dial this server at: they would refuse it`);
  }
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

const NOT_SIGNED_BY_OUR_CA = "it is not signed by the CA given (--tls-ca)";

/** What the common verification failures mean for someone holding --tls-ca. */
const TLS_REFUSALS: Record<string, string> = {
  ERR_TLS_CERT_ALTNAME_INVALID: "it does not name the address dialled (the servers' --peers addresses must be in its names)",
  DEPTH_ZERO_SELF_SIGNED_CERT: NOT_SIGNED_BY_OUR_CA,
  SELF_SIGNED_CERT_IN_CHAIN: NOT_SIGNED_BY_OUR_CA,
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: NOT_SIGNED_BY_OUR_CA,
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: NOT_SIGNED_BY_OUR_CA,
  CERT_HAS_EXPIRED: "it has expired",
  CERT_NOT_YET_VALID: "it is not valid yet",
};

/** Bun's TLS verification errors carry an OpenSSL code (e.g. DEPTH_ZERO_SELF_SIGNED_CERT): said in words, with the code. */
export function tlsErrorText(error: Error | null | undefined): string {
  if (!error) return "unknown error";
  const code = (error as Error & { code?: string }).code;
  if (code === undefined) return error.message;
  const meaning = TLS_REFUSALS[code];
  return meaning === undefined ? code : `${meaning}: ${code}`;
}
