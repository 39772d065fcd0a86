/* Unit tests for server/store: accounts, rosters and offline messages on
 * the store's SQLite thread. Every test runs its own loop and database
 * directory and ends with the loop closable (no handle left) and the directory
 * removed; under ASan/LSan that also proves nothing leaked. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store.h"
#include "store/store_internal.h"

/* The newest schema version (store.c's groups). */
#define SCHEMA_NEWEST 6

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

    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), SCHEMA_NEWEST);
    assert_int_equal(sqlite_int(f->path,
                                "SELECT count(*) FROM sqlite_master WHERE "
                                "type = 'table' AND name IN ('accounts', "
                                "'roster_items', 'roster_versions', "
                                "'roster_pending', 'offline_messages')"),
                     5);
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
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), SCHEMA_NEWEST);
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

/* --- rosters --- */

/* A roster as one string, every text length-prefixed so that any byte
 * (a newline in a group, an empty name) keeps two rosters apart that
 * differ: expected and stored rosters are compared through it. */
static void dump_item(FILE *out, const store_roster_item_t *it)
{
    fprintf(out, "%zu:%s ", strlen(it->contact), it->contact);
    if (it->name != NULL)
        fprintf(out, "name=%zu:%s ", strlen(it->name), it->name);
    else
        fputs("noname ", out);
    fprintf(out, "groups=%zu[", it->group_count);
    for (size_t i = 0; i < it->group_count; i++)
        fprintf(out, "%zu:%s", strlen(it->groups[i]), it->groups[i]);
    fprintf(out, "] sub=%u ask=%d approved=%d;\n", it->subscription, it->ask,
            it->approved);
}

static char *dump_items(const store_roster_item_t *items, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++)
        dump_item(out, &items[i]);
    fclose(out);
    return text;
}

static char *dump_pending(const store_roster_pending_t *p, size_t n)
{
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        fprintf(out, "%zu:%s <- %zu:", strlen(p[i].contact), p[i].contact,
                p[i].len);
        fwrite(p[i].stanza, 1, p[i].len, out);
        fputs(";\n", out);
    }
    fclose(out);
    return text;
}

typedef struct roster_result {
    result_t base;
    bool has_roster;
    int64_t version;
    size_t count, pending_count;
    char *items;   /* dump_items() */
    char *pending; /* dump_pending() */
} roster_result_t;

static void roster_result_clear(roster_result_t *r)
{
    free(r->items);
    free(r->pending);
    r->items = r->pending = NULL;
}

static void on_roster(void *ud, int err, const store_roster_t *ro)
{
    roster_result_t *r = ud;
    result_note(&r->base, err);
    r->has_roster = ro != NULL;
    if (ro == NULL)
        return;
    r->version = ro->version;
    r->count = ro->count;
    r->pending_count = ro->pending_count;
    r->items = dump_items(ro->items, ro->count);
    r->pending = dump_pending(ro->pending, ro->pending_count);
    /* Sorted by contact, byte order. */
    for (size_t i = 1; i < ro->count; i++)
        assert_true(strcmp(ro->items[i - 1].contact, ro->items[i].contact) < 0);
    for (size_t i = 1; i < ro->pending_count; i++)
        assert_true(strcmp(ro->pending[i - 1].contact, ro->pending[i].contact) <
                    0);
}

/* Gets a roster into r (cleared first; the caller clears it last). */
static void do_roster_get(fixture_t *f, const char *domain, const char *node,
                          roster_result_t *r)
{
    roster_result_clear(r);
    memset(r, 0, sizeof(*r));
    result_init(&r->base, f);
    store_roster_get(f->store, domain, node, on_roster, r);
    wait_result(f, &r->base);
    assert_int_equal(r->has_roster, r->base.err == STORE_OK);
}

