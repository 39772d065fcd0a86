/* The message-archive table group (XEP-0313; store.h, "archive"): every
 * 1:1 message an account sent or received, with the stanza id (XEP-0359)
 * it was given, its time and the other party, queried by party, time span
 * and position, a page at a time. Its schema step, statements and
 * requests; it knows no backend. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/xalloc.h"
#include "store/store_internal.h"

/* 6: the archive. Rows are read in (ts, id) order: the time a message was
 * archived, then the insertion order for equal times. The indexes serve
 * the queries XEP-0313 defines without a scan of the account's archive:
 * by time span (archive_time), by party and time span (archive_peer), by
 * stanza id (archive_sid, also its uniqueness per account). ts is
 * milliseconds since the epoch. The rows go with their account. Released:
 * never edit it. */
static const store_migration_t store_archive_migrations[] = {
    {6, ("CREATE TABLE archive ("
         "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  sid TEXT NOT NULL,"
         "  ts INTEGER NOT NULL,"
         "  peer TEXT NOT NULL,"
         "  peer_res TEXT NOT NULL,"
         "  outgoing INTEGER NOT NULL,"
         "  stanza BLOB NOT NULL,"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE UNIQUE INDEX archive_sid ON archive (domain, node, sid);"
         "CREATE INDEX archive_time ON archive (domain, node, ts, id);"
         "CREATE INDEX archive_peer ON archive (domain, node, peer, ts, id);")},
};

const store_group_t store_archive_group = {
    "archive",
    store_archive_migrations,
    sizeof(store_archive_migrations) / sizeof(store_archive_migrations[0]),
    NULL, /* nothing about other accounts */
    0,
};

static const store_stmt_t stmt_archive_insert = {
    "archive_insert",
    "INSERT INTO archive (domain, node, sid, ts, peer, peer_res, outgoing,"
    " stanza) SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8"
    " WHERE EXISTS (SELECT 1 FROM accounts WHERE domain = ?1 AND node = ?2)"};
static const store_stmt_t stmt_archive_pos = {
    "archive_pos", "SELECT ts, id FROM archive"
                   " WHERE domain = ?1 AND node = ?2 AND sid = ?3"};
/* ?3 peer, ?4 peer_res or NULL, ?5..?6 the time span already narrowed
 * to the after/before positions, ?7..?8 after (ts, id), ?9..?10 before
 * (ts, id), ?11 the page size plus one. Written so that the index range
 * on ts (and peer) is what SQLite walks: a row-value comparison or an
 * "?3 IS NULL OR" would make it scan the account's archive. */
#define ARCHIVE_COLS " SELECT id, sid, ts, peer, peer_res, outgoing, stanza"
#define ARCHIVE_SPAN                                                           \
    " AND ts >= ?5 AND ts <= ?6 AND (ts > ?7 OR id > ?8)"                      \
    " AND (ts < ?9 OR id < ?10) AND (?4 IS NULL OR peer_res = ?4)"
#define ARCHIVE_ALL                                                            \
    ARCHIVE_COLS                                                               \
    " FROM archive INDEXED BY archive_time"                                    \
    " WHERE domain = ?1 AND node = ?2 AND ?3 IS NULL" ARCHIVE_SPAN
#define ARCHIVE_PEER                                                           \
    ARCHIVE_COLS " FROM archive INDEXED BY archive_peer"                       \
                 " WHERE domain = ?1 AND node = ?2 AND peer = ?3" ARCHIVE_SPAN
static const store_stmt_t stmt_archive[2][2] = {
    {{"archive_forward", ARCHIVE_ALL " ORDER BY ts, id LIMIT ?11"},
     {"archive_backward", ARCHIVE_ALL " ORDER BY ts DESC, id DESC LIMIT ?11"}},
    {{"archive_peer_forward", ARCHIVE_PEER " ORDER BY ts, id LIMIT ?11"},
     {"archive_peer_backward",
      ARCHIVE_PEER " ORDER BY ts DESC, id DESC LIMIT ?11"}},
};
#define ARCHIVE_COUNT_SPAN                                                     \
    " AND ts >= ?4 AND ts <= ?5 AND (?6 IS NULL OR peer_res = ?6)"
