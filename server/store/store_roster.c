/* The roster table group: roster items with their subscription state, the
 * per-account roster version, and pending inbound subscription requests
 * (store.h, "rosters"). Like every group it has its schema steps, its
 * statements and its requests, and knows no backend.
 *
 * Groups of an item are one blob: each name followed by a NUL byte, in the
 * given order. That keeps any name exactly (spaces, newlines, any Unicode;
 * a name cannot hold a NUL, being a C string) and tells "no groups" (an
 * empty blob) from one group with an empty name ("\0"), without a table of
 * its own and the statements to keep it in step. */
#include <stdlib.h>
#include <string.h>

#include "base/arena.h"
#include "base/xalloc.h"
#include "store/store_internal.h"

/* 2: rosters. Every row belongs to an account and goes with it (foreign
 * keys, ON DELETE CASCADE; the SQLite backend turns them on). contact is a
 * prepared bare JID; the contact indexes serve store_account_delete(),
 * which looks for every roster holding the deleted account. A roster never
 * changed has no roster_versions row (version 0). Released: never edit it;
 * a change is a new step with the next free version. */
static const store_migration_t store_roster_migrations[] = {
    {2, ("CREATE TABLE roster_items ("
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  contact TEXT NOT NULL,"
         "  name TEXT NULL,"
         "  group_names BLOB NOT NULL,"
         "  subscription INTEGER NOT NULL,"
         "  ask INTEGER NOT NULL,"
         "  approved INTEGER NOT NULL,"
         "  PRIMARY KEY (domain, node, contact),"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE INDEX roster_items_contact ON roster_items (contact);"
         "CREATE TABLE roster_versions ("
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  version INTEGER NOT NULL,"
         "  PRIMARY KEY (domain, node),"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE TABLE roster_pending ("
         "  domain TEXT NOT NULL,"
         "  node TEXT NOT NULL,"
         "  contact TEXT NOT NULL,"
         "  stanza BLOB NOT NULL,"
         "  PRIMARY KEY (domain, node, contact),"
         "  FOREIGN KEY (domain, node) REFERENCES accounts (domain, node)"
         "    ON DELETE CASCADE"
         ");"
         "CREATE INDEX roster_pending_contact ON roster_pending (contact);")},
};

/* An account is deleted (?1: its bare JID): in every other roster its item
 * loses its subscription both ways, its request is dropped, and a roster
 * whose item changed gets the next version. The version goes first: it
 * needs to see which items are about to change. */
static const store_stmt_t stmt_roster_gone_version = {
    "roster_gone_version",
    "INSERT INTO roster_versions (domain, node, version)"
    " SELECT domain, node, 1 FROM roster_items WHERE contact = ?1"
    " AND (subscription <> 0 OR ask <> 0 OR approved <> 0)"
    " ON CONFLICT (domain, node) DO UPDATE"
    " SET version = roster_versions.version + 1"};
static const store_stmt_t stmt_roster_gone_items = {
    "roster_gone_items",
    "UPDATE roster_items SET subscription = 0, ask = 0, approved = 0"
    " WHERE contact = ?1 AND (subscription <> 0 OR ask <> 0 OR approved <> 0)"};
static const store_stmt_t stmt_roster_gone_pending = {
    "roster_gone_pending", "DELETE FROM roster_pending WHERE contact = ?1"};

static const store_stmt_t *const store_roster_account_deleted[] = {
    &stmt_roster_gone_version,
    &stmt_roster_gone_items,
    &stmt_roster_gone_pending,
};

const store_group_t store_roster_group = {
    "roster",
    store_roster_migrations,
    sizeof(store_roster_migrations) / sizeof(store_roster_migrations[0]),
    store_roster_account_deleted,
    sizeof(store_roster_account_deleted) /
        sizeof(store_roster_account_deleted[0]),
};

/* Parameters ?1 and ?2 are always domain and node. roster_account: one
 * row when the account exists, its roster version. ORDER BY contact is
 * SQLite's binary collation, byte order, as store.h promises (a PostgreSQL
 * backend adds COLLATE "C"). */
static const store_stmt_t stmt_roster_account = {
    "roster_account", "SELECT coalesce((SELECT version FROM roster_versions"
                      " WHERE domain = ?1 AND node = ?2), 0)"
                      " FROM accounts WHERE domain = ?1 AND node = ?2"};
static const store_stmt_t stmt_roster_items = {
    "roster_items",
    "SELECT contact, name, group_names, subscription, ask, approved"
    " FROM roster_items WHERE domain = ?1 AND node = ?2 ORDER BY contact"};
static const store_stmt_t stmt_roster_pending = {
    "roster_pending", "SELECT contact, stanza FROM roster_pending"
                      " WHERE domain = ?1 AND node = ?2 ORDER BY contact"};
static const store_stmt_t stmt_roster_item_put = {
    "roster_item_put",
    "INSERT INTO roster_items (domain, node, contact, name, group_names,"
    " subscription, ask, approved) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
    " ON CONFLICT (domain, node, contact) DO UPDATE SET name = excluded.name,"
    " group_names = excluded.group_names,"
    " subscription = excluded.subscription, ask = excluded.ask,"
    " approved = excluded.approved"};
static const store_stmt_t stmt_roster_item_delete = {
    "roster_item_delete", "DELETE FROM roster_items"
                          " WHERE domain = ?1 AND node = ?2 AND contact = ?3"};
static const store_stmt_t stmt_roster_pending_put = {
    "roster_pending_put",
    "INSERT INTO roster_pending (domain, node, contact, stanza)"
    " VALUES (?1, ?2, ?3, ?4)"
    " ON CONFLICT (domain, node, contact) DO UPDATE SET stanza ="
    " excluded.stanza"};
static const store_stmt_t stmt_roster_pending_delete = {
    "roster_pending_delete",
    "DELETE FROM roster_pending"
    " WHERE domain = ?1 AND node = ?2 AND contact = ?3"};
static const store_stmt_t stmt_roster_version_put = {
    "roster_version_put",
    "INSERT INTO roster_versions (domain, node, version) VALUES (?1, ?2, ?3)"
    " ON CONFLICT (domain, node) DO UPDATE SET version = excluded.version"};

/* One request type for get and update. */
typedef struct roster_req {
    store_req_t base;
    union {
        store_done_cb done;
        store_roster_cb roster;
    } cb;
    /* Copies in the request's extra bytes. */
    const char *domain;
    const char *node;

    /* update: the change, its strings copied; the item's groups as the
     * stored blob. */
    const char *contact;
    bool has_item;
    const char *name;
    const char *groups;
    size_t groups_len;
    unsigned subscription;
    bool ask, approved;
    store_pending_op_t pending;
    const char *pending_stanza;
    size_t pending_len;
    int64_t version;

    /* get: the result. Arrays on the heap, strings in the arena. */
    bool found;
    bool row_bad; /* a row that this code did not write */
    store_roster_t roster;
    store_roster_item_t *items;
    size_t item_cap;
    store_roster_pending_t *pend;
    size_t pend_cap;
    arena_t *arena;
} roster_req_t;

static roster_req_t *roster_req_new(const store_op_t *op, const char *domain,
                                    const char *node, size_t more, void *ud)
{
    size_t extra = (domain != NULL ? strlen(domain) + 1 : 0) +
                   (node != NULL ? strlen(node) + 1 : 0) + more;
    roster_req_t *r = store_req_new(op, sizeof(*r), extra, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->node = store_req_copy(&cursor, node);
    return r;
}

static void roster_req_free(roster_req_t *r)
{
    free(r->items);
    free(r->pend);
    arena_free(r->arena);
    free(r);
}

/* --- get --- */

/* The arena's allocation, under the server's out-of-memory policy. */
static char *roster_copy(roster_req_t *r, const void *p, size_t len)
{
    if (r->arena == NULL && (r->arena = arena_new(0)) == NULL)
        xalloc_fail(sizeof(arena_t *));
    char *s = arena_alloc(r->arena, len + 1);
    if (s == NULL)
        xalloc_fail(len + 1);
    if (len > 0)
        memcpy(s, p, len);
    s[len] = '\0';
    return s;
}

static void roster_account_row(store_req_t *base, const store_value_t *col,
                               size_t n)
{
    roster_req_t *r = (roster_req_t *)base;
    r->found = true;
    if (n != 1 || col[0].type != STORE_INT || col[0].i < 0)
        r->row_bad = true;
    else
        r->roster.version = col[0].i;
}

/* Splits a groups blob into the item's array; false when it is not one
 * (not NUL-terminated). */
static bool roster_groups_decode(roster_req_t *r, const store_value_t *v,
                                 store_roster_item_t *it)
{
    if (v->type != STORE_BLOB && v->type != STORE_TEXT)
        return false;
    const char *p = v->p;
    size_t len = v->len, count = 0;
    if (len > 0 && p[len - 1] != '\0')
        return false;
    for (size_t i = 0; i < len; i++)
        count += p[i] == '\0';
    it->group_count = count;
    it->groups = NULL;
    if (count == 0)
        return true;
    const char **names = arena_alloc(r->arena, count * sizeof(*names));
    if (names == NULL)
        xalloc_fail(count * sizeof(*names));
    /* One copy of the blob; the names point into it. */
    const char *copy = roster_copy(r, p, len);
    for (size_t i = 0; i < count; i++) {
        names[i] = copy;
        copy += strlen(copy) + 1;
    }
    it->groups = names;
    return true;
}

static void roster_item_row(store_req_t *base, const store_value_t *col,
                            size_t n)
{
    roster_req_t *r = (roster_req_t *)base;
    if (n != 6 || col[0].type != STORE_TEXT ||
        (col[1].type != STORE_TEXT && col[1].type != STORE_NULL) ||
        col[3].type != STORE_INT || col[3].i < STORE_SUB_NONE ||
        col[3].i > STORE_SUB_BOTH || col[4].type != STORE_INT ||
        col[5].type != STORE_INT) {
        r->row_bad = true;
        return;
    }
    if (r->roster.count == r->item_cap) {
        r->item_cap = r->item_cap != 0 ? r->item_cap * 2 : 16;
        r->items = xreallocarray(r->items, r->item_cap, sizeof(*r->items));
    }
    store_roster_item_t *it = &r->items[r->roster.count];
    memset(it, 0, sizeof(*it));
    it->contact = roster_copy(r, col[0].p, col[0].len);
    it->name =
        col[1].type == STORE_TEXT ? roster_copy(r, col[1].p, col[1].len) : NULL;
    if (!roster_groups_decode(r, &col[2], it)) {
        r->row_bad = true;
        return;
    }
    it->subscription = (unsigned)col[3].i;
    it->ask = col[4].i != 0;
    it->approved = col[5].i != 0;
    r->roster.count++;
}

static void roster_pending_row(store_req_t *base, const store_value_t *col,
                               size_t n)
{
    roster_req_t *r = (roster_req_t *)base;
    if (n != 2 || col[0].type != STORE_TEXT ||
        (col[1].type != STORE_BLOB && col[1].type != STORE_TEXT)) {
        r->row_bad = true;
        return;
    }
    if (r->roster.pending_count == r->pend_cap) {
        r->pend_cap = r->pend_cap != 0 ? r->pend_cap * 2 : 8;
        r->pend = xreallocarray(r->pend, r->pend_cap, sizeof(*r->pend));
    }
    store_roster_pending_t *pe = &r->pend[r->roster.pending_count++];
    pe->contact = roster_copy(r, col[0].p, col[0].len);
    pe->stanza = roster_copy(r, col[1].p, col[1].len);
    pe->len = col[1].len;
}

/* A statement of a get is over: a failure or a bad row ends the read. */
static bool roster_get_failed(roster_req_t *r, store_conn_t *c, int err)
{
    if (err == STORE_OK && r->row_bad) {
        store_conn_log(c, LOG_ERROR, "roster of %s@%s: a row does not fit",
                       r->node, r->domain);
        err = STORE_ERR_IO;
    }
    if (err == STORE_OK)
        return false;
    store_txn_rollback(c, &r->base, err);
    return true;
}

static void roster_get_pending_done(store_req_t *base, store_conn_t *c, int err,
                                    uint64_t changes)
{
    (void)changes;
    if (!roster_get_failed((roster_req_t *)base, c, err))
        store_txn_commit(c, base);
}

static void roster_get_items_done(store_req_t *base, store_conn_t *c, int err,
                                  uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (roster_get_failed(r, c, err))
        return;
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_roster_pending, p, 2, roster_pending_row,
               roster_get_pending_done);
}

static void roster_get_account_done(store_req_t *base, store_conn_t *c, int err,
                                    uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (roster_get_failed(r, c, err))
        return;
    if (!r->found) {
        store_txn_rollback(c, base, STORE_ERR_NOT_FOUND);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_roster_items, p, 2, roster_item_row,
               roster_get_items_done);
}

/* One read transaction, so that the version, the items and the requests
 * are of the same moment even while another process writes. */
static void roster_get_begun(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_roster_account, p, 2, roster_account_row,
               roster_get_account_done);
}

