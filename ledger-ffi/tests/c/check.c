/* check.c: see check.h. */
#define _GNU_SOURCE
#include "check.h"

#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"

/* Failed checks in the running test case (checks may run on several threads). */
static atomic_int failures;

void fail_current_test(void) {
    atomic_fetch_add(&failures, 1);
}

const char *status_name(int status) {
    switch (status) {
    case LEDGER_OK: return "LEDGER_OK";
    case LEDGER_ERR_INVALID_ARGUMENT: return "LEDGER_ERR_INVALID_ARGUMENT";
    case LEDGER_ERR_IO: return "LEDGER_ERR_IO";
    case LEDGER_ERR_CORRUPT: return "LEDGER_ERR_CORRUPT";
    case LEDGER_ERR_NOT_FOUND: return "LEDGER_ERR_NOT_FOUND";
    case LEDGER_ERR_LOCKED: return "LEDGER_ERR_LOCKED";
    case LEDGER_ERR_INTERNAL: return "LEDGER_ERR_INTERNAL";
    default: return "?";
    }
}

const char *tx_result_name(uint32_t result) {
    switch (result) {
    case LEDGER_TX_OK: return "LEDGER_TX_OK";
    case LEDGER_TX_EXISTS: return "LEDGER_TX_EXISTS";
    case LEDGER_TX_EXISTS_DIFFERENT: return "LEDGER_TX_EXISTS_DIFFERENT";
    case LEDGER_TX_INVALID_AMOUNT: return "LEDGER_TX_INVALID_AMOUNT";
    case LEDGER_TX_INVALID_CURRENCY: return "LEDGER_TX_INVALID_CURRENCY";
    case LEDGER_TX_INVALID_KIND: return "LEDGER_TX_INVALID_KIND";
    case LEDGER_TX_REF_NOT_FOUND: return "LEDGER_TX_REF_NOT_FOUND";
    case LEDGER_TX_REF_WRONG_STATE: return "LEDGER_TX_REF_WRONG_STATE";
    case LEDGER_TX_EXCEEDS_REF_AMOUNT: return "LEDGER_TX_EXCEEDS_REF_AMOUNT";
    case LEDGER_TX_CURRENCY_MISMATCH: return "LEDGER_TX_CURRENCY_MISMATCH";
    default: return "?";
    }
}

const char *state_name(uint32_t state) {
    switch (state) {
    case LEDGER_STATE_AUTHORIZED: return "LEDGER_STATE_AUTHORIZED";
    case LEDGER_STATE_CAPTURED: return "LEDGER_STATE_CAPTURED";
    case LEDGER_STATE_PARTIALLY_REFUNDED: return "LEDGER_STATE_PARTIALLY_REFUNDED";
    case LEDGER_STATE_REFUNDED: return "LEDGER_STATE_REFUNDED";
    case LEDGER_STATE_VOIDED: return "LEDGER_STATE_VOIDED";
    case LEDGER_STATE_APPLIED: return "LEDGER_STATE_APPLIED";
    default: return "?";
    }
}

static bool report(bool ok) {
    if (!ok) {
        fail_current_test();
    }
    return ok;
}

bool check_true_(bool ok, const char *expr, const char *file, int line) {
    if (!ok) {
        fprintf(stderr, "    %s:%d: CHECK(%s) failed\n", file, line, expr);
    }
    return report(ok);
}

bool check_i64_(int64_t got, int64_t want, const char *egot, const char *ewant, const char *file, int line) {
    if (got != want) {
        fprintf(stderr, "    %s:%d: %s == %" PRId64 ", expected %s == %" PRId64 "\n", file, line, egot, got, ewant,
                want);
    }
    return report(got == want);
}

bool check_u64_(uint64_t got, uint64_t want, const char *egot, const char *ewant, const char *file, int line) {
    if (got != want) {
        fprintf(stderr, "    %s:%d: %s == %" PRIu64 ", expected %s == %" PRIu64 "\n", file, line, egot, got, ewant,
                want);
    }
    return report(got == want);
}

bool check_status_(int got, int want, const char *expr, const char *file, int line) {
    if (got != want) {
        const char *msg = ledger_last_error();
        fprintf(stderr, "    %s:%d: %s returned %d (%s), expected %d (%s); last error: \"%s\"\n", file, line, expr, got,
                status_name(got), want, status_name(want), msg ? msg : "(null)");
        return report(false);
    }
    if (want != LEDGER_OK) {
        const char *msg = ledger_last_error();
        if (msg == NULL || msg[0] == '\0') {
            fprintf(stderr, "    %s:%d: %s returned %s as expected, but ledger_last_error() is %s\n", file, line,
                    expr, status_name(got), msg ? "empty" : "NULL");
            return report(false);
        }
    }
    return true;
}

bool check_tx_(uint32_t got, uint32_t want, const char *expr, const char *file, int line) {
    if (got != want) {
        fprintf(stderr, "    %s:%d: %s is %u (%s), expected %u (%s)\n", file, line, expr, got, tx_result_name(got), want,
                tx_result_name(want));
    }
    return report(got == want);
}

bool check_state_(uint32_t got, uint32_t want, const char *expr, const char *file, int line) {
    if (got != want) {
        fprintf(stderr, "    %s:%d: %s is %u (%s), expected %u (%s)\n", file, line, expr, got, state_name(got), want,
                state_name(want));
    }
    return report(got == want);
}

bool check_str_(const char *got, const char *want, const char *egot, const char *file, int line) {
    bool ok = got != NULL && strcmp(got, want) == 0;
    if (!ok) {
        fprintf(stderr, "    %s:%d: %s is \"%s\", expected \"%s\"\n", file, line, egot, got ? got : "(null)", want);
    }
    return report(ok);
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    if (remove(path) != 0 && errno != ENOENT) {
        fprintf(stderr, "    cannot remove %s: %s\n", path, strerror(errno));
    }
    return 0;
}

void remove_tree(const char *path) {
    nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int run_tests(const test_case *cases, size_t count, const char *filter, const char *label) {
    int passed = 0;
    int failed = 0;
    for (size_t i = 0; i < count; i++) {
        if (filter != NULL && strstr(cases[i].name, filter) == NULL) {
            continue;
        }
        char dir[] = "/tmp/ledger-ctest-XXXXXX";
        if (mkdtemp(dir) == NULL) {
            fprintf(stderr, "mkdtemp: %s\n", strerror(errno));
            failed++;
            continue;
        }
        atomic_store(&failures, 0);
        double started = now_seconds();
        cases[i].fn(dir);
        double took = now_seconds() - started;
        remove_tree(dir);
        if (atomic_load(&failures) == 0) {
            passed++;
            printf("ok   %-40s %7.3f s\n", cases[i].name, took);
        } else {
            failed++;
            printf("FAIL %-40s %7.3f s (%d failed checks)\n", cases[i].name, took, atomic_load(&failures));
        }
        fflush(stdout);
        fflush(stderr);
    }
    printf("%s: %d passed, %d failed\n", label, passed, failed);
    fflush(stdout);
    return failed;
}
