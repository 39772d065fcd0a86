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
#include <stdint.h>
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
    STORE_ERR_FULL = -8,    /* a per-account limit was reached */
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

/* The loop the store answers on (a module's work that must leave it, a
 * password hash on the thread pool, comes back to it). */
uv_loop_t *store_loop(store_t *s);

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
/* STORE_ERR_NOT_FOUND when there was no such account. With the account go,
 * in the same transaction, its roster, its pending requests and its
 * offline messages; and in the roster of every other account of any domain
 * an item for it loses its subscription both ways (RFC 6121 §2.5.2: as if
 * the user had removed the contact: subscription none, no ask, no
 * approval; a pending request from it is dropped; that roster's version
 * grows by one). The items stay: nobody's contact list shrinks silently. */
void store_account_delete(store_t *s, const char *domain, const char *node,
                          store_done_cb cb, void *ud);
/* All accounts of one domain, or of every domain when domain is NULL,
 * sorted by domain, then node (byte order). */
void store_account_list(store_t *s, const char *domain, store_list_cb cb,
                        void *ud);

/* ------------------------------------------------------------ rosters
 * RFC 6121 §2 rosters, with the subscription state of RFC 6121 Appendix A
 * and the version XEP-0237 counts. Every account has one roster version, a
 * number that grows by one with each change (0: never changed); each
 * change names the version it makes. Groups of an item are stored as
 * given, in order. A pending inbound subscription request (RFC 6121
 * §3.1.3) is kept apart from the items: it may exist for a contact that
 * is not in the roster ("None + Pending In" has no item), and it keeps the
 * request's stanza so that it is delivered again, as sent, at each login
 * until the user answers it. Contacts are bare JIDs, prepared. */

/* Subscription bits: "to" (the user sees the contact's presence), "from"
 * (the contact sees the user's); both bits: "both". */
enum {
    STORE_SUB_NONE = 0,
    STORE_SUB_TO = 1,
    STORE_SUB_FROM = 2,
    STORE_SUB_BOTH = 3
};

typedef struct store_roster_item {
    const char *contact; /* bare JID */
    const char *name;    /* or NULL */
    const char *const *groups;
    size_t group_count;
    unsigned subscription; /* STORE_SUB_* */
    bool ask;      /* pending out: ask='subscribe' (RFC 6121 §2.1.2.2) */
    bool approved; /* pre-approved (RFC 6121 §3.4) */
} store_roster_item_t;

typedef struct store_roster_pending {
    const char *contact; /* who asked */
    const char *stanza;  /* their <presence type='subscribe'/>, as stored */
    size_t len;
} store_roster_pending_t;

typedef struct store_roster {
    int64_t version;
    const store_roster_item_t *items; /* sorted by contact */
    size_t count;
    const store_roster_pending_t *pending; /* sorted by contact */
    size_t pending_count;
} store_roster_t;

/* r is NULL unless err is STORE_OK. STORE_ERR_NOT_FOUND when there is no
 * such account; an account that has never had a roster gets an empty one
 * with version 0. */
typedef void (*store_roster_cb)(void *ud, int err, const store_roster_t *r);

void store_roster_get(store_t *s, const char *domain, const char *node,
                      store_roster_cb cb, void *ud);

/* What store_roster_update() does to the pending request of `contact`. */
typedef enum store_pending_op {
    STORE_PENDING_KEEP,
    STORE_PENDING_SET, /* store (or replace) pending_stanza */
    STORE_PENDING_CLEAR,
} store_pending_op_t;

/* One change of one contact, in one transaction: the item is replaced by
 * `item` (inserted when absent) or, with item NULL, deleted; the pending
 * request is kept, set or cleared; the account's roster version becomes
 * `version` when it is not 0 (a change of a pending request alone is not
 * a roster change and passes 0). item->contact, when item is given, is
 * `contact`. */
