/* The store's front: requests are copied on the loop thread, queued to the
 * storage thread, which runs each one's `run` on its own backend connection
 * (store_sqlite.c), and come back through a completion queue and a
 * uv_async_t whose callback runs their `deliver` on the loop thread. This
 * file names no operation and no table: those live in their group's file
 * (store_accounts.c).
 *
 * Life of the store: store_open() starts the thread and waits until the
 * database is open and migrated. store_close() asks the thread to stop
 * once its queue is empty; requests made from then on are marked CLOSED
 * and still pass through the queues, so that every callback arrives in
 * request order. When the thread has closed the database and every
 * completion has been delivered, the async handle is closed and its close
 * callback frees the store. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"
#include "store/store_internal.h"

/* Every table group, in the order their schema steps were released. A new
 * group (archives next) adds one line here. */
static const store_group_t *const store_groups[] = {
    &store_accounts_group, /* 1 */
    &store_roster_group,   /* 2 */
    &store_offline_group,  /* 3 */
    &store_data_group,     /* 4 */
    &store_invites_group,  /* 5 */
    &store_archive_group,  /* 6 */
};

const store_group_t *const *store_group_list(size_t *count)
{
    *count = sizeof(store_groups) / sizeof(store_groups[0]);
    return store_groups;
}

const store_stmt_t store_stmt_begin = {"begin", "BEGIN"};
const store_stmt_t store_stmt_begin_write = {"begin_write", "BEGIN IMMEDIATE"};
const store_stmt_t store_stmt_commit = {"commit", "COMMIT"};
const store_stmt_t store_stmt_rollback = {"rollback", "ROLLBACK"};

struct store {
    uv_async_t async; /* completions are ready, or the thread exited */
    pthread_t thread;
    const store_backend_t *backend;
    const char *path; /* valid until the thread reports the open */
    /* The logger until store_set_logger(): stderr, info. */
    logger_t own_log;

    pthread_mutex_t mu;
    /* Signalled for new work or stop (the thread waits), and once for the
     * result of the open (store_open waits). */
    pthread_cond_t cv;
    /* Under mu: */
    store_req_t *pending_head, *pending_tail; /* for the thread, FIFO */
    store_req_t *done_head, *done_tail;       /* for the loop, FIFO */
    bool opened; /* the thread finished opening; open_rc is its result */
    int open_rc;
    char open_err[256];
    bool async_ready;    /* async initialised: the thread may signal it */
    bool stop;           /* exit once pending is empty */
    bool stopped;        /* the thread took its last request; later requests
                            go straight to done */
    bool exited;         /* the database is closed; joining will not block */
    const logger_t *log; /* never NULL */

    /* Loop thread only: */
    size_t inflight;     /* requests whose callback has not yet run */
    bool closing;        /* store_close() was called */
    bool handle_closing; /* uv_close() was called on async */
    void (*close_done)(void *ud);
    void *close_ud;
};

static const logger_t *store_logger(store_t *s)
{
    pthread_mutex_lock(&s->mu);
    const logger_t *lg = s->log;
    pthread_mutex_unlock(&s->mu);
    return lg;
}

void store_set_logger(store_t *s, const logger_t *lg)
{
    pthread_mutex_lock(&s->mu);
    s->log = lg != NULL ? lg : &s->own_log;
    pthread_mutex_unlock(&s->mu);
}

void store_conn_log(store_conn_t *c, log_level_t level, const char *fmt, ...)
{
    const logger_t *lg = store_logger(c->store);
    if (level > log_level(lg))
        return;
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_write(lg, level, 0, "store: %s", msg);
}

const char *store_strerror(int err)
{
    switch (err) {
    case STORE_OK:
        return "success";
    case STORE_ERR_NOT_FOUND:
        return "not found";
    case STORE_ERR_EXISTS:
        return "already exists";
    case STORE_ERR_IO:
        return "storage failure";
    case STORE_ERR_NOMEM:
        return "out of memory";
    case STORE_ERR_CLOSED:
        return "store closed";
    case STORE_ERR_SCHEMA:
        return "database schema is newer than this program";
    case STORE_ERR_INVALID:
        return "invalid argument";
    case STORE_ERR_FULL:
        return "limit reached";
    default:
        return "unknown store error";
    }
}

