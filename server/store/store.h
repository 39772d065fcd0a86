/* store: the only door to persistence (ARCHITECTURE.md, Storage).
 *
 * Every call is asynchronous: it is queued to the backend (SQLite, on a
 * storage thread that owns its own connection in WAL mode), and its callback
 * runs later on the loop given to store_open(), never from inside the call
 * itself. Every
 * request's callback runs exactly once, also when the store is being
 * closed; the caller keeps `ud` alive until then. Strings passed in are
 * copied before the call returns; values passed to a callback are valid only
 * during the callback.
 *
 * Threads: a store belongs to the loop given to store_open(); call every
 * function here on that loop's thread. Callbacks run in the order the
 * requests were made. While requests are in flight the store keeps the loop
 * alive; an idle open store does not, so uv_run(UV_RUN_DEFAULT) returns
 * once the last callback has run.
 *
 * Accounts keep SCRAM credentials only (salt, iteration count, StoredKey,
 * ServerKey, for SHA-1 and SHA-256), never a password; plus, when the
 * DIGEST-MD5 switch is on, the MD5(user:realm:password) hash that mechanism
 * needs. The schema is versioned (PRAGMA user_version) and migrated on open;
 * rosters, subscriptions and offline messages are added as later versions,
 * each group of tables in a file of its own (docs/architecture.md, Storage,
 * has the recipe). */
#ifndef STARLING_STORE_STORE_H
#define STARLING_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

#include "base/log.h"
#include "sasl/scram.h"

typedef enum store_error {
    STORE_OK = 0,
    STORE_ERR_NOT_FOUND = -1,
    STORE_ERR_EXISTS = -2,
    STORE_ERR_IO = -3, /* SQLite failed; details are logged */
    STORE_ERR_NOMEM = -4,
    STORE_ERR_CLOSED = -5,  /* the store was closing; nothing was done */
    STORE_ERR_SCHEMA = -6,  /* database from a newer Starling */
    STORE_ERR_INVALID = -7, /* arguments that cannot be stored (a NULL
                               name, a salt or key longer than the max) */
} store_error_t;

const char *store_strerror(int err);

typedef struct store_account {
    const char *domain; /* nameprep'd */
    const char *node;   /* nodeprep'd with stored-string rules */
    scram_cred_t sha1;
    scram_cred_t sha256;
    bool has_digest_md5;
    unsigned char digest_md5[16]; /* MD5(node ":" domain ":" password) */
} store_account_t;

typedef struct store store_t;

/* Opens (creating when absent) the database at `path`, migrates its schema
 * and starts the storage thread. Blocks until that is done: call it at
 * start-up, before serving. Returns STORE_OK, or an error (STORE_ERR_IO,
 * STORE_ERR_SCHEMA, STORE_ERR_NOMEM) with a one-line reason in err. */
int store_open(uv_loop_t *loop, const char *path, store_t **out, char *err,
               size_t errlen);

/* Runs every queued request (their callbacks run on the loop as usual when
 * the caller keeps running it; requests made after this call fail with
 * STORE_ERR_CLOSED, still through their callback on the loop), stops the
 * thread, closes the database and frees the store once the loop has
 * delivered the last callback. `done` (may be NULL) runs when everything is
 * released; from then on `s` is gone. The loop must keep running until
 * then (the store holds a reference on it while closing). */
void store_close(store_t *s, void (*done)(void *ud), void *ud);

/* Where the store logs what it cannot say through an error code (the
 * database's own message behind STORE_ERR_IO). Until this is called, and
 * when lg is NULL, that is stderr at level info. The storage thread logs
 * through lg too (lib/base/log.h says why that is safe), so lg must outlive
 * the store. */
void store_set_logger(store_t *s, const logger_t *lg);

/* For command-line tools, which have nothing else to do while they wait:
 * runs the loop (UV_RUN_ONCE at a time) until *done is true, typically set
 * by the request's callback. Returns *done: false only when the loop ran
 * out of work without it being set (nothing was pending that could set
 * it). The server never calls this. */
bool store_wait(uv_loop_t *loop, const bool *done);

typedef void (*store_done_cb)(void *ud, int err);
/* a is NULL unless err is STORE_OK. */
typedef void (*store_account_cb)(void *ud, int err, const store_account_t *a);
/* names: "node@domain" strings, count of them (NULL and 0 on error). */
typedef void (*store_list_cb)(void *ud, int err, const char *const *names,
                              size_t count);

/* STORE_ERR_NOT_FOUND when there is no such account. */
void store_account_get(store_t *s, const char *domain, const char *node,
                       store_account_cb cb, void *ud);
/* Fails with STORE_ERR_EXISTS when the account exists. */
void store_account_create(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud);
/* Replaces the credentials of an existing account (STORE_ERR_NOT_FOUND
 * otherwise); its creation time stays. */
void store_account_update(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud);
/* STORE_ERR_NOT_FOUND when there was no such account. */
void store_account_delete(store_t *s, const char *domain, const char *node,
                          store_done_cb cb, void *ud);
/* All accounts of one domain, or of every domain when domain is NULL,
 * sorted by domain, then node (byte order). */
void store_account_list(store_t *s, const char *domain, store_list_cb cb,
                        void *ud);

#endif