typedef struct store_roster_change {
    const char *contact;
    const store_roster_item_t *item; /* NULL: remove the item */
    store_pending_op_t pending;
    const char *pending_stanza; /* STORE_PENDING_SET */
    size_t pending_len;
    int64_t version;
} store_roster_change_t;

/* STORE_ERR_NOT_FOUND (nothing changed) when there is no such account. */
void store_roster_update(store_t *s, const char *domain, const char *node,
                         const store_roster_change_t *ch, store_done_cb cb,
                         void *ud);

/* ------------------------------------------------------------ offline
 * XEP-0160 offline messages: the stanza as serialized (with its 'from' and
 * a XEP-0203 <delay/> already in it), in arrival order. */

typedef struct store_offline_msg {
    int64_t id; /* grows with arrival */
    const char *stanza;
    size_t len;
} store_offline_msg_t;

/* Appends a message for node@domain unless the account already holds
 * `limit` of them (0: no limit): then STORE_ERR_FULL and nothing is
 * stored; STORE_ERR_NOT_FOUND when there is no such account. The callback runs
 * once the message is committed: a crash of the process after it cannot lose
 * it. */
void store_offline_put(store_t *s, const char *domain, const char *node,
                       const char *stanza, size_t len, unsigned limit,
                       store_done_cb cb, void *ud);

/* msgs in arrival order (NULL and 0 on error or when there are none). */
typedef void (*store_offline_cb)(void *ud, int err,
                                 const store_offline_msg_t *msgs, size_t count);

/* The messages stored for node@domain, oldest first; they stay stored. */
void store_offline_get(store_t *s, const char *domain, const char *node,
                       store_offline_cb cb, void *ud);
/* Deletes the messages of node@domain with id <= up_to (those delivered). */
void store_offline_delete(store_t *s, const char *domain, const char *node,
                          int64_t up_to, store_done_cb cb, void *ud);
/* How many are stored for node@domain (starlingctl, tests). */
typedef void (*store_count_cb)(void *ud, int err, uint64_t count);
void store_offline_count(store_t *s, const char *domain, const char *node,
                         store_count_cb cb, void *ud);

/* ------------------------------------------------------------ account data
 * Small documents an account keeps on the server, each under a `kind`
 * (the module's: "private", "vcard", "block") and a `key` within it
 * (XEP-0049: the namespace; a block list: the blocked JID; "" for a single
 * document). Values are bytes, usually XML as serialized; `updated` is
 * Unix seconds of the last write. A kind's documents list oldest write
 * first. They go with their account. */

typedef struct store_data_item {
    /* The owner: only from store_data_all(); NULL otherwise. */
    const char *domain, *node;
    const char *key;
    const char *value; /* NUL after len bytes */
    size_t len;
    int64_t updated;
} store_data_item_t;

/* items NULL and count 0 on error or when there are none. */
typedef void (*store_data_cb)(void *ud, int err, const store_data_item_t *items,
                              size_t count);

/* Writes (inserts or replaces) one document; STORE_ERR_NOT_FOUND when
 * there is no such account. */
void store_data_put(store_t *s, const char *domain, const char *node,
                    const char *kind, const char *key, const void *value,
                    size_t len, store_done_cb cb, void *ud);
/* The document `key` of `kind` (0 or 1 items), or with key NULL every
 * document of the kind. An unknown account has none. */
void store_data_get(store_t *s, const char *domain, const char *node,
                    const char *kind, const char *key, store_data_cb cb,
                    void *ud);
/* Every document of `kind` of every account, by owner (domain, node),
 * then oldest write first: for a module that keeps a kind in memory
 * (XEP-0191 block lists), loaded once at start. */
void store_data_all(store_t *s, const char *kind, store_data_cb cb, void *ud);
/* Deletes the document `key` of `kind`, or with key NULL all of the kind;
 * deleting nothing is no error. */
