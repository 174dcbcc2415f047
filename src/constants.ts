/**
 * Every limit of pstore in one place (TigerBeetle's constants.zig): a limit
 * that is hit gives a clear error naming it, never an unbounded queue.
 */
export const PAGE_SIZE = 4096;

/** Names are UTF-8, 1..NAME_BYTES_MAX bytes, no control characters. */
export const NAME_BYTES_MAX = 255;

/** Segments one process maps at once (c/pstore_mem.h PSTORE_SEGMENTS_MAX, the same): the agent maps one per C program. */
export const SEGMENTS_PER_PROCESS_MAX = 64;
/** ArrayBuffers a client keeps over ranges of its segment (one per datum it used) before it starts over. */
export const SEGMENT_VIEW_BUFFERS_MAX = 4096;

export const SEGMENT_SIZE_DEFAULT = 256 * 1024 * 1024;
/**
 * Bun's ArrayBuffers stop at 4 GiB (JavaScriptCore refuses larger with
 * "RangeError: Out of memory"), and a client views the whole segment through
 * one; this also keeps page indices well inside C's u32.
 */
export const SEGMENT_SIZE_MAX = 4 * 1024 * 1024 * 1024;

/** A release ships a datum's dirty pages in one frame, so a datum fits in one. */
export const DATUM_BYTES_MAX = 256 * 1024 * 1024;
/** A connection that has not completed its handshake by then is closed. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** The largest frame before the handshake is complete (hello, auth): tiny. */
export const HANDSHAKE_FRAME_BYTES_MAX = 4096;
/** Checked on the length prefix, before any buffer is allocated. */
export const FRAME_BYTES_MAX = DATUM_BYTES_MAX + 64 * 1024;
/** A Unix socket's path (sun_path is 108 bytes with its NUL): a longer one cannot be dialled (c/pstore_agent.c says so too). */
export const UNIX_SOCKET_PATH_BYTES_MAX = 107;
/** The largest request a C program sends its agent: a write release lists at most every page of a datum (4 bytes each). */
export const AGENT_REQUEST_BYTES_MAX = 4 * (DATUM_BYTES_MAX / PAGE_SIZE) + 64 * 1024;

/** Bytes a connection may have waiting to be sent before it is closed (a client that does not read). */
export const LINK_QUEUED_BYTES_MAX = FRAME_BYTES_MAX + 64 * 1024 * 1024;
/** Connections a server accepts at once; more are refused. */
export const CONNECTIONS_MAX = 4096;
/** Connections of one address still in their handshake: a scanner cannot fill the table. */
export const HANDSHAKES_PER_ADDRESS_MAX = 64;
/** Client connections of one address after the handshake: one host cannot take every slot. */
export const CLIENTS_PER_ADDRESS_MAX = 1024;
/**
 * A client connection on which nothing arrived for this many times its
 * sessions' timeout (the server's --session-timeout-ms when it has none) is
 * closed: clients heartbeat every quarter of it on each connection, but one
 * busy taking in a 64 MiB grant on a loaded machine may miss a few.
 */
export const CLIENT_SILENCE_TIMEOUTS = 2;
/** How often silent client connections are looked for. */
export const IDLE_SWEEP_MS = 250;
/**
 * Bytes a server holds at once for incomplete incoming frames, all client
 * connections together; a frame holds only the bytes that arrived, and the
 * client whose frame would pass this gets ELIMIT. Twice the largest frame, so
 * one release of the largest datum always fits beside others.
 */
export const INBOUND_BUFFERED_BYTES_MAX = 2 * FRAME_BYTES_MAX;

export const DATA_COUNT_MAX = 1_000_000;
export const WAITERS_PER_DATUM_MAX = 10_000;
export const SESSIONS_MAX = 10_000;
/** Requests of one session applied but whose reply the client has not confirmed. */
export const INFLIGHT_PER_SESSION_MAX = 1024;
/** Holds a client remembers the granting acquire of (to cancel it if a release hears ESTALE); the oldest are forgotten past it. */
export const GRANTING_ACQUIRES_KEPT_MAX = 4096;
/** Grants a client remembers by acquire, to tell a duplicate answer (after a failover) from a stray hold. */
export const DELIVERED_GRANTS_KEPT_MAX = INFLIGHT_PER_SESSION_MAX;