static void store_queue_push(store_req_t **head, store_req_t **tail,
                             store_req_t *r)
{
    r->next = NULL;
    if (*tail != NULL)
        (*tail)->next = r;
    else
        *head = r;
    *tail = r;
}

/* Orders every group's schema steps by version and checks that versions
 * run 1..n without a gap or a duplicate: two groups that claimed the same
 * number would otherwise both be skipped or both be run. */
static int store_collect_steps(const store_migration_t ***out, size_t *count,
                               char *err, size_t errlen)
{
    size_t n = 0;
    for (size_t g = 0; g < sizeof(store_groups) / sizeof(store_groups[0]); g++)
        n += store_groups[g]->migration_count;
    const store_migration_t **steps = xcalloc(n, sizeof(*steps));
    for (size_t g = 0; g < sizeof(store_groups) / sizeof(store_groups[0]);
         g++) {
        const store_group_t *grp = store_groups[g];
        for (size_t i = 0; i < grp->migration_count; i++) {
            const store_migration_t *m = &grp->migrations[i];
            if (m->version < 1 || (size_t)m->version > n ||
                steps[m->version - 1] != NULL) {
                snprintf(err, errlen,
                         "schema step %d of group %s is out of sequence",
                         m->version, grp->name);
                free(steps);
                return STORE_ERR_SCHEMA;
            }
            steps[m->version - 1] = m;
        }
    }
    *out = steps;
    *count = n;
    return STORE_OK;
}

static int store_conn_open(store_t *s, store_conn_t **out, char *err,
                           size_t errlen)
{
    const store_migration_t **steps = NULL;
    size_t n = 0;
    int rc = store_collect_steps(&steps, &n, err, errlen);
    if (rc != STORE_OK)
        return rc;
    rc = s->backend->open(s, s->path, out, err, errlen);
    if (rc == STORE_OK) {
        rc = s->backend->migrate(*out, steps, n, err, errlen);
        if (rc != STORE_OK) {
            s->backend->close(*out);
            *out = NULL;
        }
    }
    free(steps);
    return rc;
}

void store_req_finish(store_conn_t *c, store_req_t *r, int err)
{
    (void)c;
    r->err = err;
    r->finished = true;
}

void store_exec(store_conn_t *c, store_req_t *r, const store_stmt_t *st,
                const store_value_t *params, size_t n, store_row_cb row,
                store_exec_cb done)
{
    c->backend->exec(c, r, st, params, n, row, done);
}

static void store_txn_rolled_back(store_req_t *r, store_conn_t *c, int err,
                                  uint64_t changes)
{
    (void)err; /* logged already; the answer is the error that led here */
    (void)changes;
    store_req_finish(c, r, r->txn_err);
}

void store_txn_rollback(store_conn_t *c, store_req_t *r, int err)
{
    r->txn_err = err;
    store_exec(c, r, &store_stmt_rollback, NULL, 0, NULL,
               store_txn_rolled_back);
}

static void store_txn_committed(store_req_t *r, store_conn_t *c, int err,
                                uint64_t changes)
{
    (void)changes;
    /* A failed COMMIT (a lock not obtained in time) leaves the transaction
     * open: it must not swallow the next request's BEGIN. */
    if (err != STORE_OK)
        store_txn_rollback(c, r, err);
    else
        store_req_finish(c, r, STORE_OK);
}

void store_txn_commit(store_conn_t *c, store_req_t *r)
{
    store_exec(c, r, &store_stmt_commit, NULL, 0, NULL, store_txn_committed);
}

/* Requests one group commit may take. */
enum { BATCH_MAX = 256 };

/* A preset error (CLOSED, INVALID) is the answer already; it went through
 * the queue only to keep callbacks in request order. SQLite finishes every
 * request before run returns. */
static void run_one(store_conn_t *conn, store_req_t *r)
{
    if (r->err != STORE_OK)
        return;
    r->op->run(r, conn);
    if (!r->finished) {
        store_conn_log(conn, LOG_ERROR, "%s: request ended without a result",
                       r->op->name);
        r->err = STORE_ERR_IO;
    }
}

static void batch_noted(store_req_t *r, store_conn_t *c, int err,
                        uint64_t changes)
{
    (void)c;
    (void)changes;
    r->txn_err = err;
}

/* The linked requests from `first`, in one transaction: BEGIN, each one's
 * run (a single statement that finishes it), COMMIT. When the BEGIN fails
 * they run one by one; when the COMMIT fails, every one of them gets its
 * error (nothing of theirs is stored). */