void store_data_delete(store_t *s, const char *domain, const char *node,
                       const char *kind, const char *key, store_done_cb cb,
                       void *ud);

/* ------------------------------------------------------------ invitations
 * Tokens that let someone create one account in-band (XEP-0077 with a
 * XEP-0401 preauth token) on a server whose registration is invite-only:
 * made by the operator (starlingctl invite), each for one domain, valid
 * until `expires` (Unix seconds), used once. */

/* Stores a new token (and drops expired ones); STORE_ERR_IO for a token
 * that exists (tokens are random: never in practice). */
void store_invite_create(store_t *s, const char *domain, const char *token,
                         int64_t expires, store_done_cb cb, void *ud);
/* STORE_OK when `token` is unused and unexpired for `domain`, else
 * STORE_ERR_NOT_FOUND. */
void store_invite_check(store_t *s, const char *domain, const char *token,
                        store_done_cb cb, void *ud);
/* In one transaction: takes the token (for a->domain; STORE_ERR_NOT_FOUND
 * when it is unknown or used — not when it expired since it was checked,
 * XEP-0445 §4) and creates the account
 * (STORE_ERR_EXISTS when it exists: the token stays unused). */
void store_invite_redeem(store_t *s, const char *token,
                         const store_account_t *a, store_done_cb cb, void *ud);

/* ------------------------------------------------------------ archive
 * XEP-0313 message archives: each 1:1 message an account sent or received,
 * under the stanza id (XEP-0359) it was given, the time it was archived
 * (ts, milliseconds since the epoch) and the other party. Queries read in
 * (ts, insertion) order, a page at a time. Rows go with their account. */

typedef struct store_archive_item {
    int64_t id;           /* insertion order (filled by queries) */
    const char *sid;      /* the stanza id, unique per account */
    int64_t ts;           /* ms since the epoch */
    const char *peer;     /* the other party's bare JID */
    const char *peer_res; /* its resource, "" when none */
    bool outgoing;        /* sent by the account */
    const char *stanza;   /* the message as serialized (NUL after len) */
    size_t len;
} store_archive_item_t;

typedef struct store_archive_query {
    const char *peer;     /* only with this party (bare JID), or NULL */
    const char *peer_res; /* and this resource of it, or NULL */
    int64_t start, end;   /* ts span, inclusive; end 0: no end */
    const char *after;    /* only after the item with this sid, or NULL */
    /* Only before the item with this sid; "" for the last page; NULL: no
     * bound. With `before` the page is the `max` items just before it
     * (RSM's backward paging), still oldest first. */
    const char *before;
    size_t max; /* the page size, at least 1 */
    /* Only the items with these sids (XEP-0313 'ids'), which must all
     * exist, then filtered as above; max does not apply. */
    const char *const *ids;
    size_t nids;
    /* Only count what matches the filters (peer, peer_res, start, end;
     * not the positions): the callback gets items NULL and the number in
     * count (RSM §2.6). It walks the index range: ~50 ms a million. */
    bool count_only;
} store_archive_query_t;

/* items oldest first (NULL and 0 on error or when none); complete: no
 * more items match in the direction read. STORE_ERR_NOT_FOUND when `after`,
 * `before` or one of `ids` names no item of the account. */
typedef void (*store_archive_cb)(void *ud, int err,
                                 const store_archive_item_t *items,
                                 size_t count, bool complete);

/* Archives one message (item->id is ignored); STORE_ERR_NOT_FOUND when
 * there is no such account. */
void store_archive_put(store_t *s, const char *domain, const char *node,
                       const store_archive_item_t *item, store_done_cb cb,
                       void *ud);
void store_archive_query(store_t *s, const char *domain, const char *node,
                         const store_archive_query_t *q, store_archive_cb cb,
                         void *ud);
/* Deletes every account's items archived before `before_ms` (retention). */
void store_archive_expire(store_t *s, int64_t before_ms, store_done_cb cb,
                          void *ud);

#endif