static int do_roster_update(fixture_t *f, const char *domain, const char *node,
                            const store_roster_change_t *ch)
{
    result_t r;
    result_init(&r, f);
    store_roster_update(f->store, domain, node, ch, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

/* Sets (or with item NULL removes) one item, making `version`. */
static int do_item(fixture_t *f, const char *domain, const char *node,
                   const char *contact, const store_roster_item_t *it,
                   int64_t version)
{
    store_roster_change_t ch = {.contact = contact,
                                .item = it,
                                .pending = STORE_PENDING_KEEP,
                                .version = version};
    return do_roster_update(f, domain, node, &ch);
}

/* A change of the request of a contact that has no item. The change's
 * item is NULL, which removes the contact's item if there is one
 * (store.h): a request of a contact in the roster is changed together with
 * its item (do_roster_update()). */
static int do_pending(fixture_t *f, const char *domain, const char *node,
                      const char *contact, store_pending_op_t op,
                      const char *stanza, size_t len)
{
    store_roster_change_t ch = {.contact = contact,
                                .pending = op,
                                .pending_stanza = stanza,
                                .pending_len = len};
    return do_roster_update(f, domain, node, &ch);
}

/* Checks that the roster of node@domain is exactly items and pending. */
static void assert_roster(fixture_t *f, const char *domain, const char *node,
                          int64_t version, const store_roster_item_t *items,
                          size_t n, const store_roster_pending_t *pending,
                          size_t np)
{
    roster_result_t r = {0};
    do_roster_get(f, domain, node, &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.version, version);
    assert_int_equal(r.count, n);
    assert_int_equal(r.pending_count, np);
    char *want = dump_items(items, n);
    assert_string_equal(r.items, want);
    free(want);
    want = dump_pending(pending, np);
    assert_string_equal(r.pending, want);
    free(want);
    roster_result_clear(&r);
}

static void create_account(fixture_t *f, const char *domain, const char *node)
{
    store_account_t a = make_account(domain, node, 1, false);
    assert_int_equal(do_create(f, &a), STORE_OK);
}

static const char *const odd_groups[] = {
    "Friends", "", "Ünïcödé 😀 группа", "line\nbreak", "tab\t\"quoted\" \\",
    "Friends" /* a duplicate is kept as given, too */};

static void test_roster_round_trip(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    create_account(f, "example.org", "alice");

    /* Never changed: empty, version 0. */
    do_roster_get(f, "example.org", "alice", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.version, 0);
    assert_int_equal(r.count, 0);
    assert_int_equal(r.pending_count, 0);
    roster_result_clear(&r);

    const char *const work[] = {"Work", "Friends"};
    const char *const empty_name[] = {""};
    store_roster_item_t items[] = {
        {.contact = "bob@example.net",
         .name = "Bob",
         .groups = work,
         .group_count = 2,
         .subscription = STORE_SUB_BOTH},
        {.contact = "carol@example.org",
         .subscription = STORE_SUB_TO,
         .ask = true},
        {.contact = "dave@example.net",
         .name = "",
         .groups = odd_groups,
         .group_count = sizeof(odd_groups) / sizeof(odd_groups[0]),
         .subscription = STORE_SUB_FROM,
         .approved = true},
        {.contact = "example.com", /* a domain JID: a gateway */
         .name = "Dåvid\nsecond line",
         .groups = empty_name,
         .group_count = 1,
         .subscription = STORE_SUB_NONE,
         .ask = true,
         .approved = true},
    };
    /* Out of order: the roster comes back sorted. */
    assert_int_equal(
        do_item(f, "example.org", "alice", "dave@example.net", &items[2], 1),
        STORE_OK);
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.net", &items[0], 2),
        STORE_OK);
    assert_int_equal(
        do_item(f, "example.org", "alice", "example.com", &items[3], 3),
        STORE_OK);
    /* item->contact may be left NULL: it is the change's contact. */
    store_roster_item_t carol = items[1];
    carol.contact = NULL;
    assert_int_equal(
        do_item(f, "example.org", "alice", "carol@example.org", &carol, 4),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 4, items, 4, NULL, 0);

    /* Replacing an item replaces everything of it: no groups, no name. */
    items[0].name = NULL;
    items[0].groups = NULL;
    items[0].group_count = 0;
    items[0].subscription = STORE_SUB_TO;
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.net", &items[0], 5),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 5, items, 4, NULL, 0);

    /* Removing one; removing one that is not there still sets the
     * version (the caller decided it was a change). */
    assert_int_equal(
        do_item(f, "example.org", "alice", "carol@example.org", NULL, 6),
        STORE_OK);
    const store_roster_item_t left[] = {items[0], items[2], items[3]};
    assert_roster(f, "example.org", "alice", 6, left, 3, NULL, 0);
    assert_int_equal(
        do_item(f, "example.org", "alice", "nobody@example.org", NULL, 7),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 7, left, 3, NULL, 0);

    /* Version 0 changes the item, not the version. */
    items[2].ask = true;
    assert_int_equal(
        do_item(f, "example.org", "alice", "dave@example.net", &items[2], 0),
        STORE_OK);
    const store_roster_item_t left2[] = {items[0], items[2], items[3]};
    assert_roster(f, "example.org", "alice", 7, left2, 3, NULL, 0);

    /* Rosters are per account: the same node in another domain has none. */
    create_account(f, "example.net", "alice");
    assert_roster(f, "example.net", "alice", 0, NULL, 0, NULL, 0);
}

/* Groups [] and [""] are two different lists, and so are [] and no item. */
static void test_roster_empty_group_lists(void **state)
{
    fixture_t *f = *state;
    const char *const one_empty[] = {""};
    const char *const two_empty[] = {"", ""};
    create_account(f, "example.org", "alice");

    store_roster_item_t items[] = {
        {.contact = "a@example.org", .groups = NULL, .group_count = 0},
        {.contact = "b@example.org", .groups = one_empty, .group_count = 1},
        {.contact = "c@example.org", .groups = two_empty, .group_count = 2},
        {.contact = "d@example.org", .groups = one_empty, .group_count = 0},
    };
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(do_item(f, "example.org", "alice", items[i].contact,
                                 &items[i], (int64_t)i + 1),
                         STORE_OK);
    items[3].groups = NULL; /* count 0 comes back as no array */
    assert_roster(f, "example.org", "alice", 4, items, 4, NULL, 0);
}

static void test_roster_pending(void **state)
{
    fixture_t *f = *state;
    create_account(f, "example.org", "alice");
    static const char s1[] =
        "<presence from='eve@example.net' type='subscribe'/>";
    static const char s2[] = "<presence from='eve@example.net' "
                             "type='subscribe'><status>hi\0there</status>"
                             "</presence>";

    /* A request from a contact without an item: "None + Pending In". Not
     * a roster change: the version stays. */
    assert_int_equal(do_pending(f, "example.org", "alice", "eve@example.net",
                                STORE_PENDING_SET, s1, strlen(s1)),
                     STORE_OK);
    store_roster_pending_t p1[] = {{"eve@example.net", s1, strlen(s1)}};
    assert_roster(f, "example.org", "alice", 0, NULL, 0, p1, 1);

    /* Set again replaces it, byte for byte (a NUL inside included). */
    assert_int_equal(do_pending(f, "example.org", "alice", "eve@example.net",
                                STORE_PENDING_SET, s2, sizeof(s2) - 1),
                     STORE_OK);
    store_roster_pending_t p2[] = {{"eve@example.net", s2, sizeof(s2) - 1}};
    assert_roster(f, "example.org", "alice", 0, NULL, 0, p2, 1);

    /* An item change with KEEP leaves it; another contact's request sorts
     * before it. */
    store_roster_item_t eve = {.contact = "eve@example.net",
                               .name = "Eve",
                               .subscription = STORE_SUB_NONE,
                               .ask = true};
    assert_int_equal(
        do_item(f, "example.org", "alice", "eve@example.net", &eve, 1),
        STORE_OK);
    assert_int_equal(do_pending(f, "example.org", "alice", "bob@example.net",
                                STORE_PENDING_SET, s1, strlen(s1)),
                     STORE_OK);
    store_roster_pending_t p3[] = {{"bob@example.net", s1, strlen(s1)},
                                   {"eve@example.net", s2, sizeof(s2) - 1}};
    assert_roster(f, "example.org", "alice", 1, &eve, 1, p3, 2);

    /* Approving: the item and the request change in one update. */
    eve.subscription = STORE_SUB_FROM;
    store_roster_change_t ch = {.contact = "eve@example.net",
                                .item = &eve,
                                .pending = STORE_PENDING_CLEAR,
                                .version = 2};
    assert_int_equal(do_roster_update(f, "example.org", "alice", &ch),
                     STORE_OK);
    assert_roster(f, "example.org", "alice", 2, &eve, 1, p3, 1);

    /* A change of the request alone passes the item as it is, and version
     * 0. Clearing a request that is not there is no error. */
    ch = (store_roster_change_t){.contact = "eve@example.net",
                                 .item = &eve,
                                 .pending = STORE_PENDING_CLEAR};
    assert_int_equal(do_roster_update(f, "example.org", "alice", &ch),
                     STORE_OK);
    ch.pending = STORE_PENDING_SET;
    ch.pending_stanza = s1;
    ch.pending_len = strlen(s1);
    assert_int_equal(do_roster_update(f, "example.org", "alice", &ch),
                     STORE_OK);
    store_roster_pending_t p5[] = {{"bob@example.net", s1, strlen(s1)},
                                   {"eve@example.net", s1, strlen(s1)}};
    assert_roster(f, "example.org", "alice", 2, &eve, 1, p5, 2);
    /* Removing an item with KEEP leaves the contact's request. */
    assert_int_equal(
        do_item(f, "example.org", "alice", "eve@example.net", NULL, 3),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 3, NULL, 0, p5, 2);
    /* A change with item NULL removes the item, also when only the
     * request was meant (store.h: item NULL is "remove the item"). */
    assert_int_equal(
        do_item(f, "example.org", "alice", "eve@example.net", &eve, 0),
        STORE_OK);
    assert_int_equal(do_pending(f, "example.org", "alice", "eve@example.net",
                                STORE_PENDING_CLEAR, NULL, 0),
                     STORE_OK);
    assert_roster(f, "example.org", "alice", 3, NULL, 0, p5, 1);
    /* SET together with a removal. */
    ch = (store_roster_change_t){.contact = "bob@example.net",
                                 .item = NULL,
                                 .pending = STORE_PENDING_SET,
                                 .pending_stanza = s2,
                                 .pending_len = sizeof(s2) - 1,
                                 .version = 4};
    assert_int_equal(do_roster_update(f, "example.org", "alice", &ch),
                     STORE_OK);
    store_roster_pending_t p4[] = {{"bob@example.net", s2, sizeof(s2) - 1}};
    assert_roster(f, "example.org", "alice", 4, NULL, 0, p4, 1);
}

static int count_rows(fixture_t *f, const char *sql)
{
    return sqlite_int(f->path, sql);
}

static void test_roster_not_found(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    store_roster_item_t it = {.contact = "bob@example.org"};

    create_account(f, "example.org", "alice");
    do_roster_get(f, "example.org", "nobody", &r);
    assert_int_equal(r.base.err, STORE_ERR_NOT_FOUND);
    /* Same node, other domain. */
    do_roster_get(f, "example.net", "alice", &r);
    assert_int_equal(r.base.err, STORE_ERR_NOT_FOUND);

    assert_int_equal(
        do_item(f, "example.org", "nobody", "bob@example.org", &it, 1),
        STORE_ERR_NOT_FOUND);
    assert_int_equal(do_pending(f, "example.net", "alice", "bob@example.org",
                                STORE_PENDING_SET, "<x/>", 4),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(
        do_item(f, "example.org", "nobody", "bob@example.org", NULL, 1),
        STORE_ERR_NOT_FOUND);
    /* Nothing was written, and the store goes on working. */
    assert_int_equal(count_rows(f, "SELECT count(*) FROM roster_items"), 0);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM roster_pending"), 0);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM roster_versions"), 0);
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, 1),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 1, &it, 1, NULL, 0);
}

