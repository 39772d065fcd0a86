/* pep_form: see pep_form.h. */
#include "modules/pep_form.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_DATA "jabber:x:data"

const pep_node_config_t pep_node_defaults = {
    .access = PEP_ACCESS_PRESENCE,
    .max_items = 1,
    .persist = true,
    .notify_retract = true,
};

const char *const pep_access_names[3] = {"presence", "open", "whitelist"};

void pep_config_write(const pep_node_config_t *c, char *out, size_t size)
{
    snprintf(out, size, "access=%s max_items=%u persist=%d notify_retract=%d",
             pep_access_names[c->access], c->max_items, c->persist,
             c->notify_retract);
}

void pep_config_read(const char *s, pep_node_config_t *c)
{
    *c = pep_node_defaults;
    char word[64];
    int n;
    while (sscanf(s, "%63s%n", word, &n) == 1) {
        s += n;
        char *eq = strchr(word, '=');
        if (eq == NULL)
            continue;
        *eq++ = '\0';
        if (strcmp(word, "access") == 0) {
            for (size_t i = 0; i < 3; i++)
                if (strcmp(eq, pep_access_names[i]) == 0)
                    c->access = (pep_access_t)i;
        } else if (strcmp(word, "max_items") == 0) {
            unsigned long v = strtoul(eq, NULL, 10);
            if (v >= 1 && v <= PEP_MAX_ITEMS)
                c->max_items = (unsigned)v;
        } else if (strcmp(word, "persist") == 0) {
            c->persist = strcmp(eq, "0") != 0;
        } else if (strcmp(word, "notify_retract") == 0) {
            c->notify_retract = strcmp(eq, "0") != 0;
        }
    }
}

static bool form_bool(const char *v, bool *out)
{
    if (strcmp(v, "1") == 0 || strcmp(v, "true") == 0)
        *out = true;
    else if (strcmp(v, "0") == 0 || strcmp(v, "false") == 0)
        *out = false;
    else
        return false;
    return true;
}

/* The first <value/> text of a field, "" when none. */
static const char *field_value(const xml_node_t *f)
{
    const xml_node_t *v = xml_element_child(f, NS_DATA, "value");
    return v != NULL && v->children != NULL &&
                   v->children->kind == XML_NODE_TEXT
               ? v->children->text
               : "";
}

pep_form_result_t pep_form_apply(const xml_node_t *x, const char *form_type,
                                 pep_node_config_t *c, unsigned *named)
{
    *named = 0;
    bool typed = false;
    for (const xml_node_t *f = xml_element_child(x, NS_DATA, "field");
         f != NULL; f = xml_element_next(f, NS_DATA, "field")) {
        const char *var = xml_element_attr(f, NULL, "var");
        const char *v = field_value(f);
        if (var == NULL)
            return PEP_FORM_BAD;
        if (strcmp(var, "FORM_TYPE") == 0) {
            if (strcmp(v, form_type) != 0)
                return PEP_FORM_WRONG_TYPE;
            typed = true;
        } else if (strcmp(var, "pubsub#access_model") == 0) {
            size_t i = 0;
            while (i < 3 && strcmp(v, pep_access_names[i]) != 0)
                i++;
            if (i == 3)
                return PEP_FORM_BAD;
            c->access = (pep_access_t)i;
            *named |= PEP_NAMED_ACCESS;
        } else if (strcmp(var, "pubsub#max_items") == 0) {
            unsigned long n;
            char *end;
            if (strcmp(v, "max") == 0) {
                n = PEP_MAX_ITEMS;
            } else {
                n = strtoul(v, &end, 10);
                if (*v == '\0' || *end != '\0' || n < 1)
                    return PEP_FORM_BAD;
                if (n > PEP_MAX_ITEMS)
                    n = PEP_MAX_ITEMS;
            }
            c->max_items = (unsigned)n;
            *named |= PEP_NAMED_MAX_ITEMS;
        } else if (strcmp(var, "pubsub#persist_items") == 0) {
            if (!form_bool(v, &c->persist))
                return PEP_FORM_BAD;
            *named |= PEP_NAMED_PERSIST;
        } else if (strcmp(var, "pubsub#notify_retract") == 0) {
            if (!form_bool(v, &c->notify_retract))
                return PEP_FORM_BAD;
            *named |= PEP_NAMED_NOTIFY_RETRACT;
        } else if (strcmp(var, "pubsub#send_last_published_item") == 0 ||
                   strcmp(var, "pubsub#deliver_notifications") == 0 ||
                   strcmp(var, "pubsub#deliver_payloads") == 0 ||
                   strcmp(var, "pubsub#title") == 0 ||
                   strcmp(var, "pubsub#type") == 0) {
            /* Accepted as given; this service behaves one way. */
        } else {
            return PEP_FORM_UNKNOWN;
        }
    }
    return typed ? PEP_FORM_OK : PEP_FORM_WRONG_TYPE;
}