static void run_batch(store_conn_t *conn, store_req_t *first)
{
    store_exec(conn, first, &store_stmt_begin_write, NULL, 0, NULL,
               batch_noted);
    int begun = first->txn_err;
    first->txn_err = STORE_OK;
    for (store_req_t *r = first; r != NULL; r = r->next)
        run_one(conn, r);
    if (begun != STORE_OK)
        return;
    store_exec(conn, first, &store_stmt_commit, NULL, 0, NULL, batch_noted);
    int committed = first->txn_err;
    first->txn_err = STORE_OK;
    if (committed == STORE_OK)
        return;
    store_exec(conn, first, &store_stmt_rollback, NULL, 0, NULL, batch_noted);
    first->txn_err = STORE_OK;
    for (store_req_t *r = first; r != NULL; r = r->next)
        if (r->err == STORE_OK)
            r->err = committed;
}

static void *store_thread_main(void *arg)
{
    store_t *s = arg;
    store_conn_t *conn = NULL;
    char err[sizeof(s->open_err)] = "";
    int rc = store_conn_open(s, &conn, err, sizeof(err));

    pthread_mutex_lock(&s->mu);
    s->open_rc = rc;
    memcpy(s->open_err, err, sizeof(err));
    s->opened = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    /* On failure store_open() joins and frees s: touch nothing more. */
    if (rc != STORE_OK)
        return NULL;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        while (s->pending_head == NULL && !s->stop)
            pthread_cond_wait(&s->cv, &s->mu);
        store_req_t *r = s->pending_head;
        if (r == NULL) {
            s->stopped = true;
            break;
        }
        s->pending_head = r->next;
        /* Group commit: the batchable requests queued right behind this
         * one go with it (up to BATCH_MAX). */
        store_req_t *last = r;
        size_t batch = 1;
        if (r->op->batch)
            while (batch < BATCH_MAX && last->next != NULL &&
                   last->next->op->batch) {
                last = last->next;
                batch++;
            }
        s->pending_head = last->next;
        last->next = NULL;
        if (s->pending_head == NULL)
            s->pending_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        if (batch > 1)
            run_batch(conn, r);
        else
            run_one(conn, r);

        pthread_mutex_lock(&s->mu);
        while (r != NULL) {
            store_req_t *next = r->next;
            store_queue_push(&s->done_head, &s->done_tail, r);
            r = next;
        }
        bool ready = s->async_ready;
        pthread_mutex_unlock(&s->mu);
        if (ready)
            uv_async_send(&s->async);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);

    s->backend->close(conn);

    pthread_mutex_lock(&s->mu);
    s->exited = true;
    bool ready = s->async_ready;
    pthread_mutex_unlock(&s->mu);
    /* The loop joins only after seeing `exited` and the send that follows
     * it happens before this thread returns, so s is still alive here. */
    if (ready)
        uv_async_send(&s->async);
    return NULL;
}

static void store_free(store_t *s)
{
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

static void store_on_async(uv_async_t *h);

int store_open(uv_loop_t *loop, const char *path, store_t **out, char *err,
               size_t errlen)
{
    *out = NULL;
    if (errlen > 0)
        err[0] = '\0';
    store_t *s = xcalloc(1, sizeof(*s));
    s->path = path;
    s->backend = &store_backend_sqlite;
    s->own_log.level = LOG_INFO;
    s->log = &s->own_log;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);

    int rc = pthread_create(&s->thread, NULL, store_thread_main, s);
    if (rc != 0) {
        snprintf(err, errlen, "cannot start the storage thread: %s",
                 strerror(rc));
        store_free(s);
        return STORE_ERR_IO;
    }
    pthread_mutex_lock(&s->mu);
    while (!s->opened)
        pthread_cond_wait(&s->cv, &s->mu);
    rc = s->open_rc;
    pthread_mutex_unlock(&s->mu);
    s->path = NULL;
    if (rc != STORE_OK) {
        snprintf(err, errlen, "%s", s->open_err);
        pthread_join(s->thread, NULL);
        store_free(s);
        return rc;
    }

    /* The thread signals the handle only after it has run a request, and
     * none can be queued before this function returns. */
    int uvrc = uv_async_init(loop, &s->async, store_on_async);
    if (uvrc != 0) {
        snprintf(err, errlen, "cannot create the store's wake-up: %s",
                 uv_strerror(uvrc));
        pthread_mutex_lock(&s->mu);
        s->stop = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
        store_free(s);
        return STORE_ERR_IO;
    }
    s->async.data = s;
    /* An idle store does not keep the loop running; store_submit() takes
     * a reference while requests are in flight. */
    uv_unref((uv_handle_t *)&s->async);
    pthread_mutex_lock(&s->mu);
    s->async_ready = true;
    pthread_mutex_unlock(&s->mu);
    *out = s;
    return STORE_OK;
}