static void test_roster_invalid(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    const char *const bad_groups[] = {"ok", NULL};
    create_account(f, "example.org", "alice");

    do_roster_get(f, NULL, "alice", &r);
    assert_int_equal(r.base.err, STORE_ERR_INVALID);
    do_roster_get(f, "example.org", NULL, &r);
    assert_int_equal(r.base.err, STORE_ERR_INVALID);

    store_roster_item_t it = {.contact = "bob@example.org"};
    assert_int_equal(do_roster_update(f, "example.org", "alice", NULL),
                     STORE_ERR_INVALID);
    assert_int_equal(do_item(f, "example.org", "alice", NULL, NULL, 1),
                     STORE_ERR_INVALID);
    assert_int_equal(do_item(f, NULL, "alice", "bob@example.org", &it, 1),
                     STORE_ERR_INVALID);
    /* item->contact is another contact than the change's. */
    assert_int_equal(
        do_item(f, "example.org", "alice", "carol@example.org", &it, 1),
        STORE_ERR_INVALID);
    it.subscription = 4;
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, 1),
        STORE_ERR_INVALID);
    it.subscription = STORE_SUB_BOTH;
    it.group_count = 1; /* groups NULL */
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, 1),
        STORE_ERR_INVALID);
    it.groups = bad_groups;
    it.group_count = 2;
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, 1),
        STORE_ERR_INVALID);
    it.group_count = 1;
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, -1),
        STORE_ERR_INVALID);
    assert_int_equal(do_pending(f, "example.org", "alice", "bob@example.org",
                                STORE_PENDING_SET, NULL, 0),
                     STORE_ERR_INVALID);
    assert_int_equal(do_pending(f, "example.org", "alice", "bob@example.org",
                                (store_pending_op_t)7, "<x/>", 4),
                     STORE_ERR_INVALID);
    /* Nothing of it was stored. */
    assert_roster(f, "example.org", "alice", 0, NULL, 0, NULL, 0);
    /* The same item, valid, is. */
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.org", &it, 1),
        STORE_OK);
    assert_roster(f, "example.org", "alice", 1, &it, 1, NULL, 0);
}

/* The caller's strings may change as soon as the call returns. */
static void test_roster_arguments_copied(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    result_t u;
    char contact[32] = "bob@example.org", name[16] = "Bob", g0[16] = "A",
         g1[16] = "B", stanza[32] = "<presence type='subscribe'/>";
    const char *groups[] = {g0, g1};
    create_account(f, "example.org", "alice");

    store_roster_item_t it = {.contact = contact,
                              .name = name,
                              .groups = groups,
                              .group_count = 2,
                              .subscription = STORE_SUB_TO};
    store_roster_change_t ch = {.contact = contact,
                                .item = &it,
                                .pending = STORE_PENDING_SET,
                                .pending_stanza = stanza,
                                .pending_len = strlen(stanza),
                                .version = 9};
    result_init(&u, f);
    store_roster_update(f->store, "example.org", "alice", &ch, on_done, &u);
    memset(contact, 'x', sizeof(contact) - 1);
    memset(name, 'y', sizeof(name) - 1);
    memset(g0, 'z', sizeof(g0) - 1);
    memset(g1, 'w', sizeof(g1) - 1);
    memset(stanza, 'v', sizeof(stanza) - 1);
    groups[0] = groups[1] = "changed";
    memset(&it, 0, sizeof(it));
    memset(&ch, 0, sizeof(ch));
    wait_result(f, &u);
    assert_int_equal(u.err, STORE_OK);

    const char *const want_groups[] = {"A", "B"};
    store_roster_item_t want = {.contact = "bob@example.org",
                                .name = "Bob",
                                .groups = want_groups,
                                .group_count = 2,
                                .subscription = STORE_SUB_TO};
    store_roster_pending_t wp = {"bob@example.org",
                                 "<presence type='subscribe'/>", 28};
    assert_roster(f, "example.org", "alice", 9, &want, 1, &wp, 1);
    roster_result_clear(&r);
}

/* --- offline messages --- */

enum { OFFLINE_MAX = 32 };

typedef struct offline_result {
    result_t base;
    size_t count;
    int64_t ids[OFFLINE_MAX];
    char stanzas[OFFLINE_MAX][128];
    size_t lens[OFFLINE_MAX];
    uint64_t held;
    /* put: what another connection saw when the callback ran */
    const char *path;
    int committed;
} offline_result_t;

static void on_offline(void *ud, int err, const store_offline_msg_t *m,
                       size_t n)
{
    offline_result_t *r = ud;
    result_note(&r->base, err);
    assert_true(n <= OFFLINE_MAX);
    assert_true((m == NULL) == (n == 0));
    r->count = n;
    for (size_t i = 0; i < n; i++) {
        assert_true(m[i].len < sizeof(r->stanzas[i]));
        r->ids[i] = m[i].id;
        memcpy(r->stanzas[i], m[i].stanza, m[i].len);
        r->lens[i] = m[i].len;
        if (i > 0)
            assert_true(m[i].id > m[i - 1].id);
    }
}

static void on_count(void *ud, int err, uint64_t n)
{
    offline_result_t *r = ud;
    result_note(&r->base, err);
    r->held = n;
}

/* The put's callback runs after the COMMIT: another connection sees the
 * message by then. */
static void on_put(void *ud, int err)
{
    offline_result_t *r = ud;
    result_note(&r->base, err);
    r->committed = sqlite_int(r->path, "SELECT count(*) FROM offline_messages");
}

