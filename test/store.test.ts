/**
 * The disk of one server: the write-ahead log and recovery from it, driven
 * directly (no sockets), with the files damaged on purpose. Checkpoints:
 * checkpoint.test.ts.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, readdirSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { encodeSnapshot } from "../src/core";
import { BATCH_MARK, Durability, NODE_IO, RecoveryError, WAL_HEADER_BYTES, WAL_HEADER_BYTES_V1, WAL_MAGIC_V1, encodeBatchHeader, encodeRecord, encodeSegmentHeader, listSegments, nodeFs, recover, segmentName } from "../src/store";
import { RETIRED_SEGMENTS_MAX, UPDATE_PARTS_BYTES_MIN } from "../src/constants";
import { type Update, packPages } from "../src/wire";
import { MemoryFs } from "../src/sim/memory_fs";
import { Rng } from "../src/sim/prng";
import { removeFreshDirs, SEGMENT, PAGE, SESSION, SMALL_LOG, freshDir, Writer, open, valueOf, startSession, lastSegment, dataEnd, recordBytes, patch } from "./helpers/store";

afterEach(removeFreshDirs);

describe("write-ahead log", () => {
  test("a restart replays the log: every released value is back", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    for (let i = 1; i <= 50; i++) writer.write(`d${i % 5}`, i);
    const appliedSeq = writer.state.appliedSeq;
    writer.durability.close();
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect([0, 1, 2, 3, 4].map((i) => valueOf(recovered.state, `d${i}`))).toEqual([50, 46, 47, 48, 49]);
    expect(recovered.lastEpoch).toBe(65);
  });

  test("a large write release, logged as its header and its packed pages, recovers byte for byte", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    const pageCount = Math.ceil(UPDATE_PARTS_BYTES_MIN / PAGE) + 2;
    writer.do({ type: "create", name: "big", size: pageCount * PAGE });
    writer.do({ type: "acquire", name: "big", mode: "write", knownCreatedSeq: -1, cachedVersion: -1 });
    const holdId = [...writer.state.holds.values()].find((hold) => hold.name === "big")!.id;
    const first = writer.state.data.get("big")!.firstPage;
    const source = new Uint8Array(SEGMENT).map((_, i) => (i * 31) & 0xff);
    const pages = packPages(Array.from({ length: pageCount }, (_, i) => first + i), PAGE, source);
    writer.do({ type: "release", holdId, pages });
    writer.durability.close();
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(writer.state.appliedSeq);
    for (let i = 0; i < pageCount; i++) expect(recovered.state.pages.read(first + i)).toEqual(source.subarray((first + i) * PAGE, (first + i + 1) * PAGE));
  });

  test("a log that spans several segments recovers whole", async () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    for (let i = 1; i <= 1500; i++) {
      writer.write(`d${i % 7}`, i);
      if (i % 300 === 0) await Bun.sleep(20); // lets the spare segment be prepared in the background
    }
    const appliedSeq = writer.state.appliedSeq;
    writer.durability.close();
    expect(listSegments(nodeFs, dir).length).toBeGreaterThan(1);
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect(valueOf(recovered.state, "d0")).toBe(1498);
  });

  /** A log of 8 KiB segments on the real file system, --fsync off, a session open. */
  function smallLogUnsynced(): { dir: string; durability: Durability; writer: Writer } {
    const dir = freshDir();
    const { durability } = Durability.open({ fs: nodeFs, logSizes: SMALL_LOG }, dir, { segmentSize: SEGMENT, fsync: "off", checkpointBytes: 1 << 26 });
    const writer = new Writer(durability);
    startSession(writer);
    return { dir, durability, writer };
  }

  test("checkpoints that drop more segments than the log keeps for reuse leave none behind, and the log recovers", async () => {
    const { dir, durability, writer } = smallLogUnsynced();
    for (let round = 1; round <= 8; round++) {
      // Each write is a page and more: every round spans several 8 KiB segments, and its checkpoint drops them.
      for (let i = 0; i < 6; i++) writer.write(`d${i}`, round * 10 + i, false);
      durability.checkpoint(writer.state.appliedSeq, 65, 65, encodeSnapshot(writer.state));
      await Bun.sleep(20); // lets the spare be prepared in the background
    }
    // Beyond the spare and RETIRED_SEGMENTS_MAX kept for reuse, the dropped segments are removed off
    // the main thread: wait for them (bounded), and none may stay named as part of the log.
    const logFiles = () => readdirSync(dir).filter((name) => name.startsWith("wal-"));
    const deadline = Date.now() + 5_000;
    while (logFiles().length > listSegments(nodeFs, dir).length + 1 + RETIRED_SEGMENTS_MAX && Date.now() < deadline) await Bun.sleep(20);
    expect(logFiles().length).toBeLessThanOrEqual(listSegments(nodeFs, dir).length + 1 + RETIRED_SEGMENTS_MAX);
    expect(listSegments(nodeFs, dir).every((segment) => segment.firstSeq > writer.state.appliedSeq - 7)).toBe(true);
    const appliedSeq = writer.state.appliedSeq;
    durability.close();
    expect(readdirSync(dir).filter((name) => name.startsWith("wal-retired-") || name === "wal-spare.tmp")).toEqual([]);
    const recovered = recover({ fs: nodeFs, logSizes: SMALL_LOG }, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect(valueOf(recovered.state, "d5")).toBe(85);
  });

  test("a checkpoint begun once the spare segment is ready continues the log in it, not in a new file (servers wait for it: sparePending)", async () => {
    const { dir, durability, writer } = smallLogUnsynced();
    for (let i = 0; i < 6; i++) writer.write(`d${i}`, i, false);
    // The first checkpoint drops the segments before it: one is recycled as the next spare, zero-filled in the background.
    durability.checkpoint(writer.state.appliedSeq, 65, 65, encodeSnapshot(writer.state));
    expect(durability.sparePending).toBe(true);
    const deadline = Date.now() + 5_000;
    while (durability.sparePending && Date.now() < deadline) await Bun.sleep(5);
    expect(durability.sparePending).toBe(false);
    const spareInode = statSync(join(dir, "wal-spare.tmp")).ino;
    writer.write("d0", 100, false);
    const checkpointed = writer.state.appliedSeq;
    durability.checkpoint(checkpointed, 65, 65, encodeSnapshot(writer.state));
    expect(statSync(join(dir, segmentName(checkpointed + 1))).ino).toBe(spareInode);
    durability.close();
  });

  /** A data dir whose log holds a session and two writes of "x" (1, then 2), closed. */
  function closedAfterTwoWrites(): { dir: string; appliedSeq: number } {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.write("x", 1);
    writer.write("x", 2);
    const appliedSeq = writer.state.appliedSeq;
    writer.durability.close();
    return { dir, appliedSeq };
  }

  test("a segment whose records end less than a record header before its end is followed by the next one (found by the simulator)", () => {
    const { dir, appliedSeq } = closedAfterTwoWrites();
    const first = lastSegment(dir);
    const bytes = readFileSync(first);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    let end = WAL_HEADER_BYTES;
    while (view.getUint32(end, true) !== 0) end += recordBytes(view, end);
    // As a segment zero-filled to its size whose last batch of records left 3 bytes free, and
    // the next segment, which a restart must reach (a restart in between would cut the 3 bytes).
    truncateSync(first, end + 3);
    const next: Update = { seq: appliedSeq + 1, epoch: 65, session: SESSION, reqNo: appliedSeq + 1, doneBelow: appliedSeq + 1, op: { type: "create", name: "y", size: 4 } };
    const batch = encodeBatchHeader(next.seq, WAL_HEADER_BYTES, WAL_HEADER_BYTES);
    writeFileSync(join(dir, segmentName(next.seq)), Buffer.concat([encodeSegmentHeader(next.seq, true), batch, ...encodeRecord(next), new Uint8Array(64)]));
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(next.seq);
    expect(recovered.state.data.has("y")).toBe(true);
  });

  test("a batch larger than a segment, torn by a power loss, is cut off and the log before it recovers (found by the simulator)", () => {
    const io = { logSizes: { first: 1024, segment: 4096 } };
    for (let seed = 1; seed <= 40; seed++) {
      const fs = new MemoryFs(() => {});
      const { durability } = Durability.open({ fs, ...io }, "/data", { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
      const writer = new Writer(durability);
      startSession(writer);
      writer.write("x", 1);
      const synced = writer.state.appliedSeq;
      // Five 4 KiB releases in one batch, written to a fresh segment of 1 KiB and never synced.
      const pages = [{ page: 0, bytes: new Uint8Array(PAGE).fill(7) }];
      for (let seq = synced + 1; seq <= synced + 5; seq++) durability.append({ seq, epoch: 65, session: SESSION, reqNo: seq, doneBelow: seq, op: { type: "release", holdId: 999, pages } });
      durability.flush();
      fs.powerLoss(new Rng(seed));
      const recovered = recover({ fs, ...io }, "/data", SEGMENT, PAGE);
      expect(recovered.state.appliedSeq).toBeGreaterThanOrEqual(synced);
      expect(valueOf(recovered.state, "x")).toBe(1);
    }
  });

  test("a power loss that writes the unsynced tail back in any order never gets the log refused, and keeps all that was synced", () => {
    const io = { logSizes: SMALL_LOG };
    let cuts = 0;
    for (let seed = 1; seed <= 150; seed++) {
      const rng = new Rng(seed);
      const fs = new MemoryFs(() => {});
      const { durability } = Durability.open({ fs, ...io }, "/data", { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
      const writer = new Writer(durability);
      startSession(writer);
      writer.write("x", 0);
      // The value of x after each release, and the last update synced.
      const written = [{ seq: writer.state.appliedSeq, value: 0 }];
      let synced = writer.state.appliedSeq;
      for (let value = 1; value <= 12; value++) {
        // The last write is never synced: the power loss finds an unsynced tail.
        const sync = value < 12 && rng.chance(0.6);
        writer.write("x", value, sync);
        written.push({ seq: writer.state.appliedSeq, value });
        if (sync) synced = writer.state.appliedSeq;
      }
      fs.powerLoss(rng);
      const recovered = recover({ fs, ...io }, "/data", SEGMENT, PAGE);
      if (recovered.notes.some((note) => note.startsWith("cut"))) cuts++;
      expect(recovered.state.appliedSeq).toBeGreaterThanOrEqual(synced);
      expect(valueOf(recovered.state, "x")).toBe(written.findLast((release) => release.seq <= recovered.state.appliedSeq)!.value);
    }
    // The draws did tear logs (the case under test), not only lose or keep whole batches.
    expect(cuts).toBeGreaterThan(10);
  });

  test("--fsync off: a power loss after restarts recovers a prefix of the history, never a refusal (segments never synced, torn or emptied)", () => {
    const io = { logSizes: SMALL_LOG };
    let shortened = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const rng = new Rng(seed);
      const fs = new MemoryFs(() => {});
      const written: { seq: number; value: number }[] = [];
      let writer: Writer | null = null;
      for (let value = 1; value <= 24; value++) {
        if (writer === null || rng.chance(0.15)) {
          // A killed process (the page cache keeps what it wrote), restarted: the log goes on in a new segment.
          fs.kill();
          const reopened = Durability.open({ fs, ...io }, "/data", { segmentSize: SEGMENT, fsync: "off", checkpointBytes: 1 << 26 });
          const before: Writer | null = writer;
          writer = new Writer(reopened.durability);
          if (before) Object.assign(writer, { state: reopened.recovered.state, reqNo: before["reqNo"] });
          else startSession(writer);
        }
        writer.write("x", value, false);
        written.push({ seq: writer.state.appliedSeq, value });
      }
      const last = writer!.state.appliedSeq;
      fs.powerLoss(rng);
      const recovered = recover({ fs, ...io }, "/data", SEGMENT, PAGE, false);
      if (recovered.state.appliedSeq < last) shortened++;
      const release = written.findLast((r) => r.seq <= recovered.state.appliedSeq);
      if (release) expect(valueOf(recovered.state, "x")).toBe(release.value);
      else expect(!recovered.state.data.has("x") || valueOf(recovered.state, "x") === 0).toBe(true);
    }
    expect(shortened).toBeGreaterThan(20);
  });

  test("a log of the first format (no batch headers) is still read: a torn tail followed by zeros is cut, a bad record followed by others refused", () => {
    /** Rewrites the last segment of a dir as the first format wrote it (its magic, no batch headers); returns where its records end. */
    const asFirstFormat = (file: string): number => {
      const bytes = new Uint8Array(readFileSync(file));
      const view = new DataView(bytes.buffer);
      const parts: Uint8Array[] = [WAL_MAGIC_V1, bytes.subarray(WAL_MAGIC_V1.length, WAL_HEADER_BYTES_V1)];
      for (let offset = WAL_HEADER_BYTES; view.getUint32(offset, true) !== 0; offset += recordBytes(view, offset)) {
        if (view.getUint32(offset, true) !== BATCH_MARK) parts.push(bytes.subarray(offset, offset + recordBytes(view, offset)));
      }
      const records = Buffer.concat(parts);
      writeFileSync(file, Buffer.concat([records, new Uint8Array(256)]));
      return records.length;
    };
    const whole = closedAfterTwoWrites();
    asFirstFormat(lastSegment(whole.dir));
    const recovered = recover(NODE_IO, whole.dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(whole.appliedSeq);
    expect(valueOf(recovered.state, "x")).toBe(2);
    // An upgraded server goes on in a segment of the new format after the old one.
    const upgraded = open(whole.dir).writer;
    upgraded.write("x", 3);
    upgraded.durability.close();
    const again = recover(NODE_IO, whole.dir, SEGMENT, PAGE);
    again.wal.close();
    expect(valueOf(again.state, "x")).toBe(3);

    const torn = closedAfterTwoWrites();
    const tornFile = lastSegment(torn.dir);
    const end = asFirstFormat(tornFile);
    patch(tornFile, 0, (bytes) => void (bytes[end - 3]! ^= 0xff));
    const cut = recover(NODE_IO, torn.dir, SEGMENT, PAGE);
    cut.wal.close();
    expect(valueOf(cut.state, "x")).toBe(1);

    const corrupt = closedAfterTwoWrites();
    const corruptFile = lastSegment(corrupt.dir);
    asFirstFormat(corruptFile);
    patch(corruptFile, 0, (bytes) => void (bytes[WAL_HEADER_BYTES_V1 + 8 + 1]! ^= 0xff));
    expect(() => recover(NODE_IO, corrupt.dir, SEGMENT, PAGE)).toThrow("checksum mismatch in the record at offset 16");
  });

  test("random damage to any log segment, checkpoint or config.json is recovered from or refused with a RecoveryError naming a file, never another error (5,000 seeds passed once)", () => {
    const io = { logSizes: SMALL_LOG };
    let refused = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const rng = new Rng(seed);
      const fs = new MemoryFs(() => {});
      const { durability } = Durability.open({ fs, ...io }, "/data", { segmentSize: SEGMENT, fsync: rng.pick(["always", "off"] as const), checkpointBytes: 1 << 26 });
      durability.persist({ kind: "config", config: { epoch: 65, chain: [1, 2, 3] } });
      const writer = new Writer(durability);
      startSession(writer);
      for (let value = 1; value <= 6; value++) {
        writer.write("x", value);
        if (value === 3) durability.checkpoint(writer.state.appliedSeq, 65, 65, encodeSnapshot(writer.state));
      }
      durability.close();
      const files = fs.readdir("/data").map((name) => `/data/${name}`);
      const file = rng.pick(files);
      const bytes = fs.readFile(file).slice();
      // A few bytes set at random near the start (headers, first records), or the file cut short.
      if (rng.chance(0.2)) fs.truncate(fs.open(file, "r+"), rng.int(bytes.length));
      else {
        for (let k = 1 + rng.int(4); k > 0; k--) bytes[rng.int(Math.min(bytes.length, 512))] = rng.int(256);
        const fd = fs.open(file, "r+");
        fs.write(fd, bytes, 0, bytes.length, 0);
      }
      try {
        recover({ fs, ...io }, "/data", SEGMENT, PAGE).wal.close();
      } catch (error) {
        expect(error).toBeInstanceOf(RecoveryError);
        // The damaged file, or the segment after it where the gap shows (a segment cut right after its header).
        expect((error as Error).message).toStartWith("/data/");
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(30);
  });

  test("--fsync batch on a full disk: the periodic sync leaves records the disk refused to the server's retries, and throws nothing (found by the simulator)", () => {
    let tick = () => {};
    const fs = new MemoryFs(() => {});
    const io = { fs, logSizes: SMALL_LOG, repeat: (_ms: number, fn: () => void) => ((tick = fn), () => {}) };
    const { durability } = Durability.open(io, "/data", { segmentSize: SEGMENT, fsync: "batch", checkpointBytes: 1 << 26 });
    const writer = new Writer(durability);
    startSession(writer);
    writer.write("x", 1);
    tick();
    // The disk fills; the next records need a new segment, which it refuses.
    fs.capacityBytes = fs.usedBytes();
    const pages = [{ page: writer.state.data.get("x")!.firstPage, bytes: new Uint8Array(PAGE).fill(9) }];
    const seq = writer.state.appliedSeq + 1;
    durability.append({ seq, epoch: 65, session: SESSION, reqNo: seq, doneBelow: seq, op: { type: "release", holdId: 999, pages } });
    expect(() => durability.flush()).toThrow("ENOSPC");
    expect(() => tick()).not.toThrow();
    // Space comes back: the retried flush writes them, and the next periodic sync makes them durable.
    fs.capacityBytes = Number.POSITIVE_INFINITY;
    durability.flush();
    tick();
    fs.powerLoss(new Rng(1));
    expect(recover(io, "/data", SEGMENT, PAGE).state.appliedSeq).toBe(seq);
  });

  test("a write of records the disk refused part-way (ENOSPC) is written again whole by the next flush, under one batch header", () => {
    const memory = new MemoryFs(() => {});
    let refuseNext = false;
    // A file system whose next writev writes 10 bytes and then finds the disk full (a sparse segment's hole, with --fsync off).
    const fs = new Proxy(memory, {
      get(target, property) {
        if (property === "writev") {
          return (fd: number, parts: Uint8Array[], position: number) => {
            if (!refuseNext) return target.writev(fd, parts, position);
            refuseNext = false;
            target.write(fd, parts[0]!, 0, 10, position);
            throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
          };
        }
        const value = Reflect.get(target, property);
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    const io = { fs, logSizes: SMALL_LOG };
    const { durability } = Durability.open(io, "/data", { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 << 26 });
    const writer = new Writer(durability);
    startSession(writer);
    writer.write("x", 1);
    refuseNext = true;
    expect(() => writer.write("x", 2)).toThrow("ENOSPC");
    durability.commit();
    writer.write("x", 3);
    durability.close();
    const recovered = recover(io, "/data", SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(writer.state.appliedSeq);
    expect(valueOf(recovered.state, "x")).toBe(3);
  });

  test("a segment the full disk refused leaves no name a power loss could bring back: the log goes on in the current one, whose torn tail is cut (found by the simulator)", async () => {
    for (let seed = 1; seed <= 200; seed++) {
      const fs = new MemoryFs(() => {});
      const io = { fs, logSizes: SMALL_LOG };
      const { durability } = Durability.open(io, "/data", { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 1 });
      const writer = new Writer(durability);
      startSession(writer);
      writer.do({ type: "create", name: "a", size: 4 });
      const synced = writer.state.appliedSeq;
      // The disk fills: a checkpoint's fresh segment is refused, and the log stays in the current one.
      fs.capacityBytes = fs.usedBytes();
      await expect(durability.checkpointInBackground(writer.state, 65, 65)!).rejects.toThrow("ENOSPC");
      expect(listSegments(fs, "/data")).toHaveLength(1);
      // Written into the current segment's zero-filled room, not synced: a power loss may tear it.
      writer.do({ type: "create", name: "b", size: 4 }, false);
      writer.do({ type: "create", name: "c", size: 4 }, false);
      fs.powerLoss(new Rng(seed));
      fs.capacityBytes = Number.POSITIVE_INFINITY;
      const recovered = recover(io, "/data", SEGMENT, PAGE);
      recovered.wal.close();
      expect(recovered.state.appliedSeq).toBeGreaterThanOrEqual(synced);
      expect(recovered.state.data.has("a")).toBe(true);
    }
  });

  test("a torn last record (a crash mid-append) is cut off and the rest recovers", () => {
    const { dir, appliedSeq } = closedAfterTwoWrites();
    const file = lastSegment(dir);
    const goodLength = dataEnd(file);
    // Half a record where the next one goes: a length saying 100 bytes, a checksum, then only 10 bytes.
    patch(file, goodLength, new Uint8Array([100, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9]));
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect(valueOf(recovered.state, "x")).toBe(2);
    expect(recovered.notes.join()).toContain("cut a torn record");
    expect(statSync(file).size).toBe(goodLength);
  });

  test("a last segment of zeros below where the log goes on is removed, not left empty for the next restart to refuse (found by the simulator)", () => {
    const { dir, appliedSeq } = closedAfterTwoWrites();
    // Named below appliedSeq + 1 (a checkpoint's new segment, the state then recovered from a later checkpoint).
    const empty = join(dir, segmentName(appliedSeq));
    writeFileSync(empty, new Uint8Array(4096));
    for (let restart = 0; restart < 2; restart++) {
      const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
      recovered.wal.close();
      expect(valueOf(recovered.state, "x")).toBe(2);
    }
    expect(listSegments(nodeFs, dir).some((segment) => segment.file === empty)).toBe(false);
  });

  test("a last segment with part of its header (a full disk took the rest; a power loss kept its name, not its removal) holds nothing and recovers", () => {
    const { dir, appliedSeq } = closedAfterTwoWrites();
    writeFileSync(join(dir, segmentName(appliedSeq + 1)), encodeSegmentHeader(appliedSeq + 1, true).subarray(0, 18));
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect(valueOf(recovered.state, "x")).toBe(2);
  });

  test("a last segment of zeros (created, then a crash before its header) holds nothing and recovers", () => {
    const { dir, appliedSeq } = closedAfterTwoWrites();
    const next = join(dir, `wal-${String(appliedSeq + 1).padStart(16, "0")}.log`);
    writeFileSync(next, new Uint8Array(SEGMENT));
    expect(listSegments(nodeFs, dir).at(-1)!.file).toBe(next);
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    expect(recovered.state.appliedSeq).toBe(appliedSeq);
    expect(valueOf(recovered.state, "x")).toBe(2);
    // The log goes on from there.
    const again = open(dir).writer;
    again.do({ type: "open_session", timeoutMs: 10_000 });
    again.durability.close();
    const last = recover(NODE_IO, dir, SEGMENT, PAGE);
    last.wal.close();
    expect(last.state.appliedSeq).toBe(appliedSeq + 1);
    expect(valueOf(last.state, "x")).toBe(2);
  });

  test("a whole last record with a bad checksum at the very end counts as torn", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.write("x", 1);
    writer.write("x", 2);
    writer.durability.close();
    const file = lastSegment(dir);
    const end = dataEnd(file);
    patch(file, 0, (bytes) => void (bytes[end - 3]! ^= 0xff));
    const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
    recovered.wal.close();
    // The last record was the release of 2: it is gone, the value is the previous one.
    expect(valueOf(recovered.state, "x")).toBe(1);
  });

  test("a flipped byte in the middle of the log is refused, naming the file and the offset", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    for (let i = 0; i < 10; i++) writer.write("x", i);
    writer.durability.close();
    const file = lastSegment(dir);
    const end = dataEnd(file);
    patch(file, 0, (bytes) => void (bytes[Math.floor(end / 2)]! ^= 0x01));
    let error: unknown;
    try {
      recover(NODE_IO, dir, SEGMENT, PAGE);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RecoveryError);
    expect((error as Error).message).toMatch(new RegExp(`^${file.replace(/[.]/g, "\\.")}: checksum mismatch in the record at offset \\d+`));
  });

  /** A closed dir holding x = 1 and a checkpoint of it. */
  function checkpointedDir(): string {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.write("x", 1);
    writer.durability.checkpoint(writer.state.appliedSeq, 65, 65, encodeSnapshot(writer.state));
    writer.durability.close();
    return dir;
  }

  test("a data dir of another segment size is refused with the size to use", () => {
    const dir = checkpointedDir();
    expect(() => recover(NODE_IO, dir, SEGMENT * 2, PAGE)).toThrow(`start with --segment-size ${SEGMENT}`);
  });

  test("a log with no checkpoint under it is refused at another segment size too, before anything is replayed (identity.json)", () => {
    // Replayed in half the segment, the create of a datum larger than that was refused, and the datum
    // was gone from a server that started without a word.
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.do({ type: "create", name: "big", size: (SEGMENT * 3) / 4 });
    writer.durability.close();
    expect(JSON.parse(readFileSync(join(dir, "identity.json"), "utf8"))).toEqual({ segmentSize: SEGMENT, pageSize: PAGE });
    expect(() => Durability.open(NODE_IO, dir, { segmentSize: SEGMENT / 2, fsync: "always", checkpointBytes: 64 * 1024 * 1024 })).toThrow(
      `${dir} holds the data of a segment of 1 MiB, not 512 KiB: start with --segment-size 1MiB`,
    );
    expect(() => Durability.open(NODE_IO, dir, { segmentSize: SEGMENT * 2, fsync: "always", checkpointBytes: 64 * 1024 * 1024 })).toThrow("start with --segment-size 1MiB");
    expect(() => Durability.open(NODE_IO, dir, { segmentSize: SEGMENT, fsync: "always", checkpointBytes: 64 * 1024 * 1024, pageSize: PAGE * 2 })).toThrow("and pages of 4096 bytes, not 8192");
    // The refusals changed nothing: at the right size the datum is there.
    const { writer: again } = open(dir);
    expect(again.state.data.get("big")?.size).toBe((SEGMENT * 3) / 4);
    again.durability.close();
  });

  test("a wrong size is never recorded: a dir from before identity.json, refused by its checkpoint, still opens at its size", () => {
    const dir = checkpointedDir();
    rmSync(join(dir, "identity.json"));
    expect(() => Durability.open(NODE_IO, dir, { segmentSize: SEGMENT * 2, fsync: "always", checkpointBytes: 64 * 1024 * 1024 })).toThrow(`start with --segment-size ${SEGMENT}`);
    expect(existsSync(join(dir, "identity.json"))).toBe(false);
    const { writer: again } = open(dir);
    expect(valueOf(again.state, "x")).toBe(1);
    again.durability.close();
    expect(JSON.parse(readFileSync(join(dir, "identity.json"), "utf8"))).toEqual({ segmentSize: SEGMENT, pageSize: PAGE });
  });

  test("a data dir is one server's: opened as another number (--peers in another order) it is refused, naming both", () => {
    const dir = freshDir();
    const peers = ["10.0.0.1:7401", "10.0.0.2:7401", "10.0.0.3:7401"];
    const options = { segmentSize: SEGMENT, fsync: "always" as const, checkpointBytes: 1 << 26 };
    // A dir whose record has no server yet (opened by the disk alone) gets one at the next open.
    open(dir).writer.durability.close();
    Durability.open(NODE_IO, dir, { ...options, server: { id: 1, peers } }).durability.close();
    expect(JSON.parse(readFileSync(join(dir, "identity.json"), "utf8"))).toEqual({ segmentSize: SEGMENT, pageSize: PAGE, server: { id: 1, peers } });
    expect(() => Durability.open(NODE_IO, dir, { ...options, server: { id: 3, peers: [...peers].reverse() } })).toThrow(
      `${dir} holds the data of server 1 (10.0.0.1:7401 in the --peers it was created with, ${peers.join(",")}); here --peers makes this server 3: give every server the same --peers, in the same order`,
    );
    // Another list with the same number (a peer moved to a new address) is this server still.
    Durability.open(NODE_IO, dir, { ...options, server: { id: 1, peers: [peers[0]!, "10.0.0.9:7401", peers[2]!] } }).durability.close();
  });

  test("an identity.json that is not one is refused, naming the file", () => {
    const dir = freshDir();
    open(dir).writer.durability.close();
    writeFileSync(join(dir, "identity.json"), '{"segmentSize": "big"}\n');
    expect(() => open(dir)).toThrow(`${join(dir, "identity.json")}: not a segment size, a page size and a server`);
    writeFileSync(join(dir, "identity.json"), "{");
    expect(() => open(dir)).toThrow(`${join(dir, "identity.json")}: not valid JSON`);
    expect(() => open(dir)).toThrow("with the flags it was made with, remove it and it is written again");
    rmSync(join(dir, "identity.json"));
    open(dir).writer.durability.close();
    expect(JSON.parse(readFileSync(join(dir, "identity.json"), "utf8"))).toEqual({ segmentSize: SEGMENT, pageSize: PAGE });
  });

  test("the servers heard while booting are kept with the configuration until the next one replaces them; a bad list is refused", () => {
    const dir = freshDir();
    const first = open(dir).writer.durability;
    first.persist({ kind: "config", config: { epoch: 195, chain: [3] } });
    first.persist({ kind: "boot_peers", peers: [1, 2] });
    first.close();
    const reopened = () => {
      const recovered = recover(NODE_IO, dir, SEGMENT, PAGE);
      recovered.wal.close();
      return [recovered.config, recovered.bootPeers];
    };
    expect(reopened()).toEqual([{ epoch: 195, chain: [3] }, [1, 2]]);
    const second = open(dir).writer.durability;
    second.persist({ kind: "config", config: { epoch: 260, chain: [2, 3] } });
    second.close();
    expect(reopened()).toEqual([{ epoch: 260, chain: [2, 3] }, []]);
    writeFileSync(join(dir, "config.json"), '{"epoch": 260, "chain": [2, 3], "bootPeers": [0]}\n');
    expect(() => open(dir)).toThrow(`${join(dir, "config.json")}: "bootPeers" is not a list of server ids`);
  });

  test("a checkpoint that is not a snapshot is refused, never guessed", () => {
    const dir = freshDir();
    const { writer } = open(dir);
    startSession(writer);
    writer.write("x", 1);
    writer.durability.checkpoint(writer.state.appliedSeq, 65, 65, new Uint8Array(0));
    writer.durability.close();
    expect(() => recover(NODE_IO, dir, SEGMENT, PAGE)).toThrow(RecoveryError);
  });
});
