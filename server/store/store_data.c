/* The account-data table group (store.h, "account data"): small documents
 * an account keeps on the server — XEP-0049 private XML, its vcard-temp,
 * its block list — each under a kind (which module's) and a key. Its schema
 * step, statements and requests; it knows no backend. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/xalloc.h"
#include "store/store_internal.h"

/* 4: account data. `seq` grows with every write (INSERT OR REPLACE gives a
 * replaced row a new one), so listing a kind in seq order lists its
 * documents oldest write first. The rows go with their account (ON DELETE
 * CASCADE). Released: never edit it. */
static const store_migration_t store_data_migrations[] = {
    {4, ("CREATE TABLE account_data ("
         "  seq INTEGER PRIMARY KEY AUTOINCREMENT,"
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  kind TEXT NOT NULL,"
         "  key TEXT NOT NULL,"
         "  value BLOB NOT NULL,"
         "  updated INTEGER NOT NULL,"
         "  UNIQUE (domain, node, kind, key),"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE INDEX account_data_kind"
         "  ON account_data (domain, node, kind, seq);")},
};

const store_group_t store_data_group = {
    "account data",
    store_data_migrations,
    sizeof(store_data_migrations) / sizeof(store_data_migrations[0]),
    NULL, /* nothing about other accounts */
    0,
};

/* ?1 domain, ?2 node, ?3 kind, ?4 key. */
static const store_stmt_t stmt_data_exists = {
    "data_exists", "SELECT 1 FROM accounts WHERE domain = ?1 AND node = ?2"};
static const store_stmt_t stmt_data_put = {
    "data_put",
    "INSERT OR REPLACE INTO account_data (domain, node, kind, key, value,"
    " updated) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"};
static const store_stmt_t stmt_data_get_one = {
    "data_get_one", "SELECT key, value, updated FROM account_data"
                    " WHERE domain = ?1 AND node = ?2 AND kind = ?3"
                    " AND key = ?4"};
static const store_stmt_t stmt_data_get_kind = {
    "data_get_kind", "SELECT key, value, updated FROM account_data"
                     " WHERE domain = ?1 AND node = ?2 AND kind = ?3"
                     " ORDER BY seq"};
static const store_stmt_t stmt_data_all = {
    "data_all", "SELECT key, value, updated, domain, node FROM account_data"
                " WHERE kind = ?1 ORDER BY domain, node, seq"};
static const store_stmt_t stmt_data_delete_one = {
    "data_delete_one", "DELETE FROM account_data WHERE domain = ?1"
                       " AND node = ?2 AND kind = ?3 AND key = ?4"};
static const store_stmt_t stmt_data_delete_kind = {
    "data_delete_kind", "DELETE FROM account_data WHERE domain = ?1"
                        " AND node = ?2 AND kind = ?3"};

typedef struct data_req {
    store_req_t base;
    union {
        store_done_cb done;
        store_data_cb items;
    } cb;
    /* Copies in the request's extra bytes. */
    const char *domain, *node, *kind, *key; /* key may be NULL */
    const char *value;                      /* put */
    size_t len;
    bool found;   /* put: the account exists */
    bool row_bad; /* a row that this code did not write */
    /* get: on the heap, the strings in the arena */
    store_data_item_t *items;
    size_t nitems, cap;
    arena_t *arena;
} data_req_t;