static int do_put(fixture_t *f, const char *domain, const char *node,
                  const char *stanza, unsigned limit)
{
    offline_result_t r;
    memset(&r, 0, sizeof(r));
    result_init(&r.base, f);
    r.path = f->path;
    int before = sqlite_int(f->path, "SELECT count(*) FROM offline_messages");
    store_offline_put(f->store, domain, node, stanza,
                      stanza != NULL ? strlen(stanza) : 0, limit, on_put, &r);
    wait_result(f, &r.base);
    assert_int_equal(r.committed, before + (r.base.err == STORE_OK));
    return r.base.err;
}

static void do_offline_get(fixture_t *f, const char *domain, const char *node,
                           offline_result_t *r)
{
    memset(r, 0, sizeof(*r));
    result_init(&r->base, f);
    store_offline_get(f->store, domain, node, on_offline, r);
    wait_result(f, &r->base);
}

static uint64_t do_offline_count(fixture_t *f, const char *domain,
                                 const char *node)
{
    offline_result_t r;
    memset(&r, 0, sizeof(r));
    result_init(&r.base, f);
    store_offline_count(f->store, domain, node, on_count, &r);
    wait_result(f, &r.base);
    assert_int_equal(r.base.err, STORE_OK);
    return r.held;
}

static int do_offline_delete(fixture_t *f, const char *domain, const char *node,
                             int64_t up_to)
{
    result_t r;
    result_init(&r, f);
    store_offline_delete(f->store, domain, node, up_to, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static void test_offline_order_and_delete(void **state)
{
    fixture_t *f = *state;
    offline_result_t r;
    create_account(f, "example.org", "alice");
    create_account(f, "example.org", "bob");

    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 0);

    assert_int_equal(
        do_put(f, "example.org", "alice", "<message>1</message>", 0), STORE_OK);
    assert_int_equal(do_put(f, "example.org", "bob", "<message>b</message>", 0),
                     STORE_OK);
    assert_int_equal(
        do_put(f, "example.org", "alice", "<message>2</message>", 0), STORE_OK);
    assert_int_equal(
        do_put(f, "example.org", "alice", "<message>3</message>", 0), STORE_OK);
    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 3);
    for (int i = 0; i < 3; i++) {
        char want[32];
        snprintf(want, sizeof(want), "<message>%d</message>", i + 1);
        assert_int_equal(r.lens[i], strlen(want));
        assert_memory_equal(r.stanzas[i], want, strlen(want));
    }
    /* Getting does not remove. */
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 3);
    assert_int_equal(do_offline_count(f, "example.org", "bob"), 1);

    /* Delete up to the second: the third stays, bob's too. */
    int64_t second = r.ids[1], third = r.ids[2];
    assert_int_equal(do_offline_delete(f, "example.org", "alice", second),
                     STORE_OK);
    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.ids[0], third);
    assert_int_equal(do_offline_count(f, "example.org", "bob"), 1);
    /* Up to an id of nobody's, and of an unknown account: no error. */
    assert_int_equal(do_offline_delete(f, "example.org", "alice", 0), STORE_OK);
    assert_int_equal(do_offline_delete(f, "example.org", "nobody", 99),
                     STORE_OK);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 1);
    assert_int_equal(do_offline_delete(f, "example.org", "alice", INT64_MAX),
                     STORE_OK);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 0);

    /* Ids keep growing after the newest were deleted: never reused. */
    assert_int_equal(do_offline_delete(f, "example.org", "bob", INT64_MAX),
                     STORE_OK);
    assert_int_equal(
        do_put(f, "example.org", "alice", "<message>4</message>", 0), STORE_OK);
    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.count, 1);
    assert_true(r.ids[0] > third);

    /* Unknown accounts: get and count are empty; put is refused. */
    do_offline_get(f, "example.org", "nobody", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(do_offline_count(f, "example.org", "nobody"), 0);
    assert_int_equal(do_put(f, "example.org", "nobody", "<message/>", 0),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(do_put(f, "example.net", "alice", "<message/>", 5),
                     STORE_ERR_NOT_FOUND);
}

static void test_offline_limit(void **state)
{
    fixture_t *f = *state;
    offline_result_t r;
    create_account(f, "example.org", "alice");
    create_account(f, "example.org", "bob");

    for (int i = 0; i < 3; i++)
        assert_int_equal(do_put(f, "example.org", "alice", "<message/>", 3),
                         STORE_OK);
    /* The fourth with limit 3: FULL, nothing stored. */
    assert_int_equal(do_put(f, "example.org", "alice", "<m>4</m>", 3),
                     STORE_ERR_FULL);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 3);
    /* A lower limit than what is held: still full. */
    assert_int_equal(do_put(f, "example.org", "alice", "<m>4</m>", 1),
                     STORE_ERR_FULL);
    /* The limit is per account. */
    assert_int_equal(do_put(f, "example.org", "bob", "<m/>", 3), STORE_OK);
    /* A higher limit, and no limit. */
    assert_int_equal(do_put(f, "example.org", "alice", "<m>4</m>", 4),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>5</m>", 4),
                     STORE_ERR_FULL);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>5</m>", 0),
                     STORE_OK);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 5);
    /* Room again once delivered ones are deleted. */
    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.count, 5);
    assert_memory_equal(r.stanzas[4], "<m>5</m>", 8);
    assert_int_equal(do_offline_delete(f, "example.org", "alice", r.ids[1]),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>6</m>", 4),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>7</m>", 4),
                     STORE_ERR_FULL);
}

/* A stanza is bytes with a length: a NUL inside is kept, and what follows
 * `len` is not stored. */
static void test_offline_bytes(void **state)
{
    fixture_t *f = *state;
    offline_result_t r;
    result_t u;
    char stanza[] = "<message>a\0b</message>TRAILING";
    size_t len = sizeof("<message>a\0b</message>") - 1;
    create_account(f, "example.org", "alice");

    result_init(&u, f);
    store_offline_put(f->store, "example.org", "alice", stanza, len, 0, on_done,
                      &u);
    memset(stanza, 'x', sizeof(stanza) - 1); /* copied before the return */
    wait_result(f, &u);
    assert_int_equal(u.err, STORE_OK);
    do_offline_get(f, "example.org", "alice", &r);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.lens[0], len);
    assert_memory_equal(r.stanzas[0], "<message>a\0b</message>", len);

    /* Nothing to store, or no owner: INVALID. */
    assert_int_equal(do_put(f, "example.org", "alice", "", 0),
                     STORE_ERR_INVALID);
    assert_int_equal(do_put(f, "example.org", "alice", NULL, 0),
                     STORE_ERR_INVALID);
    assert_int_equal(do_put(f, NULL, "alice", "<m/>", 0), STORE_ERR_INVALID);
    assert_int_equal(do_offline_delete(f, "example.org", NULL, 1),
                     STORE_ERR_INVALID);
    do_offline_get(f, NULL, "alice", &r);
    assert_int_equal(r.base.err, STORE_ERR_INVALID);
}

/* --- deleting an account --- */

