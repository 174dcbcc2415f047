/**
 * The disk of one server: checkpoints, recovery from them, and config.json,
 * driven directly (no sockets), with the files damaged on purpose.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { StoreState, encodeSnapshot, snapshotParts } from "../src/core";
import { BATCH_HEADER_BYTES, Durability, LOG_SIZES, NODE_IO, WAL_HEADER_BYTES, WriteAheadLog, listCheckpoints, listSegments, nodeFs, recover } from "../src/store";
import { pruneCheckpoints, readCheckpoint, writeCheckpointStreamAsync } from "../src/store/checkpoint";
import { removeFreshDirs, SEGMENT, PAGE, freshDir, Writer, open, valueOf, startSession, dataEnd, recordBytes } from "./helpers/store";

afterEach(removeFreshDirs);

describe("checkpoints", () => {
  test("a checkpoint drops the log before it; restart = checkpoint + the log after it", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    for (let i = 0; i < 20; i++) writer.write("a", i);
    const checkpoint = writer.do({ type: "checkpoint" });
    writer.durability.checkpoint(checkpoint.seq, 65, 65, encodeSnapshot(writer.state));
    expect(listSegments(nodeFs, dir).map((s) => s.firstSeq)).toEqual([checkpoint.seq + 1]);
    writer.write("a", 100);
    writer.write("b", 7);
    writer.durability.close();
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.checkpoint?.seq).toBe(checkpoint.seq);
    expect(recovered.replayed).toBeGreaterThan(0);
    expect([valueOf(recovered.state, "a"), valueOf(recovered.state, "b")]).toEqual([100, 7]);
  });

  test("a corrupt checkpoint is refused, never skipped silently", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.write("a", 1);
    writer.durability.checkpoint(writer.state.appliedSeq, 65, 65, encodeSnapshot(writer.state));
    writer.durability.close();
    const file = listCheckpoints(nodeFs, dir).at(-1)!.file;
    const bytes = new Uint8Array(readFileSync(file));
    bytes[bytes.length - 1]! ^= 0x40;
    writeFileSync(file, bytes);
    expect(() => recover(NODE_IO, dir, SEGMENT, PAGE)).toThrow(/checksum mismatch in the payload/);
  });

  test("restarts alone make a checkpoint due: each start opens a log segment, and the older segments' files count as logged", async () => {
    const dir = freshDir();
    const first = LOG_SIZES.first;
    // Room for three restarts' segments: the fourth start finds the log past it.
    const options = { segmentSize: SEGMENT, fsync: "always" as const, checkpointBytes: 3 * first };
    for (let start = 1; start <= 4; start++) {
      const { durability, recovered } = Durability.open(NODE_IO, dir, options);
      expect(listSegments(nodeFs, dir).length).toBe(start);
      expect(durability.checkpointDue).toBe(start === 4);
      const writer = new Writer(durability);
      if (start > 1) Object.assign(writer, { state: recovered.state, reqNo: recovered.state.appliedSeq + 1 });
      else startSession(writer);
      writer.write("a", start); // the next start's segment begins after it
      if (start === 4) {
        const info = (await durability.checkpointInBackground(writer.state, 65, 65))!;
        // One segment left, the one the log goes on in: a crash loop no longer grows the data dir.
        expect(listSegments(nodeFs, dir).map((segment) => segment.firstSeq)).toEqual([info.seq + 1]);
        expect(durability.checkpointDue).toBe(false);
      }
      durability.close();
    }
  });

  test("a background checkpoint: due past --checkpoint-mb and twice the last one; the old log stays until the file is written", async () => {
    for (const mode of ["always", "off"] as const) {
      const dir = freshDir();
      const { durability } = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: mode, checkpointBytes: 16 * 1024 });
      const writer = new Writer(durability);
      startSession(writer);
      while (!durability.checkpointDue) writer.write("a", 1);
      const seq = writer.state.appliedSeq;
      const written = durability.checkpointInBackground(writer.state, 65, 65)!;
      expect(durability.checkpointInBackground(writer.state, 65, 65)).toBeNull(); // one at a time
      writer.write("a", 2);
      // Not on disk yet: a crash now restarts from the whole log.
      expect(listSegments(nodeFs, dir).length).toBeGreaterThan(1);
      expect(listSegments(nodeFs, dir).at(-1)!.firstSeq).toBe(seq + 1);
      const info = (await written)!;
      expect(info.seq).toBe(seq);
      // The file holds the state at seq, although "a" was rewritten while it was written
      // (the checkpoint reads the pages frozen at seq; the store copied the chunk it wrote).
      expect(valueOf(readCheckpoint(nodeFs, info.file).state, "a")).toBe(1);
      expect(valueOf(writer.state, "a")).toBe(2);
      expect(listSegments(nodeFs, dir).map((s) => s.firstSeq)).toEqual([seq + 1]);
      // The dropped segment is recycled as the next one (its pages are still in the page cache).
      expect(readdirSync(dir)).toContain("wal-spare.tmp");
      // Due again only once the log is past twice this checkpoint.
      expect(durability.checkpointDue as boolean).toBe(false);
      writer.write("b", 3);
      durability.close();
      const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
      recovered.wal.close();
      expect(recovered.checkpoint?.seq).toBe(seq);
      expect([valueOf(recovered.state, "a"), valueOf(recovered.state, "b")]).toEqual([2, 3]);
    }
  });

  test("the oldest checkpoint pruned is overwritten by the next one (same file, cut to its size), which reads back whole", async () => {
    const dir = freshDir();
    const emptyAt = (seq: number) => Object.assign(new StoreState(SEGMENT, PAGE), { appliedSeq: seq });
    const write = async (state: StoreState) => (await writeCheckpointStreamAsync(nodeFs, dir, state.appliedSeq, 65, 65, snapshotParts(state).parts(), () => true))!;
    // A large state first (a datum of 64 pages), then empty ones.
    const large = new StoreState(SEGMENT, PAGE);
    const writer = new Writer({ append() {}, commit() {} } as unknown as Durability);
    Object.assign(writer, { state: large });
    startSession(writer);
    writer.do({ type: "create", name: "big", size: 64 * PAGE });
    const first = await write(large);
    const small = await write(emptyAt(first.seq + 1));
    expect(small.bytes).toBeLessThan(first.bytes);
    const inode = statSync(first.file).ino;
    pruneCheckpoints(nodeFs, dir, 1);
    expect(listCheckpoints(nodeFs, dir).map((c) => c.seq)).toEqual([small.seq]);
    expect(readdirSync(dir)).toContain("checkpoint-spare.tmp");
    const next = await write(emptyAt(first.seq + 2));
    expect(statSync(next.file).ino).toBe(inode);
    expect(statSync(next.file).size).toBe(next.bytes);
    expect(readCheckpoint(nodeFs, next.file).seq).toBe(first.seq + 2);
    expect(readdirSync(dir)).not.toContain("checkpoint-spare.tmp");
  });

  test("segments a checkpoint drops are kept (a spare and up to two more) and become the next segments, never files anew", async () => {
    const dir = freshDir();
    const wal = WriteAheadLog.create(nodeFs, LOG_SIZES, dir, 1, false);
    // Records of 40 MiB: each one after the first starts a segment of its own (64 MiB each).
    const bytes = new Uint8Array(PAGE).fill(3);
    const pages = Array.from({ length: (40 * 1024 * 1024) / PAGE }, (_, i) => ({ page: i, bytes }));
    let seq = 0;
    // Each once the spare is ready, as between releases: the I/O threads zero-fill it meanwhile.
    const appendRecords = async (count: number, spareFirst: boolean) => {
      for (let i = 0; i < count; i++) {
        for (let waited = 0; spareFirst && !wal.spareIsReady && waited < 10_000; waited += 20) await Bun.sleep(20);
        seq++;
        wal.append({ seq, epoch: 65, session: 1, reqNo: seq, doneBelow: 0, op: { type: "release", holdId: 1, pages } });
        wal.flush();
      }
    };
    await appendRecords(4, false);
    const dropped = new Set(listSegments(nodeFs, dir).map((segment) => statSync(segment.file).ino));
    expect(dropped.size).toBeGreaterThanOrEqual(4);
    wal.rotate(seq);
    await appendRecords(4, true);
    // The rotation opened a new segment (no spare yet); the three after it are dropped ones.
    const after = listSegments(nodeFs, dir).filter((segment) => segment.firstSeq > seq - 3).map((segment) => statSync(segment.file).ino);
    expect(after.length).toBe(3);
    expect(after.every((ino) => dropped.has(ino))).toBe(true);
    wal.close();
    expect(readdirSync(dir).filter((name) => name.endsWith(".tmp"))).toEqual([]);
    // Each recycled segment holds its one record, then zeros: nothing of the record it held before.
    for (const segment of listSegments(nodeFs, dir).filter((s) => s.firstSeq > seq - 3)) {
      const bytes = new Uint8Array(readFileSync(segment.file));
      const end = dataEnd(segment.file);
      const view = new DataView(bytes.buffer);
      expect(recordBytes(view, WAL_HEADER_BYTES + BATCH_HEADER_BYTES) + BATCH_HEADER_BYTES + WAL_HEADER_BYTES).toBe(end);
      expect(bytes.subarray(end).every((byte) => byte === 0)).toBe(true);
    }
  }, 30_000);

  test("a background checkpoint of a history that a state transfer replaced meanwhile never lands", async () => {
    const dir = freshDir();
    const { durability } = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 16 * 1024 });
    const writer = new Writer(durability);
    startSession(writer);
    while (!durability.checkpointDue) writer.write("a", 1);
    const written = durability.checkpointInBackground(writer.state, 65, 65)!;
    const other = new StoreState(SEGMENT, PAGE);
    durability.install(3, 70, 70, encodeSnapshot(Object.assign(other, { appliedSeq: 3 })));
    expect(await written).toBeNull();
    expect(listCheckpoints(nodeFs, dir).map((c) => c.seq)).toEqual([3]);
    expect(readdirSync(dir).filter((name) => name.endsWith(".ckpt.tmp"))).toEqual([]);
    durability.close();
  });

  // Chaos seed 513013: a server whose own history ran past the chain's (a suffix never
  // acknowledged) installed the chain's snapshot, older than each of its five checkpoints;
  // keeping the newest five by seq dropped the snapshot itself, the others were then removed,
  // and the server could not restart ("updates 1..357161 are missing"). Its log past the
  // snapshot's seq was of the old history too.
  test("a snapshot older than every kept checkpoint (a history rolled back) is what the server restarts from, with the log written after it", () => {
    const dir = freshDir();
    const { durability } = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
    const old = new Writer(durability);
    startSession(old);
    for (let i = 0; i < 6; i++) {
      for (let k = 0; k < 20; k++) old.write(`old-${k}`, i);
      durability.checkpoint(old.state.appliedSeq, 65, 65, encodeSnapshot(old.state));
    }
    old.write("old-tail", 1); // logged past the last checkpoint
    expect(listCheckpoints(nodeFs, dir).length).toBe(5);

    // The chain's history: shorter than ours, from the same start.
    const chainDir = freshDir();
    const chain = new Writer(Durability.open(NODE_IO, chainDir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 }).durability);
    startSession(chain);
    chain.write("kept", 9);
    const snapshotSeq = chain.state.appliedSeq;
    expect(snapshotSeq).toBeLessThan(listCheckpoints(nodeFs, dir)[0]!.seq);
    durability.install(snapshotSeq, 70, 70, encodeSnapshot(chain.state));
    // The server goes on from the snapshot: its next updates are logged after it.
    Object.assign(chain, { durability });
    chain.write("after", 4);
    chain.durability.close();

    const restarted = open(dir);
    expect(restarted.writer.state.appliedSeq).toBe(chain.state.appliedSeq);
    expect([valueOf(restarted.writer.state, "kept"), valueOf(restarted.writer.state, "after")]).toEqual([9, 4]);
    expect(restarted.writer.state.data.has("old-0")).toBe(false);
    expect(listCheckpoints(nodeFs, dir).map((c) => c.seq)).toEqual([snapshotSeq]);
    restarted.writer.durability.close();
  });

  test("one server per data dir", () => {
    const dir = freshDir();
    const first = open(dir);
    expect(() => Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 })).toThrow(/in use by another pstore server/);
    first.writer.durability.close();
    const second = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
    second.durability.close();
    expect(readdirSync(dir)).not.toContain("LOCK");
  });
});

test("writes reach the file before commit returns, in every mode", () => {
  for (const mode of ["always", "batch", "off"] as const) {
    const dir = freshDir();
    const { durability } = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: mode, checkpointBytes: 1 << 26 });
    const writer = new Writer(durability);
    startSession(writer);
    writer.write("x", 5);
    // Without close(): what a kill -9 would leave (the page cache survives a process crash).
    const recovered = recover(NODE_IO, join(dir), SEGMENT, PAGE);
    expect(valueOf(recovered.state, "x")).toBe(5);
    recovered.wal.close();
    durability.close();
  }
});

describe("config.json", () => {
  test("the configuration and the acceptor's vote (--quorum majority) survive a restart, each save keeping the other", () => {
    const dir = freshDir();
    const first = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
    expect(first.recovered.config).toBeNull();
    expect(first.recovered.vote).toBeNull();
    const vote = { promised: 193, accepted: { ballot: 129, epoch: 129, chain: [1, 3], baseEpoch: 65, formed: false } };
    first.durability.saveVote(vote);
    first.durability.saveConfig({ epoch: 129, chain: [1, 3] });
    first.durability.close();
    const second = Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
    expect(second.recovered.config).toEqual({ epoch: 129, chain: [1, 3] });
    expect(second.recovered.vote).toEqual(vote);
    second.durability.close();
  });

  test("a vote that is not a promise and an accepted proposal is refused, never guessed", () => {
    const dir = freshDir();
    writeFileSync(join(dir, "config.json"), JSON.stringify({ epoch: 65, chain: [1], vote: { promised: 70, accepted: { ballot: 70, chain: [1] } } }));
    expect(() => recover(NODE_IO, dir, SEGMENT, PAGE)).toThrow(/"vote" is not a promise/);
  });
});
