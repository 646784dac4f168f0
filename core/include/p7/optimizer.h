/* p7 optimizers: load an optimizer plugin (p7/optimizer_plugin.h) and train with it.
 *
 *     p7_optimizer_options o = {0};
 *     o.hparams = "lr=0.1,momentum=0.9";
 *     p7_optimizer *opt;
 *     p7_optimizer_create_for_model(model, "sgd", &o, &opt);
 *     for each batch:
 *         for s in 0 .. p7_optimizer_mc_samples(opt) - 1:
 *             p7_optimizer_sample(opt);                  // no-op unless the plugin samples
 *             p7_model_zero_grad(model); forward; loss; p7_tape_backward(tape, loss);
 *             p7_optimizer_restore(opt, 1);              // no-op unless the plugin samples
 *         p7_optimizer_step(opt);
 *
 * Plugin names. A name without '/' and without ".so" ("sgd", "adam", "ivon") is looked
 * up as lib<name>.so in, in order:
 *   1. <directory of the running executable>/../plugins   (apps/, bench/, tests/ in a build tree)
 *   2. <directory of the running executable>/plugins
 *   3. each directory of P7_PLUGIN_PATH (':'-separated)
 *   4. <directory of libp7>/p7/plugins                     (an installed p7)
 * Anything else is a path, used as given. Every failure is P7_ERROR_PLUGIN with a message
 * that says what to do: the places searched, the missing entry symbol, the ABI numbers,
 * the valid hyperparameter names, the allowed range.
 */
#ifndef P7_OPTIMIZER_H
#define P7_OPTIMIZER_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "p7/device.h"
#include "p7/nn.h"
#include "p7/optimizer_plugin.h"
#include "p7/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p7_optimizer p7_optimizer;

/* Zero-initialise, then set what you need. */
typedef struct p7_optimizer_options {
    /* "name=value,name=value" (spaces allowed; true/false/yes/no/on/off for booleans);
     * applied to every group. NULL: all defaults. */
    const char *hparams;
    /* Seed of the plugin's random numbers (IVON's noise). */
    uint64_t seed;
    /* Training-set size, if the app knows it: sets each hyperparameter flagged
     * P7_OPT_HP_DATASET_SIZE (IVON's ess) that `hparams` does not set. 0: unknown. */
    uint64_t dataset_size;
    /* Per parameter, its group (< P7_OPT_MAX_GROUPS); NULL puts everything in group 0. */
    const uint32_t *groups;
} p7_optimizer_options;

/* ---- a plugin file, without an instance (help text, validation, p7bench --optimizer) ---- */

typedef struct p7_optimizer_plugin p7_optimizer_plugin;

P7_API p7_status p7_optimizer_plugin_open(const char *name_or_path, p7_optimizer_plugin **out);
P7_API void p7_optimizer_plugin_close(p7_optimizer_plugin *plugin); /* NULL is a no-op */
P7_API const p7_opt_plugin *p7_optimizer_plugin_table(const p7_optimizer_plugin *plugin);
P7_API const char *p7_optimizer_plugin_path(const p7_optimizer_plugin *plugin); /* the file loaded */
/* Multi-line help: name, version, description, then one line per hyperparameter with its
 * default, range and doc. Always NUL-terminated; returns buf. */
P7_API const char *p7_optimizer_plugin_help(const p7_optimizer_plugin *plugin, char *buf, size_t size);
/* Validates "name=value,..." text (as p7_optimizer_options.hparams) against the plugin's
 * schema without creating anything: unknown or repeated names, values that are not
 * numbers (or boolean words), values out of range. Apps call it before opening a device,
 * so a typo fails in milliseconds. NULL text is valid (all defaults). */
P7_API p7_status p7_optimizer_plugin_check_hparams(const p7_optimizer_plugin *plugin, const char *hparams);

/* ---- an optimizer over parameters ---- */

/* An optimizer over explicit tensors (all on `device`, each used once). The tensors are
 * retained until destroy. State slots are allocated here as tensors of the same size. */
P7_API p7_status p7_optimizer_create(p7_device *device, const char *name_or_path, p7_tensor *const *params,
                              size_t count, const p7_optimizer_options *options, p7_optimizer **out);

/* Over every parameter of a model, in p7_model_param order (names become the params'). */
P7_API p7_status p7_optimizer_create_for_model(p7_model *model, const char *name_or_path,
                                        const p7_optimizer_options *options, p7_optimizer **out);

/* Destroys the instance, releases the state, then dlcloses the plugin. NULL is a no-op. */
P7_API void p7_optimizer_destroy(p7_optimizer *opt);

P7_API const p7_opt_plugin *p7_optimizer_table(const p7_optimizer *opt);
P7_API const char *p7_optimizer_name(const p7_optimizer *opt);

