/* Unit tests for server/store: the asynchronous account store on its
 * SQLite thread. Every test runs its own loop and database directory and
 * ends with the loop closable (no handle left) and the directory removed;
 * under ASan/LSan that also proves nothing leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_internal.h"

typedef struct fixture {
    char dir[64];
    char path[128];
    uv_loop_t loop;
    store_t *store;
    pthread_t loop_thread;
} fixture_t;

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    char p[512];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(p), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
}

static fixture_t *fixture_new(void)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/starling-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/store.db", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->loop_thread = pthread_self();
    return f;
}

static void open_store(fixture_t *f)
{
    char err[256];
    int rc = store_open(&f->loop, f->path, &f->store, err, sizeof(err));
    if (rc != STORE_OK)
        fail_msg("store_open: %s: %s", store_strerror(rc), err);
    assert_non_null(f->store);
}

static void on_closed(void *ud)
{
    *(bool *)ud = true;
}

static void close_store(fixture_t *f)
{
    bool closed = false;
    store_close(f->store, on_closed, &closed);
    f->store = NULL;
    assert_false(closed); /* freed from the loop, not inside the call */
    assert_true(store_wait(&f->loop, &closed));
}

static int setup(void **state)
{
    fixture_t *f = fixture_new();
    open_store(f);
    *state = f;
    return 0;
}

