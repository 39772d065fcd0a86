/* XEP-0198 bookkeeping (server/c2s/sm.c): the unacknowledged queue, acks
 * that cover part of it, old and impossible acks, and counters that wrap
 * at 2^32 (XEP-0198 §5). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "c2s/sm.h"

static rcbuf_t *buf(unsigned i)
{
    char text[16];
    int n = snprintf(text, sizeof(text), "s%u", i);
    return rcbuf_new(text, (size_t)n);
}

static void push(sm_t *sm, unsigned from, unsigned n)
{
    for (unsigned i = from; i < from + n; i++) {
        rcbuf_t *b = buf(i);
        sm_push(sm, b, i % 2 == 0);
        rcbuf_unref(b);
    }
}

static void assert_first(const sm_t *sm, const char *text)
{
    const sm_entry_t *e = sm_at(sm, 0);
    assert_int_equal(rcbuf_len(e->bytes), strlen(text));
    assert_memory_equal(rcbuf_data(e->bytes), text, strlen(text));
}

static void test_queue_and_acks(void **state)
{
    (void)state;
    sm_t sm;
    sm_init(&sm, 7);
    assert_int_equal(sm.in_base, 7);
    push(&sm, 0, 40); /* grows the ring past its first size */
    assert_int_equal(sm_unacked(&sm), 40);
    assert_int_equal(sm.sent, 40);
    assert_true(sm_ack(&sm, 10));
    assert_int_equal(sm_unacked(&sm), 30);
    assert_first(&sm, "s10");
    assert_true(sm_at(&sm, 0)->sole);
    assert_false(sm_at(&sm, 1)->sole);
    /* The same ack again, an older one: nothing changes. */
    assert_true(sm_ack(&sm, 10));
    assert_true(sm_ack(&sm, 4));
    assert_int_equal(sm_unacked(&sm), 30);
    /* More than was sent: refused, nothing changes. */
    assert_false(sm_ack(&sm, 41));
    assert_int_equal(sm_unacked(&sm), 30);
    push(&sm, 40, 5);
    assert_true(sm_ack(&sm, 45));
    assert_int_equal(sm_unacked(&sm), 0);
    sm_clear(&sm);
}

static void test_wrap(void **state)
{
    (void)state;
    sm_t sm;
    sm_init(&sm, UINT32_MAX - 1);
    sm.sent = sm.acked = UINT32_MAX - 2;
    push(&sm, 0, 6);
    assert_int_equal(sm.sent, 3); /* wrapped */
    /* The six stanzas have the counts MAX-1, MAX, 0, 1, 2, 3. */
    assert_true(sm_ack(&sm, UINT32_MAX));
    assert_int_equal(sm_unacked(&sm), 4);
    assert_first(&sm, "s2");
    assert_true(sm_ack(&sm, 1));
    assert_int_equal(sm_unacked(&sm), 2);
    assert_first(&sm, "s4");
    assert_false(sm_ack(&sm, 4));
    assert_true(sm_ack(&sm, UINT32_MAX)); /* an old one, across the wrap */
    assert_int_equal(sm_unacked(&sm), 2);
    assert_true(sm_ack(&sm, 3));
    assert_int_equal(sm_unacked(&sm), 0);
    /* The inbound count across the wrap: stanzas since enable. */
    assert_int_equal((uint32_t)(3u - sm.in_base), 5);
    sm_clear(&sm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue_and_acks),
        cmocka_unit_test(test_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