export const SESSION_TIMEOUT_MS_DEFAULT = 10_000;
export const SESSION_TIMEOUT_MS_MIN = 100;
export const SESSION_TIMEOUT_MS_MAX = 24 * 60 * 60 * 1000;
export const HEARTBEAT_MS_DEFAULT = 100;
export const SUSPECT_MS_DEFAULT = 1000;
/**
 * Heartbeats a server waits, once no connection with a peer is left, before it suspects the
 * peer (sooner than --suspect-ms: a killed process closes both at once). Not at once: both ends
 * of a reset would remove each other and serve as two chains.
 */
export const EARLY_SUSPECT_HEARTBEATS = 2;
/**
 * Free disk space a server keeps: below it, the head refuses updates that
 * grow the data (create, a release with pages) with ENOSPC, and no spare log
 * segment is prepared. Deletes, reads and releases without data go on.
 */
export const DISK_FREE_BYTES_MIN = 8 * 1024 * 1024;
/** While a write failed for lack of space, it is tried again this often. */
export const DISK_RETRY_MS = 500;
/** The log size that triggers an automatic checkpoint. */
export const CHECKPOINT_MB_DEFAULT = 64;
/** --checkpoint-mb's upper bound: 1 TiB of log between checkpoints. */
export const CHECKPOINT_MB_MAX = 1024 * 1024;

/** Hold ids of one epoch come from [epoch × this, …): unique even after a rollback. */
export const HOLD_IDS_PER_EPOCH = 2 ** 24;
/** Server ids are 1..SERVERS_MAX-1 (their place in --peers); epochs embed them. */
export const SERVERS_MAX = 64;
/** Connection slots that clients cannot take: peers (two links each way) can always reconnect. */
export const CONNECTIONS_KEPT_FOR_PEERS = 2 * SERVERS_MAX;
/**
 * Applied updates a server keeps in memory to resend to a successor that lacks them (beyond
 * these, acknowledged ones go; a successor further behind gets a snapshot). Small on purpose:
 * every update's buffers lived as long as it was retained, long enough to outlive the
 * collector's young generation, and at 32 MiB the garbage they left took a server's RSS to
 * 400-550 MiB under 4 KiB writes, most of it fresh pages faulted in (~11 µs each on our VM):
 * an 8-client cycle ran at half speed until the heap stopped growing (docs/benchmarks.md,
 * session 12). Under load 32 MiB was half a second of updates anyway. 4 MiB still let a
 * server holding 256 MiB of data reach 540-730 MiB under 8 clients' 4 KiB writes (each
 * retained update survives the young generation, and old garbage waits for a full collection,
 * which the collector runs when the heap, data included, has doubled); 256 KiB: 456-493 MiB.
 */
export const RETAINED_UPDATES_MAX = 10_000;
export const RETAINED_BYTES_MAX = 256 * 1024;
/**
 * A tail holds back its forwards to a joiner that has not acknowledged more than this, and
 * more than twice a snapshot of the state, then resyncs it (src/core/joiner_flow.ts): eight
 * 8 MiB rewrites, or 16,384 one-page releases. Smaller, a joiner merely catching up (one or two
 * large updates behind) was resynced over and over: 16 MiB and once a snapshot made rejoins
 * under 8 MiB rewrites take twice as long.
 */
export const JOINER_BACKLOG_BYTES_MIN = 64 * 1024 * 1024;
/** Stamps a server keeps for bench/pass_profile.ts (PSTORE_PASS_PROFILE): a minute of one client's cycles. */
export const PASS_PROFILE_STAMPS_MAX = 1_000_000;