static void test_account_delete_cascade(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    const char *const g[] = {"Friends"};
    static const char req[] = "<presence type='subscribe'/>";

    create_account(f, "example.org", "alice");
    create_account(f, "example.net", "bob");   /* both, other domain */
    create_account(f, "example.org", "carol"); /* from + pre-approved */
    create_account(f, "example.net", "dave");  /* a request only */
    create_account(f, "example.org", "erin");  /* an item already none */
    create_account(f, "example.com", "frank"); /* nothing about alice */

    /* alice's own roster, requests and messages. */
    store_roster_item_t alice_items[] = {
        {.contact = "bob@example.net", .subscription = STORE_SUB_BOTH},
        {.contact = "carol@example.org", .subscription = STORE_SUB_TO},
    };
    assert_int_equal(do_item(f, "example.org", "alice", "bob@example.net",
                             &alice_items[0], 1),
                     STORE_OK);
    assert_int_equal(do_item(f, "example.org", "alice", "carol@example.org",
                             &alice_items[1], 2),
                     STORE_OK);
    assert_int_equal(do_pending(f, "example.org", "alice", "dave@example.net",
                                STORE_PENDING_SET, req, strlen(req)),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m/>", 0), STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m/>", 0), STORE_OK);

    /* What the others hold about alice. */
    store_roster_item_t bob_items[] = {
        {.contact = "alice@example.org",
         .name = "Alice",
         .groups = g,
         .group_count = 1,
         .subscription = STORE_SUB_BOTH,
         .ask = false},
        {.contact = "carol@example.org", .subscription = STORE_SUB_BOTH},
    };
    assert_int_equal(
        do_item(f, "example.net", "bob", "alice@example.org", &bob_items[0], 5),
        STORE_OK);
    assert_int_equal(
        do_item(f, "example.net", "bob", "carol@example.org", &bob_items[1], 6),
        STORE_OK);
    store_roster_item_t carol_item = {.contact = "alice@example.org",
                                      .subscription = STORE_SUB_FROM,
                                      .ask = true,
                                      .approved = true};
    /* Version 0: carol's roster has an item but no version row yet; her
     * item for alice and alice's request in one change. */
    store_roster_change_t carol_ch = {.contact = "alice@example.org",
                                      .item = &carol_item,
                                      .pending = STORE_PENDING_SET,
                                      .pending_stanza = req,
                                      .pending_len = strlen(req)};
    assert_int_equal(do_roster_update(f, "example.org", "carol", &carol_ch),
                     STORE_OK);
    store_roster_pending_t carol_req = {"alice@example.org", req, strlen(req)};
    assert_roster(f, "example.org", "carol", 0, &carol_item, 1, &carol_req, 1);
    assert_int_equal(do_pending(f, "example.net", "dave", "alice@example.org",
                                STORE_PENDING_SET, req, strlen(req)),
                     STORE_OK);
    assert_int_equal(do_pending(f, "example.net", "dave", "bob@example.net",
                                STORE_PENDING_SET, req, strlen(req)),
                     STORE_OK);
    assert_int_equal(do_item(f, "example.net", "dave", "bob@example.net",
                             &alice_items[0], 2),
                     STORE_OK);
    store_roster_item_t erin_item = {.contact = "alice@example.org",
                                     .name = "old friend"};
    assert_int_equal(
        do_item(f, "example.org", "erin", "alice@example.org", &erin_item, 3),
        STORE_OK);
    /* A same-named account of another domain is another contact. */
    store_roster_item_t frank_item = {.contact = "alice@example.net",
                                      .subscription = STORE_SUB_BOTH};
    assert_int_equal(
        do_item(f, "example.com", "frank", "alice@example.net", &frank_item, 1),
        STORE_OK);

    assert_int_equal(do_delete(f, "example.org", "alice"), STORE_OK);

    /* alice is gone, all of her. */
    do_roster_get(f, "example.org", "alice", &r);
    assert_int_equal(r.base.err, STORE_ERR_NOT_FOUND);
    assert_int_equal(
        count_rows(f, "SELECT count(*) FROM roster_items WHERE node = 'alice'"),
        0);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM roster_versions"
                                   " WHERE node = 'alice'"),
                     0);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM roster_pending"
                                   " WHERE node = 'alice'"),
                     0);
    assert_int_equal(count_rows(f, "SELECT count(*) FROM offline_messages"), 0);

    /* bob keeps the item, without subscription, at the next version. */
    bob_items[0].subscription = STORE_SUB_NONE;
    assert_roster(f, "example.net", "bob", 7, bob_items, 2, NULL, 0);
    /* carol: no subscription, ask or approval; the request is dropped; her
     * roster gets its first version. */
    carol_item.subscription = STORE_SUB_NONE;
    carol_item.ask = carol_item.approved = false;
    assert_roster(f, "example.org", "carol", 1, &carol_item, 1, NULL, 0);
    /* dave: the request from alice is dropped, bob's stays; dropping a
     * request is not a roster change. */
    store_roster_pending_t dave_pending = {"bob@example.net", req, strlen(req)};
    assert_roster(f, "example.net", "dave", 2, &alice_items[0], 1,
                  &dave_pending, 1);
    /* erin: nothing changed, neither does the version. */
    assert_roster(f, "example.org", "erin", 3, &erin_item, 1, NULL, 0);
    assert_roster(f, "example.com", "frank", 1, &frank_item, 1, NULL, 0);

    /* Deleting again: NOT_FOUND, and no roster changes. */
    assert_int_equal(do_delete(f, "example.org", "alice"), STORE_ERR_NOT_FOUND);
    assert_roster(f, "example.net", "bob", 7, bob_items, 2, NULL, 0);
    assert_roster(f, "example.org", "carol", 1, &carol_item, 1, NULL, 0);

    /* A new alice starts empty. */
    create_account(f, "example.org", "alice");
    assert_roster(f, "example.org", "alice", 0, NULL, 0, NULL, 0);
    assert_int_equal(do_offline_count(f, "example.org", "alice"), 0);
}

/* --- persistence --- */

/* ------------------------------------------------------------ account data */

enum { DATA_MAX = 8 };

typedef struct data_result {
    result_t base;
    size_t count;
    char keys[DATA_MAX][64];
    char values[DATA_MAX][128];
    char owners[DATA_MAX][64];
    size_t lens[DATA_MAX];
    int64_t updated[DATA_MAX];
} data_result_t;

static void on_data(void *ud, int err, const store_data_item_t *items, size_t n)
{
    data_result_t *r = ud;
    result_note(&r->base, err);
    assert_true(n <= DATA_MAX);
    assert_true((items == NULL) == (n == 0));
    r->count = n;
    for (size_t i = 0; i < n; i++) {
        assert_true(strlen(items[i].key) < sizeof(r->keys[i]));
        assert_true(items[i].len < sizeof(r->values[i]));
        assert_int_equal(items[i].value[items[i].len], '\0');
        strcpy(r->keys[i], items[i].key);
        assert_true((items[i].domain == NULL) == (items[i].node == NULL));
        if (items[i].domain != NULL)
            snprintf(r->owners[i], sizeof(r->owners[i]), "%s@%s", items[i].node,
                     items[i].domain);
        memcpy(r->values[i], items[i].value, items[i].len);
        r->lens[i] = items[i].len;
        r->updated[i] = items[i].updated;
    }
}