static const store_stmt_t stmt_archive_count[2] = {
    {"archive_count",
     "SELECT count(*) FROM archive INDEXED BY archive_time"
     " WHERE domain = ?1 AND node = ?2 AND ?3 IS NULL" ARCHIVE_COUNT_SPAN},
    {"archive_peer_count",
     "SELECT count(*) FROM archive INDEXED BY archive_peer"
     " WHERE domain = ?1 AND node = ?2 AND peer = ?3" ARCHIVE_COUNT_SPAN},
};
static const store_stmt_t stmt_archive_by_sid = {
    "archive_by_sid",
    ARCHIVE_COLS " FROM archive WHERE domain = ?1 AND node = ?2 AND sid = ?3"};
static const store_stmt_t stmt_archive_expire = {
    "archive_expire", "DELETE FROM archive WHERE ts < ?1"};

typedef struct archive_req {
    store_req_t base;
    store_done_cb done;
    store_archive_cb items_cb;
    const char *domain, *node; /* copies in the extra bytes */
    /* put */
    store_archive_item_t item;
    /* query */
    const char *peer, *peer_res, *after, *before;
    int64_t start, end;
    int64_t pos[2][2]; /* after, before: (ts, id) */
    int which;         /* the position being looked up: 0 after, 1 before */
    const char **ids;  /* XEP-0313 'ids': copies in the extra bytes */
    size_t nids, next_id;
    size_t max;
    bool backward, found, count_only;
    store_archive_item_t *items;
    size_t count, cap;
    arena_t *arena;
    bool row_bad;
} archive_req_t;

