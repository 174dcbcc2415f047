/**
 * The connecting side of the handshake (a client, or a server dialing a
 * peer): hello, then — when the server has a secret — check the server's
 * proof and send ours, then the welcome. Pure: it says what to send.
 */
import { type Message, type Welcome, helloMessage } from "../wire";
import { clientProof, makeNonce, sameProof, serverProof } from "./auth";

export type GreetStep =
  | { kind: "send"; message: Message }
  | { kind: "welcome"; welcome: Welcome }
  | { kind: "refused"; code: string; message: string };

export class Greeter {
  private challenged = false;

  constructor(
    private readonly role: "client" | "server",
    private readonly senderId: number,
    private readonly secret: string | undefined,
    /** Fresh per connection; a simulated host draws it from its seed. */
    private readonly nonce: Uint8Array = makeNonce(),
  ) {}

  hello(): Message {
    return helloMessage(this.role, this.senderId, this.nonce);
  }

  step(message: Message): GreetStep {
    switch (message.type) {
      case "challenge": {
        if (this.secret === undefined) {
          return { kind: "refused", code: "EAUTH", message: "the server asks for a secret: set --secret or PSTORE_SECRET" };
        }
        if (!sameProof(message.body.proof, serverProof(this.secret, this.nonce, message.body.nonce))) {
          return { kind: "refused", code: "EAUTH", message: "the server does not know our secret (a different --secret on each side?)" };
        }
        this.challenged = true;
        const proof = clientProof(this.secret, this.role, message.body.nonce, this.nonce);
        return { kind: "send", message: { type: "auth", body: { proof } } };
      }
      case "welcome":
        if (this.secret !== undefined && !this.challenged) {
          return { kind: "refused", code: "EAUTH", message: "the server has no secret but we have one: refusing to trust it (unset PSTORE_SECRET to connect without)" };
        }
        return { kind: "welcome", welcome: message.body };
      case "error":
        return { kind: "refused", code: message.body.code, message: message.body.message };
      default:
        return { kind: "refused", code: "EPROTO", message: `the server answered hello with ${message.type}` };
    }
  }
}
