/* The SQLite backend of the store: one connection, used only by the storage
 * thread, with its prepared statements kept for the connection's life. */
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

#include "store/store_internal.h"

/* Schema migrations: entry i turns a database of user_version i into one of
 * version i + 1, and ends by setting that version. Each runs in its own
 * transaction, so a crash leaves the database at a version, never between
 * two. Released entries are never edited; a schema change is a new entry
 * appended here (rosters, subscriptions and offline messages will be
 * version 2). Parentheses around each script keep clang's
 * -Wstring-concatenation quiet once there are several. */
static const char *const store_migrations[] = {
    /* 1: accounts. SCRAM credentials for both hashes; the DIGEST-MD5 hash
     * only when that mechanism is enabled. created is Unix seconds. */
    ("CREATE TABLE accounts ("
     "  domain TEXT NOT NULL,"
     "  node TEXT NOT NULL,"
     "  sha1_salt BLOB NOT NULL,"
     "  sha1_iter INTEGER NOT NULL,"
     "  sha1_stored BLOB NOT NULL,"
     "  sha1_server BLOB NOT NULL,"
     "  sha256_salt BLOB NOT NULL,"
     "  sha256_iter INTEGER NOT NULL,"
     "  sha256_stored BLOB NOT NULL,"
     "  sha256_server BLOB NOT NULL,"
     "  digest_md5 BLOB NULL,"
     "  created INTEGER NOT NULL,"
     "  PRIMARY KEY (domain, node)"
     ");"
     "PRAGMA user_version = 1;"),
};

enum {
    STORE_SCHEMA_VERSION =
        (int)(sizeof(store_migrations) / sizeof(store_migrations[0])),
    /* How long a statement waits for another process's lock (a
     * starlingctl run against a live server's database). */
    STORE_BUSY_TIMEOUT_MS = 5000,
};

typedef enum store_stmt_id {
    STMT_ACCOUNT_GET,
    STMT_ACCOUNT_INSERT,
    STMT_ACCOUNT_UPDATE,
    STMT_ACCOUNT_DELETE,
    STMT_ACCOUNT_LIST_ALL,
    STMT_ACCOUNT_LIST_DOMAIN,
    STMT_COUNT,
} store_stmt_id_t;

/* Parameters ?1 and ?2 are always domain and node. */
static const char *const store_stmt_sql[STMT_COUNT] = {
    [STMT_ACCOUNT_GET] =
        "SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server,"
        " sha256_salt, sha256_iter, sha256_stored, sha256_server,"
        " digest_md5 FROM accounts WHERE domain = ?1 AND node = ?2",
    /* DO NOTHING rather than a constraint error: "exists" is an answer,
     * not a failure worth a log line. */
    [STMT_ACCOUNT_INSERT] =
        "INSERT INTO accounts (domain, node,"
        " sha1_salt, sha1_iter, sha1_stored, sha1_server,"
        " sha256_salt, sha256_iter, sha256_stored, sha256_server,"
        " digest_md5, created)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        " ON CONFLICT (domain, node) DO NOTHING",
    [STMT_ACCOUNT_UPDATE] =
        "UPDATE accounts SET sha1_salt = ?3, sha1_iter = ?4,"
        " sha1_stored = ?5, sha1_server = ?6, sha256_salt = ?7,"
        " sha256_iter = ?8, sha256_stored = ?9, sha256_server = ?10,"
        " digest_md5 = ?11 WHERE domain = ?1 AND node = ?2",
    [STMT_ACCOUNT_DELETE] =
        "DELETE FROM accounts WHERE domain = ?1 AND node = ?2",
    [STMT_ACCOUNT_LIST_ALL] =
        "SELECT node, domain FROM accounts ORDER BY domain, node",
    [STMT_ACCOUNT_LIST_DOMAIN] = ("SELECT node, domain FROM accounts"
                                  " WHERE domain = ?1 ORDER BY node"),
};

struct store_db {
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT]; /* prepared on first use */
};

/* Logs the connection's last error and maps it to a store error. */
static int store_db_fail(store_db_t *d, int rc, const char *what)
{
    if ((rc & 0xff) == SQLITE_NOMEM)
        return STORE_ERR_NOMEM;
    store_log("%s: %s", what, sqlite3_errmsg(d->db));
    return STORE_ERR_IO;
}