static int do_data_put(fixture_t *f, const char *node, const char *kind,
                       const char *key, const char *value)
{
    result_t r;
    result_init(&r, f);
    store_data_put(f->store, "example.org", node, kind, key, value,
                   value != NULL ? strlen(value) : 0, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static void do_data_get(fixture_t *f, const char *node, const char *kind,
                        const char *key, data_result_t *r)
{
    memset(r, 0, sizeof(*r));
    result_init(&r->base, f);
    store_data_get(f->store, "example.org", node, kind, key, on_data, r);
    wait_result(f, &r->base);
}

static int do_data_delete(fixture_t *f, const char *node, const char *kind,
                          const char *key)
{
    result_t r;
    result_init(&r, f);
    store_data_delete(f->store, "example.org", node, kind, key, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

/* Documents by kind and key: one or all of a kind, oldest write first (a
 * rewrite moves to the end), kinds and accounts apart, deletes of one or
 * all, bytes kept exactly, no account: NOT_FOUND; and they survive a
 * reopen and go with their account. */
static int do_invite(fixture_t *f, int which, const char *domain,
                     const char *token, int64_t expires,
                     const store_account_t *a)
{
    result_t r;
    result_init(&r, f);
    if (which == 0)
        store_invite_create(f->store, domain, token, expires, on_done, &r);
    else if (which == 1)
        store_invite_check(f->store, domain, token, on_done, &r);
    else
        store_invite_redeem(f->store, token, a, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

/* Invitations: made, checked per domain and expiry, redeemed once and
 * only together with the account they create. */
static void test_invites(void **state)
{
    fixture_t *f = *state;
    int64_t later = (int64_t)time(NULL) + 3600;
    assert_int_equal(do_invite(f, 0, "example.org", "t1", later, NULL),
                     STORE_OK);
    assert_int_equal(do_invite(f, 0, "example.org", "old", 1000, NULL),
                     STORE_OK);
    assert_int_equal(do_invite(f, 0, "example.org", "", later, NULL),
                     STORE_ERR_INVALID);
    assert_int_equal(do_invite(f, 1, "example.org", "t1", 0, NULL), STORE_OK);
    assert_int_equal(do_invite(f, 1, "example.net", "t1", 0, NULL),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(do_invite(f, 1, "example.org", "old", 0, NULL),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(do_invite(f, 1, "example.org", "none", 0, NULL),
                     STORE_ERR_NOT_FOUND);

    /* An account that exists: the token stays. */
    store_account_t alice = make_account("example.org", "alice", 1, false);
    assert_int_equal(do_create(f, &alice), STORE_OK);
    assert_int_equal(do_invite(f, 2, NULL, "t1", 0, &alice), STORE_ERR_EXISTS);
    assert_int_equal(do_invite(f, 1, "example.org", "t1", 0, NULL), STORE_OK);

    /* Redeemed: the account exists with its credentials; the token is
     * gone. A token of another domain is no use here. */
    store_account_t bob = make_account("example.org", "bob", 2, false);
    store_account_t carol = make_account("example.net", "carol", 3, false);
    assert_int_equal(do_invite(f, 2, NULL, "t1", 0, &carol),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(do_invite(f, 2, NULL, "t1", 0, &bob), STORE_OK);
    result_t r;
    do_get(f, "example.org", "bob", &r);
    assert_int_equal(r.err, STORE_OK);
    assert_cred_equal(&r.account.sha256, &bob.sha256);
    assert_int_equal(do_invite(f, 1, "example.org", "t1", 0, NULL),
                     STORE_ERR_NOT_FOUND);
    store_account_t dave = make_account("example.org", "dave", 4, false);
    assert_int_equal(do_invite(f, 2, NULL, "t1", 0, &dave),
                     STORE_ERR_NOT_FOUND);
    do_get(f, "example.org", "dave", &r);
    assert_int_equal(r.err, STORE_ERR_NOT_FOUND);
    /* Making one drops the expired ones. */
    assert_int_equal(do_invite(f, 0, "example.org", "t2", later, NULL),
                     STORE_OK);
    assert_int_equal(sqlite_int(f->path, "SELECT count(*) FROM invites"), 1);
}

/* --- archive --- */

typedef struct archive_result {
    result_t base;
    size_t count, total; /* total: a count_only query's answer */
    bool complete;
    char sids[16][24];
    int64_t ts[16];
    char peers[16][64];
    bool outgoing[16];
    char stanzas[16][64];
} archive_result_t;

static void on_archive(void *ud, int err, const store_archive_item_t *items,
                       size_t count, bool complete)
{
    archive_result_t *r = ud;
    result_note(&r->base, err);
    r->complete = complete;
    if (items == NULL) {
        r->total = count;
        return;
    }
    r->count = count;
    for (size_t i = 0; i < count && i < 16; i++) {
        snprintf(r->sids[i], sizeof(r->sids[i]), "%s", items[i].sid);
        snprintf(r->peers[i], sizeof(r->peers[i]), "%s/%s", items[i].peer,
                 items[i].peer_res);
        snprintf(r->stanzas[i], sizeof(r->stanzas[i]), "%.*s",
                 (int)items[i].len, items[i].stanza);
        r->ts[i] = items[i].ts;
        r->outgoing[i] = items[i].outgoing;
    }
}

static int do_archive_put(fixture_t *f, const char *node, const char *sid,
                          int64_t ts, const char *peer, bool out)
{
    char stanza[64];
    snprintf(stanza, sizeof(stanza), "<message id='%s'/>", sid);
    store_archive_item_t it = {.sid = sid,
                               .ts = ts,
                               .peer = peer,
                               .peer_res = "r",
                               .outgoing = out,
                               .stanza = stanza,
                               .len = strlen(stanza)};
    result_t r;
    result_init(&r, f);
    store_archive_put(f->store, "example.org", node, &it, on_done, &r);
    wait_result(f, &r);
    return r.err;
}

static void do_archive_query(fixture_t *f, const store_archive_query_t *q,
                             archive_result_t *r)
{
    memset(r, 0, sizeof(*r));
    result_init(&r->base, f);
    store_archive_query(f->store, "example.org", "alice", q, on_archive, r);
    wait_result(f, &r->base);
}

static void assert_sids(const archive_result_t *r, const char *want)
{
    char got[256] = "";
    for (size_t i = 0; i < r->count; i++) {
        if (i > 0)
            strcat(got, " ");
        strcat(got, r->sids[i]);
    }
    assert_string_equal(got, want);
}

/* XEP-0313 queries: pages forward and backward (RSM), by party, by time
 * span, from and to a stanza id; unknown ids; retention; the account's
 * deletion. */
static void test_archive(void **state)
{
    fixture_t *f = *state;
    create_account(f, "example.org", "alice");
    create_account(f, "example.org", "bob");
    char sid[16];
    /* s0..s9 at times 1000..1009 (s4 and s5 at the same time), with bob
     * (even) and carol (odd); one of bob's own. */
    for (int i = 0; i < 10; i++) {
        snprintf(sid, sizeof(sid), "s%d", i);
        assert_int_equal(
            do_archive_put(f, "alice", sid, 1000 + i - (i == 5 ? 1 : 0),
                           i % 2 == 0 ? "bob@example.org" : "carol@example.org",
                           i % 3 == 0),
            STORE_OK);
    }
    assert_int_equal(
        do_archive_put(f, "bob", "s0", 5000, "alice@example.org", true),
        STORE_OK);
    assert_int_equal(do_archive_put(f, "nobody", "x", 1, "a@b", false),
                     STORE_ERR_NOT_FOUND);

    archive_result_t r;
    store_archive_query_t q = {.max = 4};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_sids(&r, "s0 s1 s2 s3");
    assert_false(r.complete);
    assert_string_equal(r.peers[1], "carol@example.org/r");
    assert_true(r.outgoing[0]);
    assert_false(r.outgoing[1]);
    assert_string_equal(r.stanzas[2], "<message id='s2'/>");
    q.after = "s3";
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s4 s5 s6 s7"); /* s4, s5 share a time: insertion order */
    q.after = "s7";
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s8 s9");
    assert_true(r.complete);

    /* Backward: the last page, then the one before. */
    q.after = NULL;
    q.before = "";
    q.max = 3;
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s7 s8 s9");
    assert_false(r.complete);
    q.before = "s7";
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s4 s5 s6");
    q.before = "s2";
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s0 s1");
    assert_true(r.complete);

    /* Between two ids; with a party; a time span. */
    q = (store_archive_query_t){.after = "s2", .before = "s6", .max = 10};
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s3 s4 s5"); /* the page just before s6 */
    q = (store_archive_query_t){.peer = "bob@example.org", .max = 10};
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s0 s2 s4 s6 s8");
    q.peer_res = "other";
    do_archive_query(f, &q, &r);
    assert_int_equal(r.count, 0);
    assert_true(r.complete);
    q = (store_archive_query_t){.start = 1003, .end = 1006, .max = 10};
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s3 s4 s5 s6");

    /* Ids that are not there: item-not-found. */
    q = (store_archive_query_t){.after = "nope", .max = 10};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_ERR_NOT_FOUND);
    q = (store_archive_query_t){.max = 0};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_ERR_INVALID);

    /* Single items by id (XEP-0313 'ids'): archive order whatever the
     * order named, once each, other filters applied, max ignored; one
     * unknown id fails the query; bob's s0 is not alice's. */
    const char *ids[] = {"s7", "s2", "s5", "s2"};
    q = (store_archive_query_t){.ids = ids, .nids = 4, .max = 1};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_sids(&r, "s2 s5 s7");
    assert_true(r.complete);
    q.peer = "carol@example.org";
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s5 s7");
    q = (store_archive_query_t){
        .ids = ids, .nids = 3, .after = "s2", .end = 1006, .max = 1};
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s5");
    /* Counting (RSM max 0): the filters, not the positions. */
    q = (store_archive_query_t){.count_only = true, .after = "s3", .max = 1};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.total, 10);
    q = (store_archive_query_t){
        .count_only = true, .peer = "bob@example.org", .end = 1005, .max = 1};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.total, 3);
    const char *bad_ids[] = {"s1", "nope"};
    q = (store_archive_query_t){.ids = bad_ids, .nids = 2, .max = 1};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.base.err, STORE_ERR_NOT_FOUND);

    /* Group commit: 300 puts queued at once share transactions; one for
     * an account that does not exist fails alone; each gets its answer,
     * in order. */
    enum { BURST = 300 };
    result_t burst[BURST];
    char bsid[BURST][16];
    for (int i = 0; i < BURST; i++) {
        snprintf(bsid[i], sizeof(bsid[i]), "b%d", i);
        store_archive_item_t it = {.sid = bsid[i],
                                   .ts = 2000 + i,
                                   .peer = "dave@example.org",
                                   .peer_res = "",
                                   .stanza = "<m/>",
                                   .len = 4};
        result_init(&burst[i], f);
        store_archive_put(f->store, "example.org",
                          i == 150 ? "nobody" : "alice", &it, on_done,
                          &burst[i]);
    }
    /* Answers come in request order: the last one done means all are. */
    assert_true(store_wait(&f->loop, &burst[BURST - 1].done));
    for (int i = 0; i < BURST; i++) {
        assert_true(burst[i].done);
        assert_int_equal(burst[i].calls, 1);
        assert_int_equal(burst[i].err,
                         i == 150 ? STORE_ERR_NOT_FOUND : STORE_OK);
    }
    q = (store_archive_query_t){.peer = "dave@example.org", .max = 1000};
    do_archive_query(f, &q, &r);
    assert_int_equal(r.count, BURST - 1);

    /* Retention: everything before 1005 goes, for every account. */
    result_t d;
    result_init(&d, f);
    store_archive_expire(f->store, 1005, on_done, &d);
    wait_result(f, &d);
    assert_int_equal(d.err, STORE_OK);
    q = (store_archive_query_t){.max = 4};
    do_archive_query(f, &q, &r);
    assert_sids(&r, "s6 s7 s8 s9"); /* s5 was at 1004 */
    assert_int_equal(do_delete(f, "example.org", "alice"), STORE_OK);
    assert_int_equal(sqlite_int(f->path, "SELECT count(*) FROM archive"), 1);
}

static void test_data_round_trip(void **state)
{
    fixture_t *f = *state;
    data_result_t r;
    create_account(f, "example.org", "alice");
    create_account(f, "example.org", "bob");
    time_t t0 = time(NULL);

    assert_int_equal(do_data_put(f, "alice", "private", "ns:a", "<a/>"),
                     STORE_OK);
    assert_int_equal(do_data_put(f, "alice", "private", "ns:b", "<b/>"),
                     STORE_OK);
    assert_int_equal(do_data_put(f, "alice", "vcard", "", "<vCard/>"),
                     STORE_OK);
    assert_int_equal(do_data_put(f, "bob", "private", "ns:a", "<bob/>"),
                     STORE_OK);
    assert_int_equal(do_data_put(f, "nobody", "private", "ns:a", "<a/>"),
                     STORE_ERR_NOT_FOUND);
    assert_int_equal(do_data_put(f, "alice", "private", NULL, "<a/>"),
                     STORE_ERR_INVALID);
    assert_int_equal(do_data_put(f, "alice", "empty", "k", ""), STORE_OK);

    do_data_get(f, "alice", "private", "ns:a", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.keys[0], "ns:a");
    assert_string_equal(r.values[0], "<a/>");
    assert_true(r.updated[0] >= t0 && r.updated[0] <= time(NULL));
    do_data_get(f, "alice", "private", "ns:none", &r);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 0);
    do_data_get(f, "alice", "empty", "k", &r);
    assert_int_equal(r.count, 1);
    assert_int_equal(r.lens[0], 0);

    /* A rewrite replaces and moves to the end. */
    assert_int_equal(do_data_put(f, "alice", "private", "ns:a", "<a2/>"),
                     STORE_OK);
    do_data_get(f, "alice", "private", NULL, &r);
    assert_int_equal(r.count, 2);
    assert_string_equal(r.keys[0], "ns:b");
    assert_string_equal(r.keys[1], "ns:a");
    assert_string_equal(r.values[1], "<a2/>");

    /* Every account's documents of a kind, by owner. */
    memset(&r, 0, sizeof(r));
    result_init(&r.base, f);
    store_data_all(f->store, "private", on_data, &r);
    wait_result(f, &r.base);
    assert_int_equal(r.base.err, STORE_OK);
    assert_int_equal(r.count, 3);
    assert_string_equal(r.owners[0], "alice@example.org");
    assert_string_equal(r.keys[0], "ns:b");
    assert_string_equal(r.owners[1], "alice@example.org");
    assert_string_equal(r.keys[1], "ns:a");
    assert_string_equal(r.owners[2], "bob@example.org");
    assert_string_equal(r.values[2], "<bob/>");
    do_data_get(f, "alice", "private", "ns:a", &r);
    assert_string_equal(r.owners[0], "");

    /* Deletes: one, then a whole kind; nothing is no error. */
    assert_int_equal(do_data_delete(f, "alice", "private", "ns:b"), STORE_OK);
    assert_int_equal(do_data_delete(f, "alice", "private", "ns:b"), STORE_OK);
    do_data_get(f, "alice", "private", NULL, &r);
    assert_int_equal(r.count, 1);
    close_store(f);
    open_store(f);
    do_data_get(f, "alice", "vcard", "", &r);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.values[0], "<vCard/>");
    assert_int_equal(do_data_delete(f, "alice", "private", NULL), STORE_OK);
    do_data_get(f, "alice", "private", NULL, &r);
    assert_int_equal(r.count, 0);
    do_data_get(f, "bob", "private", NULL, &r);
    assert_int_equal(r.count, 1);
    assert_string_equal(r.values[0], "<bob/>");

    /* The account's documents go with it. */
    result_t u;
    result_init(&u, f);
    store_account_delete(f->store, "example.org", "alice", on_done, &u);
    wait_result(f, &u);
    assert_int_equal(u.err, STORE_OK);
    assert_int_equal(sqlite_int(f->path, "SELECT count(*) FROM account_data"
                                         " WHERE node = 'alice'"),
                     0);
    do_data_get(f, "bob", "private", "ns:a", &r);
    assert_int_equal(r.count, 1);
}

static void test_roster_offline_persist(void **state)
{
    fixture_t *f = *state;
    offline_result_t o;
    static const char req[] = "<presence type='subscribe'/>";
    create_account(f, "example.org", "alice");

    store_roster_item_t it = {.contact = "bob@example.net",
                              .name = "Bøb",
                              .groups = odd_groups,
                              .group_count = 3,
                              .subscription = STORE_SUB_BOTH,
                              .approved = true};
    assert_int_equal(
        do_item(f, "example.org", "alice", "bob@example.net", &it, 42),
        STORE_OK);
    assert_int_equal(do_pending(f, "example.org", "alice", "eve@example.net",
                                STORE_PENDING_SET, req, strlen(req)),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>1</m>", 0),
                     STORE_OK);
    assert_int_equal(do_put(f, "example.org", "alice", "<m>2</m>", 0),
                     STORE_OK);
    close_store(f);
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), SCHEMA_NEWEST);

    open_store(f);
    store_roster_pending_t p = {"eve@example.net", req, strlen(req)};
    assert_roster(f, "example.org", "alice", 42, &it, 1, &p, 1);
    do_offline_get(f, "example.org", "alice", &o);
    assert_int_equal(o.count, 2);
    assert_memory_equal(o.stanzas[0], "<m>1</m>", 8);
    assert_memory_equal(o.stanzas[1], "<m>2</m>", 8);
}

