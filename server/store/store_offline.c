/* The offline-message table group (XEP-0160; store.h, "offline"): stanzas
 * kept for an account while it has no session, in arrival order. Its
 * schema step, statements and requests; it knows no backend. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/arena.h"
#include "base/xalloc.h"
#include "store/store_internal.h"

/* 3: offline messages. AUTOINCREMENT keeps ids growing even after the
 * newest messages were deleted: an id is never given twice, so that a
 * delete "up to the last id delivered" cannot take a message that arrived
 * later and reused a number. The index serves every query (one account's
 * messages in id order, counting them). stored is Unix seconds. The rows go
 * with their account (ON DELETE CASCADE). Released: never edit it. */
static const store_migration_t store_offline_migrations[] = {
    {3, ("CREATE TABLE offline_messages ("
         "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  stanza BLOB NOT NULL,"
         "  stored INTEGER NOT NULL,"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE INDEX offline_messages_owner"
         "  ON offline_messages (domain, node, id);")},
};

const store_group_t store_offline_group = {
    "offline",
    store_offline_migrations,
    sizeof(store_offline_migrations) / sizeof(store_offline_migrations[0]),
    NULL, /* nothing about other accounts */
    0,
};

/* Parameters ?1 and ?2 are always domain and node. One row when the
 * account exists: how many messages it holds, counted up to ?3 at most
 * (the limit; 0 counts nothing), so that a full store is not counted
 * whole at every message. */
static const store_stmt_t stmt_offline_room = {
    "offline_room",
    "SELECT (SELECT count(*) FROM (SELECT 1 FROM offline_messages"
    " WHERE domain = ?1 AND node = ?2 LIMIT ?3) AS held)"
    " FROM accounts WHERE domain = ?1 AND node = ?2"};
static const store_stmt_t stmt_offline_insert = {
    "offline_insert", "INSERT INTO offline_messages (domain, node, stanza,"
                      " stored) VALUES (?1, ?2, ?3, ?4)"};
static const store_stmt_t stmt_offline_get = {
    "offline_get", "SELECT id, stanza FROM offline_messages"
                   " WHERE domain = ?1 AND node = ?2 ORDER BY id"};
static const store_stmt_t stmt_offline_delete = {
    "offline_delete", "DELETE FROM offline_messages"
                      " WHERE domain = ?1 AND node = ?2 AND id <= ?3"};
static const store_stmt_t stmt_offline_count = {
    "offline_count", "SELECT count(*) FROM offline_messages"
                     " WHERE domain = ?1 AND node = ?2"};

/* One request type for every offline operation. */
typedef struct offline_req {
    store_req_t base;
    union {
        store_done_cb done;
        store_offline_cb msgs;
        store_count_cb count;
    } cb;
    /* Copies in the request's extra bytes. */
    const char *domain;
    const char *node;
    const char *stanza; /* put */
    size_t len;
    unsigned limit; /* put */
    int64_t up_to;  /* delete */
    bool found;     /* put: the account exists */
    uint64_t held;  /* put: messages held (up to the limit); count */
    bool row_bad;   /* a row that this code did not write */
    /* get: on the heap, the stanzas in the arena */
    store_offline_msg_t *msgs;
    size_t nmsgs, cap;
    arena_t *arena;
} offline_req_t;

static offline_req_t *offline_req_new(const store_op_t *op, const char *domain,
                                      const char *node, size_t more, void *ud)
{
    size_t extra = (domain != NULL ? strlen(domain) + 1 : 0) +
                   (node != NULL ? strlen(node) + 1 : 0) + more;
    offline_req_t *r = store_req_new(op, sizeof(*r), extra, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->node = store_req_copy(&cursor, node);
    return r;
}

static void offline_req_free(offline_req_t *r)
{
    free(r->msgs);
    arena_free(r->arena);
    free(r);
}

static void offline_deliver_done(store_req_t *base)
{
    offline_req_t *r = (offline_req_t *)base;
    if (r->cb.done != NULL)
        r->cb.done(base->ud, base->err);
    offline_req_free(r);
}

/* --- put ---
 *
 * BEGIN (taking the write lock, so that two writers cannot both see room
 * for the last message), the account exists and has room, INSERT, COMMIT.
 * The callback runs after the COMMIT, as every deliver does. */

static void offline_room_row(store_req_t *base, const store_value_t *col,
                             size_t n)
{
    offline_req_t *r = (offline_req_t *)base;
    r->found = true;
    if (n != 1 || col[0].type != STORE_INT || col[0].i < 0)
        r->row_bad = true;
    else
        r->held = (uint64_t)col[0].i;
}

static void offline_put_room_done(store_req_t *base, store_conn_t *c, int err,
                                  uint64_t changes)
{
    offline_req_t *r = (offline_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_bad) {
        store_conn_log(c, LOG_ERROR, "offline put %s@%s: count is not a number",
                       r->node, r->domain);
        err = STORE_ERR_IO;
    }
    if (err == STORE_OK && !r->found)
        err = STORE_ERR_NOT_FOUND;
    if (err == STORE_OK && r->limit > 0 && r->held >= r->limit)
        err = STORE_ERR_FULL;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_BLOB(r->stanza, r->len),
                         STORE_V_INT(time(NULL))};
    store_exec(c, base, &stmt_offline_insert, p, 4, NULL, store_txn_end);
}

