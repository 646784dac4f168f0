/* The original study's semantics, one named switch each (`p7bench --faithful[=LIST]`).
 *
 * p7 re-creates what the original PyTorch study (seed-study.md) meant to do. Each bit
 * below brings back one thing it actually did, so its numbers can be reproduced and
 * compared; `--faithful` alone sets them all. docs/networks.md and docs/studies.md say
 * what each switch changes and which bug of the original (seed-study section 9) it
 * reproduces. P7_FAITHFUL_LIST(X) calls X(ID, "name", bit, "what it brings back") once per
 * switch, so the names the command line accepts and the docs' table come from one list. */
#ifndef P7_FAITHFUL_H
#define P7_FAITHFUL_H

#define P7_FAITHFUL_LIST(X)                                                                                   \
    X(OPTIMIZER_IS_ADAM, "optimizer-is-adam", 0, "every optimizer name trains with Adam (B1)")              \
    X(ALPHA_GAMMA_INIT, "alpha-gamma-init", 1, "fast-weight init v <= 0 gives all -1, v = 1 all +1 (B2)")   \
    X(BE_KAIMING_INIT, "be-kaiming-init", 2, "BatchEnsemble shared weights Kaiming fan_out (B7)")           \
    X(MEAN_LOGITS, "mean-logits", 3, "ensembles predict the mean of member logits; sharing ensembles train " \
                                     "on the CE of that mean")                                                 \
    X(HEADS_LINEAR, "heads-linear", 4, "heads model: no activation after the shared hidden layer (B6)")     \
    X(ALIASED_MEMBERS, "aliased-members", 5, "between-member heads alias one conv trunk (B12)")              \
    X(WITHIN_ORIGINAL, "within-original", 6, "within-model presets share what the original shares, "        \
                                             "unused shared convs counted (B11, B13)")                         \
    X(TEST_AS_VAL, "test-as-val", 7, "the test set is the validation set (B9)")                             \
    X(ES_NO_RESTORE, "es-no-restore", 8, "early stopping keeps the last weights (B14)")                      \
    X(VAL_AUGMENT, "val-augment", 9, "CIFAR-20: training augmentation also on validation images (B15)")     \
    X(FOUR_LOADERS, "four-loaders", 10, "CIFAR-20 combined: 4 shuffled loaders per step (B15)")              \
    X(BATCH_EQUALS_M, "batch-equals-m", 11, "ensemble-size study: batch = M images per step (B5)")           \
    X(EXPLICIT_INIT, "explicit-init", 12, "CIFAR-20 combined: convs Kaiming fan_out, linears N(0, 0.01^2), "  \
                                          "biases 0 (7, cell 0)")

enum {
#define P7_FAITHFUL_ENUM(id, name, bit, what) P7_FAITHFUL_##id = 1u << (bit),
    P7_FAITHFUL_LIST(P7_FAITHFUL_ENUM)
#undef P7_FAITHFUL_ENUM
        P7_FAITHFUL_ALL = (1u << 13) - 1u
};

#endif
