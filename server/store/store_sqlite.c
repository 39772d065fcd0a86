/* The SQLite backend of the store: one connection, used only by the storage
 * thread, with its prepared statements kept for the connection's life. It
 * knows no table: groups bring their schema steps and statements
 * (store_internal.h). */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "base/xalloc.h"
#include "store/store_internal.h"

enum {
    /* How long a statement waits for another process's lock (a
     * starlingctl run against a live server's database). */
    STORE_BUSY_TIMEOUT_MS = 5000,
};

typedef struct sqlite_stmt_slot {
    const store_stmt_t *def;
    sqlite3_stmt *st;
} sqlite_stmt_slot_t;

typedef struct sqlite_conn {
    store_conn_t base;
    sqlite3 *db;
    char *path;
    /* Prepared on first use, kept until close. A handful per group:
     * a linear search is cheaper than hashing. */
    sqlite_stmt_slot_t *stmts;
    size_t nstmts, capstmts;
} sqlite_conn_t;

/* Logs the connection's last error and maps it to a store error. */
static int sqlite_fail(sqlite_conn_t *d, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_NOMEM)
        return STORE_ERR_NOMEM;
    store_conn_log(&d->base, LOG_ERROR, "%s: %s", what, sqlite3_errmsg(d->db));
    return STORE_ERR_IO;
}

static sqlite3_stmt *sqlite_stmt(sqlite_conn_t *d, const store_stmt_t *def)
{
    for (size_t i = 0; i < d->nstmts; i++)
        if (d->stmts[i].def == def)
            return d->stmts[i].st;
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v3(d->db, def->sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        char what[128];
        snprintf(what, sizeof(what), "prepare %s", def->name);
        sqlite_fail(d, rc, what);
        sqlite3_finalize(st);
        return NULL;
    }
    if (d->nstmts == d->capstmts) {
        d->capstmts = d->capstmts != 0 ? d->capstmts * 2 : 16;
        d->stmts = xreallocarray(d->stmts, d->capstmts, sizeof(*d->stmts));
    }
    d->stmts[d->nstmts++] = (sqlite_stmt_slot_t){def, st};
    return st;
}

static int sqlite_bind(sqlite3_stmt *st, const store_value_t *params, size_t n)
{
    int rc = SQLITE_OK;
    for (size_t i = 0; i < n && rc == SQLITE_OK; i++) {
        const store_value_t *v = &params[i];
        int col = (int)i + 1;
        switch (v->type) {
        case STORE_NULL:
            rc = sqlite3_bind_null(st, col);
            break;
        case STORE_INT:
            rc = sqlite3_bind_int64(st, col, v->i);
            break;
        case STORE_TEXT:
            rc = sqlite3_bind_text64(st, col, v->p, v->len, SQLITE_STATIC,
                                     SQLITE_UTF8);
            break;
        case STORE_BLOB:
            /* A NULL pointer would bind SQL NULL: an empty blob is "". */
            rc = sqlite3_bind_blob64(st, col, v->p != NULL ? v->p : "", v->len,
                                     SQLITE_STATIC);
            break;
        }
    }
    return rc;
}

/* Fills cols from the current row; false when a column cannot be read
 * (only for want of memory). */
static bool sqlite_row(sqlite3_stmt *st, store_value_t *cols, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int c = (int)i;
        store_value_t *v = &cols[i];
        *v = STORE_V_NULL();
        switch (sqlite3_column_type(st, c)) {
        case SQLITE_NULL:
            break;
        case SQLITE_INTEGER:
            *v = STORE_V_INT(sqlite3_column_int64(st, c));
            break;
        case SQLITE_TEXT:
        case SQLITE_FLOAT: /* no statement of ours reads one; as text */
            v->type = STORE_TEXT;
            v->p = sqlite3_column_text(st, c);
            v->len = (size_t)sqlite3_column_bytes(st, c);
            if (v->p == NULL)
                return false;
            break;
        case SQLITE_BLOB:
            v->type = STORE_BLOB;
            v->p = sqlite3_column_blob(st, c);
            v->len = (size_t)sqlite3_column_bytes(st, c);
            if (v->p == NULL && v->len > 0)
                return false;
            break;
        }
    }
    return true;
}

static void sqlite_exec(store_conn_t *c, store_req_t *r,
                        const store_stmt_t *def, const store_value_t *params,
                        size_t n, store_row_cb row, store_exec_cb done)
{
    sqlite_conn_t *d = (sqlite_conn_t *)c;
    sqlite3_stmt *st = sqlite_stmt(d, def);
    if (st == NULL) {
        done(r, c, STORE_ERR_IO, 0);
        return;
    }
    size_t ncols = (size_t)sqlite3_column_count(st);
    store_value_t cols[STORE_MAX_COLUMNS];
    int rc =
        ncols <= STORE_MAX_COLUMNS ? sqlite_bind(st, params, n) : SQLITE_TOOBIG;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        if (!sqlite_row(st, cols, ncols)) {
            rc = SQLITE_NOMEM; /* column_text fails only for memory */
            break;
        }
        if (row != NULL)
            row(r, cols, ncols);
    }
    int err = STORE_OK;
    uint64_t changes = 0;
    if (rc == SQLITE_DONE) {
        changes = (uint64_t)sqlite3_changes(d->db);
    } else {
        char what[128];
        snprintf(what, sizeof(what), "%s (%s)", r->op->name, def->name);
        err = sqlite_fail(d, rc, what);
    }
    /* Ready for its next use, which may be in done; and the bound values,
     * which point into the caller's frame, are dropped. */
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    done(r, c, err, changes);
}

