/* The invitations table group (store.h, "invitations"): tokens an operator
 * hands out (starlingctl invite) so that someone may create one account
 * in-band on a server whose registration is invite-only (XEP-0077 with
 * XEP-0401's preauth token). Its schema step, statements and requests. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store/store_internal.h"

/* 5: invitations. One row per unused token; redeeming it deletes the row
 * in the transaction that creates the account. Released: never edit it. */
static const store_migration_t store_invites_migrations[] = {
    {5, ("CREATE TABLE invites ("
         "  token TEXT PRIMARY KEY,"
         "  domain TEXT NOT NULL,"
         "  created INTEGER NOT NULL,"
         "  expires INTEGER NOT NULL"
         ");")},
};

const store_group_t store_invites_group = {
    "invitations",
    store_invites_migrations,
    sizeof(store_invites_migrations) / sizeof(store_invites_migrations[0]),
    NULL, /* they belong to no account */
    0,
};

/* ?1 token, ?2 domain, ?3 now or created, ?4 expires. */
static const store_stmt_t stmt_invite_insert = {
    "invite_insert", "INSERT INTO invites (token, domain, created, expires)"
                     " VALUES (?1, ?2, ?3, ?4)"};
static const store_stmt_t stmt_invite_check = {
    "invite_check", "SELECT 1 FROM invites WHERE token = ?1 AND domain = ?2"
                    " AND expires > ?3"};
/* XEP-0445 §4: expiry is checked when the token is presented, not again
 * when it is used. */
static const store_stmt_t stmt_invite_take = {
    "invite_take", "DELETE FROM invites WHERE token = ?1 AND domain = ?2"};
/* Expired ones go whenever a new one is made. */
static const store_stmt_t stmt_invite_expire = {
    "invite_expire", "DELETE FROM invites WHERE expires <= ?1"};

typedef struct invite_req {
    store_req_t base;
    store_done_cb done;
    const char *token, *domain; /* copies in the extra bytes */
    int64_t expires;
    store_account_t account; /* redeem: its strings in the extra bytes */
    bool found;
} invite_req_t;

static invite_req_t *invite_req_new(const store_op_t *op, const char *domain,
                                    const char *token, const char *node,
                                    store_done_cb cb, void *ud)
{
    size_t extra = 0;
    const char *parts[] = {domain, token, node};
    for (size_t i = 0; i < 3; i++)
        extra += parts[i] != NULL ? strlen(parts[i]) + 1 : 0;
    invite_req_t *r = store_req_new(op, sizeof(*r), extra, ud);
    char *cursor = (char *)(r + 1);
    r->domain = store_req_copy(&cursor, domain);
    r->token = store_req_copy(&cursor, token);
    r->account.node = store_req_copy(&cursor, node);
    r->account.domain = r->domain;
    r->done = cb;
    if (domain == NULL || token == NULL || token[0] == '\0')
        r->base.err = STORE_ERR_INVALID;
    return r;
}

static void invite_deliver(store_req_t *base)
{
    invite_req_t *r = (invite_req_t *)base;
    if (r->done != NULL)
        r->done(base->ud, base->err);
    free(r);
}

/* --- create: drop the expired ones, then insert --- */

static void invite_expired(store_req_t *base, store_conn_t *c, int err,
                           uint64_t changes)
{
    invite_req_t *r = (invite_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->token), STORE_V_TEXT(r->domain),
                         STORE_V_INT(time(NULL)), STORE_V_INT(r->expires)};
    store_exec(c, base, &stmt_invite_insert, p, 4, NULL, store_txn_end);
}

static void invite_create_begun(store_req_t *base, store_conn_t *c, int err,
                                uint64_t changes)
{
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_INT(time(NULL))};
    store_exec(c, base, &stmt_invite_expire, p, 1, NULL, invite_expired);
}

static void invite_create_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL,
               invite_create_begun);
}

static const store_op_t invite_create_op = {"invite create", invite_create_run,
                                            invite_deliver, false};

void store_invite_create(store_t *s, const char *domain, const char *token,
                         int64_t expires, store_done_cb cb, void *ud)
{
    invite_req_t *r =
        invite_req_new(&invite_create_op, domain, token, NULL, cb, ud);
    r->expires = expires;
    store_submit(s, &r->base);
}

/* --- check --- */

static void invite_row(store_req_t *base, const store_value_t *col, size_t n)
{
    (void)col;
    (void)n;
    ((invite_req_t *)base)->found = true;
}

static void invite_checked(store_req_t *base, store_conn_t *c, int err,
                           uint64_t changes)
{
    (void)changes;
    if (err == STORE_OK && !((invite_req_t *)base)->found)
        err = STORE_ERR_NOT_FOUND;
    store_req_finish(c, base, err);
}

static void invite_check_run(store_req_t *base, store_conn_t *c)
{
    invite_req_t *r = (invite_req_t *)base;
    store_value_t p[] = {STORE_V_TEXT(r->token), STORE_V_TEXT(r->domain),
                         STORE_V_INT(time(NULL))};
    store_exec(c, base, &stmt_invite_check, p, 3, invite_row, invite_checked);
}

static const store_op_t invite_check_op = {"invite check", invite_check_run,
                                           invite_deliver, false};

void store_invite_check(store_t *s, const char *domain, const char *token,
                        store_done_cb cb, void *ud)
{
    store_submit(
        s,
        &invite_req_new(&invite_check_op, domain, token, NULL, cb, ud)->base);
}

/* --- redeem: take the token and create the account, together --- */

static void redeem_inserted(store_req_t *base, store_conn_t *c, int err,
                            uint64_t changes)
{
    if (err == STORE_OK && changes == 0)
        err = STORE_ERR_EXISTS;
    store_txn_end(base, c, err, changes);
}

static void redeem_taken(store_req_t *base, store_conn_t *c, int err,
                         uint64_t changes)
{
    invite_req_t *r = (invite_req_t *)base;
    if (err == STORE_OK && changes == 0)
        err = STORE_ERR_NOT_FOUND;
    if (err != STORE_OK) {
        store_txn_rollback(c, base, err);
        return;
    }
    store_account_insert_exec(c, base, &r->account, redeem_inserted);
}

static void redeem_begun(store_req_t *base, store_conn_t *c, int err,
                         uint64_t changes)
{
    invite_req_t *r = (invite_req_t *)base;
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT(r->token), STORE_V_TEXT(r->domain)};
    store_exec(c, base, &stmt_invite_take, p, 2, NULL, redeem_taken);
}

static void redeem_run(store_req_t *base, store_conn_t *c)
{
    store_exec(c, base, &store_stmt_begin_write, NULL, 0, NULL, redeem_begun);
}

static const store_op_t invite_redeem_op = {"invite redeem", redeem_run,
                                            invite_deliver, false};

void store_invite_redeem(store_t *s, const char *token,
                         const store_account_t *a, store_done_cb cb, void *ud)
{
    invite_req_t *r =
        invite_req_new(&invite_redeem_op, a != NULL ? a->domain : NULL, token,
                       a != NULL ? a->node : NULL, cb, ud);
    if (a == NULL || a->node == NULL) {
        r->base.err = STORE_ERR_INVALID;
    } else {
        const char *node = r->account.node;
        r->account = *a;
        r->account.domain = r->domain;
        r->account.node = node;
    }
    store_submit(s, &r->base);
}