static void roster_get_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin, NULL, 0, NULL, roster_get_begun);
}

static void roster_get_deliver(store_req_t *base)
{
    roster_req_t *r = (roster_req_t *)base;
    r->roster.items = r->items;
    r->roster.pending = r->pend;
    if (r->cb.roster != NULL)
        r->cb.roster(base->ud, base->err,
                     base->err == STORE_OK ? &r->roster : NULL);
    roster_req_free(r);
}

static const store_op_t roster_get_op = {"roster get", roster_get_run,
                                         roster_get_deliver, false};

void store_roster_get(store_t *s, const char *domain, const char *node,
                      store_roster_cb cb, void *ud)
{
    roster_req_t *r = roster_req_new(&roster_get_op, domain, node, 0, ud);
    r->cb.roster = cb;
    if (domain == NULL || node == NULL)
        r->base.err = STORE_ERR_INVALID;
    store_submit(s, &r->base);
}

/* --- update ---
 *
 * BEGIN (taking the write lock), the account exists, the item, the
 * pending request, the version, COMMIT. Each step's completion starts the
 * next; a step with nothing to do passes on at once. */

static void roster_update_last_done(store_req_t *base, store_conn_t *c, int err,
                                    uint64_t changes)
{
    (void)changes;
    if (err != STORE_OK)
        store_txn_rollback(c, base, err);
    else
        store_txn_commit(c, base);
}