static archive_req_t *archive_req_new(const store_op_t *op, const char *domain,
                                      const char *node, const char *const *more,
                                      size_t nmore, size_t bytes, void *ud)
{
    size_t extra = bytes;
    extra += domain != NULL ? strlen(domain) + 1 : 0;
    extra += node != NULL ? strlen(node) + 1 : 0;
    for (size_t i = 0; i < nmore; i++)
        extra += more[i] != NULL ? strlen(more[i]) + 1 : 0;
    archive_req_t *r = store_req_new(op, sizeof(*r), extra, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->node = store_req_copy(&cursor, node);
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    return r;
}

static void archive_req_free(archive_req_t *r)
{
    free(r->ids);
    free(r->items);
    arena_free(r->arena);
    free(r);
}

static void archive_deliver_done(store_req_t *base)
{
    archive_req_t *r = (archive_req_t *)base;
    if (r->done != NULL)
        r->done(base->ud, base->err);
    archive_req_free(r);
}

/* --- put --- */

static void archive_inserted(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    store_req_finish(
        c, base, err == STORE_OK && changes == 0 ? STORE_ERR_NOT_FOUND : err);
}

static void archive_put_run(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    const store_archive_item_t *it = &r->item;
    store_value_t p[] = {STORE_V_TEXT(r->domain),
                         STORE_V_TEXT(r->node),
                         STORE_V_TEXT(it->sid),
                         STORE_V_INT(it->ts),
                         STORE_V_TEXT(it->peer),
                         STORE_V_TEXT(it->peer_res),
                         STORE_V_INT(it->outgoing ? 1 : 0),
                         STORE_V_BLOB(it->stanza, it->len)};
    store_exec(c, base, &stmt_archive_insert, p, 8, NULL, archive_inserted);
}

static const store_op_t archive_put_op = {"archive put", archive_put_run,
                                          archive_deliver_done, true};

void store_archive_put(store_t *s, const char *domain, const char *node,
                       const store_archive_item_t *item, store_done_cb cb,
                       void *ud)
{
    bool valid = item != NULL && item->sid != NULL && item->peer != NULL &&
                 (item->stanza != NULL || item->len == 0);
    const char *more[] = {valid ? item->sid : NULL, valid ? item->peer : NULL,
                          valid && item->peer_res != NULL ? item->peer_res
                                                          : ""};
    archive_req_t *r = archive_req_new(&archive_put_op, domain, node, more, 3,
                                       valid ? item->len : 0, ud);
    r->done = cb;
    if (!valid) {
        r->base.err = STORE_ERR_INVALID;
    } else if (r->base.err == STORE_OK) {
        char *cursor = (char *)(r + 1) + strlen(domain) + strlen(node) + 2;
        r->item = *item;
        r->item.sid = store_req_copy(&cursor, item->sid);
        r->item.peer = store_req_copy(&cursor, item->peer);
        r->item.peer_res = store_req_copy(&cursor, more[2]);
        if (item->len > 0)
            memcpy(cursor, item->stanza, item->len);
        r->item.stanza = cursor;
    }
    store_submit(s, &r->base);
}

/* --- query: the positions named by stanza id, then the page --- */

static void archive_row(store_req_t *base, const store_value_t *col, size_t n)
{
    archive_req_t *r = (archive_req_t *)base;
    if (n != 7 || col[0].type != STORE_INT || col[1].type != STORE_TEXT ||
        col[2].type != STORE_INT || col[3].type != STORE_TEXT ||
        col[4].type != STORE_TEXT || col[5].type != STORE_INT ||
        (col[6].type != STORE_BLOB && col[6].type != STORE_TEXT)) {
        r->row_bad = true;
        return;
    }
    if (r->arena == NULL && (r->arena = arena_new(0)) == NULL)
        xalloc_fail(sizeof(arena_t *));
    if (r->count == r->cap) {
        r->cap = r->cap != 0 ? r->cap * 2 : 16;
        r->items = xreallocarray(r->items, r->cap, sizeof(*r->items));
    }
    char *strs[4];
    const size_t which[4] = {1, 3, 4, 6};
    for (size_t i = 0; i < 4; i++) {
        const store_value_t *v = &col[which[i]];
        strs[i] = arena_alloc(r->arena, v->len + 1);
        if (strs[i] == NULL)
            xalloc_fail(v->len + 1);
        if (v->len > 0)
            memcpy(strs[i], v->p, v->len);
        strs[i][v->len] = '\0';
    }
    r->items[r->count++] = (store_archive_item_t){
        .id = col[0].i,
        .sid = strs[0],
        .ts = col[2].i,
        .peer = strs[1],
        .peer_res = strs[2],
        .outgoing = col[5].i != 0,
        .stanza = strs[3],
        .len = col[6].len,
    };
}

static void archive_page_done(store_req_t *base, store_conn_t *c, int err,
                              uint64_t changes)
{
    archive_req_t *r = (archive_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_bad) {
        store_conn_log(c, LOG_ERROR, "archive of %s@%s: a row does not fit",
                       r->node, r->domain);
        err = STORE_ERR_IO;
    }
    store_req_finish(c, base, err);
}

static void archive_page(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    store_value_t p[] = {
        r->peer != NULL ? STORE_V_TEXT(r->peer) : STORE_V_NULL(),
        r->peer_res != NULL ? STORE_V_TEXT(r->peer_res) : STORE_V_NULL(),
    };
    /* The span narrowed to the positions, so that one range serves. */
    int64_t lo = r->start > r->pos[0][0] ? r->start : r->pos[0][0];
    int64_t hi = r->end < r->pos[1][0] ? r->end : r->pos[1][0];
    store_value_t all[] = {
        STORE_V_TEXT(r->domain),
        STORE_V_TEXT(r->node),
        p[0],
        p[1],
        STORE_V_INT(lo),
        STORE_V_INT(hi),
        STORE_V_INT(r->pos[0][0]),
        STORE_V_INT(r->pos[0][1]),
        STORE_V_INT(r->pos[1][0]),
        STORE_V_INT(r->pos[1][1]),
        STORE_V_INT(r->max + 1),
    };
    store_exec(c, base, &stmt_archive[r->peer != NULL][r->backward], all, 11,
               archive_row, archive_page_done);
}

/* 'ids': each item by its sid, in turn; one missing fails the query. */
static void archive_id_done(store_req_t *base, store_conn_t *c, int err,
                            uint64_t changes)
{
    archive_req_t *r = (archive_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->row_bad)
        err = STORE_ERR_IO;
    else if (err == STORE_OK && r->count != r->next_id + 1)
        err = STORE_ERR_NOT_FOUND;
    if (err != STORE_OK || ++r->next_id == r->nids) {
        if (err == STORE_ERR_IO)
            store_conn_log(c, LOG_ERROR, "archive of %s@%s: a row does not fit",
                           r->node, r->domain);
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_TEXT(r->ids[r->next_id])};
    store_exec(c, base, &stmt_archive_by_sid, p, 3, archive_row,
               archive_id_done);
}

static void archive_ids(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_TEXT(r->ids[0])};
    store_exec(c, base, &stmt_archive_by_sid, p, 3, archive_row,
               archive_id_done);
}

