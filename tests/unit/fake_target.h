/* Fake route targets for the router and module tests: a route_target_t
 * that keeps a copy of every stanza the router gives it and the condition
 * it was kicked with, and helpers to bind one and route a stanza from it. */
#ifndef STARLING_TESTS_FAKE_TARGET_H
#define STARLING_TESTS_FAKE_TARGET_H

#include <stdbool.h>
#include <stddef.h>

#include "router/router.h"

enum { FAKE_MAX_GOT = 16 };

typedef struct fake_target {
    route_target_t t;              /* first: the router's pointer is ours */
    xml_tree_t *got[FAKE_MAX_GOT]; /* copies, in order */
    rcbuf_t *bytes[FAKE_MAX_GOT];  /* the serialized blocks given, held */
    bool shared[FAKE_MAX_GOT];     /* route_stanza_t.shared of each */
    size_t ngot;
    char kicked[48]; /* "" until kicked */
    /* Presence is dropped unless set: the echo of a target's own presence
     * (RFC 6121 §4.2.2) and broadcasts would shift every count. */
    bool keep_presence;
} fake_target_t;

void fake_init(fake_target_t *f, unsigned long conn);
/* Frees the copies (and unbinds nothing: the router owns that). */
void fake_clear(fake_target_t *f);
/* The i-th stanza received (asserts there is one). */
const xml_node_t *fake_got(const fake_target_t *f, size_t i);

/* Binds f as user/resource (resource NULL: generated); asserts success. */
void fake_bind(router_t *r, fake_target_t *f, const char *user,
               const char *resource);
/* Parses `xml` (one stanza in jabber:client), stamps 'from' with f's full
 * JID as c2s does, and routes it. */
void fake_send(router_t *r, fake_target_t *f, const char *xml);
/* Sends available presence with the given priority (no 'to'). */
void fake_available(router_t *r, fake_target_t *f, int priority);

/* One stanza parsed from text, in jabber:client. */
xml_tree_t *fake_parse(const char *xml);

/* The stanza error condition of el ("" when it is not an error). */
const char *fake_error(const xml_node_t *el);
/* Attribute or "" (so that assert_string_equal can compare absence). */
const char *fake_attr(const xml_node_t *el, const char *name);

#endif
