/* The blocking convenience layer of libstarling: a client on a private
 * libuv loop, and calls that run that loop until what they wait for has
 * happened or a timer fires. Incoming messages are queued meanwhile. */
#include "starling/client.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { QUEUE_MAX = 256 };

struct qmsg {
    struct qmsg *next;
    starling_sync_message_t m;
};

struct starling_sync {
    uv_loop_t loop;
    starling_client_t *c;
    uv_timer_t timer;
    bool timed_out;
    bool connected;
    bool gone; /* disconnected */
    /* the pending wait */
    bool iq_done;
    bool iq_ok;
    char *iq_result;
    bool want_result;
    bool sending; /* inside starling_sync_send_message */
    bool refused; /* a message error came while sending */
    struct qmsg *head, *tail;
    size_t queued;
    /* the last failure, with copies of its strings */
    bool failed;
    starling_error_t err;
    char cond[64], type[16], text[256], desc[320];
};

static void keep_error(starling_sync_t *s, const starling_error_t *e)
{
    s->failed = true;
    s->err.kind = e->kind;
    snprintf(s->cond, sizeof(s->cond), "%s", e->condition ? e->condition : "");
    snprintf(s->type, sizeof(s->type), "%s", e->type ? e->type : "");
    snprintf(s->text, sizeof(s->text), "%s", e->text ? e->text : "");
    snprintf(s->desc, sizeof(s->desc), "%s",
             e->description ? e->description
                            : starling_error_kind_name(e->kind));
    s->err.condition = e->condition ? s->cond : NULL;
    s->err.type = e->type ? s->type : NULL;
    s->err.text = e->text ? s->text : NULL;
    s->err.description = s->desc;
}

static void simple_error(starling_sync_t *s, starling_error_kind_t k,
                         const char *desc)
{
    starling_error_t e = {.kind = k, .description = desc};
    keep_error(s, &e);
}

static void on_connected(starling_client_t *c, const char *jid, void *ud)
{
    starling_sync_t *s = ud;
    (void)c;
    (void)jid;
    s->connected = true;
    uv_stop(&s->loop);
}

static void on_disconnected(starling_client_t *c, const starling_error_t *e,
                            void *ud)
{
    starling_sync_t *s = ud;
    (void)c;
    s->gone = true;
    s->connected = false;
    if (e != NULL)
        keep_error(s, e);
    uv_stop(&s->loop);
}

static char *dup_or_null(const char *x)
{
    return x != NULL ? strdup(x) : NULL;
}

static void on_message(starling_client_t *c, const starling_message_t *m,
                       void *ud)
{
    starling_sync_t *s = ud;
    (void)c;
    /* A message error arriving while a send waits for its round trip is
     * the answer to that send: it was refused. The send still waits for
     * the ping's answer, so that it cannot be taken later for the answer
     * of another request. */
    if (m->type == STARLING_MSG_ERROR && s->sending && !s->iq_done) {
        s->refused = true;
        return;
    }
    if (s->queued >= QUEUE_MAX)
        return; /* nobody is reading: the oldest stay, the newest drop */
    struct qmsg *q = calloc(1, sizeof(*q));
    if (q == NULL)
        return;
    q->m.from = dup_or_null(m->from);
    q->m.body = dup_or_null(m->body);
    q->m.type = m->type;
    if (s->tail != NULL)
        s->tail->next = q;
    else
        s->head = q;
    s->tail = q;
    s->queued++;
    uv_stop(&s->loop);
}

static void on_iq_answer(starling_client_t *c, const starling_stanza_t *r,
                         const starling_error_t *e, void *ud)
{
    starling_sync_t *s = ud;
    (void)c;
    if (s->iq_done)
        return;
    s->iq_done = true;
    s->iq_ok = e == NULL;
    if (e != NULL)
        keep_error(s, e);
    else if (s->want_result && r != NULL)
        s->iq_result = starling_stanza_to_string(r);
    uv_stop(&s->loop);
}

static void on_timer(uv_timer_t *t)
{
    starling_sync_t *s = t->data;
    s->timed_out = true;
    uv_stop(&s->loop);
}

/* Runs the loop until *flag or a timeout or disconnection. */
static bool run_until(starling_sync_t *s, const bool *flag, unsigned timeout_ms)
{
    s->timed_out = false;
    uv_timer_start(&s->timer, on_timer, timeout_ms, 0);
    while (!*flag && !s->timed_out && !s->gone)
        uv_run(&s->loop, UV_RUN_ONCE);
    uv_timer_stop(&s->timer);
    if (*flag)
        return true;
    if (s->timed_out)
        simple_error(s, STARLING_ERR_TIMEOUT, "no answer in time");
    else if (!s->failed)
        simple_error(s, STARLING_ERR_CLOSED, "the connection ended");
    return false;
}

