/* store internals, shared by the front (store.c: queues, the storage
 * thread, completions on the loop), the table groups (store_accounts.c,
 * store_roster.c, store_offline.c: one file per group of tables, with its
 * schema steps, statements and requests) and the backend
 * (store_sqlite.c). Nothing outside server/store/ includes this, except the
 * store's unit test.
 *
 * How an operation is built (docs/architecture.md, Storage):
 *  - a request type that embeds store_req_t first, with copies of its
 *    arguments and room for its results;
 *  - one store_op_t: run (storage side: statements through store_exec(),
 *    ending with store_req_finish()) and deliver (loop thread: calls the
 *    caller's callback with r->err and frees the request);
 *  - the public function: store_req_new(), copy the arguments, preset
 *    r->err to STORE_ERR_INVALID for arguments that cannot be stored,
 *    store_submit().
 * Nothing in the front or the backend names an operation. */
#ifndef STARLING_STORE_STORE_INTERNAL_H
#define STARLING_STORE_STORE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h> /* STORE_V_TEXT */

#include "base/log.h"
#include "store/store.h"

typedef struct store_req store_req_t;
/* A backend's connection, as the requests see it. */
typedef struct store_conn store_conn_t;

typedef struct store_op {
    const char *name; /* for log lines: "account get" */
    /* Storage side (the storage thread for SQLite; the loop for an
     * asynchronous backend). Runs statements and ends, maybe later from a
     * statement's completion, with exactly one store_req_finish(). Not
     * called when r->err was preset (INVALID, CLOSED). */
    void (*run)(store_req_t *r, store_conn_t *c);
    /* Loop thread, exactly once per request, in request order: calls the
     * caller's callback with r->err (and results only when it is
     * STORE_OK), then frees the request. */
    void (*deliver)(store_req_t *r);
    /* Its run is one write that may share a transaction with neighbouring
     * requests of such ops (group commit): the storage side then wraps a
     * run of them, as queued, in one BEGIN ... COMMIT, and each answer
     * waits for that COMMIT. (The archive's puts: a message costs an
     * insert instead of a transaction.) */
    bool batch;
} store_op_t;

/* The head of every request. One thread touches a request at a time:
 * whoever took it off a queue. */
struct store_req {
    store_req_t *next; /* queue link, under the store's mutex */
    const store_op_t *op;
    /* The result. Preset before store_submit() for an answer known at
     * once (STORE_ERR_INVALID) and by store_submit() while closing
     * (STORE_ERR_CLOSED): such a request skips run and still goes through
     * the queues, so that callbacks keep request order. */
    int err;
    bool finished; /* store_req_finish() was called */
    /* store_txn_rollback(): the answer to finish with once the ROLLBACK
     * is over (the first error wins over the rollback's own). */
    int txn_err;
    void *ud;
};

/* Allocates a zeroed request of `size` bytes (its type embeds store_req_t
 * first) plus `extra` bytes after it for copies of strings; aborts when out
 * of memory (lib/base/xalloc.h), since a request that cannot be made
 * cannot get its callback. */
void *store_req_new(const store_op_t *op, size_t size, size_t extra, void *ud);
/* Copies s (which may be NULL) to *cursor and advances it; returns the
 * copy. For filling a request's extra bytes. */
const char *store_req_copy(char **cursor, const char *s);
/* Queues r; its deliver runs later on the loop, never inside this call. */
void store_submit(store_t *s, store_req_t *r);
/* Ends the storage side of r with err: its deliver will run on the loop. */
void store_req_finish(store_conn_t *c, store_req_t *r, int err);

/* --- statements: what a run function says to any backend --- */

typedef enum store_type {
    STORE_NULL,
    STORE_INT,  /* i */
    STORE_TEXT, /* p, len (no terminator needed; rows add one) */
    STORE_BLOB, /* p, len */
} store_type_t;

/* A parameter or a column. In a row, text and blobs point into the
 * backend's buffers and are valid during the row callback only; text is
 * NUL-terminated there. */
typedef struct store_value {
    store_type_t type;
    int64_t i;
    const void *p;
    size_t len;
} store_value_t;

#define STORE_V_NULL() ((store_value_t){.type = STORE_NULL})
#define STORE_V_INT(v) ((store_value_t){.type = STORE_INT, .i = (int64_t)(v)})
#define STORE_V_TEXT(s)                                                        \
    ((store_value_t){.type = STORE_TEXT, .p = (s), .len = strlen(s)})
#define STORE_V_BLOB(b, n)                                                     \
    ((store_value_t){.type = STORE_BLOB, .p = (b), .len = (n)})

enum { STORE_MAX_COLUMNS = 32 };

/* A statement, defined once as a static const by its group and prepared
 * once per connection, known by its address. The SQL is the portable
 * subset SQLite and PostgreSQL share, with numbered parameters ?1..?N
 * (a PostgreSQL backend writes them $1..$N and prepares under `name`). */
typedef struct store_stmt {
    const char *name; /* unique: "account_get" */
    const char *sql;
} store_stmt_t;

/* Transactions are statements like the others, so that an asynchronous
 * backend can pipeline them: BEGIN, the work, COMMIT (or ROLLBACK). */
extern const store_stmt_t store_stmt_begin, store_stmt_commit,
    store_stmt_rollback;
