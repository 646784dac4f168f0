/* A test plugin that claims another optimizer ABI major (TEST_ABI_MAJOR): the loader
 * must refuse it with "too old" (0) or "too new" (99). */
#include "p7/optimizer_plugin.h"

static const p7_opt_plugin table = {
    .struct_size = sizeof(p7_opt_plugin),
    .abi_major = TEST_ABI_MAJOR,
    .abi_minor = 0,
    .name = "wrong_abi",
    .version = 1,
    .state_version = 1,
};

P7_OPT_EXPORT const p7_opt_plugin *p7_optimizer_plugin_entry(uint32_t host_abi_major, uint32_t host_abi_minor)
{
    (void)host_abi_major;
    (void)host_abi_minor;
    return &table;
}
