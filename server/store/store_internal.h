/* store internals shared by the front (store.c: queues, the storage thread,
 * completions on the loop) and the SQLite backend (store_sqlite.c: the
 * connection, schema migrations, statements). Nothing outside
 * server/store/ includes this. */
#ifndef STARLING_STORE_STORE_INTERNAL_H
#define STARLING_STORE_STORE_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>

#include "store/store.h"

typedef enum store_req_kind {
    STORE_REQ_ACCOUNT_GET,
    STORE_REQ_ACCOUNT_CREATE,
    STORE_REQ_ACCOUNT_UPDATE,
    STORE_REQ_ACCOUNT_DELETE,
    STORE_REQ_ACCOUNT_LIST,
} store_req_kind_t;

/* One request, allocated on the loop thread with copies of every argument,
 * run on the storage thread, delivered and freed on the loop thread. Only
 * one thread touches it at a time: whoever took it off a queue. */
typedef struct store_req {
    struct store_req *next; /* queue link, under the store's mutex */
    store_req_kind_t kind;
    int err; /* the result; preset to STORE_ERR_CLOSED for requests made
                while closing, which the thread then passes through */
    union {
        store_done_cb done;
        store_account_cb account;
        store_list_cb list;
    } cb;
    void *ud;
    /* Arguments. domain and node point into the request's own allocation;
     * domain is NULL for a list of every domain. */
    const char *domain;
    const char *node;
    store_account_t account; /* create/update: argument; get: result */
    /* list result: `count` malloc'd strings */
    char **names;
    size_t count;
} store_req_t;

/* The backend's connection, owned by the storage thread. */
typedef struct store_db store_db_t;

/* Opens and migrates (storage thread). Returns STORE_OK, STORE_ERR_IO,
 * STORE_ERR_SCHEMA or STORE_ERR_NOMEM with a one-line reason in err. */
int store_db_open(const char *path, store_db_t **out, char *err, size_t errlen);
/* Runs one request, setting r->err and its results (storage thread). */
void store_db_run(store_db_t *db, store_req_t *r);
void store_db_close(store_db_t *db);

/* The store's one way to complain until the logging module exists; every
 * diagnostic goes through it so that switching is a one-line change. */
void store_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
