/* The accounts table group: its schema steps, its statements and the
 * account requests of store.h. A request runs its statements through
 * store_exec() and knows no backend. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/xalloc.h"
#include "store/store_internal.h"

/* 1: accounts. SCRAM credentials for both hashes; the DIGEST-MD5 hash only
 * when that mechanism is enabled. created is Unix seconds. Released: never
 * edit it; a change is a new step with the next free version. */
static const store_migration_t store_accounts_migrations[] = {
    {1, ("CREATE TABLE accounts ("
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
         ");")},
};

const store_group_t store_accounts_group = {
    "accounts",
    store_accounts_migrations,
    sizeof(store_accounts_migrations) / sizeof(store_accounts_migrations[0]),
    NULL, /* its rows are the accounts themselves */
    0,
};

/* Parameters ?1 and ?2 are always domain and node. */
static const store_stmt_t stmt_account_get = {
    "account_get", "SELECT sha1_salt, sha1_iter, sha1_stored, sha1_server,"
                   " sha256_salt, sha256_iter, sha256_stored, sha256_server,"
                   " digest_md5 FROM accounts WHERE domain = ?1 AND node = ?2"};
/* DO NOTHING rather than a constraint error: "exists" is an answer, not a
 * failure worth a log line. */
static const store_stmt_t stmt_account_insert = {
    "account_insert",
    "INSERT INTO accounts (domain, node,"
    " sha1_salt, sha1_iter, sha1_stored, sha1_server,"
    " sha256_salt, sha256_iter, sha256_stored, sha256_server,"
    " digest_md5, created)"
    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
    " ON CONFLICT (domain, node) DO NOTHING"};
static const store_stmt_t stmt_account_update = {
    "account_update",
    "UPDATE accounts SET sha1_salt = ?3, sha1_iter = ?4,"
    " sha1_stored = ?5, sha1_server = ?6, sha256_salt = ?7,"
    " sha256_iter = ?8, sha256_stored = ?9, sha256_server = ?10,"
    " digest_md5 = ?11 WHERE domain = ?1 AND node = ?2"};
static const store_stmt_t stmt_account_delete = {
    "account_delete", "DELETE FROM accounts WHERE domain = ?1 AND node = ?2"};
static const store_stmt_t stmt_account_list_all = {
    "account_list_all",
    "SELECT node, domain FROM accounts ORDER BY domain, node"};
static const store_stmt_t stmt_account_list_domain = {
    "account_list_domain",
    "SELECT node, domain FROM accounts WHERE domain = ?1 ORDER BY node"};

/* One request type serves every account operation; the callback used is
 * the one its op delivers to. */
typedef struct account_req {
    store_req_t base;
    union {
        store_done_cb done;
        store_account_cb account;
        store_list_cb list;
    } cb;
    /* Copies in the request's extra bytes; domain is NULL for a list of
     * every domain. */
    const char *domain;
    const char *node;
    store_account_t account; /* create/update: argument; get: result */
    int row_err;             /* get: the row did not fit */
    bool found;              /* get */
    char **names;            /* list: `count` strings */
    size_t count, cap;
    /* delete: "node@domain", and the next statement of the groups'
     * account_deleted lists to run */
    char *jid;
    size_t next_group, next_stmt;
} account_req_t;

static account_req_t *account_req_new(const store_op_t *op, const char *domain,
                                      const char *node, void *ud)
{
    size_t extra = (domain != NULL ? strlen(domain) + 1 : 0) +
                   (node != NULL ? strlen(node) + 1 : 0);
    account_req_t *r = store_req_new(op, sizeof(*r), extra, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->node = store_req_copy(&cursor, node);
    return r;
}

static void account_req_free(account_req_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->names[i]);
    free(r->names);
    free(r->jid);
    /* Credentials are secrets of a kind: do not leave them in the heap. */
    explicit_bzero(&r->account, sizeof(r->account));
    free(r);
}

static void account_deliver_done(store_req_t *base)
{
    account_req_t *r = (account_req_t *)base;
    if (r->cb.done != NULL)
        r->cb.done(base->ud, base->err);
    account_req_free(r);
}

