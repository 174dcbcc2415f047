/**
 * TLS on every link: a 3-server cluster with certificates (made here with
 * openssl) serves clients that trust its CA, and refuses the others.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { LocalCluster } from "../src/cli/cluster";
import { PStoreError, connect } from "../src/index";
import { finished, pstoreCommand, removeDir, spawnChild, tempDir } from "./helpers/processes";

let dir = "";
let cluster: LocalCluster;

function openssl(args: string[]): void {
  const result = Bun.spawnSync(["openssl", ...args], { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) throw new Error(`openssl ${args.join(" ")}: ${result.stderr.toString()}`);
}

/** A CA, and a server certificate it signed for 127.0.0.1. */
function makeCertificates(at: string, name: string): { ca: string; cert: string; key: string } {
  const [caKey, ca, key, csr, cert] = ["ca.key", "ca.pem", "server.key", "server.csr", "server.pem"].map((f) => join(at, `${name}-${f}`));
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", caKey!, "-out", ca!, "-days", "2", "-subj", `/CN=${name} test CA`]);
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key!, "-out", csr!, "-subj", "/CN=127.0.0.1"]);
  const ext = join(at, `${name}-ext.cnf`);
  Bun.write(ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  openssl(["x509", "-req", "-in", csr!, "-CA", ca!, "-CAkey", caKey!, "-CAcreateserial", "-out", cert!, "-days", "2", "-extfile", ext]);
  return { ca: ca!, cert: cert!, key: key! };
}

beforeAll(async () => {
  dir = tempDir();
  const files = makeCertificates(dir, "cluster");
  cluster = new LocalCluster({
    count: 3,
    basePort: 0,
    dataDir: join(dir, "data"),
    command: pstoreCommand(),
    fsync: "off",
    segmentSize: 4 << 20,
    serveArgs: ["--tls-cert", files.cert, "--tls-key", files.key, "--tls-ca", files.ca],
  });
  await cluster.start();
}, 60_000);

afterAll(async () => {
  await cluster?.stop();
  removeDir(dir);
});

test("servers chain over TLS and serve a client that trusts their CA", async () => {
  const store = await connect({ servers: cluster.servers, tlsCa: join(dir, "cluster-ca.pem") });
  try {
    await store.create("secure", 4);
    await store.withWrite("secure", (view) => void (view[0] = 42));
    expect(await store.withRead("secure", (view) => view[0])).toBe(42);
    let serving = 0;
    for (let waited = 0; waited < 10_000 && serving < 3; waited += 100) {
      serving = (await store.status()).chain.filter((server) => server.state === "serving").length;
      if (serving < 3) await Bun.sleep(100);
    }
    expect(serving).toBe(3);
  } finally {
    await store.close();
  }
}, 30_000);

test("a client that trusts another CA is refused with EAUTH", async () => {
  const other = makeCertificates(dir, "other");
  const error = await connect({ servers: cluster.servers, tlsCa: other.ca, connectTimeoutMs: 3000 }).catch((e) => e);
  expect(error).toBeInstanceOf(PStoreError);
  expect(error.code).toBe("EAUTH");
  expect(error.message).toContain("TLS certificate was refused: it is not signed by the CA given (--tls-ca)");
}, 30_000);

test("a client without TLS does not get through", async () => {
  const error = await connect({ servers: cluster.servers, connectTimeoutMs: 2000 }).catch((e) => e);
  expect(error).toBeInstanceOf(PStoreError);
  expect(["EUNAVAILABLE", "EPROTO"]).toContain(error.code);
  // The server answered our hello with a TLS record: the hint says so (and only then, test/shell_tty.test.ts).
  expect(error.message).toContain("(the server speaks TLS: set PSTORE_TLS_CA or --tls-ca)");
}, 30_000);

test("a certificate every client and peer would refuse stops the server at start, said in words, before its data dir is made", async () => {
  const files = makeCertificates(dir, "start");
  const other = makeCertificates(dir, "start-other");
  // A certificate that names only localhost, for a server dialled at 127.0.0.1.
  const [localKey, localCert] = ["local.key", "local.pem"].map((f) => join(dir, f));
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", localKey!, "-out", localCert!, "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]);
  const junk = join(dir, "junk.pem");
  await Bun.write(junk, "not a certificate\n");
  const cases: Array<[string, string, string]> = [
    [files.cert, other.key, `--tls-key: ${other.key} is not the key of the certificate in ${files.cert}`],
    [junk, files.key, `--tls-cert: ${junk} holds no PEM certificate`],
    [files.cert, junk, `--tls-key: ${junk} holds no PEM private key`],
    [localCert!, localKey!, "--tls-cert: the certificate names DNS:localhost, not 127.0.0.1, the address clients and peers dial this server at"],
  ];
  for (const [cert, key, said] of cases) {
    const dataDir = join(dir, "refused-data");
    const child = spawnChild([...pstoreCommand(), "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--tls-cert", cert, "--tls-key", key, "--tls-ca", files.ca, "--die-with-parent"]);
    const result = await finished(child, 15_000);
    expect(result.code).toBe(1);
    expect(result.stderr).toContain(said);
    expect(result.stderr).not.toContain("OPENSSL_internal");
    expect(existsSync(dataDir)).toBe(false);
  }
}, 60_000);
