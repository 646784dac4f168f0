/* A test plugin whose entry returns NULL (it cannot serve this host). */
#include <stddef.h>

#include "p7/optimizer_plugin.h"

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major;
    (void)host_abi_minor;
    return NULL;
}