/* Requests of the new groups made while closing are answered CLOSED,
 * without results. */
static void test_roster_offline_after_close(void **state)
{
    fixture_t *f = *state;
    roster_result_t r = {0};
    offline_result_t o;
    result_t u;
    store_t *s = f->store;
    store_roster_change_t ch = {.contact = "bob@example.org",
                                .pending = STORE_PENDING_CLEAR};

    create_account(f, "example.org", "alice");
    bool closed = false;
    store_close(s, on_closed, &closed);
    f->store = NULL;
    result_init(&r.base, f);
    store_roster_get(s, "example.org", "alice", on_roster, &r);
    result_init(&u, f);
    store_roster_update(s, "example.org", "alice", &ch, on_done, &u);
    memset(&o, 0, sizeof(o));
    result_init(&o.base, f);
    store_offline_get(s, "example.org", "alice", on_offline, &o);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_true(closed);
    assert_int_equal(r.base.err, STORE_ERR_CLOSED);
    assert_false(r.has_roster);
    assert_int_equal(u.err, STORE_ERR_CLOSED);
    assert_int_equal(o.base.err, STORE_ERR_CLOSED);
    assert_int_equal(o.count, 0);
}

/* --- an old database --- */

/* The schema exactly as the first release wrote it (version 1: accounts
 * only, before the table groups), with a row written the way that code
 * wrote rows: the new code must read it, migrate it to the newest version
 * (rosters 2, offline messages 3), and give the old account an empty
 * roster and room for messages. */
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
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), SCHEMA_NEWEST);
    assert_int_equal(
        sqlite_int(f->path, "SELECT created FROM accounts WHERE node = 'olda'"),
        1700000000);

    assert_roster(f, "example.org", "olda", 0, NULL, 0, NULL, 0);
    store_roster_item_t it = {.contact = "newb@example.org",
                              .subscription = STORE_SUB_BOTH};
    assert_int_equal(
        do_item(f, "example.org", "olda", "newb@example.org", &it, 1),
        STORE_OK);
    assert_int_equal(do_put(f, "example.org", "olda", "<m/>", 10), STORE_OK);
    /* The old account's deletion cascades through the new tables too. */
    assert_int_equal(do_delete(f, "example.org", "olda"), STORE_OK);
    assert_int_equal(do_offline_count(f, "example.org", "olda"), 0);
    assert_int_equal(do_create(f, &old), STORE_OK);
    assert_roster(f, "example.org", "olda", 0, NULL, 0, NULL, 0);
    close_store(f);
    assert_int_equal(sqlite_int(f->path, "PRAGMA user_version"), SCHEMA_NEWEST);
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

static const store_op_t test_op = {"test", test_run, test_deliver, false};

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
    const int codes[] = {
        STORE_OK,         STORE_ERR_NOT_FOUND, STORE_ERR_EXISTS,
        STORE_ERR_IO,     STORE_ERR_NOMEM,     STORE_ERR_CLOSED,
        STORE_ERR_SCHEMA, STORE_ERR_INVALID,   STORE_ERR_FULL};
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
        cmocka_unit_test_setup_teardown(test_roster_round_trip, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_roster_empty_group_lists, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_roster_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster_arguments_copied, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_offline_order_and_delete, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_offline_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offline_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_account_delete_cascade, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_data_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invites, setup, teardown),
        cmocka_unit_test_setup_teardown(test_archive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roster_offline_persist, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_roster_offline_after_close, setup,
                                        teardown),
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