/* Runs the callbacks of every completed request, including requests that
 * those callbacks make and that complete at once (CLOSED). */
static void store_deliver(store_t *s)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        store_req_t *list = s->done_head;
        s->done_head = s->done_tail = NULL;
        pthread_mutex_unlock(&s->mu);
        if (list == NULL)
            return;
        while (list != NULL) {
            store_req_t *r = list;
            list = r->next;
            r->op->deliver(r); /* frees r */
            /* While closing the reference stays until the handle is
             * closed: the loop must run until the store is freed. */
            if (--s->inflight == 0 && !s->closing)
                uv_unref((uv_handle_t *)&s->async);
        }
    }
}

static void store_on_closed(uv_handle_t *h)
{
    store_t *s = h->data;

    /* Requests made between uv_close() and now could not signal the
     * handle; they are waiting, CLOSED, in the done queue. */
    store_deliver(s);
    void (*done)(void *) = s->close_done;
    void *ud = s->close_ud;
    store_free(s);
    if (done != NULL)
        done(ud);
}

static void store_on_async(uv_async_t *h)
{
    store_t *s = h->data;

    store_deliver(s);
    if (!s->closing || s->handle_closing)
        return;
    pthread_mutex_lock(&s->mu);
    bool finished = s->exited && s->done_head == NULL;
    pthread_mutex_unlock(&s->mu);
    if (!finished)
        return;
    pthread_join(s->thread, NULL);
    s->handle_closing = true;
    uv_close((uv_handle_t *)&s->async, store_on_closed);
}

void store_close(store_t *s, void (*done)(void *ud), void *ud)
{
    if (s == NULL) {
        if (done != NULL)
            done(ud);
        return;
    }
    if (s->closing) {
        LOG(store_logger(s), LOG_ERROR, 0,
            "store: store_close called twice; the second call is ignored");
        return;
    }
    s->closing = true;
    s->close_done = done;
    s->close_ud = ud;
    uv_ref((uv_handle_t *)&s->async);
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

uv_loop_t *store_loop(store_t *s)
{
    return s->async.loop;
}

bool store_wait(uv_loop_t *loop, const bool *done)
{
    while (!*done) {
        if (uv_run(loop, UV_RUN_ONCE) == 0 && !*done)
            return false;
    }
    return true;
}

void *store_req_new(const store_op_t *op, size_t size, size_t extra, void *ud)
{
    store_req_t *r = xcalloc(1, size + extra);
    r->op = op;
    r->ud = ud;
    return r;
}

const char *store_req_copy(char **cursor, const char *str)
{
    if (str == NULL)
        return NULL;
    size_t len = strlen(str) + 1;
    char *p = memcpy(*cursor, str, len);
    *cursor += len;
    return p;
}

void store_submit(store_t *s, store_req_t *r)
{
    if (s->inflight++ == 0 && !s->closing)
        uv_ref((uv_handle_t *)&s->async);
    if (s->closing)
        r->err = STORE_ERR_CLOSED;

    pthread_mutex_lock(&s->mu);
    bool direct = s->stopped;
    if (direct) {
        store_queue_push(&s->done_head, &s->done_tail, r);
    } else {
        store_queue_push(&s->pending_head, &s->pending_tail, r);
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    /* A closing handle must not be signalled; store_on_closed() delivers
     * what is left instead. */
    if (direct && !s->handle_closing)
        uv_async_send(&s->async);
}

void store_txn_end(store_req_t *r, store_conn_t *c, int err, uint64_t changes)
{
    (void)changes;
    if (err != STORE_OK)
        store_txn_rollback(c, r, err);
    else
        store_txn_commit(c, r);
}

void store_exec_end(store_req_t *r, store_conn_t *c, int err, uint64_t changes)
{
    (void)changes;
    store_req_finish(c, r, err);
}