static sqlite3_stmt *store_db_stmt(store_db_t *d, store_stmt_id_t id)
{
    if (d->stmt[id] == NULL) {
        int rc =
            sqlite3_prepare_v3(d->db, store_stmt_sql[id], -1,
                               SQLITE_PREPARE_PERSISTENT, &d->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            store_db_fail(d, rc, "prepare");
            sqlite3_finalize(d->stmt[id]);
            d->stmt[id] = NULL;
        }
    }
    return d->stmt[id];
}

/* Makes a cached statement ready for its next use and drops the bound
 * values, which point into the request that is about to be freed. */
static void store_db_stmt_done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

static int store_db_exec(store_db_t *d, const char *sql, const char *what)
{
    int rc = sqlite3_exec(d->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? STORE_OK : store_db_fail(d, rc, what);
}

static int store_db_user_version(store_db_t *d, int *version)
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
        rc == SQLITE_OK ? STORE_OK : store_db_fail(d, rc, "read user_version");
    sqlite3_finalize(st);
    return err;
}

static int store_db_migrate(store_db_t *d, const char *path, char *err,
                            size_t errlen)
{
    for (;;) {
        int version = 0;
        /* IMMEDIATE takes the write lock before the version is read, so
         * that two processes opening an old database at once do not both
         * run the same step. */
        int rc = store_db_exec(d, "BEGIN IMMEDIATE", "begin migration");
        if (rc == STORE_OK)
            rc = store_db_user_version(d, &version);
        if (rc != STORE_OK) {
            snprintf(err, errlen, "%s: %s", path, sqlite3_errmsg(d->db));
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
        if (version > STORE_SCHEMA_VERSION) {
            snprintf(err, errlen,
                     "%s: schema version %d is newer than this Starling's "
                     "(%d); run a newer Starling or another database",
                     path, version, STORE_SCHEMA_VERSION);
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_ERR_SCHEMA;
        }
        if (version < 0) {
            snprintf(err, errlen, "%s: invalid schema version %d", path,
                     version);
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_ERR_SCHEMA;
        }
        if (version == STORE_SCHEMA_VERSION) {
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return STORE_OK;
        }
        rc = store_db_exec(d, store_migrations[version], "migrate");
        int now = version;
        if (rc == STORE_OK)
            rc = store_db_user_version(d, &now);
        /* Every step must set its own version; a step that forgets would
         * otherwise be run again on every start. */
        if (rc == STORE_OK && now != version + 1) {
            store_log("migration to version %d left user_version at %d",
                      version + 1, now);
            rc = STORE_ERR_IO;
        }
        if (rc == STORE_OK)
            rc = store_db_exec(d, "COMMIT", "commit migration");
        if (rc != STORE_OK) {
            snprintf(err, errlen, "%s: migrating to schema version %d: %s",
                     path, version + 1, sqlite3_errmsg(d->db));
            sqlite3_exec(d->db, "ROLLBACK", NULL, NULL, NULL);
            return rc;
        }
    }
}

int store_db_open(const char *path, store_db_t **out, char *err, size_t errlen)
{
    *out = NULL;
    store_db_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        return STORE_ERR_NOMEM;
    }
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
        store_db_close(d);
        return (rc & 0xff) == SQLITE_NOMEM ? STORE_ERR_NOMEM : STORE_ERR_IO;
    }
    sqlite3_extended_result_codes(d->db, 1);
    sqlite3_busy_timeout(d->db, STORE_BUSY_TIMEOUT_MS);
    /* WAL lets readers (starlingctl, backups) run beside the server's
     * writes; with WAL, synchronous=NORMAL loses at most the last commits
     * on power failure, never consistency. journal_mode is the first
     * statement to read the file, so this is also where "not a database"
     * shows up. */
    rc = store_db_exec(d,
                       "PRAGMA journal_mode = WAL;"
                       "PRAGMA synchronous = NORMAL;"
                       "PRAGMA foreign_keys = ON;",
                       "configure");
    if (rc != STORE_OK) {
        snprintf(err, errlen, "cannot use %s: %s", path, sqlite3_errmsg(d->db));
        store_db_close(d);
        return rc;
    }
    rc = store_db_migrate(d, path, err, errlen);
    if (rc != STORE_OK) {
        store_db_close(d);
        return rc;
    }
    *out = d;
    return STORE_OK;
}