static data_req_t *data_req_new(const store_op_t *op, const char *domain,
                                const char *node, const char *kind,
                                const char *key, size_t more, void *ud)
{
    size_t extra = 0;
    const char *parts[] = {domain, node, kind, key};
    for (size_t i = 0; i < 4; i++)
        extra += parts[i] != NULL ? strlen(parts[i]) + 1 : 0;
    data_req_t *r = store_req_new(op, sizeof(*r), extra + more, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->node = store_req_copy(&cursor, node);
    r->kind = store_req_copy(&cursor, kind);
    r->key = store_req_copy(&cursor, key);
    if (domain == NULL || node == NULL || kind == NULL)
        r->base.err = STORE_ERR_INVALID;
    return r;
}

static void data_req_free(data_req_t *r)
{
    free(r->items);
    arena_free(r->arena);
    free(r);
}

static void data_deliver_done(store_req_t *base)
{
    data_req_t *r = (data_req_t *)base;
    if (r->cb.done != NULL)
        r->cb.done(base->ud, base->err);
    data_req_free(r);
}

/* --- put: BEGIN (write), the account exists, INSERT OR REPLACE, COMMIT */

static void data_exists_row(store_req_t *base, const store_value_t *col,
                            size_t n)
{
    (void)col;
    (void)n;
    ((data_req_t *)base)->found = true;
}

static void data_put_checked(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    data_req_t *r = (data_req_t *)base;
    (void)changes;
    if (err == STORE_OK && !r->found)
        err = STORE_ERR_NOT_FOUND;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    store_value_t p[] = {
        STORE_V_TEXT(r->domain),        STORE_V_TEXT(r->node),
        STORE_V_TEXT(r->kind),          STORE_V_TEXT(r->key),
        STORE_V_BLOB(r->value, r->len), STORE_V_INT(time(NULL))};
    store_exec(c, base, &stmt_data_put, p, 6, NULL, store_txn_end);
}

static void data_put_begun(store_req_t *base, store_conn_t *c, int err,
                           uint64_t changes)
{
    data_req_t *r = (data_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_data_exists, p, 2, data_exists_row,
               data_put_checked);
}

static void data_put_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL, data_put_begun);
}

static const store_op_t data_put_op = {"data put", data_put_run,
                                       data_deliver_done, false};

void store_data_put(store_t *s, const char *domain, const char *node,
                    const char *kind, const char *key, const void *value,
                    size_t len, store_done_cb cb, void *ud)
{
    bool valid = key != NULL && (value != NULL || len == 0);
    data_req_t *r = data_req_new(&data_put_op, domain, node, kind, key,
                                 valid ? len + 1 : 0, ud);
    r->cb.done = cb;
    if (!valid) {
        r->base.err = STORE_ERR_INVALID;
    } else if (r->base.err == STORE_OK) {
        char *copy = (char *)(r + 1) + strlen(domain) + strlen(node) +
                     strlen(kind) + strlen(key) + 4;
        if (len > 0)
            memcpy(copy, value, len);
        copy[len] = '\0';
        r->value = copy;
        r->len = len;
    }
    store_submit(s, &r->base);
}

/* --- get --- */

static void data_get_row(store_req_t *base, const store_value_t *col, size_t n)
{
    data_req_t *r = (data_req_t *)base;
    if ((n != 3 && n != 5) || col[0].type != STORE_TEXT ||
        (col[1].type != STORE_BLOB && col[1].type != STORE_TEXT) ||
        col[2].type != STORE_INT ||
        (n == 5 && (col[3].type != STORE_TEXT || col[4].type != STORE_TEXT))) {
        r->row_bad = true;
        return;
    }
    if (r->arena == NULL && (r->arena = arena_new(0)) == NULL)
        xalloc_fail(sizeof(arena_t *));
    if (r->nitems == r->cap) {
        r->cap = r->cap != 0 ? r->cap * 2 : 8;
        r->items = xreallocarray(r->items, r->cap, sizeof(*r->items));
    }
    char *key = arena_alloc(r->arena, col[0].len + 1);
    char *value = arena_alloc(r->arena, col[1].len + 1);
    if (key == NULL || value == NULL)
        xalloc_fail(col[0].len + col[1].len + 2);
    memcpy(key, col[0].p, col[0].len);
    key[col[0].len] = '\0';
    if (col[1].len > 0)
        memcpy(value, col[1].p, col[1].len);
    value[col[1].len] = '\0';
    const char *owner[2] = {NULL, NULL};
    for (size_t i = 3; i < n; i++) {
        char *o = arena_alloc(r->arena, col[i].len + 1);
        if (o == NULL)
            xalloc_fail(col[i].len + 1);
        memcpy(o, col[i].p, col[i].len);
        o[col[i].len] = '\0';
        owner[i - 3] = o;
    }
    r->items[r->nitems++] = (store_data_item_t){.domain = owner[0],
                                                .node = owner[1],
                                                .key = key,
                                                .value = value,
                                                .len = col[1].len,
                                                .updated = col[2].i};
}