static void roster_update_version(store_req_t *base, store_conn_t *c, int err,
                                  uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    if (err != STORE_OK || r->version == 0) {
        roster_update_last_done(base, c, err, changes);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_INT(r->version)};
    store_exec(c, base, &stmt_roster_version_put, p, 3, NULL,
               roster_update_last_done);
}

static void roster_update_pending(store_req_t *base, store_conn_t *c, int err,
                                  uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node),
                         STORE_V_TEXT(r->contact),
                         STORE_V_BLOB(r->pending_stanza, r->pending_len)};
    switch (r->pending) {
    case STORE_PENDING_SET:
        store_exec(c, base, &stmt_roster_pending_put, p, 4, NULL,
                   roster_update_version);
        break;
    case STORE_PENDING_CLEAR:
        store_exec(c, base, &stmt_roster_pending_delete, p, 3, NULL,
                   roster_update_version);
        break;
    case STORE_PENDING_KEEP:
        roster_update_version(base, c, STORE_OK, 0);
        break;
    }
}

static void roster_update_item(store_req_t *base, store_conn_t *c)
{
    roster_req_t *r = (roster_req_t *)base;
    store_value_t p[] = {
        STORE_V_TEXT(r->domain),
        STORE_V_TEXT(r->node),
        STORE_V_TEXT(r->contact),
        r->name != NULL ? STORE_V_TEXT(r->name) : STORE_V_NULL(),
        STORE_V_BLOB(r->groups, r->groups_len),
        STORE_V_INT(r->subscription),
        STORE_V_INT(r->ask),
        STORE_V_INT(r->approved),
    };
    if (r->has_item)
        store_exec(c, base, &stmt_roster_item_put, p, 8, NULL,
                   roster_update_pending);
    else
        store_exec(c, base, &stmt_roster_item_delete, p, 3, NULL,
                   roster_update_pending);
}