/**
 * 2: client heartbeats carry doneBelow; Paxos messages and flags between servers. 3: the
 * messages of issue 11 (docs/protocol.md). 4: cached holds (recall, released.cached).
 * 6: forwards say how far the chain before the sender has synced (--fsync always).
 * 8: heartbeats carry the servers the sender heard while booting (bootPeers). 9: and the
 * servers it suspects (unheard): a tail does not report a joiner to a head that cannot hear it.
 * 10: each server before the tail tells it directly how far it has synced (synced, --fsync always).
 * 11: a head that takes over a longer history sequences a barrier update (op code 11) after it.
 */
export const PROTOCOL_VERSION = 11;
export const DEFAULT_PORT = 7401;
export const DEFAULT_SERVERS = ["127.0.0.1:7401", "127.0.0.1:7402", "127.0.0.1:7403"];
/** Epoch runs a server remembers of its history (src/core/epochs.ts): one per epoch that sequenced updates. */
export const EPOCH_RUNS_MAX = 4096;
/** Client requests a head keeps while it takes over a longer history (src/core/replica.ts); past it, they wait for their resend. */
export const REQUESTS_DEFERRED_MAX = 4096;
/** A checkpoint is written from the frozen pages in blocks of at most this many bytes (src/core/snapshot.ts). */
export const SNAPSHOT_BLOCK_BYTES = 1024 * 1024;

// ---- cached holds (docs/protocol.md#cached-holds) ----

/** The head sends a recall again this often while a waiter is blocked by a cached grant (lost recalls, new heads). */
export const RECALL_RESEND_MS = 200;
/**
 * A client grants locally only within this fraction of its session timeout after the first
 * sending of the newest request the servers answered: the head that could expire the session
 * heard it at or after that instant, so the session lives at least a timeout from then.
 */
export const CACHE_LEASE_FRACTION = 0.75;
/**
 * After a recall of a datum, the client's acquires of it ask not to cache for this long: on
 * data that clients take turns on, a release that hands over directly costs one chain pass,
 * a cached grant a recall and a give-back more. One recall per this period re-tests.
 */
export const CACHE_BACKOFF_MS = 50;
/** A delete that finds the datum cached by another client recalls it and waits at most this long (then EBUSY). */
export const DELETE_RECALL_WAIT_MS = 2000;
/**
 * The agent republishes its store's lease to the C program this often (src/agent/lending.ts):
 * a program reading lent data with no message sees a renewal within this long.
 */
export const LEND_LEASE_REFRESH_MS = 1000;

// ---- the client's watch over its requests (src/client/cluster.ts) ----

/** connect(): how long to wait for a server's answer (ConnectOptions.connectTimeoutMs). */
export const CONNECT_TIMEOUT_MS_DEFAULT = 5000;
/** connect(): how long a request waits for a serving chain before EUNAVAILABLE (failoverTimeoutMs). */
export const FAILOVER_TIMEOUT_MS_DEFAULT = 30_000;
/** How long close() waits for the servers to end the session (else it expires). */
export const CLOSE_WAIT_MS = 2000;

/**
 * A request with no reply (nor "queued") for this long makes the client look for the chain
 * again, unless part of a frame is arriving from the tail (a large grant takes seconds).
 */
export const UNANSWERED_MS = 1500;
/**
 * ... and this much longer per MiB the request carries (a 64 MiB write release, 4 s more):
 * it crosses the chain at a busy chain's pace, and a refresh sends it all again.
 */
export const UNANSWERED_MS_PER_MIB = 64;
/** How often the client looks for unanswered requests. */
export const WATCH_EVERY_MS = 250;
/** A queued acquire is sent again this often (a no-op unless its session or the acquire was lost). */
export const QUEUED_RECHECK_MS = 3000;
/** How long a probe for the chain waits for a server's answer. */
export const PROBE_TIMEOUT_MS = 1000;
/** After the first server answers a probe, how long the others may take. */
export const PROBE_GRACE_MS = 150;
/** A head that cannot serve (no majority) is asked again, or another one found, after this pause. */
export const UNAVAILABLE_RETRY_MS = 100;

