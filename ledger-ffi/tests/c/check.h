/* check.h: a tiny assertion and test-case helper for the C tests of ledger-ffi.
 *
 * A CHECK that fails prints where and why (with ledger_last_error() when a status was
 * involved), marks the current test case as failed and lets it go on: one run shows
 * every broken expectation, not only the first. The CHECK_* macros are expressions
 * that yield whether the check held, so a test can stop when a later step would be
 * meaningless:  if (!CHECK_OK(ledger_open(...))) return;
 * They may be used from several threads at once. */
#ifndef LEDGER_CHECK_H
#define LEDGER_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The name of a LEDGER_OK / LEDGER_ERR_* status, of a LEDGER_TX_* result, of a
 * LEDGER_STATE_*; "?" for an unknown value. */
const char *status_name(int status);
const char *tx_result_name(uint32_t result);
const char *state_name(uint32_t state);

bool check_true_(bool ok, const char *expr, const char *file, int line);
bool check_i64_(int64_t got, int64_t want, const char *egot, const char *ewant, const char *file, int line);
bool check_u64_(uint64_t got, uint64_t want, const char *egot, const char *ewant, const char *file, int line);
/* A call's status; when `want` is a failure, also that ledger_last_error() is non-empty. */
bool check_status_(int got, int want, const char *expr, const char *file, int line);
bool check_tx_(uint32_t got, uint32_t want, const char *expr, const char *file, int line);
bool check_state_(uint32_t got, uint32_t want, const char *expr, const char *file, int line);
bool check_str_(const char *got, const char *want, const char *egot, const char *file, int line);

#define CHECK(cond) check_true_((cond) ? true : false, #cond, __FILE__, __LINE__)
#define CHECK_EQ_I(got, want) check_i64_((int64_t)(got), (int64_t)(want), #got, #want, __FILE__, __LINE__)
#define CHECK_EQ_U(got, want) check_u64_((uint64_t)(got), (uint64_t)(want), #got, #want, __FILE__, __LINE__)
#define CHECK_STATUS(call, want) check_status_((call), (want), #call, __FILE__, __LINE__)
#define CHECK_OK(call) CHECK_STATUS(call, LEDGER_OK)
#define CHECK_TX(got, want) check_tx_((got), (want), #got, __FILE__, __LINE__)
#define CHECK_STATE(got, want) check_state_((got), (want), #got, __FILE__, __LINE__)
#define CHECK_STR(got, want) check_str_((got), (want), #got, __FILE__, __LINE__)

/* ----- test cases ------------------------------------------------------------------ */

/* A test case gets a fresh, empty directory of its own (removed afterwards). */
typedef void (*test_fn)(const char *dir);

typedef struct {
    const char *name;
    test_fn fn;
} test_case;

/* Runs the cases whose name contains `filter` (all when NULL), each in a fresh
 * directory under /tmp, prints one line per case and a closing
 * "<label>: N passed, M failed" line; returns the number of failed cases. */
int run_tests(const test_case *cases, size_t count, const char *filter, const char *label);

/* Removes a directory tree (no error when it does not exist). */
void remove_tree(const char *path);

/* The calling thread's current test case fails (for failures found outside CHECK). */
void fail_current_test(void);

#endif /* LEDGER_CHECK_H */
