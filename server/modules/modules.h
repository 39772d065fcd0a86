/* modules: the one list of every module starlingd has (modules.c), and the
 * registry built from it and the config. */
#ifndef STARLING_MODULES_MODULES_H
#define STARLING_MODULES_MODULES_H

#include <stddef.h>

#include "config/config.h"
#include "modules/module.h"

/* The descriptors, one per module file. */
extern const module_desc_t module_im;
extern const module_desc_t module_roster;
extern const module_desc_t module_offline;
extern const module_desc_t module_ping;
extern const module_desc_t module_disco;
extern const module_desc_t module_version;
extern const module_desc_t module_time;
extern const module_desc_t module_private;
extern const module_desc_t module_vcard;
extern const module_desc_t module_contact_info;
extern const module_desc_t module_last;
extern const module_desc_t module_blocking;
extern const module_desc_t module_carbons;
extern const module_desc_t module_external_services;
extern const module_desc_t module_caps;
extern const module_desc_t module_pep;
extern const module_desc_t module_register;
extern const module_desc_t module_avatar;
extern const module_desc_t module_push;
extern const module_desc_t module_mam;

/* Every module, in the order their hooks of equal priority run and their
 * init is called; *count is set to their number. server_config_t's
 * module_on and module_settings follow this order. */
const module_desc_t *const *modules_all(size_t *count);

/* The registry of the modules cfg switches on, with cfg's settings. */
module_registry_t *modules_start(const server_config_t *cfg, store_t *store,
                                 const logger_t *log, char *err, size_t errlen);

#endif