/* Hyperparameters by name. set applies to every group (set_group: one group); both
 * validate the name (the error lists the valid ones) and the range. */
P7_API p7_status p7_optimizer_set(p7_optimizer *opt, const char *name, double value);
P7_API p7_status p7_optimizer_set_group(p7_optimizer *opt, uint32_t group, const char *name, double value);
P7_API p7_status p7_optimizer_get(const p7_optimizer *opt, uint32_t group, const char *name, double *value);
/* The same "a=1,b=2" syntax as p7_optimizer_options.hparams. */
P7_API p7_status p7_optimizer_set_text(p7_optimizer *opt, const char *assignments);

/* The "mc_samples" hyperparameter when the plugin has one, else 1. */
P7_API unsigned p7_optimizer_mc_samples(const p7_optimizer *opt);
/* Nonzero when the plugin perturbs weights (P7_OPT_CAP_SAMPLE). */
P7_API int p7_optimizer_samples_weights(const p7_optimizer *opt);

/* One update from the parameters' current gradients (p7_tensor_grad; NULL = none). */
P7_API p7_status p7_optimizer_step(p7_optimizer *opt);

/* Driving one plugin on given gradients (a plugin's own tests, reference comparisons):
 * create over tensors, then per step p7_tensor_set_grad(param, g, n) for each parameter
 * (p7_tensor_zero_grad for "no gradient"), p7_optimizer_step, and read the parameters
 * (p7_tensor_download) and the state (p7_optimizer_state_by_name). */

/* Weight perturbation (IVON). For plugins without P7_OPT_CAP_SAMPLE both succeed and do
 * nothing, so one training loop serves every optimizer. sample_noise takes the standard
 * normal draws from `eps` (one tensor per parameter, same element count) instead of the
 * RNG: the golden tests inject noise this way. */
P7_API p7_status p7_optimizer_sample(p7_optimizer *opt);
P7_API p7_status p7_optimizer_sample_noise(p7_optimizer *opt, p7_tensor *const *eps);
P7_API p7_status p7_optimizer_restore(p7_optimizer *opt, int accumulate);

/* Checkpoints. Format (little-endian host order, checked by a marker): magic
 * "P7OPTST\0", format version, plugin name, plugin version, state version, hyperparameter
 * names and values per group, per parameter its element count and slot data, the plugin's
 * scalar blob. Load needs an optimizer of the same plugin name over parameters of the same
 * sizes; it restores the hyperparameters too (as torch's load_state_dict does). */
P7_API p7_status p7_optimizer_save(p7_optimizer *opt, const char *path);
P7_API p7_status p7_optimizer_load_state(p7_optimizer *opt, const char *path);
P7_API p7_status p7_optimizer_save_stream(p7_optimizer *opt, FILE *f);
P7_API p7_status p7_optimizer_load_stream(p7_optimizer *opt, FILE *f);

/* The host-side state tensor of parameter `param`, slot `slot` (borrowed), for tests and
 * inspection; NULL when out of range, or when the plugin does not use that slot with
 * this optimizer's hyperparameters (p7_opt_plugin.slots_used). */
P7_API p7_tensor *p7_optimizer_state(const p7_optimizer *opt, size_t param, unsigned slot);
/* The same, by the slot's name in the plugin's slot_names ("exp_avg", "hess"): *out is
 * borrowed. An unknown name is P7_ERROR_INVALID_ARGUMENT naming the plugin's slots; so is
 * a slot not in use with these hyperparameters. */
P7_API p7_status p7_optimizer_state_by_name(const p7_optimizer *opt, size_t param, const char *slot_name,
                                            p7_tensor **out);
/* The number of parameters the optimizer was created over. */
P7_API size_t p7_optimizer_param_count(const p7_optimizer *opt);
/* State slots allocated per parameter: the plugin's slot_count, less those its slots_used
 * leaves out for these hyperparameters (Adam without AMSGrad: 2 of 3). What a training
 * step's memory estimate counts (p7_training_shape.optimizer_slots). 0 for NULL. */
P7_API unsigned p7_optimizer_slots_in_use(const p7_optimizer *opt);

/* ---- prediction with a weight-perturbing optimizer ----
 * samples == 0: softmax of the model at the current (mean) weights ("IVON@mean").
 * samples  > 0: Bayesian model averaging: the mean of the softmax of `samples` sampled
 *               models, each sample()/forward/restore(0), so the weights end bit-identical
 *               to the mean. For a plugin that does not sample, every draw is the mean.
 * x as for p7_model_forward (evaluation mode, no tape); *probs receives [B, classes]: for
 * an ensemble the mean over members of their softmax (p7_model_output_rule). */
P7_API p7_status p7_optimizer_predict(p7_optimizer *opt, p7_model *model, p7_tensor *x, unsigned samples,
                               p7_tensor **probs);

#ifdef __cplusplus
}
#endif

#endif
