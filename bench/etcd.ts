/**
 * The few etcd v3 calls bench/compare.ts needs, over etcd's HTTP/JSON gRPC
 * gateway with fetch: put, range, lease grant, lock, unlock. Keys and values
 * travel base64-encoded in JSON, as the gateway wants (that encoding is part
 * of what an HTTP client of etcd pays; a Go client over gRPC would not).
 */

export class EtcdClient {
  constructor(readonly endpoint: string) {}

  async put(key: string, value: Uint8Array): Promise<void> {
    await this.call("/v3/kv/put", { key: _b64(key), value: Buffer.from(value).toString("base64") });
  }

  /** The value of `key`, or null when it does not exist. */
  async range(key: string): Promise<Uint8Array | null> {
    const reply = (await this.call("/v3/kv/range", { key: _b64(key) })) as { kvs?: { value?: string }[] };
    const value = reply.kvs?.[0]?.value;
    return value === undefined ? (reply.kvs ? new Uint8Array(0) : null) : new Uint8Array(Buffer.from(value, "base64"));
  }

  /** A lease of `ttlSeconds`; its id as the gateway writes it (an int64 in a string). */
  async leaseGrant(ttlSeconds: number): Promise<string> {
    const reply = (await this.call("/v3/lease/grant", { TTL: ttlSeconds })) as { ID: string };
    return reply.ID;
  }

  async leaseRevoke(id: string): Promise<void> {
    await this.call("/v3/lease/revoke", { ID: id });
  }

  /** Waits for the lock `name` (etcd's concurrency.Lock, server side); resolves with the key that owns it. */
  async lock(name: string, lease: string): Promise<string> {
    const reply = (await this.call("/v3/lock/lock", { name: _b64(name), lease })) as { key: string };
    return reply.key;
  }

  async unlock(ownerKey: string): Promise<void> {
    await this.call("/v3/lock/unlock", { key: ownerKey });
  }

  /** The member's status: who leads, by member id. */
  async status(): Promise<{ leader: string; memberId: string }> {
    const reply = (await this.call("/v3/maintenance/status", {})) as { leader: string; header: { member_id: string } };
    return { leader: reply.leader, memberId: reply.header.member_id };
  }

  private async call(path: string, body: unknown): Promise<unknown> {
    const response = await fetch(`${this.endpoint}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`etcd ${path}: HTTP ${response.status}: ${text.slice(0, 200)}`);
    const reply = JSON.parse(text) as { error?: string };
    if (reply.error) throw new Error(`etcd ${path}: ${reply.error}`);
    return reply;
  }
}

function _b64(text: string): string {
  return Buffer.from(text, "utf8").toString("base64");
}
