/* A test plugin that is a valid shared object but exports no p7_optimizer_plugin_entry:
 * the loader must say it is not a p7 plugin. */
int not_an_optimizer(int x);

__attribute__((visibility("default"))) int not_an_optimizer(int x) { return x + 1; }