static int setup_no_store(void **state)
{
    *state = fixture_new();
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (f->store != NULL)
        close_store(f);
    /* Nothing of the store may be left on the loop. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    remove_dir(f->dir);
    free(f);
    return 0;
}

/* --- results of one request, waited for with store_wait() --- */

typedef struct result {
    bool done;
    int calls;
    int err;
    bool on_loop_thread;
    pthread_t loop_thread;
    bool has_account;
    store_account_t account;
    char domain[64], node[64];
    char names[4096]; /* list result, joined with ' ' */
    size_t count;
} result_t;

static void result_init(result_t *r, const fixture_t *f)
{
    memset(r, 0, sizeof(*r));
    r->loop_thread = f->loop_thread;
}

static void result_note(result_t *r, int err)
{
    r->calls++;
    r->done = true;
    r->err = err;
    r->on_loop_thread = pthread_equal(pthread_self(), r->loop_thread);
}

static void on_done(void *ud, int err)
{
    result_note(ud, err);
}

static void on_account(void *ud, int err, const store_account_t *a)
{
    result_t *r = ud;
    result_note(r, err);
    r->has_account = a != NULL;
    if (a != NULL) {
        r->account = *a;
        snprintf(r->domain, sizeof(r->domain), "%s", a->domain);
        snprintf(r->node, sizeof(r->node), "%s", a->node);
        r->account.domain = r->domain;
        r->account.node = r->node;
    }
}

static void on_list(void *ud, int err, const char *const *names, size_t n)
{
    result_t *r = ud;
    result_note(r, err);
    r->count = n;
    r->names[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            strcat(r->names, " ");
        strcat(r->names, names[i]);
    }
}

/* Waits for one request and checks it completed once, on the loop. */
static void wait_result(fixture_t *f, result_t *r)
{
    assert_false(r->done); /* never called from inside the request */
    assert_true(store_wait(&f->loop, &r->done));
    assert_int_equal(r->calls, 1);
    assert_true(r->on_loop_thread);
}

static int do_create(fixture_t *f, const store_account_t *a)
{
    result_t r;
    result_init(&r, f);
    store_account_create(f->store, a, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static int do_update(fixture_t *f, const store_account_t *a)
{
    result_t r;
    result_init(&r, f);
    store_account_update(f->store, a, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static int do_delete(fixture_t *f, const char *domain, const char *node)
{
    result_t r;
    result_init(&r, f);
    store_account_delete(f->store, domain, node, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static void do_get(fixture_t *f, const char *domain, const char *node,
                   result_t *r)
{
    result_init(r, f);
    store_account_get(f->store, domain, node, on_account, r);
    wait_result(f, r);
    assert_int_equal(r->has_account, r->err == STORE_OK);
}

static void do_list(fixture_t *f, const char *domain, result_t *r)
{
    result_init(r, f);
    store_account_list(f->store, domain, on_list, r);
    wait_result(f, r);
}

/* Credentials with recognisable bytes derived from seed (PBKDF2 would make
 * the tests slow and is tested in test_scram). */
static void fill_cred(scram_cred_t *c, size_t key_len, unsigned seed)
{
    memset(c, 0, sizeof(*c));
    c->iterations = 4096 + seed;
    c->salt_len = 16;
    c->key_len = key_len;
    for (size_t i = 0; i < SCRAM_SALT_MAX; i++)
        c->salt[i] = (unsigned char)(seed + i);
    for (size_t i = 0; i < key_len; i++) {
        c->stored_key[i] = (unsigned char)(seed * 3 + i);
        c->server_key[i] = (unsigned char)(seed * 7 + i);
    }
}

static store_account_t make_account(const char *domain, const char *node,
                                    unsigned seed, bool md5)
{
    store_account_t a;
    memset(&a, 0, sizeof(a));
    a.domain = domain;
    a.node = node;
    fill_cred(&a.sha1, 20, seed);
    fill_cred(&a.sha256, 32, seed + 1);
    a.has_digest_md5 = md5;
    if (md5)
        memset(a.digest_md5, (int)(0xa0 + seed), sizeof(a.digest_md5));
    return a;
}

static void assert_cred_equal(const scram_cred_t *x, const scram_cred_t *y)
{
    assert_int_equal(x->iterations, y->iterations);
    assert_int_equal(x->salt_len, y->salt_len);
    assert_memory_equal(x->salt, y->salt, x->salt_len);
    assert_int_equal(x->key_len, y->key_len);
    assert_memory_equal(x->stored_key, y->stored_key, x->key_len);
    assert_memory_equal(x->server_key, y->server_key, x->key_len);
}

static void assert_account_equal(const store_account_t *x,
                                 const store_account_t *y)
{
    assert_string_equal(x->domain, y->domain);
    assert_string_equal(x->node, y->node);
    assert_cred_equal(&x->sha1, &y->sha1);
    assert_cred_equal(&x->sha256, &y->sha256);
    assert_int_equal(x->has_digest_md5, y->has_digest_md5);
    if (x->has_digest_md5)
        assert_memory_equal(x->digest_md5, y->digest_md5, 16);
}

static int sqlite_int(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL),
                     SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    int v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* --- tests --- */

static void test_open_creates_schema(void **state)
{
    fixture_t *f = *state;
    struct stat st;

    assert_int_equal(stat(f->path, &st), 0);
    /* An idle store does not keep the loop running. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    close_store(f);

    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(sqlite_int(f->path,
                                "SELECT count(*) FROM sqlite_master WHERE "
                                "type = 'table' AND name = 'accounts'"),
                     1);
    /* WAL is a property of the file, kept after close. */
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(
        sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

static void test_account_round_trip(void **state)
{
    fixture_t *f = *state;
    result_t r;

    store_account_t alice = make_account("example.org", "alice", 1, true);
    store_account_t bob = make_account("example.net", "bob", 2, false);
    store_account_t carol = make_account("example.org", "carol", 3, false);
    assert_int_equal(do_create(f, &alice), STORE_OK);
    assert_int_equal(do_create(f, &bob), STORE_OK);
    assert_int_equal(do_create(f, &carol), STORE_OK);

    do_get(f, "example.org", "alice", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_account_equal(&r.account, &alice);
    do_get(f, "example.net", "bob", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_account_equal(&r.account, &bob);

    /* Sorted by domain, then node. */
    do_list(f, NULL, &r);
    assert_int_equal(r.err, STORE_OK);
    assert_int_equal(r.count, 3);
    assert_string_equal(r.names,
                        "bob@example.net alice@example.org carol@example.org");
    do_list(f, "example.org", &r);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.names, "alice@example.org carol@example.org");
    do_list(f, "nowhere.example", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_int_equal(r.count, 0);

    /* Update replaces every credential, and can drop the MD5 hash. */
    store_account_t alice2 = make_account("example.org", "alice", 9, false);
    assert_int_equal(do_update(f, &alice2), STORE_OK);
    do_get(f, "example.org", "alice", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_account_equal(&r.account, &alice2);

    assert_int_equal(do_delete(f, "example.net", "bob"), STORE_OK);
    do_get(f, "example.net", "bob", &r);
    assert_int_equal(r.err, STORE_ERR_NOT_FOUND);
    assert_int_equal(do_delete(f, "example.net", "bob"), STORE_ERR_NOT_FOUND);
    assert_int_equal(do_update(f, &bob), STORE_ERR_NOT_FOUND);
    do_list(f, NULL, &r);
    assert_string_equal(r.names, "alice@example.org carol@example.org");
}

/* Strings are copied before the call returns: the caller may reuse its
 * buffers at once. */
static void test_arguments_copied(void **state)
{
    fixture_t *f = *state;
    result_t r1, r2;
    char domain[32] = "example.org", node[32] = "dave";

    store_account_t a = make_account(domain, node, 4, false);
    result_init(&r1, f);
    store_account_create(f->store, &a, on_done, &r1);
    result_init(&r2, f);
    store_account_get(f->store, domain, node, on_account, &r2);
    memset(domain, 'x', sizeof(domain) - 1);
    memset(node, 'y', sizeof(node) - 1);
    memset(&a, 0, sizeof(a));
    assert_true(store_wait(&f->loop, &r2.done));
    assert_int_equal(r1.err, STORE_OK);
    assert_int_equal(r2.err, STORE_OK);
    assert_string_equal(r2.account.node, "dave");
    assert_string_equal(r2.account.domain, "example.org");
}

static void test_create_duplicate(void **state)
{
    fixture_t *f = *state;
    result_t r;

    store_account_t a = make_account("example.org", "alice", 1, false);
    store_account_t b = make_account("example.org", "alice", 5, true);
    assert_int_equal(do_create(f, &a), STORE_OK);
    assert_int_equal(do_create(f, &b), STORE_ERR_EXISTS);
    /* The first account's credentials are untouched. */
    do_get(f, "example.org", "alice", &r);
    assert_account_equal(&r.account, &a);
    /* Same node in another domain is another account. */
    store_account_t c = make_account("example.net", "alice", 6, false);
    assert_int_equal(do_create(f, &c), STORE_OK);
}

static void test_get_unknown(void **state)
{
    fixture_t *f = *state;
    result_t r;

    do_get(f, "example.org", "nobody", &r);
    assert_int_equal(r.err, STORE_ERR_NOT_FOUND);
    assert_false(r.has_account);
}

static void test_invalid_arguments(void **state)
{
    fixture_t *f = *state;
    result_t r;

    do_get(f, "example.org", NULL, &r);
    assert_int_equal(r.err, STORE_ERR_INVALID);
    assert_int_equal(do_delete(f, NULL, "alice"), STORE_ERR_INVALID);
    assert_int_equal(do_create(f, NULL), STORE_ERR_INVALID);
    store_account_t a = make_account("example.org", "alice", 1, false);
    a.sha256.salt_len = SCRAM_SALT_MAX + 1;
    assert_int_equal(do_create(f, &a), STORE_ERR_INVALID);
    a = make_account("example.org", "alice", 1, false);
    a.sha1.key_len = SCRAM_KEY_MAX + 1;
    assert_int_equal(do_update(f, &a), STORE_ERR_INVALID);
    a.node = NULL;
    assert_int_equal(do_create(f, &a), STORE_ERR_INVALID);
    do_list(f, NULL, &r);
    assert_int_equal(r.count, 0);
}

/* --- many requests in flight --- */

enum { MANY = 1000 };

typedef struct order {
    int next; /* index of the callback expected next */
    int out_of_order;
    int off_thread;
    int failed;
    int calls[MANY];
    pthread_t loop_thread;
} order_t;

typedef struct slot {
    order_t *o;
    int index;
} slot_t;

static void slot_note(slot_t *s, int err, int expected_err)
{
    order_t *o = s->o;
    o->calls[s->index]++;
    if (s->index != o->next)
        o->out_of_order++;
    o->next = s->index + 1;
    if (!pthread_equal(pthread_self(), o->loop_thread))
        o->off_thread++;
    if (err != expected_err)
        o->failed++;
}

static void on_slot_done(void *ud, int err)
{
    slot_note(ud, err, STORE_OK);
}

static void on_slot_account(void *ud, int err, const store_account_t *a)
{
    slot_t *s = ud;
    char node[16];
    snprintf(node, sizeof(node), "u%d", s->index - MANY / 2);
    slot_note(s, err, STORE_OK);
    if (a == NULL || strcmp(a->node, node) != 0)
        s->o->failed++;
}

static void test_many_in_order(void **state)
{
    fixture_t *f = *state;
    order_t *o = calloc(1, sizeof(*o));
    slot_t *slots = calloc(MANY, sizeof(*slots));
    assert_non_null(o);
    assert_non_null(slots);
    o->loop_thread = f->loop_thread;

    /* Half creates, then gets of the same accounts: a get that overtook
     * its create would fail. */
    for (int i = 0; i < MANY; i++) {
        char node[16];
        slots[i].o = o;
        slots[i].index = i;
        if (i < MANY / 2) {
            snprintf(node, sizeof(node), "u%d", i);
            store_account_t a = make_account("example.org", node, 1, false);
            store_account_create(f->store, &a, on_slot_done, &slots[i]);
        } else {
            snprintf(node, sizeof(node), "u%d", i - MANY / 2);
            store_account_get(f->store, "example.org", node, on_slot_account,
                              &slots[i]);
        }
    }
    assert_int_equal(o->next, 0); /* nothing ran inside the calls */
    /* In-flight requests keep the loop alive until the last callback. */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    for (int i = 0; i < MANY; i++)
        assert_int_equal(o->calls[i], 1);
    assert_int_equal(o->next, MANY);
    assert_int_equal(o->out_of_order, 0);
    assert_int_equal(o->off_thread, 0);
    assert_int_equal(o->failed, 0);
    free(slots);
    free(o);
}

/* --- closing --- */

typedef struct close_state {
    int callbacks;
    int ok;
    int closed_err;
    bool done;
    int callbacks_at_done;
} close_state_t;

static void on_close_req(void *ud, int err)
{
    close_state_t *c = ud;
    c->callbacks++;
    if (err == STORE_OK)
        c->ok++;
    else if (err == STORE_ERR_CLOSED)
        c->closed_err++;
}

static void on_close_done(void *ud)
{
    close_state_t *c = ud;
    c->done = true;
    c->callbacks_at_done = c->callbacks;
}

static void test_close_drains(void **state)
{
    fixture_t *f = *state;
    close_state_t c = {0};
    enum { N = 200 };

    for (int i = 0; i < N; i++) {
        char node[16];
        snprintf(node, sizeof(node), "n%03d", i);
        store_account_t a = make_account("example.org", node, 1, false);
        store_account_create(f->store, &a, on_close_req, &c);
    }
    store_close(f->store, on_close_done, &c);
    f->store = NULL;
    assert_int_equal(c.callbacks, 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(c.done);
    assert_int_equal(c.callbacks, N);
    assert_int_equal(c.ok, N);
    assert_int_equal(c.callbacks_at_done, N); /* done comes last */

    /* Everything queued before the close was written. */
    assert_int_equal(sqlite_int(f->path, "SELECT count(*) FROM accounts"), N);
}

static void test_requests_after_close(void **state)
{
    fixture_t *f = *state;
    close_state_t c = {0};
    result_t r;
    store_t *s = f->store;

    store_account_t a = make_account("example.org", "alice", 1, false);
    store_account_create(s, &a, on_close_req, &c); /* before: runs */
    store_close(s, on_close_done, &c);
    f->store = NULL;
    result_init(&r, f);
    store_account_get(s, "example.org", "alice", on_account, &r);
    store_account_create(s, &a, on_close_req, &c);
    store_account_delete(s, "example.org", "alice", on_close_req, &c);
    /* Still delivered through the loop, not from inside the call. */
    assert_false(r.done);
    assert_int_equal(c.callbacks, 0);

    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(r.calls, 1);
    assert_true(r.on_loop_thread);
    assert_int_equal(r.err, STORE_ERR_CLOSED);
    assert_false(r.has_account);
    assert_int_equal(c.callbacks, 3);
    assert_int_equal(c.ok, 1);
    assert_int_equal(c.closed_err, 2);
    assert_true(c.done);
    assert_int_equal(c.callbacks_at_done, 3);
    /* The create before the close happened; the delete after it did not. */
    assert_int_equal(sqlite_int(f->path, "SELECT count(*) FROM accounts"), 1);
}

/* A callback that makes a new request while the store closes gets its
 * answer too (CLOSED), before the store is freed. */
typedef struct chain {
    store_t *s;
    int first_err;
    int second_err;
    int second_calls;
    bool done;
} chain_t;

static void on_chain_second(void *ud, int err, const store_account_t *a)
{
    chain_t *c = ud;
    (void)a;
    c->second_calls++;
    c->second_err = err;
}

static void on_chain_first(void *ud, int err)
{
    chain_t *c = ud;
    c->first_err = err;
    store_account_get(c->s, "example.org", "alice", on_chain_second, c);
}

static void on_chain_done(void *ud)
{
    chain_t *c = ud;
    c->done = true;
}

static void test_request_from_callback_while_closing(void **state)
{
    fixture_t *f = *state;
    chain_t c = {.s = f->store, .first_err = 1};

    store_account_t a = make_account("example.org", "alice", 1, false);
    store_account_create(f->store, &a, on_chain_first, &c);
    store_close(f->store, on_chain_done, &c);
    f->store = NULL;
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.first_err, STORE_OK);
    assert_int_equal(c.second_calls, 1);
    assert_int_equal(c.second_err, STORE_ERR_CLOSED);
    assert_true(c.done);
}

static void test_reopen_persists(void **state)
{
    fixture_t *f = *state;
    result_t r;

    store_account_t a = make_account("example.org", "alice", 7, true);
    assert_int_equal(do_create(f, &a), STORE_OK);
    close_store(f);

    open_store(f);
    do_get(f, "example.org", "alice", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_account_equal(&r.account, &a);
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), 1);
}

/* --- opening failures --- */

static void test_newer_schema(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db = NULL;
    char err[256] = "";
    store_t *s = (store_t *)&err; /* must be reset to NULL */

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE future (x); "
                                  "PRAGMA user_version = 999;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    assert_int_equal(store_open(&f->loop, f->path, &s, err, sizeof(err)),
                     STORE_ERR_SCHEMA);
    assert_null(s);
    assert_non_null(strstr(err, "999"));
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "newer"));
    /* The database was left as it was. */
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), 999);
}

static void test_unwritable_path(void **state)
{
    fixture_t *f = *state;
    char path[192], err[256] = "";
    store_t *s = NULL;

    /* A regular file where a directory should be: fails for root too,
     * unlike a permission bit. */
    snprintf(path, sizeof(path), "%s/file", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(path, sizeof(path), "%s/file/store.db", f->dir);

    assert_int_equal(store_open(&f->loop, path, &s, err, sizeof(err)),
                     STORE_ERR_IO);
    assert_null(s);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "unable to open"));
}

static void test_not_a_database(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    store_t *s = NULL;

    FILE *fp = fopen(f->path, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++)
        fputs("this is not a database file at all. ", fp);
    fclose(fp);
    assert_int_equal(store_open(&f->loop, f->path, &s, err, sizeof(err)),
                     STORE_ERR_IO);
    assert_null(s);
    assert_non_null(strstr(err, f->path));
    assert_non_null(strstr(err, "not a database"));
}

/* --- an old database --- */

/* The schema exactly as the first release wrote it (before the table
 * groups), with a row written the way that code wrote rows: the new code
 * must read it and keep user_version. */
static void test_database_from_first_release(void **state)
{
    fixture_t *f = *state;
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    result_t r;

    assert_int_equal(sqlite3_open(f->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "PRAGMA journal_mode = WAL;"
                                  "BEGIN IMMEDIATE;"
                                  "CREATE TABLE accounts ("
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
                                  ");"
                                  "PRAGMA user_version = 1;"
                                  "COMMIT;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    store_account_t old = make_account("example.org", "olda", 11, true);
    assert_int_equal(
        sqlite3_prepare_v2(db,
                           "INSERT INTO accounts VALUES (?1, ?2, ?3, ?4, ?5, "
                           "?6, ?7, ?8, ?9, ?10, ?11, 1700000000)",
                           -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_text(st, 1, old.domain, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, old.node, -1, SQLITE_STATIC);
    const scram_cred_t *c[2] = {&old.sha1, &old.sha256};
    for (int i = 0; i < 2; i++) {
        int b = 3 + 4 * i;
        sqlite3_bind_blob(st, b, c[i]->salt, (int)c[i]->salt_len,
                          SQLITE_STATIC);
        sqlite3_bind_int64(st, b + 1, c[i]->iterations);
        sqlite3_bind_blob(st, b + 2, c[i]->stored_key, (int)c[i]->key_len,
                          SQLITE_STATIC);
        sqlite3_bind_blob(st, b + 3, c[i]->server_key, (int)c[i]->key_len,
                          SQLITE_STATIC);
    }
    sqlite3_bind_blob(st, 11, old.digest_md5, 16, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    open_store(f);
    do_get(f, "example.org", "olda", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_account_equal(&r.account, &old);
    store_account_t b = make_account("example.org", "newb", 12, false);
    assert_int_equal(do_create(f, &b), STORE_OK);
    do_list(f, NULL, &r);
    assert_string_equal(r.names, "newb@example.org olda@example.org");
    close_store(f);
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), 1);
    assert_int_equal(
        sqlite_int(f->path, "SELECT created FROM accounts WHERE node = 'olda'"),
        1700000000);
}

/* --- the request path, with a request type of the test's own --- */

typedef enum test_mode {
    MODE_ECHO,     /* SELECT ?1, ?2, ?3, ?4: values come back typed */
    MODE_ANSWER,   /* finishes with a chosen error, no statement */
    MODE_BAD_SQL,  /* a statement SQLite refuses: STORE_ERR_IO */
    MODE_ROLLBACK, /* BEGIN, INSERT, ROLLBACK: the row is gone */
} test_mode_t;

typedef struct test_log {
    int runs;
    int delivered;
    int out_of_order;
    int twice;
    int off_loop;
    int on_loop_run;
    int next;
    pthread_t loop_thread;
} test_log_t;

typedef struct test_req {
    store_req_t base;
    test_log_t *log;
    int index;
    test_mode_t mode;
    int answer; /* MODE_ANSWER */
    int rows;
    bool echo_ok;
    int *err_out; /* the delivered error */
    bool *delivered_flag;
} test_req_t;

static const store_stmt_t test_stmt_echo = {"test_echo",
                                            "SELECT ?1, ?2, ?3, ?4"};
static const store_stmt_t test_stmt_bad = {"test_bad",
                                           "SELECT FROM nowhere WHERE"};
static const store_stmt_t test_stmt_insert = {
    "test_insert",
    "INSERT INTO accounts VALUES ('t.example', ?1, x'', 1, x'', x'', x'', 1,"
    " x'', x'', NULL, 0)"};

static void test_echo_row(store_req_t *base, const store_value_t *col, size_t n)
{
    test_req_t *r = (test_req_t *)base;
    r->rows++;
    r->echo_ok = n == 4 && col[0].type == STORE_INT && col[0].i == r->index &&
                 col[1].type == STORE_TEXT && col[1].len == 5 &&
                 memcmp(col[1].p, "hello", 6) == 0 &&
                 col[2].type == STORE_BLOB && col[2].len == 3 &&
                 memcmp(col[2].p, "\x00\x01\xff", 3) == 0 &&
                 col[3].type == STORE_NULL;
}

static void test_finish(store_req_t *base, store_conn_t *c, int err,
                        uint64_t changes)
{
    test_req_t *r = (test_req_t *)base;
    (void)changes;
    if (err == STORE_OK && r->mode == MODE_ECHO &&
        (r->rows != 1 || !r->echo_ok))
        err = STORE_ERR_IO;
    store_req_finish(c, base, err);
}

static void test_after_rollback(store_req_t *base, store_conn_t *c, int err,
                                uint64_t changes)
{
    (void)changes;
    store_req_finish(c, base, err);
}

static void test_after_insert(store_req_t *base, store_conn_t *c, int err,
                              uint64_t changes)
{
    if (err != STORE_OK || changes != 1) {
        store_req_finish(c, base, err != STORE_OK ? err : STORE_ERR_IO);
        return;
    }
    store_exec(c, base, &store_stmt_rollback, NULL, 0, NULL,
               test_after_rollback);
}

static void test_after_begin(store_req_t *base, store_conn_t *c, int err,
                             uint64_t changes)
{
    (void)changes;
    if (err != STORE_OK) {
        store_req_finish(c, base, err);
        return;
    }
    store_value_t p[] = {STORE_V_TEXT("ghost")};
    store_exec(c, base, &test_stmt_insert, p, 1, NULL, test_after_insert);
}

static void test_run(store_req_t *base, store_conn_t *c)
{
    test_req_t *r = (test_req_t *)base;
    r->log->runs++; /* the loop waits for delivery before reading it */
    if (pthread_equal(pthread_self(), r->log->loop_thread))
        r->log->on_loop_run++;
    switch (r->mode) {
    case MODE_ECHO: {
        store_value_t p[] = {STORE_V_INT(r->index), STORE_V_TEXT("hello"),
                             STORE_V_BLOB("\x00\x01\xff", 3), STORE_V_NULL()};
        store_exec(c, base, &test_stmt_echo, p, 4, test_echo_row, test_finish);
        break;
    }
    case MODE_ANSWER:
        store_req_finish(c, base, r->answer);
        break;
    case MODE_BAD_SQL:
        store_exec(c, base, &test_stmt_bad, NULL, 0, NULL, test_finish);
        break;
    case MODE_ROLLBACK:
        store_exec(c, base, &store_stmt_begin, NULL, 0, NULL, test_after_begin);
        break;
    }
}

static void test_deliver(store_req_t *base)
{
    test_req_t *r = (test_req_t *)base;
    test_log_t *l = r->log;
    if (r->delivered_flag != NULL) {
        if (*r->delivered_flag)
            l->twice++;
        *r->delivered_flag = true;
    }
    l->delivered++;
    if (r->index != l->next)
        l->out_of_order++;
    l->next = r->index + 1;
    if (!pthread_equal(pthread_self(), l->loop_thread))
        l->off_loop++;
    if (r->err_out != NULL)
        *r->err_out = base->err;
    free(r);
}

static const store_op_t test_op = {"test", test_run, test_deliver};

static void test_submit(store_t *s, test_log_t *l, int index, test_mode_t mode,
                        int answer, int *err_out, bool *flag)
{
    test_req_t *r = store_req_new(&test_op, sizeof(*r), 0, NULL);
    r->log = l;
    r->index = index;
    r->mode = mode;
    r->answer = answer;
    r->err_out = err_out;
    r->delivered_flag = flag;
    store_submit(s, &r->base);
}

enum { REQS = 400 };

/* Modes and answers mixed: each request delivers once, on the loop, in
 * the order submitted, with its own result; run happened on the storage
 * thread. */
static void test_request_path_order(void **state)
{
    fixture_t *f = *state;
    test_log_t l = {.loop_thread = f->loop_thread};
    int *errs = calloc(REQS, sizeof(*errs));
    bool *flags = calloc(REQS, sizeof(*flags));
    assert_non_null(errs);
    assert_non_null(flags);
    static const int answers[] = {STORE_OK, STORE_ERR_NOT_FOUND,
                                  STORE_ERR_EXISTS};

    for (int i = 0; i < REQS; i++) {
        errs[i] = 12345;
        test_mode_t mode = i % 3 == 0 ? MODE_ECHO : MODE_ANSWER;
        test_submit(f->store, &l, i, mode, answers[i % 3], &errs[i], &flags[i]);
    }
    assert_int_equal(l.delivered, 0); /* nothing inside the calls */
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);

    assert_int_equal(l.delivered, REQS);
    assert_int_equal(l.runs, REQS);
    assert_int_equal(l.twice, 0);
    assert_int_equal(l.out_of_order, 0);
    assert_int_equal(l.off_loop, 0);
    assert_int_equal(l.on_loop_run, 0);
    for (int i = 0; i < REQS; i++) {
        assert_true(flags[i]);
        assert_int_equal(errs[i], i % 3 == 0 ? STORE_OK : answers[i % 3]);
    }
    free(errs);
    free(flags);
}

/* A failing statement reaches the callback as STORE_ERR_IO, the reason
 * goes to the logger given with store_set_logger(), and the requests
 * around it are unaffected. A transaction rolled back leaves nothing. */
static void test_request_path_errors(void **state)
{
    fixture_t *f = *state;
    test_log_t l = {.loop_thread = f->loop_thread};
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    assert_non_null(mem);
    logger_t lg = {.level = LOG_INFO, .out = mem};
    int errs[4] = {1, 1, 1, 1};

    store_set_logger(f->store, &lg);
    test_submit(f->store, &l, 0, MODE_ECHO, 0, &errs[0], NULL);
    test_submit(f->store, &l, 1, MODE_BAD_SQL, 0, &errs[1], NULL);
    test_submit(f->store, &l, 2, MODE_ROLLBACK, 0, &errs[2], NULL);
    test_submit(f->store, &l, 3, MODE_ECHO, 0, &errs[3], NULL);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(l.delivered, 4);
    assert_int_equal(l.out_of_order, 0);
    assert_int_equal(errs[0], STORE_OK);
    assert_int_equal(errs[1], STORE_ERR_IO);
    assert_int_equal(errs[2], STORE_OK);
    assert_int_equal(errs[3], STORE_OK);
    result_t r;
    do_get(f, "t.example", "ghost", &r);
    assert_int_equal(r.err, STORE_ERR_NOT_FOUND);

    /* Only the bad statement logged, once, naming itself. */
    close_store(f);
    fclose(mem);
    assert_non_null(strstr(text, " error store: "));
    assert_non_null(strstr(text, "prepare test_bad"));
    assert_null(strstr(strstr(text, "\n") + 1, "store:"));
    free(text);
}

/* Closing runs what was queued before the close; what comes after is
 * answered CLOSED without running; every request is delivered once and
 * the close's done comes last. */
typedef struct drain {
    test_log_t *l;
    int delivered_at_done;
    bool done;
} drain_t;

static void on_drain_done(void *ud)
{
    drain_t *d = ud;
    d->done = true;
    d->delivered_at_done = d->l->delivered;
}

static void test_request_path_close_drains(void **state)
{
    fixture_t *f = *state;
    test_log_t l = {.loop_thread = f->loop_thread};
    drain_t d = {.l = &l};
    enum { BEFORE = 150, AFTER = 50 };
    int errs[BEFORE + AFTER];
    bool flags[BEFORE + AFTER] = {false};
    store_t *s = f->store;

    for (int i = 0; i < BEFORE; i++)
        test_submit(s, &l, i, MODE_ECHO, 0, &errs[i], &flags[i]);
    store_close(s, on_drain_done, &d);
    f->store = NULL;
    for (int i = BEFORE; i < BEFORE + AFTER; i++)
        test_submit(s, &l, i, MODE_ANSWER, STORE_OK, &errs[i], &flags[i]);
    assert_int_equal(l.delivered, 0);
    assert_false(d.done);

    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(d.done);
    assert_int_equal(d.delivered_at_done, BEFORE + AFTER);
    assert_int_equal(l.runs, BEFORE);
    assert_int_equal(l.twice, 0);
    assert_int_equal(l.out_of_order, 0);
    assert_int_equal(l.off_loop, 0);
    for (int i = 0; i < BEFORE + AFTER; i++) {
        assert_true(flags[i]);
        assert_int_equal(errs[i], i < BEFORE ? STORE_OK : STORE_ERR_CLOSED);
    }
}

static void test_strerror(void **state)
{
    (void)state;
    const int codes[] = {STORE_OK,         STORE_ERR_NOT_FOUND,
                         STORE_ERR_EXISTS, STORE_ERR_IO,
                         STORE_ERR_NOMEM,  STORE_ERR_CLOSED,
                         STORE_ERR_SCHEMA, STORE_ERR_INVALID};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *m = store_strerror(codes[i]);
        assert_non_null(m);
        assert_string_not_equal(m, store_strerror(12345));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_schema, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_account_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_arguments_copied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_duplicate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_get_unknown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_many_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_drains, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requests_after_close, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(
            test_request_from_callback_while_closing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_persists, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema, setup_no_store,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unwritable_path, setup_no_store,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup_no_store,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_database_from_first_release,
                                        setup_no_store, teardown),
        cmocka_unit_test_setup_teardown(test_request_path_order, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_request_path_errors, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_request_path_close_drains, setup,
                                        teardown),
        cmocka_unit_test(test_strerror),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
