# split_csv(line, out): the fields of one CSV line into out[1..n], split at commas outside
# double quotes (results.csv quotes its list fields); returns n. Prepended to the awk
# programs of the app tests that read p7bench's CSV files.
function split_csv(line, out,    n, i, c, q, f) {
    n = 0; f = ""; q = 0
    for (i = 1; i <= length(line); i++) {
        c = substr(line, i, 1)
        if (c == "\"") q = !q
        if (c == "," && !q) { out[++n] = f; f = "" } else f = f c
    }
    out[++n] = f
    return n
}