static void offline_put_begun(store_req_t *base, store_conn_t *c, int err,
                              uint64_t changes)
{
    offline_req_t *r = (offline_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_INT(r->limit)};
    store_exec(c, base, &stmt_offline_room, p, 3, offline_room_row,
               offline_put_room_done);
}

static void offline_put_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL,
               offline_put_begun);
}

static const store_op_t offline_put_op = {"offline put", offline_put_run,
                                          offline_deliver_done, false};

void store_offline_put(store_t *s, const char *domain, const char *node,
                       const char *stanza, size_t len, unsigned limit,
                       store_done_cb cb, void *ud)
{
    bool valid = domain != NULL && node != NULL && stanza != NULL && len > 0;
    offline_req_t *r =
        offline_req_new(&offline_put_op, domain, node, valid ? len : 0, ud);
    r->cb.done = cb;
    if (!valid) {
        r->base.err = STORE_ERR_INVALID;
    } else {
        char *copy = (char *)(r + 1) + strlen(domain) + 1 + strlen(node) + 1;
        memcpy(copy, stanza, len);
        r->stanza = copy;
        r->len = len;
        r->limit = limit;
    }
    store_submit(s, &r->base);
}

/* --- get --- */

static void offline_get_row(store_req_t *base, const store_value_t *col,
                            size_t n)
{
    offline_req_t *r = (offline_req_t *)base;
    if (n != 2 || col[0].type != STORE_INT ||
        (col[1].type != STORE_BLOB && col[1].type != STORE_TEXT)) {
        r->row_bad = true;
        return;
    }
    if (r->arena == NULL && (r->arena = arena_new(0)) == NULL)
        xalloc_fail(sizeof(arena_t *));
    if (r->nmsgs == r->cap) {
        r->cap = r->cap != 0 ? r->cap * 2 : 16;
        r->msgs = xreallocarray(r->msgs, r->cap, sizeof(*r->msgs));
    }
    /* With a NUL after it, though the length is what counts. */
    char *copy = arena_alloc(r->arena, col[1].len + 1);
    if (copy == NULL)
        xalloc_fail(col[1].len + 1);
    if (col[1].len > 0)
        memcpy(copy, col[1].p, col[1].len);
    copy[col[1].len] = '\0';
    r->msgs[r->nmsgs++] = (store_offline_msg_t){
        .id = col[0].i, .stanza = copy, .len = col[1].len};
}

static void offline_read_done(store_req_t *base, store_conn_t *c, int err,
                              uint64_t changes)
{
    offline_req_t *r = (offline_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_bad) {
        store_conn_log(c, LOG_ERROR,
                       "offline messages of %s@%s: a row does "
                       "not fit",
                       r->node, r->domain);
        err = STORE_ERR_IO;
    }
    store_req_finish(c, base, err);
}

static void offline_get_run(store_req_t *base, store_conn_t *c)
{
    offline_req_t *r = (offline_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_offline_get, p, 2, offline_get_row,
               offline_read_done);
}

static void offline_get_deliver(store_req_t *base)
{
    offline_req_t *r = (offline_req_t *)base;
    bool ok = base->err == STORE_OK && r->nmsgs > 0;
    if (r->cb.msgs != NULL)
        r->cb.msgs(base->ud, base->err, ok ? r->msgs : NULL, ok ? r->nmsgs : 0);
    offline_req_free(r);
}

static const store_op_t offline_get_op = {"offline get", offline_get_run,
                                          offline_get_deliver, false};

void store_offline_get(store_t *s, const char *domain, const char *node,
                       store_offline_cb cb, void *ud)
{
    offline_req_t *r = offline_req_new(&offline_get_op, domain, node, 0, ud);
    r->cb.msgs = cb;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}

/* --- delete --- */

static void offline_delete_run(store_req_t *base, store_conn_t *c)
{
    offline_req_t *r = (offline_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_INT(r->up_to)};
    store_exec(c, base, &stmt_offline_delete, p, 3, NULL, store_exec_end);
}

static const store_op_t offline_delete_op = {
    "offline delete", offline_delete_run, offline_deliver_done, false};

void store_offline_delete(store_t *s, const char *domain, const char *node,
                          int64_t up_to, store_done_cb cb, void *ud)
{
    offline_req_t *r = offline_req_new(&offline_delete_op, domain, node, 0, ud);
    r->cb.done = cb;
    r->up_to = up_to;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}

/* --- count --- */

static void offline_count_row(store_req_t *base, const store_value_t *col,
                              size_t n)
{
    offline_req_t *r = (offline_req_t *)base;
    if (n != 1 || col[0].type != STORE_INT || col[0].i < 0)
        r->row_bad = true;
    else
        r->held = (uint64_t)col[0].i;
}

static void offline_count_run(store_req_t *base, store_conn_t *c)
{
    offline_req_t *r = (offline_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_offline_count, p, 2, offline_count_row,
               offline_read_done);
}

static void offline_count_deliver(store_req_t *base)
{
    offline_req_t *r = (offline_req_t *)base;
    if (r->cb.count != NULL)
        r->cb.count(base->ud, base->err, base->err == STORE_OK ? r->held : 0);
    offline_req_free(r);
}

static const store_op_t offline_count_op = {"offline count", offline_count_run,
                                            offline_count_deliver, false};

void store_offline_count(store_t *s, const char *domain, const char *node,
                         store_count_cb cb, void *ud)
{
    offline_req_t *r = offline_req_new(&offline_count_op, domain, node, 0, ud);
    r->cb.count = cb;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}