void store_db_close(store_db_t *d)
{
    if (d == NULL)
        return;
    for (size_t i = 0; i < STMT_COUNT; i++)
        sqlite3_finalize(d->stmt[i]);
    /* With every statement finalized, close cannot be busy; the last
     * connection's close also checkpoints the WAL into the database. */
    if (d->db != NULL && sqlite3_close(d->db) != SQLITE_OK)
        store_log("close: %s", sqlite3_errmsg(d->db));
    free(d);
}

/* Binds one hash's credentials to parameters first .. first + 3. */
static int store_db_bind_cred(sqlite3_stmt *st, int first,
                              const scram_cred_t *c)
{
    int rc =
        sqlite3_bind_blob(st, first, c->salt, (int)c->salt_len, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(st, first + 1, c->iterations);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, first + 2, c->stored_key, (int)c->key_len,
                               SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_blob(st, first + 3, c->server_key, (int)c->key_len,
                               SQLITE_STATIC);
    return rc;
}

static int store_db_bind_names(sqlite3_stmt *st, const store_req_t *r)
{
    int rc = sqlite3_bind_text(st, 1, r->domain, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(st, 2, r->node, -1, SQLITE_STATIC);
    return rc;
}

/* Reads one hash's credentials from columns first .. first + 3. False when
 * the row does not fit (written by something other than this code). */
static bool store_db_column_cred(sqlite3_stmt *st, int first, scram_cred_t *c)
{
    int salt_len = sqlite3_column_bytes(st, first);
    sqlite3_int64 iter = sqlite3_column_int64(st, first + 1);
    int stored_len = sqlite3_column_bytes(st, first + 2);
    int server_len = sqlite3_column_bytes(st, first + 3);

    if (salt_len > SCRAM_SALT_MAX || stored_len > SCRAM_KEY_MAX ||
        stored_len != server_len || iter < 0 || iter > UINT_MAX)
        return false;
    /* column_blob of an empty blob is NULL; memcpy of 0 bytes from NULL is
     * still undefined, hence the length checks. */
    if (salt_len > 0)
        memcpy(c->salt, sqlite3_column_blob(st, first), (size_t)salt_len);
    if (stored_len > 0) {
        memcpy(c->stored_key, sqlite3_column_blob(st, first + 2),
               (size_t)stored_len);
        memcpy(c->server_key, sqlite3_column_blob(st, first + 3),
               (size_t)server_len);
    }
    c->salt_len = (size_t)salt_len;
    c->iterations = (unsigned)iter;
    c->key_len = (size_t)stored_len;
    return true;
}

static int store_db_account_get(store_db_t *d, store_req_t *r)
{
    sqlite3_stmt *st = store_db_stmt(d, STMT_ACCOUNT_GET);
    if (st == NULL)
        return STORE_ERR_IO;
    int err = STORE_OK;
    int rc = store_db_bind_names(st, r);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        err = STORE_ERR_NOT_FOUND;
    } else if (rc == SQLITE_ROW) {
        store_account_t *a = &r->account;
        a->domain = r->domain;
        a->node = r->node;
        if (!store_db_column_cred(st, 0, &a->sha1) ||
            !store_db_column_cred(st, 4, &a->sha256)) {
            store_log("account %s@%s: credentials do not fit", r->node,
                      r->domain);
            err = STORE_ERR_IO;
        } else if (sqlite3_column_type(st, 8) != SQLITE_NULL) {
            if (sqlite3_column_bytes(st, 8) != sizeof(a->digest_md5)) {
                store_log("account %s@%s: DIGEST-MD5 hash is not 16 bytes",
                          r->node, r->domain);
                err = STORE_ERR_IO;
            } else {
                memcpy(a->digest_md5, sqlite3_column_blob(st, 8),
                       sizeof(a->digest_md5));
                a->has_digest_md5 = true;
            }
        }
    } else {
        err = store_db_fail(d, rc, "account get");
    }
    store_db_stmt_done(st);
    return err;
}

/* Create and update bind the same 11 parameters; create adds ?12. A
 * statement that touched no row answers err_if_no_row. */
static int store_db_account_write(store_db_t *d, store_req_t *r,
                                  store_stmt_id_t id, int err_if_no_row)
{
    sqlite3_stmt *st = store_db_stmt(d, id);
    if (st == NULL)
        return STORE_ERR_IO;
    const store_account_t *a = &r->account;
    int rc = store_db_bind_names(st, r);
    if (rc == SQLITE_OK)
        rc = store_db_bind_cred(st, 3, &a->sha1);
    if (rc == SQLITE_OK)
        rc = store_db_bind_cred(st, 7, &a->sha256);
    if (rc == SQLITE_OK)
        rc = a->has_digest_md5
                 ? sqlite3_bind_blob(st, 11, a->digest_md5,
                                     sizeof(a->digest_md5), SQLITE_STATIC)
                 : sqlite3_bind_null(st, 11);
    if (rc == SQLITE_OK && id == STMT_ACCOUNT_INSERT)
        rc = sqlite3_bind_int64(st, 12, (sqlite3_int64)time(NULL));
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int err = STORE_OK;
    if (rc != SQLITE_DONE)
        err = store_db_fail(d, rc, "account write");
    else if (sqlite3_changes(d->db) == 0)
        err = err_if_no_row;
    store_db_stmt_done(st);
    return err;
}

static int store_db_account_delete(store_db_t *d, store_req_t *r)
{
    sqlite3_stmt *st = store_db_stmt(d, STMT_ACCOUNT_DELETE);
    if (st == NULL)
        return STORE_ERR_IO;
    int rc = store_db_bind_names(st, r);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    int err = STORE_OK;
    if (rc != SQLITE_DONE)
        err = store_db_fail(d, rc, "account delete");
    else if (sqlite3_changes(d->db) == 0)
        err = STORE_ERR_NOT_FOUND;
    store_db_stmt_done(st);
    return err;
}

static int store_db_account_list(store_db_t *d, store_req_t *r)
{
    sqlite3_stmt *st =
        store_db_stmt(d, r->domain != NULL ? STMT_ACCOUNT_LIST_DOMAIN
                                           : STMT_ACCOUNT_LIST_ALL);
    if (st == NULL)
        return STORE_ERR_IO;
    int rc = SQLITE_OK;
    if (r->domain != NULL)
        rc = sqlite3_bind_text(st, 1, r->domain, -1, SQLITE_STATIC);
    size_t cap = 0;
    int err = STORE_OK;
    while (rc == SQLITE_OK || rc == SQLITE_ROW) {
        rc = sqlite3_step(st);
        if (rc != SQLITE_ROW)
            break;
        const char *node = (const char *)sqlite3_column_text(st, 0);
        const char *domain = (const char *)sqlite3_column_text(st, 1);
        if (node == NULL || domain == NULL) {
            rc = SQLITE_NOMEM; /* column_text fails only for memory */
            break;
        }
        if (r->count == cap) {
            size_t ncap = cap != 0 ? cap * 2 : 16;
            char **n = realloc(r->names, ncap * sizeof(*n));
            if (n == NULL) {
                rc = SQLITE_NOMEM;
                break;
            }
            r->names = n;
            cap = ncap;
        }
        size_t nl = strlen(node), dl = strlen(domain);
        char *name = malloc(nl + 1 + dl + 1);
        if (name == NULL) {
            rc = SQLITE_NOMEM;
            break;
        }
        memcpy(name, node, nl);
        name[nl] = '@';
        memcpy(name + nl + 1, domain, dl + 1);
        r->names[r->count++] = name;
    }
    if (rc != SQLITE_DONE)
        err = store_db_fail(d, rc, "account list");
    store_db_stmt_done(st);
    return err;
}

void store_db_run(store_db_t *d, store_req_t *r)
{
    switch (r->kind) {
    case STORE_REQ_ACCOUNT_GET:
        r->err = store_db_account_get(d, r);
        break;
    case STORE_REQ_ACCOUNT_CREATE:
        r->err =
            store_db_account_write(d, r, STMT_ACCOUNT_INSERT, STORE_ERR_EXISTS);
        break;
    case STORE_REQ_ACCOUNT_UPDATE:
        r->err = store_db_account_write(d, r, STMT_ACCOUNT_UPDATE,
                                        STORE_ERR_NOT_FOUND);
        break;
    case STORE_REQ_ACCOUNT_DELETE:
        r->err = store_db_account_delete(d, r);
        break;
    case STORE_REQ_ACCOUNT_LIST:
        r->err = store_db_account_list(d, r);
        break;
    }
}
