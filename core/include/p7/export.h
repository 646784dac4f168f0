/* P7_API marks the public surface of libp7. The library is compiled with hidden
 * visibility, so a function reaches libp7.so's dynamic symbol table only when its
 * public declaration carries P7_API; everything else stays internal, and
 * tests/check_exports.sh holds the two lists equal. */
#ifndef P7_EXPORT_H
#define P7_EXPORT_H

#if defined(_WIN32)
#define P7_API __declspec(dllexport)
#elif defined(__GNUC__)
#define P7_API __attribute__((visibility("default")))
#else
#define P7_API
#endif

#endif