/** setTimeout overflows above 2^31-1 ms (about 24.8 days): the largest duration a flag takes. */
export const TIMER_MS_MAX = 2 ** 31 - 1;
/** A server ticks at least this often, whatever its heartbeat. */
export const TICK_MS_MAX = 50;
/** An automatic checkpoint waits at most this many 1 ms turns for the outbound queues to drain and the log's spare segment. */
export const CHECKPOINT_WAITS_MAX = 1000;
/** From this body length on, a frame arriving in chunks is copied into one buffer as it comes (src/wire/frame.ts). */
export const FRAME_ASSEMBLE_BYTES_MIN = 256 * 1024;
/** A write release whose pages take this many bytes is logged and forwarded as its header and the pages' encoding as received (no copy into one buffer). */
export const UPDATE_PARTS_BYTES_MIN = 256 * 1024;
/**
 * From this body length on, an incoming frame's buffer is a mapping apart from the allocator,
 * made after a garbage collection (src/server/server.ts, c/pstore_large.h), and a client's
 * frame too is copied into it as it comes.
 */
export const LARGE_FRAME_BYTES_MIN = 8 * 1024 * 1024;
/**
 * A server with this many bytes of forwards waiting to be sent holds back its disk work and
 * collections until they have left (src/server/server.ts, afterForwardsLeave), for at most
 * HOLD_FOR_FORWARD_MS_MAX.
 */
export const HOLD_FOR_FORWARD_BYTES_MIN = 1024 * 1024;
export const HOLD_FOR_FORWARD_MS_MAX = 200;
/** While a large frame arrives, a server collects garbage after every this many bytes of it (the socket's chunks). */
export const LARGE_FRAME_COLLECT_EVERY_BYTES = 4 * 1024 * 1024;
/** A server collects garbage before making a large frame's buffer at most this often. */
export const LARGE_FRAME_GC_INTERVAL_MS = 50;
/** A server gives back the large-frame buffer it keeps once no large frame came for this long. */
export const LARGE_FRAME_IDLE_MS = 1000;
/** A server keeps one collected large-frame buffer up to this size for the next (a 64 MiB release and its header). */
export const LARGE_FRAME_KEPT_BYTES_MAX = 72 * 1024 * 1024;
/** A client packs a write release of this many bytes on into a buffer it keeps for the next (src/client/pack_buffer.ts). */
export const PACK_BUFFER_BYTES_MIN = 8 * 1024 * 1024;
/** A client drops that buffer once no such release came for this long. */
export const PACK_BUFFER_IDLE_MS = 1000;
/** Queued frames a link writes in one socket write. */
export const COALESCE_BYTES_MAX = 256 * 1024;
/** Updates in one forward message down the chain. */
export const FORWARD_BATCH_MAX = 256;

/** `pstore local --servers` and `bench --local`: one machine, a handful of servers. */
export const LOCAL_SERVERS_MAX = 16;
/** `bench --clients`. */
export const BENCH_CLIENTS_MAX = 16;
/** `bench --ops`. */
export const BENCH_OPS_MAX = 100_000_000;
/** `bench --duration`: an hour; longer is a mistake, not a benchmark. */
export const BENCH_DURATION_MS_MAX = 3_600_000;
/** Latency samples one bench run keeps: 64 Mi = 512 MiB, almost 2 hours at 10,000 ops/s. */
export const BENCH_SAMPLES_MAX = 64 * 1024 * 1024;
/** Steps the linearizability checker searches before it gives up. */
export const LINEARIZABILITY_STEPS_MAX = 10_000_000;

// ---- tuning that was local to its module ----

