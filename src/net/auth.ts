/**
 * Shared-secret authentication (HMAC-SHA256 challenge-response, both ways).
 * The secret never crosses the wire: each side proves it knows it by an HMAC
 * over both sides' fresh nonces, with a label saying who proves (a proof
 * cannot be replayed in the other direction nor on another connection).
 */
import { timingSafeEqual } from "node:crypto";
import { NONCE_BYTES } from "../wire";

export function makeNonce(): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(NONCE_BYTES));
}

/** The server's proof: over the client's nonce, then its own. */
export function serverProof(secret: string, clientNonce: Uint8Array, serverNonce: Uint8Array): Uint8Array {
  return hmac(secret, "pstore server proof", clientNonce, serverNonce);
}

/** The connecting side's proof (a client or a peer server): over the server's nonce, then its own. */
export function clientProof(secret: string, role: string, serverNonce: Uint8Array, clientNonce: Uint8Array): Uint8Array {
  return hmac(secret, `pstore ${role} proof`, serverNonce, clientNonce);
}

export function sameProof(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hmac(secret: string, label: string, first: Uint8Array, second: Uint8Array): Uint8Array {
  const hasher = new Bun.CryptoHasher("sha256", secret);
  hasher.update(label);
  hasher.update(first);
  hasher.update(second);
  return new Uint8Array(hasher.digest());
}