/* BEGIN for a transaction that reads and then writes (an existence check,
 * then the change): it takes the write lock at once. With a plain BEGIN,
 * SQLite in WAL mode answers the first write with SQLITE_BUSY_SNAPSHOT,
 * without waiting, whenever another process (starlingctl beside a running
 * server) committed after the transaction's first read. A PostgreSQL
 * backend sends a plain BEGIN under this name. */
extern const store_stmt_t store_stmt_begin_write;

/* One result row: `n` columns, in the order the SELECT names them. */
typedef void (*store_row_cb)(store_req_t *r, const store_value_t *cols,
                             size_t n);
/* The statement is over: err is STORE_OK or STORE_ERR_IO/NOMEM (logged
 * already); changes is the number of rows an INSERT, UPDATE or DELETE
 * touched. Either runs another statement or calls store_req_finish(). */
typedef void (*store_exec_cb)(store_req_t *r, store_conn_t *c, int err,
                              uint64_t changes);

/* Runs st with `n` parameters (copied or bound before it returns, so they
 * may live on the stack), calls row (may be NULL) for every row, then
 * done. With SQLite all of that happens before store_exec() returns; an
 * asynchronous backend calls them later, from its loop. */
void store_exec(store_conn_t *c, store_req_t *r, const store_stmt_t *st,
                const store_value_t *params, size_t n, store_row_cb row,
                store_exec_cb done);

/* Ends r's transaction with COMMIT and finishes r with STORE_OK; when the
 * COMMIT fails, rolls back and finishes r with the commit's error. */
void store_txn_commit(store_conn_t *c, store_req_t *r);
/* Ends r's transaction with ROLLBACK and finishes r with err (which may be
 * an answer such as STORE_ERR_NOT_FOUND, not only a failure). */
void store_txn_rollback(store_conn_t *c, store_req_t *r, int err);

/* Completions (store_exec_cb) that end a request the usual ways: with
 * COMMIT when the statement succeeded, else ROLLBACK with its error
 * (store_txn_end, the last statement of a transaction); or with the
 * statement's own result (store_exec_end, a request of one statement). */
void store_txn_end(store_req_t *r, store_conn_t *c, int err, uint64_t changes);
void store_exec_end(store_req_t *r, store_conn_t *c, int err, uint64_t changes);

/* Inserts account a (its strings must live until `done`) as a statement
 * of r's transaction: `done` sees changes == 0 when the account existed
 * (for a group that creates accounts as part of its own request: an
 * invitation redeemed). */
void store_account_insert_exec(store_conn_t *c, store_req_t *r,
                               const store_account_t *a, store_exec_cb done);

/* Logs through the store's logger, with a "store: " prefix; any thread. */
void store_conn_log(store_conn_t *c, log_level_t level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* --- schema: each group brings its own steps --- */

/* Turns a database of user_version `version - 1` into one of `version`.
 * Versions are global and contiguous across groups (1 is accounts, the
 * next group takes 2); released steps are never edited. The backend runs
 * each step in its own transaction and sets the version itself. */
typedef struct store_migration {
    int version;
    const char *sqlite; /* a PostgreSQL field joins with that backend */
} store_migration_t;

typedef struct store_group {
    const char *name;
    const store_migration_t *migrations;
    size_t migration_count;
    /* What deleting an account does to this group's tables beyond the
     * account's own rows (those go with it through their foreign keys,
     * ON DELETE CASCADE): statements run in order inside the transaction
     * of store_account_delete(), after the account's row is gone, with one
     * parameter, ?1, the account's bare JID "node@domain" as contacts are
     * stored. NULL and 0 for a group that keeps nothing about other
     * accounts. */
    const store_stmt_t *const *account_deleted;
    size_t account_deleted_count;
} store_group_t;

/* The groups, in store.c's one list. */
extern const store_group_t store_accounts_group, store_roster_group,
    store_offline_group, store_data_group, store_invites_group,
    store_archive_group;
/* That list, in the order the groups' schema steps were released. */
const store_group_t *const *store_group_list(size_t *count);

/* --- the backend --- */

/* Every connection starts with this header; the backend's own state
 * follows it. */
struct store_conn {
    const struct store_backend *backend;
    store_t *store; /* for finishing requests and for the logger */
};

typedef struct store_backend {
    const char *name;
    /* Opens the database at target (a path for SQLite, a conninfo for
     * PostgreSQL). Returns STORE_OK, STORE_ERR_IO or STORE_ERR_NOMEM with
     * a one-line reason in err. */
    int (*open)(store_t *s, const char *target, store_conn_t **out, char *err,
                size_t errlen);
    /* Brings the schema to the newest version of `steps` (sorted, 1..n,
     * checked by the front). STORE_ERR_SCHEMA for a database newer than
     * steps[n - 1]. */
    int (*migrate)(store_conn_t *c, const store_migration_t *const *steps,
                   size_t n, char *err, size_t errlen);
    /* store_exec(), see there. */
    void (*exec)(store_conn_t *c, store_req_t *r, const store_stmt_t *st,
                 const store_value_t *params, size_t n, store_row_cb row,
                 store_exec_cb done);
    /* Finalises statements and closes; every request is finished. */
    void (*close)(store_conn_t *c);
} store_backend_t;

extern const store_backend_t store_backend_sqlite;

#endif