static int sqlite_exec_script(sqlite_conn_t *d, const char *sql,
                              const char *what)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? STORE_OK : sqlite_fail(d, rc, what);
}

static int sqlite_user_version(sqlite_conn_t *d, int *version)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->db, "PRAGMA user_version", -1, &st, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        *version = sqlite3_column_int(st, 0);
        rc = SQLITE_OK;
    }
    int err =
        rc == SQLITE_OK ? STORE_OK : sqlite_fail(d, rc, "read user_version");
    sqlite3_finalize(st);
    return err;
}

/* Each step runs in its own transaction together with the version it
 * sets, so a crash leaves the database at a version, never between two. */
static int sqlite_migrate(store_conn_t *c,
                          const store_migration_t *const *steps, size_t n,
                          char *err, size_t errlen)
{
    sqlite_conn_t *d = (sqlite_conn_t *)c;
    const char *path = d->path;
    int newest = (int)n;

    for (;;) {
        int version = 0;
        /* IMMEDIATE takes the write lock before the version is read, so
         * that two processes opening an old database at once do not both
         * run the same step. */
        int rc = sqlite_exec_script(d, "BEGIN IMMEDIATE", "begin migration");
        if (rc == STORE_OK)
            rc = sqlite_user_version(d, &version);
        if (rc != STORE_OK) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(d->db));
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (version > newest) {
            snprintf(err, errlen,
                     "%s: schema version %d is newer than this Starling's "
                     "(%d); run a newer Starling or another database",
                     path, version, newest);
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_ERR_SCHEMA;
        }
        if (version < 0) {
            snprintf(err, errlen, "%s: invalid schema version %d", path,
                     version);
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_ERR_SCHEMA;
        }
        if (version == newest) {
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_OK;
        }
        const store_migration_t *m = steps[version];
        rc = sqlite_exec_script(d, m->sqlite, "migrate");
        if (rc == STORE_OK) {
            char set[64];
            snprintf(set, sizeof(set), "PRAGMA user_version = %d", m->version);
            rc = sqlite_exec_script(d, set, "set user_version");
        }
        if (rc == STORE_OK)
            rc = sqlite_exec_script(d, "COMMIT", "commit migration");
        if (rc != STORE_OK) {
            snprintf(err, errlen, "%s: migrating to schema version %d: %s",
                     path, m->version, sqlite3_errmsg(d->db));
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
}

static void sqlite_close(store_conn_t *c);

static int sqlite_open(store_t *s, const char *path, store_conn_t **out,
                       char *err, size_t errlen)
{
    *out = NULL;
    sqlite_conn_t *d = xcalloc(1, sizeof(*d));
    d->base.backend = &store_backend_sqlite;
    d->base.store = s;
    d->path = xstrdup(path);
    /* NOMUTEX: only the storage thread ever uses this connection. */
    int rc = sqlite3_open_v2(
        path, &d->db,
        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        /* SQLite's "unable to open database file" does not say why; the
         * system's errno does. */
        int sys = d->db != NULL ? sqlite3_system_errno(d->db) : 0;
        char why[128] = "";
        if (sys != 0 && strerror_r(sys, why + 2, sizeof(why) - 3) == 0) {
            why[0] = ' ';
            why[1] = '(';
            strcat(why, ")");
        } else {
            why[0] = '\0';
        }
        snprintf(err, errlen, "cannot open %s: %s%s", path,
                 d->db != NULL ? sqlite3_errmsg(d->db) : sqlite3_errstr(rc),
                 why);
        sqlite_close(&d->base);
        return (rc & 0xff) == SQLITE_NOMEM ? STORE_ERR_NOMEM : STORE_ERR_IO;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, STORE_BUSY_TIMEOUT_MS);
    /* WAL lets readers (starlingctl, backups) run beside the server's
     * writes; with WAL, synchronous=NORMAL loses at most the last commits
     * on power failure, never consistency. journal_mode is the first
     * statement to read the file, so this is also where "not a database"
     * shows up. */
    rc = sqlite_exec_script(d,
                            "PRAGMA journal_mode = WAL;"
                            "PRAGMA synchronous = NORMAL;"
                            "PRAGMA foreign_keys = ON;",
                            "configure");
    if (rc != STORE_OK) {
        snprintf(err, errlen, "cannot use %s: %s", path, sqlite3_errmsg(d->db));
        sqlite_close(&d->base);
        return rc;
    }
    *out = &d->base;
    return STORE_OK;
}

static void sqlite_close(store_conn_t *c)
{
    sqlite_conn_t *d = (sqlite_conn_t *)c;
    if (d == NULL)
        return;
    for (size_t i = 0; i < d->nstmts; i++)
        sqlite3_finalize(d->stmts[i].st);
    free(d->stmts);
    /* With every statement finalized, close cannot be busy; the last
     * connection's close also checkpoints the WAL into the database. */
    if (d->db != NULL && sqlite3_close(d->db) != SQLITE_OK)
        store_conn_log(c, LOG_ERROR, "close: %s", sqlite3_errmsg(d->db));
    free(d->path);
    free(d);
}

const store_backend_t store_backend_sqlite = {
    .name = "sqlite",
    .open = sqlite_open,
    .migrate = sqlite_migrate,
    .exec = sqlite_exec,
    .close = sqlite_close,
};
