/* XEP-0092 Software Version for the server's domain: name and version,
 * and the operating system only when `version.show_os` says so — it
 * tells an attacker what to aim at, so it is off by default (§3). */
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#include "starling_config.h"
#include "modules/modules.h"

#define NS_VERSION "jabber:iq:version"

typedef struct version_settings {
    bool show_os;
} version_settings_t;

static const version_settings_t version_defaults = {.show_os = false};

static const config_field_t version_fields[] = {
    {"show_os", CONFIG_FIELD_BOOL, offsetof(version_settings_t, show_os), 0, 0},
    {NULL, 0, 0, 0, 0},
};

static int add_text(xml_tree_t *t, xml_node_t *q, const char *name,
                    const char *text)
{
    xml_node_t *e = xml_element_new(t, q, NS_VERSION, name);
    return e != NULL ? xml_element_add_text(t, e, text, strlen(text)) : -1;
}

static module_result_t version(module_call_t *c, const xml_node_t *child)
{
    (void)child;
    const version_settings_t *s = c->settings;
    xml_tree_t *t;
    xml_node_t *iq = module_iq_result(c, &t);
    if (iq == NULL)
        return MODULE_PASS;
    xml_node_t *q = xml_element_new(t, iq, NS_VERSION, "query");
    int rc = q != NULL ? 0 : -1;
    if (rc == 0)
        rc |= add_text(t, q, "name", "Starling");
    if (rc == 0)
        rc |= add_text(t, q, "version", STARLING_VERSION_STRING);
    struct utsname u;
    if (rc == 0 && s->show_os && uname(&u) == 0) {
        char os[2 * sizeof(u.sysname) + 2];
        snprintf(os, sizeof(os), "%s %s", u.sysname, u.release);
        rc |= add_text(t, q, "os", os);
    }
    if (rc != 0) {
        xml_tree_free(t);
        return MODULE_PASS;
    }
    module_send(c, t);
    return MODULE_HANDLED;
}

static const module_iq_handler_t version_iq[] = {
    {MODULE_IQ_GET, NS_VERSION, MODULE_TO_BIT(MODULE_TO_SERVER), version},
    {0, NULL, 0, NULL},
};

static const char *const version_features[] = {NS_VERSION, NULL};

const module_desc_t module_version = {
    .name = "version",
    .default_on = true,
    .settings = version_fields,
    .settings_size = sizeof(version_settings_t),
    .settings_default = &version_defaults,
    .iq = version_iq,
    .features = version_features,
};
