/* pstore.h -- the specification's persistent shared memory, for C and any
 * language with a C FFI. Link with -lpstore (libpstore.so). docs/c.md says more.
 *
 *   init_persistant();
 *   p_create(sizeof(int), "compteur");
 *   int *cpt = p_access_readwrite("compteur");
 *   *cpt = 23 * 45;
 *   p_release_readwrite(cpt);
 *
 * Every call returns -1 (or NULL) on error, sets errno, and keeps the error's
 * pstore code and message for p_errcode() and p_errmsg(); none aborts.
 * Calls may come from any thread: one lock serializes them, so an access that
 * waits holds up the other threads' calls until it is granted.
 * After fork(), the child must call init_persistant() before any other call.
 */
#ifndef PSTORE_H
#define PSTORE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden symbols: only these are exported. */
#if defined(__GNUC__)
#define PSTORE_API __attribute__((visibility("default")))
#else
#define PSTORE_API
#endif

/* pstore's error codes (p_errcode()), the same as the TypeScript client's. */
enum p_error {
    P_OK = 0,
    P_ENOENT = 1,       /* no datum of that name (errno ENOENT) */
    P_EEXIST = 2,       /* a datum of that name exists already (EEXIST) */
    P_ENOSPC = 3,       /* no free run of pages is large enough, or a server's disk is full (ENOSPC) */
    P_EINVAL = 4,       /* a name, size or pointer is malformed (EINVAL) */
    P_EBUSY = 5,        /* the datum is held or waited on (EBUSY) */
    P_ETIMEDOUT = 6,    /* an access waited longer than its timeout (ETIMEDOUT) */
    P_ECANCELED = 7,    /* an access was cancelled (ECANCELED) */
    P_EDEADLK = 8,      /* this program already holds or waits for that datum (EDEADLK) */
    P_ESESSION = 9,     /* the session expired: its holds are gone (ENOLINK) */
    P_ESTALE = 10,      /* the pointer holds nothing (already released?) (ESTALE) */
    P_EAUTH = 11,       /* wrong or missing PSTORE_SECRET (EACCES) */
    P_EUNAVAILABLE = 12,/* no server (or no agent) could be reached (ECONNREFUSED) */
    P_EPROTO = 13,      /* a peer broke the protocol (EPROTO) */
    P_ELIMIT = 14,      /* a configured limit was hit (E2BIG) */
    P_ECLOSED = 15      /* not connected: init_persistant() not called, p_close() called, or fork() (ENOTCONN) */
};

/* Connects this program to the store (through the host's pstore agent, started
 * if none runs). Reads PSTORE_SERVERS, PSTORE_SECRET, PSTORE_TLS_CA. Calling it
 * again reconnects (holds are dropped). 0 or -1. */
PSTORE_API int init_persistant(void);

/* Reserves size bytes under name (zero-filled). 0 or -1. */
PSTORE_API int p_create(size_t size, const char *name);

/* Waits for a read hold; returns the datum's bytes, readable only, or NULL. */
PSTORE_API void *p_access_read(const char *name);
/* Waits for the write hold; returns the datum's bytes, writable, or NULL. */
PSTORE_API void *p_access_readwrite(const char *name);

/* Drops a read hold; p must not be used afterwards. 0 or -1. */
PSTORE_API int p_release_read(void *p);
/* Ships the changed pages and drops the write hold; returns once every server
 * has them. 0 or -1 (then the change is lost: it reached no server). */
PSTORE_API int p_release_readwrite(void *p);

/* Deletes a datum nobody holds. 0 or -1. */
PSTORE_API int p_delete(const char *name);
/* Drops every hold (unreleased writes are lost) and disconnects. 0 or -1. */
PSTORE_API int p_close(void);

/* The last failed call's code (enum p_error) and message, in this thread. */
PSTORE_API int p_errcode(void);
PSTORE_API const char *p_errmsg(void);
/* A fixed text for a code. */
PSTORE_API const char *p_strerror(int code);

/* Accesses granted since init_persistant with no message to the agent (a
 * cached grant it lent: docs/c.md#speed), for tests and benchmarks. */
PSTORE_API unsigned long p_local_grants(void);

#ifdef __cplusplus
}
#endif

#endif
