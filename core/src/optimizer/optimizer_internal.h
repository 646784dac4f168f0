/* Internal to libp7: what the optimizer loader and the optimizer instance share. */
#ifndef P7_OPTIMIZER_INTERNAL_H
#define P7_OPTIMIZER_INTERNAL_H

#include "p7/optimizer.h"

struct p7_optimizer_plugin {
    void *handle;               /* dlopen handle, dlclosed by p7_optimizer_plugin_close */
    const p7_opt_plugin *vt;
    char path[4096];
};

/* Index of hyperparameter `name` in the plugin's schema, or -1. */
int p7_opt_hparam_find(const p7_opt_plugin *vt, const char *name);

/* P7_ERROR_PLUGIN naming the valid hyperparameters, for an unknown `name`. */
p7_status p7_opt_unknown_hparam(const p7_opt_plugin *vt, const char *name);

/* P7_SUCCESS, or P7_ERROR_PLUGIN saying why `value` does not fit hyperparameter `index`. */
p7_status p7_opt_hparam_check(const p7_opt_plugin *vt, int index, double value);

/* Parses "a=1, b=true" into calls of fn(ctx, index, value), validating names and values.
 * `set` (may be NULL) receives one flag per schema entry that the text assigned. fn may
 * be NULL: then the text is only validated. A name given twice is an error. */
typedef p7_status (*p7_opt_assign_fn)(void *ctx, int index, double value);
p7_status p7_opt_parse_assignments(const p7_opt_plugin *vt, const char *text, p7_opt_assign_fn fn,
                                   void *ctx, unsigned char *set);

#endif
