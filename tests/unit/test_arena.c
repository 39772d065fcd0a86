/* Unit tests for lib/base/arena: the bump allocator behind every tree. */
#include <setjmp.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/arena.h"

static void assert_aligned(const void *p)
{
    assert_non_null(p);
    assert_int_equal((uintptr_t)p % alignof(max_align_t), 0);
}

static void test_new_and_free(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    assert_true(arena_footprint(a) > 0);
    arena_free(a);

    a = arena_new(100000);
    assert_non_null(a);
    arena_free(a);
}

static void test_free_null(void **state)
{
    (void)state;
    arena_free(NULL); /* must be a no-op */
}

/* Thousands of small allocations: every one distinct, aligned, writable and
 * still intact when the others have been written. */
static void test_many_small(void **state)
{
    (void)state;
    enum { N = 20000 };
    arena_t *a = arena_new(0);
    assert_non_null(a);
    static unsigned char *ptrs[N];
    for (size_t i = 0; i < N; i++) {
        size_t size = 1 + i % 37;
        ptrs[i] = arena_alloc(a, size);
        assert_aligned(ptrs[i]);
        memset(ptrs[i], (int)(i & 0xff), size);
    }
    for (size_t i = 0; i < N; i++) {
        size_t size = 1 + i % 37;
        for (size_t j = 0; j < size; j++)
            assert_int_equal(ptrs[i][j], (unsigned char)(i & 0xff));
    }
    arena_free(a);
}

/* Every pointer is aligned for any object, whatever the previous sizes. */
static void test_alignment(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    static const size_t sizes[] = {1,   2,   3,   5,    7,    8,  9,
                                   15,  16,  17,  31,   33,   63, 100,
                                   255, 511, 513, 1000, 4097, 1};
    for (int round = 0; round < 50; round++) {
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            void *p = arena_alloc(a, sizes[i]);
            assert_aligned(p);
            memset(p, 0xab, sizes[i]);
        }
    }
    /* A zero-byte request is still a valid, aligned pointer. */
    assert_aligned(arena_alloc(a, 0));
    /* Aligned storage is usable for the widest types. */
    long double *ld = arena_alloc(a, sizeof(long double) * 4);
    assert_aligned(ld);
    ld[3] = 1.5L;
    assert_true(ld[3] == 1.5L);
    arena_free(a);
}

/* An allocation much larger than any block, with small ones around it. */
static void test_huge(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    char *small1 = arena_alloc(a, 10);
    assert_aligned(small1);
    memcpy(small1, "123456789", 10);

    const size_t huge = 8u * 1024 * 1024 + 3;
    unsigned char *big = arena_alloc(a, huge);
    assert_aligned(big);
    memset(big, 0x5a, huge);
    assert_true(arena_footprint(a) >= huge);

    char *small2 = arena_alloc(a, 10);
    assert_aligned(small2);
    memcpy(small2, "abcdefghi", 10);

    assert_int_equal(big[0], 0x5a);
    assert_int_equal(big[huge - 1], 0x5a);
    assert_string_equal(small1, "123456789");
    assert_string_equal(small2, "abcdefghi");
    arena_free(a);
}

/* A request that cannot be satisfied is reported as NULL, not a crash. */
static void test_impossible(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    assert_null(arena_alloc(a, SIZE_MAX));
    assert_null(arena_alloc(a, SIZE_MAX - 8));
    /* The arena is still usable. */
    assert_aligned(arena_alloc(a, 16));
    arena_free(a);
}

static void test_strdup(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    const char *src = "héllo ☃";
    char *s = arena_strdup(a, src);
    assert_non_null(s);
    assert_ptr_not_equal(s, src);
    assert_string_equal(s, src);

    char *e = arena_strdup(a, "");
    assert_non_null(e);
    assert_string_equal(e, "");

    /* strndup copies exactly len bytes and terminates, even when the source
     * is not NUL-terminated there. */
    const char raw[5] = {'a', 'b', 'c', 'd', 'e'};
    char *n = arena_strndup(a, raw, 3);
    assert_non_null(n);
    assert_string_equal(n, "abc");
    char *z = arena_strndup(a, raw, 0);
    assert_non_null(z);
    assert_string_equal(z, "");

    /* Embedded NUL bytes are copied as they are. */
    char *emb = arena_strndup(a, "x\0y", 3);
    assert_non_null(emb);
    assert_memory_equal(emb, "x\0y", 4);

    /* A long string. */
    static char longs[100001];
    memset(longs, 'q', sizeof(longs) - 1);
    longs[sizeof(longs) - 1] = '\0';
    char *l = arena_strdup(a, longs);
    assert_non_null(l);
    assert_int_equal(strlen(l), sizeof(longs) - 1);
    assert_string_equal(l, longs);

    /* The earlier copies are intact. */
    assert_string_equal(s, src);
    assert_string_equal(n, "abc");
    arena_free(a);
}

/* The footprint reports what the arena took from the system: it never
 * shrinks, grows as allocations overflow the blocks, and covers them. */
static void test_footprint(void **state)
{
    (void)state;
    arena_t *a = arena_new(0);
    assert_non_null(a);
    size_t f0 = arena_footprint(a);
    size_t total = 0;
    size_t prev = f0;
    for (int i = 0; i < 1000; i++) {
        assert_non_null(arena_alloc(a, 100));
        total += 100;
        size_t f = arena_footprint(a);
        assert_true(f >= prev);
        prev = f;
    }
    assert_true(arena_footprint(a) > f0);
    assert_true(arena_footprint(a) >= total);
    arena_free(a);

    /* A first block of the requested size: small allocations within it do
     * not grow the footprint. */
    a = arena_new(64 * 1024);
    assert_non_null(a);
    assert_non_null(arena_alloc(a, 1));
    size_t f1 = arena_footprint(a);
    assert_true(f1 >= 64 * 1024);
    for (int i = 0; i < 100; i++)
        assert_non_null(arena_alloc(a, 64));
    assert_int_equal(arena_footprint(a), f1);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_and_free), cmocka_unit_test(test_free_null),
        cmocka_unit_test(test_many_small),   cmocka_unit_test(test_alignment),
        cmocka_unit_test(test_huge),         cmocka_unit_test(test_impossible),
        cmocka_unit_test(test_strdup),       cmocka_unit_test(test_footprint),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