/* --- get --- */

/* Reads one hash's credentials from columns first .. first + 3. False when
 * the row does not fit (written by something other than this code). */
static bool account_column_cred(const store_value_t *col, scram_cred_t *c)
{
    const store_value_t *salt = &col[0], *iter = &col[1], *stored = &col[2],
                        *server = &col[3];
    if (salt->type != STORE_BLOB || iter->type != STORE_INT ||
        stored->type != STORE_BLOB || server->type != STORE_BLOB ||
        salt->len > SCRAM_SALT_MAX || stored->len > SCRAM_KEY_MAX ||
        stored->len != server->len || iter->i < 0 || iter->i > UINT_MAX)
        return false;
    /* An empty blob may come as NULL; memcpy of 0 bytes from NULL is
     * still undefined, hence the length checks. */
    if (salt->len > 0)
        memcpy(c->salt, salt->p, salt->len);
    if (stored->len > 0) {
        memcpy(c->stored_key, stored->p, stored->len);
        memcpy(c->server_key, server->p, server->len);
    }
    c->salt_len = salt->len;
    c->iterations = (unsigned)iter->i;
    c->key_len = stored->len;
    return true;
}

static void account_get_row(store_req_t *base, const store_value_t *col,
                            size_t n)
{
    account_req_t *r = (account_req_t *)base;
    store_account_t *a = &r->account;

    r->found = true;
    if (n != 9 || !account_column_cred(&col[0], &a->sha1) ||
        !account_column_cred(&col[4], &a->sha256)) {
        r->row_err = STORE_ERR_IO;
        return;
    }
    if (col[8].type == STORE_NULL)
        return;
    if (col[8].type != STORE_BLOB || col[8].len != sizeof(a->digest_md5)) {
        r->row_err = STORE_ERR_INVALID; /* reported in account_get_done */
        return;
    }
    memcpy(a->digest_md5, col[8].p, sizeof(a->digest_md5));
    a->has_digest_md5 = true;
}

static void account_get_done(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    account_req_t *r = (account_req_t *)base;
    (void)changes;

    if (err == STORE_OK && !r->found) {
        err = STORE_ERR_NOT_FOUND;
    } else if (err == STORE_OK && r->row_err != STORE_OK) {
        store_conn_log(c, LOG_ERROR, "account %s@%s: %s", r->node, r->domain,
                       r->row_err == STORE_ERR_INVALID
                           ? "DIGEST-MD5 hash is not 16 bytes"
                           : "credentials do not fit");
        err = STORE_ERR_IO;
    }
    r->account.domain = r->domain;
    r->account.node = r->node;
    store_req_finish(c, base, err);
}

static void account_get_run(store_req_t *base, store_conn_t *c)
{
    account_req_t *r = (account_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_account_get, p, 2, account_get_row,
               account_get_done);
}

static void account_get_deliver(store_req_t *base)
{
    account_req_t *r = (account_req_t *)base;
    if (r->cb.account != NULL)
        r->cb.account(base->ud, base->err,
                      base->err == STORE_OK ? &r->account : NULL);
    account_req_free(r);
}

static const store_op_t account_get_op = {"account get", account_get_run,
                                          account_get_deliver, false};

void store_account_get(store_t *s, const char *domain, const char *node,
                       store_account_cb cb, void *ud)
{
    account_req_t *r = account_req_new(&account_get_op, domain, node, ud);
    r->cb.account = cb;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}

/* --- create, update --- */

static void account_bind_cred(store_value_t *p, const scram_cred_t *c)
{
    p[0] = STORE_V_BLOB(c->salt, c->salt_len);
    p[1] = STORE_V_INT(c->iterations);
    p[2] = STORE_V_BLOB(c->stored_key, c->key_len);
    p[3] = STORE_V_BLOB(c->server_key, c->key_len);
}

