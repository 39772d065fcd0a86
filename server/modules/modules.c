/* The list of modules. Adding one: its file in this directory, one line
 * here, one line in modules.h, one in server/CMakeLists.txt
 * (docs/architecture.md, "Modules: adding a XEP"). */
#include "modules/modules.h"

#include <stdio.h>

static const module_desc_t *const all[] = {
    &module_im,           /* RFC 6121 routing rules (core, always on) */
    &module_roster,       /* RFC 6121 rosters, subscriptions, presence (core) */
    &module_offline,      /* XEP-0160 offline messages */
    &module_disco,        /* XEP-0030 */
    &module_ping,         /* XEP-0199 */
    &module_version,      /* XEP-0092 */
    &module_time,         /* XEP-0202 */
    &module_private,      /* XEP-0049 */
    &module_vcard,        /* XEP-0054 */
    &module_contact_info, /* XEP-0157 */
    &module_last,         /* XEP-0012 */
    &module_blocking,     /* XEP-0191 */
    &module_carbons,      /* XEP-0280 */
    &module_external_services, /* XEP-0215 */
    &module_caps,              /* XEP-0115 */
    &module_pep,               /* XEP-0163 */
    &module_register,          /* XEP-0077 (password changes) */
    &module_avatar,            /* XEP-0398, XEP-0153 */
    &module_push,              /* XEP-0357 push notifications */
    &module_mam,               /* XEP-0313 message archives */
};

const module_desc_t *const *modules_all(size_t *count)
{
    *count = sizeof(all) / sizeof(all[0]);
    return all;
}

module_registry_t *modules_start(const server_config_t *cfg, store_t *store,
                                 const logger_t *log, char *err, size_t errlen)
{
    size_t n;
    const module_desc_t *const *descs = modules_all(&n);
    /* A config from config_defaults()/config_load() has one entry per
     * module of this list. */
    if (cfg->module_count != n) {
        snprintf(err, errlen, "the configuration has %zu modules, not %zu",
                 cfg->module_count, n);
        return NULL;
    }
    return module_registry_new(descs, n, cfg->module_on,
                               (const void *const *)cfg->module_settings, cfg,
                               store, log, err, errlen);
}
