/* pep_form: a PEP node's configuration (XEP-0060 §16.4.2, the fields PEP
 * uses), as submitted in data forms (publish-options, node_config) and as
 * stored. A parser of untrusted input: fuzz/fuzz_pep_form.c. */
#ifndef STARLING_MODULES_PEP_FORM_H
#define STARLING_MODULES_PEP_FORM_H

#include <stdbool.h>
#include <stddef.h>

#include "xml/xml.h"

#define FT_PUBLISH_OPTS "http://jabber.org/protocol/pubsub#publish-options"
#define FT_NODE_CONFIG  "http://jabber.org/protocol/pubsub#node_config"
#define PEP_MAX_ITEMS   256

typedef enum pep_access {
    PEP_ACCESS_PRESENCE,
    PEP_ACCESS_OPEN,
    PEP_ACCESS_WHITELIST,
} pep_access_t;

typedef struct pep_node_config {
    pep_access_t access;
    unsigned max_items; /* 1..PEP_MAX_ITEMS */
    bool persist;
    bool notify_retract;
} pep_node_config_t;

/* Access presence, max_items 1, persistent, retractions notified. */
extern const pep_node_config_t pep_node_defaults;
/* By pep_access_t. */
extern const char *const pep_access_names[3];

/* Bits of what a form named. */
enum {
    PEP_NAMED_ACCESS = 1,
    PEP_NAMED_MAX_ITEMS = 2,
    PEP_NAMED_PERSIST = 4,
    PEP_NAMED_NOTIFY_RETRACT = 8,
};

typedef enum pep_form_result {
    PEP_FORM_OK,
    PEP_FORM_BAD,        /* a value that is not one of the field's */
    PEP_FORM_UNKNOWN,    /* a field this service does not have */
    PEP_FORM_WRONG_TYPE, /* no FORM_TYPE, or another one */
} pep_form_result_t;

/* Applies the submitted form x (jabber:x:data) of FORM_TYPE form_type to
 * *c; *named gets the PEP_NAMED_* bits of the fields it set. Fields PEP
 * accepts but does not vary by (send_last_published_item, title, ...)
 * are accepted and ignored. */
pep_form_result_t pep_form_apply(const xml_node_t *x, const char *form_type,
                                 pep_node_config_t *c, unsigned *named);

/* The stored form of a configuration ("access=presence max_items=1 ..."),
 * and back: what pep_config_write wrote, anything else read as far as it
 * makes sense, the rest the defaults. */
void pep_config_write(const pep_node_config_t *c, char *out, size_t size);
void pep_config_read(const char *s, pep_node_config_t *c);

#endif