/** At most one ack up the chain per this many ms (and at every tick): src/core/flow.ts. */
export const ACK_INTERVAL_MS = 5;
/** A proposal is dropped if it has not gathered a majority within this many heartbeats (src/core/paxos.ts). */
export const PROPOSAL_HEARTBEATS = 5;
/** Frames from this size on make a server announce it will be busy (src/server/node.ts)... */
export const BUSY_FRAME_BYTES = 1024 * 1024;
/** ...for as long as this (slow) rate of processing implies, with margin. */
export const BUSY_BYTES_PER_MS = 8 * 1024;
/** Below this, packed pages are copied into the frame: one write instead of two (src/wire/messages.ts). */
export const SEPARATE_SECTION_BYTES_MIN = 64 * 1024;
/** After a checkpoint failed (a full disk), the next waits this long (src/store/durability.ts). */
export const CHECKPOINT_RETRY_MS = 5000;
/** How long a measure of the free disk space is trusted. */
export const FREE_SPACE_FRESH_MS = 200;
/** And for how many bytes of log: far below DISK_FREE_BYTES_MIN, so the log never eats the reserve between two measures. */
export const FREE_SPACE_RECHECK_BYTES = 1024 * 1024;
/** Dropped log segments kept, beyond the spare, to be the spares after it (src/store/wal.ts). */
export const RETIRED_SEGMENTS_MAX = 2;
/**
 * A spare segment's zeros are synced this many bytes at a time as they are written: synced
 * once at the end, 64 MiB went to the disk in one burst, and the log's own syncs, queued
 * behind it, took 14–64 ms (`--fsync always`: the worst 8-client cycle 74–187 ms, 24–45 after).
 */
export const SPARE_SYNC_BYTES = 4 * 1024 * 1024;

/**
 * The relations between the limits, checked once when this module loads
 * (every entry point imports it): a limit changed alone fails at start-up,
 * not in a rare path.
 */
function checkLimits(): void {
  const relations: [boolean, string][] = [
    [FRAME_BYTES_MAX > DATUM_BYTES_MAX, "a frame holds a whole datum"],
    [LINK_QUEUED_BYTES_MAX >= FRAME_BYTES_MAX, "a link can queue a whole frame"],
    [HANDSHAKE_FRAME_BYTES_MAX < FRAME_BYTES_MAX, "handshake frames are smaller than frames"],
    [DATUM_BYTES_MAX <= SEGMENT_SIZE_MAX, "a datum fits in a segment"],
    [SEGMENT_SIZE_DEFAULT <= SEGMENT_SIZE_MAX && SEGMENT_SIZE_DEFAULT % PAGE_SIZE === 0, "the default segment is whole pages under the maximum"],
    [SEGMENT_SIZE_MAX / PAGE_SIZE <= 2 ** 32, "page indices fit C's u32"],
    [SESSION_TIMEOUT_MS_MIN <= SESSION_TIMEOUT_MS_DEFAULT && SESSION_TIMEOUT_MS_DEFAULT <= SESSION_TIMEOUT_MS_MAX, "the default session timeout is in range"],
    [SESSION_TIMEOUT_MS_MAX <= TIMER_MS_MAX, "a session timeout fits a timer"],
    [HANDSHAKE_TIMEOUT_MS <= TIMER_MS_MAX && BENCH_DURATION_MS_MAX <= TIMER_MS_MAX, "durations fit a timer"],
    [HEARTBEAT_MS_DEFAULT < SUSPECT_MS_DEFAULT, "a server hears several heartbeats before it suspects"],
    [SUSPECT_MS_DEFAULT < SESSION_TIMEOUT_MS_DEFAULT, "a failover completes before sessions expire"],
    [LOCAL_SERVERS_MAX < SERVERS_MAX, "server ids 1..SERVERS_MAX-1 cover a local cluster"],
    [DEFAULT_SERVERS.length < SERVERS_MAX, "the default cluster has valid ids"],
    [(2 ** 53) / HOLD_IDS_PER_EPOCH >= 2 ** 24, "hold ids of many epochs stay exact integers"],
    [COALESCE_BYTES_MAX <= LINK_QUEUED_BYTES_MAX, "a coalesced write is within the queue"],
    [FORWARD_BATCH_MAX > 0 && RETAINED_UPDATES_MAX >= FORWARD_BATCH_MAX, "a forward batch is within what is retained"],
    [SNAPSHOT_BLOCK_BYTES % PAGE_SIZE === 0, "a checkpoint block is whole pages"],
  ];
  for (const [holds, relation] of relations) {
    if (!holds) throw new Error(`pstore limits are inconsistent: ${relation} (src/constants.ts)`);
  }
}
checkLimits();