static void archive_pos_row(store_req_t *base, const store_value_t *col,
                            size_t n)
{
    archive_req_t *r = (archive_req_t *)base;
    if (n != 2 || col[0].type != STORE_INT || col[1].type != STORE_INT) {
        r->row_bad = true;
        return;
    }
    r->found = true;
    r->pos[r->which][0] = col[0].i;
    r->pos[r->which][1] = col[1].i;
}

static void archive_next_pos(store_req_t *base, store_conn_t *c);

static void archive_pos_done(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    archive_req_t *r = (archive_req_t *)base;
    (void)changes;
    if (err == STORE_OK && !r->found)
        err = STORE_ERR_NOT_FOUND; /* XEP-0313 §4.1.3: item-not-found */
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    r->which++;
    archive_next_pos(base, c);
}

static void archive_next_pos(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    const char *sid = r->which == 0 ? r->after : r->before;
    while (r->which < 2 && (sid == NULL || sid[0] == '\0')) {
        r->which++;
        sid = r->which == 0 ? r->after : r->before;
    }
    if (r->which >= 2) {
        if (r->nids > 0)
            archive_ids(base, c);
        else
            archive_page(base, c);
        return;
    }
    r->found = false;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_TEXT(sid)};
    store_exec(c, base, &stmt_archive_pos, p, 3, archive_pos_row,
               archive_pos_done);
}

static void archive_count_row(store_req_t *base, const store_value_t *col,
                              size_t n)
{
    archive_req_t *r = (archive_req_t *)base;
    if (n != 1 || col[0].type != STORE_INT || col[0].i < 0)
        r->row_bad = true;
    else
        r->count = (size_t)col[0].i;
}

static void archive_query_run(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    if (!r->count_only) {
        archive_next_pos(base, c);
        return;
    }
    store_value_t p[] = {
        STORE_V_TEXT(r->domain),
        STORE_V_TEXT(r->node),
        r->peer != NULL ? STORE_V_TEXT(r->peer) : STORE_V_NULL(),
        STORE_V_INT(r->start),
        STORE_V_INT(r->end),
        r->peer_res != NULL ? STORE_V_TEXT(r->peer_res) : STORE_V_NULL(),
    };
    store_exec(c, base, &stmt_archive_count[r->peer != NULL], p, 6,
               archive_count_row, archive_page_done);
}