/* Create and update bind the same 11 parameters; create adds ?12. */
static void account_write_exec(store_req_t *base, store_conn_t *c,
                               const store_account_t *a, const store_stmt_t *st,
                               size_t n, store_exec_cb done)
{
    store_value_t p[12];

    p[0] = STORE_V_TEXT(a->domain);
    p[1] = STORE_V_TEXT(a->node);
    account_bind_cred(&p[2], &a->sha1);
    account_bind_cred(&p[6], &a->sha256);
    p[10] = a->has_digest_md5
                ? STORE_V_BLOB(a->digest_md5, sizeof(a->digest_md5))
                : STORE_V_NULL();
    p[11] = STORE_V_INT(time(NULL));
    store_exec(c, base, st, p, n, NULL, done);
}

static void account_write_run(store_req_t *base, store_conn_t *c,
                              const store_stmt_t *st, size_t n,
                              store_exec_cb done)
{
    account_write_exec(base, c, &((account_req_t *)base)->account, st, n, done);
}

void store_account_insert_exec(store_conn_t *c, store_req_t *r,
                               const store_account_t *a, store_exec_cb done)
{
    account_write_exec(r, c, a, &stmt_account_insert, 12, done);
}

/* A statement that touched no row is an answer, not a failure. */
static void account_create_done(store_req_t *base, store_conn_t *c, int err,
                                uint64_t changes)
{
    store_req_finish(c, base,
                     err == STORE_OK && changes == 0 ? STORE_ERR_EXISTS : err);
}

static void account_update_or_delete_done(store_req_t *base, store_conn_t *c,
                                          int err, uint64_t changes)
{
    store_req_finish(
        c, base, err == STORE_OK && changes == 0 ? STORE_ERR_NOT_FOUND : err);
}

static void account_create_run(store_req_t *base, store_conn_t *c)
{
    account_write_run(base, c, &stmt_account_insert, 12, account_create_done);
}

static void account_update_run(store_req_t *base, store_conn_t *c)
{
    account_write_run(base, c, &stmt_account_update, 11,
                      account_update_or_delete_done);
}

static const store_op_t account_create_op = {
    "account create", account_create_run, account_deliver_done, false};
static const store_op_t account_update_op = {
    "account update", account_update_run, account_deliver_done, false};

static bool account_cred_valid(const scram_cred_t *c)
{
    return c->salt_len <= SCRAM_SALT_MAX && c->key_len <= SCRAM_KEY_MAX;
}

static void account_write(store_t *s, const store_op_t *op,
                          const store_account_t *a, store_done_cb cb, void *ud)
{
    account_req_t *r = account_req_new(op, a != NULL ? a->domain : NULL,
                                       a != NULL ? a->node : NULL, ud);
    r->cb.done = cb;
    if (a == NULL || a->domain == NULL || a->node == NULL ||
        !account_cred_valid(&a->sha1) || !account_cred_valid(&a->sha256)) {
        r->base.err = STORE_ERR_INVALID;
    } else {
        r->account = *a;
        r->account.domain = r->domain;
        r->account.node = r->node;
    }
    store_submit(s, &r->base);
}

void store_account_create(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud)
{
    account_write(s, &account_create_op, a, cb, ud);
}

void store_account_update(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud)
{
    account_write(s, &account_update_op, a, cb, ud);
}

/* --- delete ---
 *
 * One transaction: the account's row goes (and with it, through the
 * foreign keys of the other groups' tables, everything the account owned),
 * then every group's account_deleted statements change what other accounts
 * keep about it (their roster items). The account row goes first so that
 * deleting an account that does not exist changes nobody's roster. */

static void account_delete_next(store_req_t *base, store_conn_t *c, int err,
                                uint64_t changes)
{
    account_req_t *r = (account_req_t *)base;
    size_t ngroups;
    const store_group_t *const *groups = store_group_list(&ngroups);
    (void)changes;

    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    while (r->next_group < ngroups &&
           r->next_stmt >= groups[r->next_group]->account_deleted_count) {
        r->next_group++;
        r->next_stmt = 0;
    }
    if (r->next_group == ngroups) {
        store_txn_commit(c, base);
        return;
    }
    const store_stmt_t *st =
        groups[r->next_group]->account_deleted[r->next_stmt++];
    store_value_t p[] = {STORE_V_TEXT(r->jid)};
    store_exec(c, base, st, p, 1, NULL, account_delete_next);
}