static void roster_update_account_done(store_req_t *base, store_conn_t *c,
                                       int err, uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (err == STORE_OK && !r->found)
        err = STORE_ERR_NOT_FOUND;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    roster_update_item(base, c);
}

static void roster_update_begun(store_req_t *base, store_conn_t *c, int err,
                                uint64_t changes)
{
    roster_req_t *r = (roster_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->domain), STORE_V_TEXT(r->node)};
    store_exec(c, base, &stmt_roster_account, p, 2, roster_account_row,
               roster_update_account_done);
}

static void roster_update_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL,
               roster_update_begun);
}

static void roster_deliver_done(store_req_t *base)
{
    roster_req_t *r = (roster_req_t *)base;
    if (r->cb.done != NULL)
        r->cb.done(base->ud, base->err);
    roster_req_free(r);
}

static const store_op_t roster_update_op = {"roster update", roster_update_run,
                                            roster_deliver_done, false};

/* Whether a change can be stored: everything store.h asks of it. */
static bool roster_change_valid(const store_roster_change_t *ch)
{
    if (ch == NULL || ch->contact == NULL || ch->version < 0)
        return false;
    if (ch->pending != STORE_PENDING_KEEP && ch->pending != STORE_PENDING_SET &&
        ch->pending != STORE_PENDING_CLEAR)
        return false;
    if (ch->pending == STORE_PENDING_SET && ch->pending_stanza == NULL)
        return false;
    const store_roster_item_t *it = ch->item;
    if (it == NULL)
        return true;
    if (it->contact != NULL && strcmp(it->contact, ch->contact) != 0)
        return false;
    if (it->subscription > STORE_SUB_BOTH)
        return false;
    if (it->group_count > 0 && it->groups == NULL)
        return false;
    for (size_t i = 0; i < it->group_count; i++)
        if (it->groups[i] == NULL)
            return false;
    return true;
}

