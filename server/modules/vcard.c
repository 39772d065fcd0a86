/* XEP-0054 vcard-temp: an account's vCard, set by the account (an IQ set
 * with no 'to' or to its own bare JID) and readable by anyone (§3.3: an
 * IQ get to the account's bare JID, answered by the server, never by a
 * resource). The whole <vCard/> is replaced at each set; one over
 * `vcard.max_size` bytes gets policy-violation. The account's own get of
 * a vCard never set answers an empty <vCard/> (§3.1 allows it, and
 * clients handle it best); another's get of a vCard that does not exist,
 * or of an account that does not exist, gets service-unavailable alike
 * (§3.3, against directory harvesting). A set of another's vCard:
 * forbidden (§3.2). Kept in the store (kind "vcard", key ""). */
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/xalloc.h"
#include "modules/modules.h"

#define NS_VCARD "vcard-temp"

typedef struct vcard_settings {
    unsigned max_size;
} vcard_settings_t;

/* Room for an embedded avatar (PHOTO/BINVAL) of a few dozen KiB. */
static const vcard_settings_t vcard_defaults = {.max_size = 128 * 1024};

static const config_field_t vcard_fields[] = {
    {"max_size", CONFIG_FIELD_UINT, offsetof(vcard_settings_t, max_size), 1024,
     16 << 20},
    {NULL, 0, 0, 0, 0},
};

/* The instance state is the store itself (NULL: none, unit tests). */
static void *vcard_init(const module_env_t *env, bool *ok)
{
    *ok = true;
    return env->store;
}

static void on_get(void *ud, int err, const store_data_item_t *items,
                   size_t count)
{
    module_later_t *l = ud;
    if (err != STORE_OK) {
        module_later_error(l, "wait", "internal-server-error");
        return;
    }
    /* Another's, never set: the same answer as for no such account. */
    if (count == 0 && !module_later_for_account(l)) {
        module_later_error(l, "cancel", "service-unavailable");
        return;
    }
    xml_tree_t *t;
    xml_node_t *iq = module_later_result(l, &t);
    if (iq == NULL)
        xalloc_fail(256);
    if (count == 0 ||
        module_parse_into(t, iq, items[0].value, items[0].len) < 0)
        if (xml_element_new(t, iq, NS_VCARD, "vCard") == NULL)
            xalloc_fail(256);
    module_later_send(l, t);
}

static module_result_t vcard_get(module_call_t *c, const xml_node_t *v)
{
    store_t *store = c->state;
    (void)v;
    if (store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    module_later_t *l = module_later_new(c);
    store_data_get(store, module_later_domain(l), module_later_node(l), "vcard",
                   "", on_get, l);
    return MODULE_HANDLED;
}

static void on_put(void *ud, int err)
{
    module_later_stored(ud, err);
}

static module_result_t vcard_set(module_call_t *c, const xml_node_t *v)
{
    store_t *store = c->state;
    const vcard_settings_t *s = c->settings;
    if (c->addressee != MODULE_TO_ACCOUNT) {
        module_reply_error(c, "cancel", "forbidden");
        return MODULE_HANDLED;
    }
    if (strcmp(v->name, "vCard") != 0) {
        module_reply_error(c, "modify", "bad-request");
        return MODULE_HANDLED;
    }
    if (store == NULL) {
        module_reply_error(c, "cancel", "service-unavailable");
        return MODULE_HANDLED;
    }
    buf_t b = BUF_INIT;
    if (xml_serialize(v, NULL, &b) != 0)
        xalloc_fail(256);
    if (b.len > s->max_size) {
        buf_free(&b);
        module_reply_error(c, "modify", "policy-violation");
        return MODULE_HANDLED;
    }
    module_later_t *l = module_later_new(c);
    store_data_put(store, module_later_domain(l), module_later_node(l), "vcard",
                   "", b.data, b.len, on_put, l);
    buf_free(&b);
    return MODULE_HANDLED;
}

static const module_iq_handler_t vcard_iq[] = {
    {MODULE_IQ_GET, NS_VCARD,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     vcard_get},
    {MODULE_IQ_SET, NS_VCARD,
     MODULE_TO_BIT(MODULE_TO_ACCOUNT) | MODULE_TO_BIT(MODULE_TO_BARE),
     vcard_set},
    {0, NULL, 0, NULL},
};

static const char *const vcard_features[] = {NS_VCARD, NULL};

const module_desc_t module_vcard = {
    .name = "vcard",
    .default_on = true,
    .settings = vcard_fields,
    .settings_size = sizeof(vcard_settings_t),
    .settings_default = &vcard_defaults,
    .init = vcard_init,
    .iq = vcard_iq,
    .features = vcard_features,
};