starling_sync_t *starling_sync_connect(const starling_client_opts_t *opts,
                                       unsigned timeout_ms)
{
    starling_sync_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    uv_loop_init(&s->loop);
    uv_timer_init(&s->loop, &s->timer);
    s->timer.data = s;
    starling_client_events_t ev = {.connected = on_connected,
                                   .disconnected = on_disconnected,
                                   .message = on_message};
    starling_error_t err;
    s->c = starling_client_new(&s->loop, opts, &ev, s, &err);
    if (s->c == NULL) {
        keep_error(s, &err);
        s->gone = true;
        return s;
    }
    if (starling_client_connect(s->c) < 0) {
        simple_error(s, STARLING_ERR_CONFIG, "bad server address");
        return s;
    }
    if (run_until(s, &s->connected, timeout_ms))
        s->failed = false;
    return s;
}

const starling_error_t *starling_sync_error(const starling_sync_t *s)
{
    return s->failed ? &s->err : NULL;
}

starling_client_t *starling_sync_client(starling_sync_t *s)
{
    return s->c;
}

int starling_sync_send_message(starling_sync_t *s, const char *to,
                               starling_msg_type_t type, const char *body,
                               unsigned timeout_ms)
{
    s->failed = false;
    if (!s->connected) {
        simple_error(s, STARLING_ERR_CLOSED, "not connected");
        return -1;
    }
    if (starling_send_message(s->c, to, type, body, NULL, NULL) < 0) {
        simple_error(s, STARLING_ERR_CONFIG, "invalid recipient or type");
        return -1;
    }
    /* Stanzas are handled in order: once the server has answered a ping
     * sent after the message, the message has been routed, or refused
     * with an error reply that arrives before the ping's answer
     * (on_message). */
    s->iq_done = false;
    s->want_result = false;
    if (starling_iq_send(s->c, NULL, false, "<ping xmlns='urn:xmpp:ping'/>",
                         timeout_ms, on_iq_answer, s) < 0) {
        simple_error(s, STARLING_ERR_CLOSED, "not connected");
        return -1;
    }
    s->sending = true;
    s->refused = false;
    bool ok = run_until(s, &s->iq_done, timeout_ms + 100);
    s->sending = false;
    if (!ok)
        return -1;
    if (s->refused) {
        simple_error(s, STARLING_ERR_STANZA, "the message was refused");
        return -1;
    }
    /* The ping itself may be answered with an error (a server need not
     * implement XEP-0199); only a refused message or no answer fails. */
    s->failed = false;
    return 0;
}

int starling_sync_wait_message(starling_sync_t *s, unsigned timeout_ms,
                               starling_sync_message_t *out)
{
    s->failed = false;
    memset(out, 0, sizeof(*out));
    bool have = s->head != NULL;
    if (!have) {
        /* A message arriving stops the loop; check the queue each time. */
        s->timed_out = false;
        uv_timer_start(&s->timer, on_timer, timeout_ms, 0);
        while (s->head == NULL && !s->timed_out && !s->gone)
            uv_run(&s->loop, UV_RUN_ONCE);
        uv_timer_stop(&s->timer);
    }
    struct qmsg *q = s->head;
    if (q == NULL) {
        simple_error(s, s->gone ? STARLING_ERR_CLOSED : STARLING_ERR_TIMEOUT,
                     s->gone ? "the connection ended" : "no message in time");
        return -1;
    }
    s->head = q->next;
    if (s->head == NULL)
        s->tail = NULL;
    s->queued--;
    *out = q->m;
    free(q);
    return 0;
}

void starling_sync_message_clear(starling_sync_message_t *m)
{
    free(m->from);
    free(m->body);
    memset(m, 0, sizeof(*m));
}

int starling_sync_iq(starling_sync_t *s, const char *to, bool set,
                     const char *child_xml, unsigned timeout_ms, char **result)
{
    s->failed = false;
    if (result != NULL)
        *result = NULL;
    s->iq_done = false;
    s->want_result = result != NULL;
    free(s->iq_result);
    s->iq_result = NULL;
    if (starling_iq_send(s->c, to, set, child_xml, timeout_ms, on_iq_answer,
                         s) < 0) {
        simple_error(s, STARLING_ERR_CONFIG,
                     "not connected, or the child is not one XML element");
        return -1;
    }
    bool ok = run_until(s, &s->iq_done, timeout_ms + 100);
    if (!ok || !s->iq_ok)
        return -1;
    if (result != NULL) {
        *result = s->iq_result;
        s->iq_result = NULL;
    }
    return 0;
}

void starling_sync_close(starling_sync_t *s)
{
    if (s == NULL)
        return;
    if (s->c != NULL) {
        if (s->connected) {
            starling_client_disconnect(s->c);
            bool never = false;
            run_until(s, &never, 5000);
        }
        starling_client_free(s->c);
    }
    uv_close((uv_handle_t *)&s->timer, NULL);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    while (s->head != NULL) {
        struct qmsg *q = s->head;
        s->head = q->next;
        starling_sync_message_clear(&q->m);
        free(q);
    }
    free(s->iq_result);
    free(s);
}
