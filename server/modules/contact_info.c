/* XEP-0157 Contact Addresses for XMPP Services: the addresses an operator
 * publishes (abuse, admin, feedback, sales, security, support), as a
 * XEP-0128 extension of the server's disco#info — a data form of
 * FORM_TYPE http://jabber.org/network/serverinfo with one list-multi
 * field per kind that has addresses (URIs: xmpp:, mailto:, https:). The
 * form is there only while the module is on and names at least one
 * address. */
#include <string.h>

#include "modules/modules.h"

#define NS_DATA     "jabber:x:data"
#define FORM_TYPE_V "http://jabber.org/network/serverinfo"

typedef struct contact_settings {
    config_strings_t abuse, admin, feedback, sales, security, support;
} contact_settings_t;

static const contact_settings_t contact_defaults = {.abuse = {NULL, 0}};

#define FIELD(n)                                                               \
    {                                                                          \
#n, CONFIG_FIELD_STRINGS, offsetof(contact_settings_t, n), 0, 64       \
    }
static const config_field_t contact_fields[] = {
    FIELD(abuse),    FIELD(admin),   FIELD(feedback),    FIELD(sales),
    FIELD(security), FIELD(support), {NULL, 0, 0, 0, 0},
};
#undef FIELD

static int add_field(xml_tree_t *t, xml_node_t *x, const char *var,
                     const char *type, const char *const *values, size_t n)
{
    xml_node_t *f = xml_element_new(t, x, NS_DATA, "field");
    if (f == NULL || xml_element_set_attr(t, f, NULL, "var", var) < 0 ||
        xml_element_set_attr(t, f, NULL, "type", type) < 0)
        return -1;
    for (size_t i = 0; i < n; i++) {
        xml_node_t *v = xml_element_new(t, f, NS_DATA, "value");
        if (v == NULL ||
            xml_element_add_text(t, v, values[i], strlen(values[i])) < 0)
            return -1;
    }
    return 0;
}

static int contact_disco(void *state, const void *settings, xml_tree_t *t,
                         xml_node_t *query)
{
    const contact_settings_t *s = settings;
    (void)state;
    const struct {
        const char *var;
        const config_strings_t *v;
    } kinds[] = {
        {"abuse-addresses", &s->abuse},
        {"admin-addresses", &s->admin},
        {"feedback-addresses", &s->feedback},
        {"sales-addresses", &s->sales},
        {"security-addresses", &s->security},
        {"support-addresses", &s->support},
    };
    size_t any = 0;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        any += kinds[i].v->n;
    if (any == 0)
        return 0;
    xml_node_t *x = xml_element_new(t, query, NS_DATA, "x");
    if (x == NULL || xml_element_set_attr(t, x, NULL, "type", "result") < 0)
        return -1;
    const char *form_type[] = {FORM_TYPE_V};
    if (add_field(t, x, "FORM_TYPE", "hidden", form_type, 1) < 0)
        return -1;
    for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
        if (kinds[i].v->n > 0 &&
            add_field(t, x, kinds[i].var, "list-multi",
                      (const char *const *)kinds[i].v->v, kinds[i].v->n) < 0)
            return -1;
    return 0;
}

const module_desc_t module_contact_info = {
    .name = "contact_info",
    .default_on = true,
    .settings = contact_fields,
    .settings_size = sizeof(contact_settings_t),
    .settings_default = &contact_defaults,
    .disco_extend = contact_disco,
};