static void account_delete_row_done(store_req_t *base, store_conn_t *c, int err,
                                    uint64_t changes)
{
    if (err == STORE_OK && changes == 0)
        store_txn_rollback(c, base, STORE_ERR_NOT_FOUND);
    else
        account_delete_next(base, c, err, changes);
}

static void account_delete_begun(store_req_t *base, store_conn_t *c, int err,
                                 uint64_t changes)
{
    account_req_t *r = (account_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_account_delete, p, 2, NULL,
               account_delete_row_done);
}

static void account_delete_run(store_req_t *base, store_conn_t *c)
{
    account_req_t *r = (account_req_t *)base;
    size_t nlen = strlen(r->node), dlen = strlen(r->domain);

    r->jid = xmalloc(nlen + 1 + dlen + 1);
    memcpy(r->jid, r->node, nlen);
    r->jid[nlen] = '@';
    memcpy(r->jid + nlen + 1, r->domain, dlen + 1);
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL,
               account_delete_begun);
}

static const store_op_t account_delete_op = {
    "account delete", account_delete_run, account_deliver_done, false};

void store_account_delete(store_t *s, const char *domain, const char *node,
                          store_done_cb cb, void *ud)
{
    account_req_t *r = account_req_new(&account_delete_op, domain, node, ud);
    r->cb.done = cb;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}

/* --- list --- */

static void account_list_row(store_req_t *base, const store_value_t *col,
                             size_t n)
{
    account_req_t *r = (account_req_t *)base;
    if (n != 2 || col[0].type != STORE_TEXT || col[1].type != STORE_TEXT) {
        r->row_err = STORE_ERR_IO;
        return;
    }
    if (r->count == r->cap) {
        r->cap = r->cap != 0 ? r->cap * 2 : 16;
        r->names = xreallocarray(r->names, r->cap, sizeof(*r->names));
    }
    /* node "@" domain */
    char *name = xmalloc(col[0].len + 1 + col[1].len + 1);
    memcpy(name, col[0].p, col[0].len);
    name[col[0].len] = '@';
    memcpy(name + col[0].len + 1, col[1].p, col[1].len);
    name[col[0].len + 1 + col[1].len] = '\0';
    r->names[r->count++] = name;
}

static void account_list_done(store_req_t *base, store_conn_t *c, int err,
                              uint64_t changes)
{
    account_req_t *r = (account_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_err != STORE_OK) {
        store_conn_log(c, LOG_ERROR, "account list: a name is not text");
        err = STORE_ERR_IO;
    }
    store_req_finish(c, base, err);
}

static void account_list_run(store_req_t *base, store_conn_t *c)
{
    account_req_t *r = (account_req_t *)base;
    if (r->domain != NULL) {
        store_value_t p[] = {STORE_V_TEXT(r->domain)};
        store_exec(c, base, &stmt_account_list_domain, p, 1, account_list_row,
                   account_list_done);
    } else {
        store_exec(c, base, &stmt_account_list_all, NULL, 0, account_list_row,
                   account_list_done);
    }
}

static void account_list_deliver(store_req_t *base)
{
    account_req_t *r = (account_req_t *)base;
    bool ok = base->err == STORE_OK;
    if (r->cb.list != NULL)
        r->cb.list(base->ud, base->err,
                   ok ? (const char *const *)r->names : NULL,
                   ok ? r->count : 0);
    account_req_free(r);
}

static const store_op_t account_list_op = {"account list", account_list_run,
                                           account_list_deliver, false};

void store_account_list(store_t *s, const char *domain, store_list_cb cb,
                        void *ud)
{
    account_req_t *r = account_req_new(&account_list_op, domain, NULL, ud);
    r->cb.list = cb;
    store_submit(s, &r->base);
}