static int item_cmp(const void *a, const void *b)
{
    const store_archive_item_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* The items read by sid that the other filters keep, oldest first. */
static void archive_ids_filter(archive_req_t *r)
{
    qsort(r->items, r->count, sizeof(*r->items), item_cmp);
    size_t n = 0;
    for (size_t i = 0; i < r->count; i++) {
        const store_archive_item_t *it = &r->items[i];
        if (i > 0 && it->id == r->items[i - 1].id)
            continue; /* named twice */
        if ((r->peer != NULL && strcmp(it->peer, r->peer) != 0) ||
            (r->peer_res != NULL && strcmp(it->peer_res, r->peer_res) != 0) ||
            it->ts < r->start || it->ts > r->end ||
            item_cmp(it, &(store_archive_item_t){.ts = r->pos[0][0],
                                                 .id = r->pos[0][1]}) <= 0 ||
            item_cmp(it, &(store_archive_item_t){.ts = r->pos[1][0],
                                                 .id = r->pos[1][1]}) >= 0)
            continue;
        r->items[n++] = *it;
    }
    r->count = n;
    r->max = n;
    r->backward = false;
}

static void archive_query_deliver(store_req_t *base)
{
    archive_req_t *r = (archive_req_t *)base;
    bool ok = base->err == STORE_OK;
    if (r->count_only) {
        if (r->items_cb != NULL)
            r->items_cb(base->ud, base->err, NULL, ok ? r->count : 0, true);
        archive_req_free(r);
        return;
    }
    if (ok && r->nids > 0)
        archive_ids_filter(r);
    size_t n = ok ? r->count : 0;
    bool complete = n <= r->max;
    if (n > r->max)
        n = r->max;
    if (ok && r->backward) {
        /* Read newest first: the page is the n newest, oldest first. */
        for (size_t i = 0; i < n / 2; i++) {
            store_archive_item_t t = r->items[i];
            r->items[i] = r->items[n - 1 - i];
            r->items[n - 1 - i] = t;
        }
    }
    if (r->items_cb != NULL)
        r->items_cb(base->ud, base->err, n > 0 ? r->items : NULL, n, complete);
    archive_req_free(r);
}

static const store_op_t archive_query_op = {"archive query", archive_query_run,
                                            archive_query_deliver, false};

void store_archive_query(store_t *s, const char *domain, const char *node,
                         const store_archive_query_t *q, store_archive_cb cb,
                         void *ud)
{
    const char *more[] = {
        q != NULL ? q->peer : NULL, q != NULL ? q->peer_res : NULL,
        q != NULL ? q->after : NULL, q != NULL ? q->before : NULL};
    size_t id_bytes = 0;
    for (size_t i = 0; q != NULL && q->ids != NULL && i < q->nids; i++)
        id_bytes += q->ids[i] != NULL ? strlen(q->ids[i]) + 1 : 0;
    archive_req_t *r =
        archive_req_new(&archive_query_op, domain, node, more, 4, id_bytes, ud);
    r->items_cb = cb;
    bool ids_ok = q != NULL && (q->nids == 0 || q->ids != NULL);
    for (size_t i = 0; ids_ok && i < q->nids; i++)
        ids_ok = q->ids[i] != NULL;
    if (q == NULL || q->max == 0 || (q->peer_res != NULL && q->peer == NULL) ||
        !ids_ok) {
        r->base.err = STORE_ERR_INVALID;
    } else if (r->base.err == STORE_OK) {
        char *cursor = (char *)(r + 1) + strlen(domain) + strlen(node) + 2;
        r->peer = store_req_copy(&cursor, q->peer);
        r->peer_res = store_req_copy(&cursor, q->peer_res);
        r->after = store_req_copy(&cursor, q->after);
        r->before = store_req_copy(&cursor, q->before);
        if (q->nids > 0) {
            r->ids = xreallocarray(NULL, q->nids, sizeof(*r->ids));
            for (size_t i = 0; i < q->nids; i++)
                r->ids[i] = store_req_copy(&cursor, q->ids[i]);
            r->nids = q->nids;
        }
        r->start = q->start;
        r->end = q->end != 0 ? q->end : INT64_MAX;
        r->max = q->max;
        r->count_only = q->count_only;
        r->backward = q->before != NULL;
        r->pos[0][0] = INT64_MIN;
        r->pos[0][1] = INT64_MIN;
        r->pos[1][0] = INT64_MAX;
        r->pos[1][1] = INT64_MAX;
    }
    store_submit(s, &r->base);
}

/* --- retention --- */

static void archive_expire_run(store_req_t *base, store_conn_t *c)
{
    archive_req_t *r = (archive_req_t *)base;
    store_value_t p[] = {STORE_V_INT(r->start)};
    store_exec(c, base, &stmt_archive_expire, p, 1, NULL, store_exec_end);
}

static const store_op_t archive_expire_op = {
    "archive expire", archive_expire_run, archive_deliver_done, false};

void store_archive_expire(store_t *s, int64_t before_ms, store_done_cb cb,
                          void *ud)
{
    archive_req_t *r =
        archive_req_new(&archive_expire_op, "", "", NULL, 0, 0, ud);
    r->done = cb;
    r->start = before_ms;
    store_submit(s, &r->base);
}