static void data_read_done(store_req_t *base, store_conn_t *c, int err,
                           uint64_t changes)
{
    data_req_t *r = (data_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_bad) {
        store_conn_log(c, LOG_ERROR, "%s data of %s@%s: a row does not fit",
                       r->kind, r->node, r->domain);
        err = STORE_ERR_IO;
    }
    store_req_finish(c, base, err);
}

static void data_get_run(store_req_t *base, store_conn_t *c)
{
    data_req_t *r = (data_req_t *)base;
    store_value_t p[] = {
        STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node), STORE_V_TEXT(r->kind),
        r->key != NULL ? STORE_V_TEXT(r->key) : STORE_V_NULL()};
    if (r->key != NULL)
        store_exec(c, base, &stmt_data_get_one, p, 4, data_get_row,
                   data_read_done);
    else
        store_exec(c, base, &stmt_data_get_kind, p, 3, data_get_row,
                   data_read_done);
}

static void data_get_deliver(store_req_t *base)
{
    data_req_t *r = (data_req_t *)base;
    bool ok = base->err == STORE_OK && r->nitems > 0;
    if (r->cb.items != NULL)
        r->cb.items(base->ud, base->err, ok ? r->items : NULL,
                    ok ? r->nitems : 0);
    data_req_free(r);
}

static const store_op_t data_get_op = {"data get", data_get_run,
                                       data_get_deliver, false};

void store_data_get(store_t *s, const char *domain, const char *node,
                    const char *kind, const char *key, store_data_cb cb,
                    void *ud)
{
    data_req_t *r = data_req_new(&data_get_op, domain, node, kind, key, 0, ud);
    r->cb.items = cb;
    store_submit(s, &r->base);
}

/* --- all of a kind --- */

static void data_all_run(store_req_t *base, store_conn_t *c)
{
    data_req_t *r = (data_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->kind)};
    store_exec(c, base, &stmt_data_all, p, 1, data_get_row, data_read_done);
}

static const store_op_t data_all_op = {"data all", data_all_run,
                                       data_get_deliver, false};

void store_data_all(store_t *s, const char *kind, store_data_cb cb, void *ud)
{
    /* The owner parts are not used: "" keeps data_req_new() content. */
    data_req_t *r = data_req_new(&data_all_op, "", "", kind, NULL, 0, ud);
    r->cb.items = cb;
    store_submit(s, &r->base);
}

/* --- delete --- */

static void data_delete_run(store_req_t *base, store_conn_t *c)
{
    data_req_t *r = (data_req_t *)base;
    store_value_t p[] = {
        STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node), STORE_V_TEXT(r->kind),
        r->key != NULL ? STORE_V_TEXT(r->key) : STORE_V_NULL()};
    if (r->key != NULL)
        store_exec(c, base, &stmt_data_delete_one, p, 4, NULL, store_exec_end);
    else
        store_exec(c, base, &stmt_data_delete_kind, p, 3, NULL, store_exec_end);
}

static const store_op_t data_delete_op = {"data delete", data_delete_run,
                                          data_deliver_done, false};

void store_data_delete(store_t *s, const char *domain, const char *node,
                       const char *kind, const char *key, store_done_cb cb,
                       void *ud)
{
    data_req_t *r =
        data_req_new(&data_delete_op, domain, node, kind, key, 0, ud);
    r->cb.done = cb;
    store_submit(s, &r->base);
}