void store_roster_update(store_t *s, const char *domain, const char *node,
                         const store_roster_change_t *ch, store_done_cb cb,
                         void *ud)
{
    bool valid = domain != NULL && node != NULL && roster_change_valid(ch);
    const store_roster_item_t *it = valid ? ch->item : NULL;
    size_t groups_len = 0, more = 0;

    if (valid) {
        for (size_t i = 0; it != NULL && i < it->group_count; i++)
            groups_len += strlen(it->groups[i]) + 1;
        more = strlen(ch->contact) + 1 + groups_len +
               (it != NULL && it->name != NULL ? strlen(it->name) + 1 : 0) +
               (ch->pending == STORE_PENDING_SET ? ch->pending_len : 0);
    }
    roster_req_t *r = roster_req_new(&roster_update_op, domain, node, more, ud);
    r->cb.done = cb;
    if (!valid) {
        r->base.err = STORE_ERR_INVALID;
        store_submit(s, &r->base);
        return;
    }
    /* After domain and node in the extra bytes. */
    char *cursor = (char *)(r + 1) + strlen(domain) + 1 + strlen(node) + 1;
    r->contact = store_req_copy(&cursor, ch->contact);
    r->has_item = it != NULL;
    if (it != NULL) {
        r->name = store_req_copy(&cursor, it->name);
        r->groups = cursor;
        r->groups_len = groups_len;
        for (size_t i = 0; i < it->group_count; i++)
            (void)store_req_copy(&cursor, it->groups[i]);
        r->subscription = it->subscription;
        r->ask = it->ask;
        r->approved = it->approved;
    }
    r->pending = ch->pending;
    if (ch->pending == STORE_PENDING_SET) {
        if (ch->pending_len > 0)
            memcpy(cursor, ch->pending_stanza, ch->pending_len);
        r->pending_stanza = cursor;
        r->pending_len = ch->pending_len;
    }
    r->version = ch->version;
    store_submit(s, &r->base);
}
