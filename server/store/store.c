/* The store's front: requests are copied on the loop thread, queued to the
 * storage thread, which runs them on its own SQLite connection
 * (store_sqlite.c), and come back through a completion queue and a
 * uv_async_t whose callback runs them on the loop thread.
 *
 * Life of the store: store_open() starts the thread and waits until the
 * database is open and migrated. store_close() asks the thread to stop
 * once its queue is empty; requests made from then on are marked CLOSED
 * and still pass through the queues, so that every callback arrives in
 * request order. When the thread has closed the database and every
 * completion has been delivered, the async handle is closed and its close
 * callback frees the store. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

struct store {
    uv_async_t async; /* completions are ready, or the thread exited */
    pthread_t thread;
    const char *path; /* valid until the thread reports the open */

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
    bool async_ready; /* async initialised: the thread may signal it */
    bool stop;        /* exit once pending is empty */
    bool stopped;     /* the thread took its last request; later requests
                         go straight to done */
    bool exited;      /* the database is closed; joining will not block */

    /* Loop thread only: */
    size_t inflight;     /* requests whose callback has not yet run */
    bool closing;        /* store_close() was called */
    bool handle_closing; /* uv_close() was called on async */
    void (*close_done)(void *ud);
    void *close_ud;
};

void store_log(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    fputs("store: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
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
    default:
        return "unknown store error";
    }
}

/* A request that cannot even be queued cannot get its callback, so running
 * out of memory for one is fatal, as everywhere in the server
 * (CONVENTIONS.md, Out-of-memory policy). */
static void *store_xcalloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL) {
        store_log("out of memory");
        abort();
    }
    return p;
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

static void *store_thread_main(void *arg)
{
    store_t *s = arg;
    store_db_t *db = NULL;
    char err[sizeof(s->open_err)] = "";
    int rc = store_db_open(s->path, &db, err, sizeof(err));

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
        if (s->pending_head == NULL)
            s->pending_tail = NULL;
        pthread_mutex_unlock(&s->mu);

        /* A preset error (CLOSED, INVALID) is the answer already; it went
         * through the queue only to keep callbacks in request order. */
        if (r->err == STORE_OK)
            store_db_run(db, r);

        pthread_mutex_lock(&s->mu);
        store_queue_push(&s->done_head, &s->done_tail, r);
        bool ready = s->async_ready;
        pthread_mutex_unlock(&s->mu);
        if (ready)
            uv_async_send(&s->async);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);

    store_db_close(db);

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
    store_t *s = calloc(1, sizeof(*s));
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return STORE_ERR_NOMEM;
    }
    s->path = path;
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

static void store_req_call(store_req_t *r)
{
    bool ok = r->err == STORE_OK;

    switch (r->kind) {
    case STORE_REQ_ACCOUNT_GET:
        if (r->cb.account != NULL)
            r->cb.account(r->ud, r->err, ok ? &r->account : NULL);
        break;
    case STORE_REQ_ACCOUNT_CREATE:
    case STORE_REQ_ACCOUNT_UPDATE:
    case STORE_REQ_ACCOUNT_DELETE:
        if (r->cb.done != NULL)
            r->cb.done(r->ud, r->err);
        break;
    case STORE_REQ_ACCOUNT_LIST:
        if (r->cb.list != NULL)
            r->cb.list(r->ud, r->err, ok ? (const char *const *)r->names : NULL,
                       ok ? r->count : 0);
        break;
    }
}

static void store_req_free(store_req_t *r)
{
    for (size_t i = 0; i < r->count; i++)
        free(r->names[i]);
    free(r->names);
    /* Credentials are secrets of a kind: do not leave them in the heap. */
    explicit_bzero(&r->account, sizeof(r->account));
    free(r);
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
            store_req_call(r);
            store_req_free(r);
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
        store_log("store_close called twice; the second call is ignored");
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

bool store_wait(uv_loop_t *loop, const bool *done)
{
    while (!*done) {
        if (uv_run(loop, UV_RUN_ONCE) == 0 && !*done)
            return false;
    }
    return true;
}

/* Copies domain and node into the request's own allocation. */
static store_req_t *store_req_new(store_req_kind_t kind, const char *domain,
                                  const char *node, void *ud)
{
    size_t dl = domain != NULL ? strlen(domain) + 1 : 0;
    size_t nl = node != NULL ? strlen(node) + 1 : 0;
    store_req_t *r = store_xcalloc(sizeof(*r) + dl + nl);
    char *p = (char *)(r + 1);

    r->kind = kind;
    r->ud = ud;
    if (domain != NULL) {
        memcpy(p, domain, dl);
        r->domain = p;
        p += dl;
    }
    if (node != NULL) {
        memcpy(p, node, nl);
        r->node = p;
    }
    return r;
}

static void store_submit(store_t *s, store_req_t *r)
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

void store_account_get(store_t *s, const char *domain, const char *node,
                       store_account_cb cb, void *ud)
{
    store_req_t *r = store_req_new(STORE_REQ_ACCOUNT_GET, domain, node, ud);
    r->cb.account = cb;
    if (domain == NULL || node == NULL)
        r->err = STORE_ERR_INVALID;
    store_submit(s, r);
}

static bool store_cred_valid(const scram_cred_t *c)
{
    return c->salt_len <= SCRAM_SALT_MAX && c->key_len <= SCRAM_KEY_MAX;
}

static void store_account_write(store_t *s, store_req_kind_t kind,
                                const store_account_t *a, store_done_cb cb,
                                void *ud)
{
    store_req_t *r = store_req_new(kind, a != NULL ? a->domain : NULL,
                                   a != NULL ? a->node : NULL, ud);
    r->cb.done = cb;
    if (a == NULL || a->domain == NULL || a->node == NULL ||
        !store_cred_valid(&a->sha1) || !store_cred_valid(&a->sha256)) {
        r->err = STORE_ERR_INVALID;
    } else {
        r->account = *a;
        r->account.domain = r->domain;
        r->account.node = r->node;
    }
    store_submit(s, r);
}

void store_account_create(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud)
{
    store_account_write(s, STORE_REQ_ACCOUNT_CREATE, a, cb, ud);
}

void store_account_update(store_t *s, const store_account_t *a,
                          store_done_cb cb, void *ud)
{
    store_account_write(s, STORE_REQ_ACCOUNT_UPDATE, a, cb, ud);
}

void store_account_delete(store_t *s, const char *domain, const char *node,
                          store_done_cb cb, void *ud)
{
    store_req_t *r = store_req_new(STORE_REQ_ACCOUNT_DELETE, domain, node, ud);
    r->cb.done = cb;
    if (domain == NULL || node == NULL)
        r->err = STORE_ERR_INVALID;
    store_submit(s, r);
}

void store_account_list(store_t *s, const char *domain, store_list_cb cb,
                        void *ud)
{
    store_req_t *r = store_req_new(STORE_REQ_ACCOUNT_LIST, domain, NULL, ud);
    r->cb.list = cb;
    store_submit(s, r);
}
