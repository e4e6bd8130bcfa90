/* test_ledger.c: the C ABI of ledger-ffi (shared/design/ffi-contract.md), exercised the
 * way an outside C program uses it, through the committed header include/ledger.h.
 *
 * run.sh builds this file twice, linked statically against libledger.a and
 * dynamically against libledger.so, and runs both.
 *
 *   test_ledger [--label NAME] [FILTER]
 *
 * runs the test cases whose name contains FILTER (all by default). LEDGER_CTEST_SEED
 * fixes the seed of the randomized parts (the seed of a run is printed). */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"
#include "check.h"

/* ----- the layout of the contract, checked at compile time ------------------------- */

_Static_assert(sizeof(ledger_id) == 16, "ledger_id is two uint64_t");
_Static_assert(offsetof(ledger_id, lo) == 0 && offsetof(ledger_id, hi) == 8, "ledger_id is {lo, hi}");
_Static_assert(sizeof(ledger_options) == 32, "ledger_options layout");
_Static_assert(offsetof(ledger_options, reserved) == 4 && offsetof(ledger_options, segment_bytes) == 8 &&
                   offsetof(ledger_options, hot_bytes_max) == 16 &&
                   offsetof(ledger_options, checkpoint_every_records) == 24,
               "ledger_options layout");
_Static_assert(sizeof(ledger_stats) == 120, "ledger_stats layout");
_Static_assert(sizeof(ledger_tx) == 80, "ledger_tx layout");
_Static_assert(offsetof(ledger_tx, ref) == 16 && offsetof(ledger_tx, client_id) == 32 &&
                   offsetof(ledger_tx, device_id) == 40 && offsetof(ledger_tx, amount) == 48 &&
                   offsetof(ledger_tx, kind) == 56 && offsetof(ledger_tx, flags) == 60 &&
                   offsetof(ledger_tx, currency) == 64 && offsetof(ledger_tx, reserved) == 68 &&
                   offsetof(ledger_tx, user_data) == 72,
               "ledger_tx layout");
_Static_assert(sizeof(ledger_tx_record) == 128, "ledger_tx_record layout");
_Static_assert(offsetof(ledger_tx_record, seq) == 80 && offsetof(ledger_tx_record, batch_id) == 88 &&
                   offsetof(ledger_tx_record, timestamp_ns) == 96 && offsetof(ledger_tx_record, state) == 104 &&
                   offsetof(ledger_tx_record, reserved) == 108 && offsetof(ledger_tx_record, captured) == 112 &&
                   offsetof(ledger_tx_record, refunded) == 120,
               "ledger_tx_record layout");
_Static_assert(sizeof(ledger_batch_summary) == 112, "ledger_batch_summary layout");
_Static_assert(offsetof(ledger_batch_summary, currency) == 16 && offsetof(ledger_batch_summary, first_seq) == 24 &&
                   offsetof(ledger_batch_summary, opened_ns) == 40 &&
                   offsetof(ledger_batch_summary, payment_count) == 56 &&
                   offsetof(ledger_batch_summary, refund_total) == 80 &&
                   offsetof(ledger_batch_summary, adjustment_total) == 96 && offsetof(ledger_batch_summary, net) == 104,
               "ledger_batch_summary layout");
_Static_assert(sizeof(ledger_balance) == 48 && offsetof(ledger_balance, settled_net) == 32 &&
                   offsetof(ledger_balance, open_net) == 40,
               "ledger_balance layout");

/* ----- helpers --------------------------------------------------------------------- */

enum { MERCHANT = 42, OTHER_MERCHANT = 43 };

static const ledger_id NO_REF = {0, 0};

static ledger_id mkid(uint64_t hi, uint64_t lo) {
    ledger_id id;
    id.lo = lo;
    id.hi = hi;
    return id;
}

/* A fresh id, unique within the run. */
static uint64_t next_lo = 1;
static ledger_id nid(void) {
    return mkid(0xA11CE, next_lo++);
}

static bool id_eq(ledger_id a, ledger_id b) {
    return a.lo == b.lo && a.hi == b.hi;
}

static ledger_tx mktx(uint32_t kind, uint32_t flags, ledger_id id, ledger_id ref, uint64_t client, int64_t amount,
                      const char *currency) {
    ledger_tx t;
    memset(&t, 0, sizeof t);
    t.id = id;
    t.ref = ref;
    t.client_id = client;
    t.amount = amount;
    t.kind = kind;
    t.flags = flags;
    memcpy(t.currency, currency, strnlen(currency, sizeof t.currency));
    return t;
}

static ledger_tx sale(ledger_id id, uint64_t client, int64_t amount) {
    return mktx(LEDGER_KIND_PAYMENT, 0, id, NO_REF, client, amount, "USD");
}
static ledger_tx auth(ledger_id id, uint64_t client, int64_t amount) {
    return mktx(LEDGER_KIND_PAYMENT, LEDGER_FLAG_AUTH_ONLY, id, NO_REF, client, amount, "USD");
}
static ledger_tx capture(ledger_id id, ledger_id payment, uint64_t client, int64_t amount) {
    return mktx(LEDGER_KIND_CAPTURE, 0, id, payment, client, amount, "USD");
}
static ledger_tx void_tx(ledger_id id, ledger_id payment, uint64_t client) {
    return mktx(LEDGER_KIND_VOID, 0, id, payment, client, 0, "USD");
}
static ledger_tx refund(ledger_id id, ledger_id payment, uint64_t client, int64_t amount) {
    return mktx(LEDGER_KIND_REFUND, 0, id, payment, client, amount, "USD");
}
static ledger_tx adjust(ledger_id id, uint64_t client, int64_t amount) {
    return mktx(LEDGER_KIND_ADJUSTMENT, 0, id, NO_REF, client, amount, "USD");
}
static ledger_tx in(ledger_tx t, const char *currency) {
    memset(t.currency, 0, sizeof t.currency);
    memcpy(t.currency, currency, strnlen(currency, sizeof t.currency));
    return t;
}

/* Submits one transaction on its own; its LEDGER_TX_* result, or UINT32_MAX when the
 * call as a whole failed. */
static uint32_t submit1_(ledger *l, ledger_tx tx, const char *file, int line) {
    uint32_t result = UINT32_MAX;
    int rc = ledger_submit(l, &tx, 1, &result);
    if (!check_status_(rc, LEDGER_OK, "ledger_submit", file, line)) {
        return UINT32_MAX;
    }
    return result;
}
#define SUBMIT1(l, tx) submit1_((l), (tx), __FILE__, __LINE__)
/* Submits `tx` on its own and checks its result. */
#define EXPECT_TX(l, tx, want) check_tx_(SUBMIT1((l), (tx)), (want), #tx, __FILE__, __LINE__)

/* Submits n transactions in one call; checks the call's status and each result. */
static bool submit_n_(ledger *l, const ledger_tx *txs, size_t n, const uint32_t *want, const char *file, int line) {
    uint32_t results[64];
    if (n > 64) {
        return check_true_(false, "n <= 64", file, line);
    }
    for (size_t i = 0; i < n; i++) {
        results[i] = UINT32_MAX;
    }
    if (!check_status_(ledger_submit(l, txs, n, results), LEDGER_OK, "ledger_submit", file, line)) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; i < n; i++) {
        char what[48];
        snprintf(what, sizeof what, "results[%zu]", i);
        ok = check_tx_(results[i], want[i], what, file, line) && ok;
    }
    return ok;
}
#define SUBMIT_N(l, txs, want) \
    submit_n_((l), (txs), sizeof(txs) / sizeof((txs)[0]), (want), __FILE__, __LINE__)

/* The committed record of `id` (zeroed when the lookup fails, which is a failed check). */
static ledger_tx_record lookup_(ledger *l, ledger_id id, const char *file, int line) {
    ledger_tx_record r;
    memset(&r, 0, sizeof r);
    check_status_(ledger_lookup(l, id, &r), LEDGER_OK, "ledger_lookup", file, line);
    return r;
}
#define LOOKUP(l, id) lookup_((l), (id), __FILE__, __LINE__)
#define EXPECT_ABSENT(l, id)                                                         \
    do {                                                                             \
        ledger_tx_record absent_;                                                    \
        CHECK_STATUS(ledger_lookup((l), (id), &absent_), LEDGER_ERR_NOT_FOUND);      \
    } while (0)

static ledger_balance balance_(ledger *l, uint64_t client, const char *currency, const char *file, int line) {
    ledger_balance b;
    memset(&b, 0x5a, sizeof b);
    if (!check_status_(ledger_balance_get(l, client, currency, &b), LEDGER_OK, "ledger_balance_get", file, line)) {
        memset(&b, 0, sizeof b);
    }
    return b;
}
#define BALANCE(l, client, currency) balance_((l), (client), (currency), __FILE__, __LINE__)

static bool check_balance_(ledger_balance b, int64_t captured, int64_t refunded, int64_t adjusted, int64_t net,
                           int64_t settled, int64_t open, const char *file, int line) {
    bool ok = check_i64_(b.captured, captured, "balance.captured", "expected", file, line);
    ok = check_i64_(b.refunded, refunded, "balance.refunded", "expected", file, line) && ok;
    ok = check_i64_(b.adjusted, adjusted, "balance.adjusted", "expected", file, line) && ok;
    ok = check_i64_(b.net, net, "balance.net", "expected", file, line) && ok;
    ok = check_i64_(b.settled_net, settled, "balance.settled_net", "expected", file, line) && ok;
    ok = check_i64_(b.open_net, open, "balance.open_net", "expected", file, line) && ok;
    return ok;
}
#define CHECK_BALANCE(b, captured, refunded, adjusted, net, settled, open) \
    check_balance_((b), (captured), (refunded), (adjusted), (net), (settled), (open), __FILE__, __LINE__)

static bool check_tx_fields_(const ledger_tx *g, const ledger_tx *w, const char *file, int line) {
    bool ok = check_u64_(g->id.lo, w->id.lo, "tx.id.lo", "expected", file, line);
    ok = check_u64_(g->id.hi, w->id.hi, "tx.id.hi", "expected", file, line) && ok;
    ok = check_u64_(g->ref.lo, w->ref.lo, "tx.ref.lo", "expected", file, line) && ok;
    ok = check_u64_(g->ref.hi, w->ref.hi, "tx.ref.hi", "expected", file, line) && ok;
    ok = check_u64_(g->client_id, w->client_id, "tx.client_id", "expected", file, line) && ok;
    ok = check_u64_(g->device_id, w->device_id, "tx.device_id", "expected", file, line) && ok;
    ok = check_i64_(g->amount, w->amount, "tx.amount", "expected", file, line) && ok;
    ok = check_u64_(g->kind, w->kind, "tx.kind", "expected", file, line) && ok;
    ok = check_u64_(g->flags, w->flags, "tx.flags", "expected", file, line) && ok;
    ok = check_true_(memcmp(g->currency, w->currency, 4) == 0, "tx.currency as submitted", file, line) && ok;
    ok = check_u64_(g->reserved, 0, "tx.reserved", "0", file, line) && ok;
    ok = check_u64_(g->user_data, w->user_data, "tx.user_data", "expected", file, line) && ok;
    return ok;
}
#define CHECK_TX_FIELDS(got, want) check_tx_fields_(&(got), &(want), __FILE__, __LINE__)

static bool check_record_eq_(const ledger_tx_record *g, const ledger_tx_record *w, const char *file, int line) {
    bool ok = check_tx_fields_(&g->tx, &w->tx, file, line);
    ok = check_u64_(g->seq, w->seq, "record.seq", "expected", file, line) && ok;
    ok = check_u64_(g->batch_id, w->batch_id, "record.batch_id", "expected", file, line) && ok;
    ok = check_u64_(g->timestamp_ns, w->timestamp_ns, "record.timestamp_ns", "expected", file, line) && ok;
    ok = check_state_(g->state, w->state, "record.state", file, line) && ok;
    ok = check_i64_(g->captured, w->captured, "record.captured", "expected", file, line) && ok;
    ok = check_i64_(g->refunded, w->refunded, "record.refunded", "expected", file, line) && ok;
    return ok;
}
#define CHECK_RECORD_EQ(got, want) check_record_eq_(&(got), &(want), __FILE__, __LINE__)

static bool check_batch_eq_(const ledger_batch_summary *g, const ledger_batch_summary *w, const char *file, int line) {
    bool ok = check_u64_(g->batch_id, w->batch_id, "batch.batch_id", "expected", file, line);
    ok = check_u64_(g->client_id, w->client_id, "batch.client_id", "expected", file, line) && ok;
    ok = check_true_(memcmp(g->currency, w->currency, 4) == 0, "batch.currency equal", file, line) && ok;
    ok = check_u64_(g->first_seq, w->first_seq, "batch.first_seq", "expected", file, line) && ok;
    ok = check_u64_(g->last_seq, w->last_seq, "batch.last_seq", "expected", file, line) && ok;
    ok = check_u64_(g->opened_ns, w->opened_ns, "batch.opened_ns", "expected", file, line) && ok;
    ok = check_u64_(g->closed_ns, w->closed_ns, "batch.closed_ns", "expected", file, line) && ok;
    ok = check_u64_(g->payment_count, w->payment_count, "batch.payment_count", "expected", file, line) && ok;
    ok = check_i64_(g->payment_total, w->payment_total, "batch.payment_total", "expected", file, line) && ok;
    ok = check_u64_(g->refund_count, w->refund_count, "batch.refund_count", "expected", file, line) && ok;
    ok = check_i64_(g->refund_total, w->refund_total, "batch.refund_total", "expected", file, line) && ok;
    ok = check_u64_(g->adjustment_count, w->adjustment_count, "batch.adjustment_count", "expected", file, line) && ok;
    ok = check_i64_(g->adjustment_total, w->adjustment_total, "batch.adjustment_total", "expected", file, line) && ok;
    ok = check_i64_(g->net, w->net, "batch.net", "expected", file, line) && ok;
    return ok;
}
#define CHECK_BATCH_EQ(got, want) check_batch_eq_(&(got), &(want), __FILE__, __LINE__)

static ledger_options test_options(void) {
    ledger_options o;
    memset(&o, 0, sizeof o);
    o.sync = LEDGER_SYNC_ALWAYS;
    o.segment_bytes = 256 * 1024; /* small segments: cheap to create, and they roll over */
    return o;
}

static void join_path(char *out, size_t cap, const char *dir, const char *name) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        fprintf(stderr, "path too long: %s/%s\n", dir, name);
        abort();
    }
}

static ledger *open_(const char *path, const char *file, int line) {
    ledger *l = NULL;
    ledger_options o = test_options();
    if (!check_status_(ledger_open(path, &o, &l), LEDGER_OK, "ledger_open", file, line)) {
        return NULL;
    }
    check_true_(l != NULL, "ledger_open set the handle", file, line);
    return l;
}
/* Opens the ledger at `path` with the test options; NULL (a failed check) when it fails. */
#define OPEN(path) open_((path), __FILE__, __LINE__)

static uint64_t wall_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* xorshift64*: the randomized parts, reproducible from the printed seed. */
static uint64_t rng_state = 1;
static uint64_t rnd(void) {
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}
static uint64_t rnd_in(uint64_t lo, uint64_t hi) { /* inclusive */
    return lo + rnd() % (hi - lo + 1);
}

/* An open-addressing map from id to index, for the checks over thousands of ids. */
typedef struct {
    ledger_id id;
    size_t val; /* SIZE_MAX: empty slot */
} id_slot;

typedef struct {
    id_slot *s;
    size_t cap, n;
} id_map;

static uint64_t id_hash(ledger_id id) {
    uint64_t h = id.lo * 0x9E3779B97F4A7C15ull ^ (id.hi + 0x632BE59BD9B4E019ull) * 0xC2B2AE3D27D4EB4Full;
    return h ^ (h >> 31);
}

static size_t map_get(const id_map *m, ledger_id id) {
    if (m->cap == 0) {
        return SIZE_MAX;
    }
    for (size_t i = id_hash(id) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->s[i].val == SIZE_MAX) {
            return SIZE_MAX;
        }
        if (id_eq(m->s[i].id, id)) {
            return m->s[i].val;
        }
    }
}

static void map_put(id_map *m, ledger_id id, size_t val) {
    if (2 * (m->n + 1) > m->cap) {
        id_map bigger = {NULL, m->cap ? 2 * m->cap : 1024, 0};
        bigger.s = malloc(bigger.cap * sizeof *bigger.s);
        for (size_t i = 0; i < bigger.cap; i++) {
            bigger.s[i].val = SIZE_MAX;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (m->s[i].val != SIZE_MAX) {
                map_put(&bigger, m->s[i].id, m->s[i].val);
            }
        }
        free(m->s);
        *m = bigger;
    }
    size_t i = id_hash(id) & (m->cap - 1);
    while (m->s[i].val != SIZE_MAX && !id_eq(m->s[i].id, id)) {
        i = (i + 1) & (m->cap - 1);
    }
    m->n += m->s[i].val == SIZE_MAX;
    m->s[i].id = id;
    m->s[i].val = val;
}

static void map_free(id_map *m) {
    free(m->s);
    m->s = NULL;
    m->cap = m->n = 0;
}

/* All of a client's records, oldest first, read in pages of `page`. Returns the count;
 * *out is malloc'ed (caller frees). */
static size_t list_all(ledger *l, uint64_t client, size_t page, ledger_tx_record **out) {
    size_t cap = 1024, n = 0;
    ledger_tx_record *all = malloc(cap * sizeof *all);
    ledger_tx_record *buf = malloc(page * sizeof *buf);
    uint64_t after = 0;
    for (;;) {
        size_t written = SIZE_MAX;
        if (!CHECK_OK(ledger_list(l, client, after, buf, page, &written))) {
            break;
        }
        if (!CHECK(written <= page)) {
            break;
        }
        if (written == 0) {
            break;
        }
        if (n + written > cap) {
            cap = 2 * (n + written);
            all = realloc(all, cap * sizeof *all);
        }
        memcpy(all + n, buf, written * sizeof *buf);
        n += written;
        after = buf[written - 1].seq;
    }
    free(buf);
    *out = all;
    return n;
}

/* ----- ABI basics -------------------------------------------------------------------- */

static void test_abi_constants_and_version(const char *dir) {
    (void)dir;
    /* Values fixed by the contract. */
    CHECK_EQ_I(LEDGER_OK, 0);
    CHECK_EQ_I(LEDGER_ERR_INVALID_ARGUMENT, 1);
    CHECK_EQ_I(LEDGER_ERR_IO, 2);
    CHECK_EQ_I(LEDGER_ERR_CORRUPT, 3);
    CHECK_EQ_I(LEDGER_ERR_NOT_FOUND, 4);
    CHECK_EQ_I(LEDGER_ERR_LOCKED, 5);
    CHECK_EQ_I(LEDGER_ERR_INTERNAL, 7);
    CHECK_EQ_I(LEDGER_KIND_PAYMENT, 1);
    CHECK_EQ_I(LEDGER_KIND_CAPTURE, 2);
    CHECK_EQ_I(LEDGER_KIND_VOID, 3);
    CHECK_EQ_I(LEDGER_KIND_REFUND, 4);
    CHECK_EQ_I(LEDGER_KIND_ADJUSTMENT, 5);
    CHECK_EQ_I(LEDGER_FLAG_AUTH_ONLY, 1);
    CHECK_EQ_I(LEDGER_TX_OK, 0);
    CHECK_EQ_I(LEDGER_TX_EXISTS, 1);
    CHECK_EQ_I(LEDGER_TX_EXISTS_DIFFERENT, 2);
    CHECK_EQ_I(LEDGER_TX_INVALID_AMOUNT, 3);
    CHECK_EQ_I(LEDGER_TX_INVALID_CURRENCY, 4);
    CHECK_EQ_I(LEDGER_TX_INVALID_KIND, 5);
    CHECK_EQ_I(LEDGER_TX_REF_NOT_FOUND, 6);
    CHECK_EQ_I(LEDGER_TX_REF_WRONG_STATE, 7);
    CHECK_EQ_I(LEDGER_TX_EXCEEDS_REF_AMOUNT, 8);
    CHECK_EQ_I(LEDGER_TX_CURRENCY_MISMATCH, 9);
    CHECK_EQ_I(LEDGER_STATE_AUTHORIZED, 1);
    CHECK_EQ_I(LEDGER_STATE_CAPTURED, 2);
    CHECK_EQ_I(LEDGER_STATE_PARTIALLY_REFUNDED, 3);
    CHECK_EQ_I(LEDGER_STATE_REFUNDED, 4);
    CHECK_EQ_I(LEDGER_STATE_VOIDED, 5);
    CHECK_EQ_I(LEDGER_STATE_APPLIED, 6);
    CHECK_EQ_I(LEDGER_SYNC_ALWAYS, 0);
    CHECK_EQ_I(LEDGER_SYNC_NONE, 1);
    const char *v = ledger_version();
    if (CHECK(v != NULL)) {
        CHECK(strncmp(v, "ledger ", 7) == 0);
        CHECK(strlen(v) > 7);
    }
}

static void test_open_defaults_creates_parents(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "a/b/c");
    ledger *l = NULL;
    if (!CHECK_OK(ledger_open(path, NULL, &l)) || !CHECK(l != NULL)) {
        return;
    }
    struct stat st;
    CHECK(stat(path, &st) == 0 && S_ISDIR(st.st_mode));
    ledger_id id = nid();
    EXPECT_TX(l, sale(id, MERCHANT, 1999), LEDGER_TX_OK);
    ledger_close(l);
    ledger_close(NULL); /* a no-op */

    /* All-zero options are the defaults too (segment_bytes 0 = default). */
    ledger_options zero;
    memset(&zero, 0, sizeof zero);
    l = NULL;
    if (!CHECK_OK(ledger_open(path, &zero, &l)) || !CHECK(l != NULL)) {
        return;
    }
    ledger_tx_record r = LOOKUP(l, id);
    CHECK_EQ_I(r.tx.amount, 1999);
    ledger_close(l);
}

/* ----- the change feed ------------------------------------------------------------ */

/* Opens "<dir>/ledger" without syncs, with small segments and frequent checkpoints
   (0: the default for that option); NULL (a failed check) when it fails. */
static ledger *open_checkpointing(const char *dir, uint64_t segment_bytes, uint64_t checkpoint_every,
                                  uint64_t hot_bytes) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger_options o = test_options();
    o.sync = LEDGER_SYNC_NONE;
    o.segment_bytes = segment_bytes;
    o.checkpoint_every_records = checkpoint_every;
    o.hot_bytes_max = hot_bytes;
    ledger *l = NULL;
    return CHECK_OK(ledger_open(path, &o, &l)) ? l : NULL;
}


/* Reads from `f` until `want` records are in `out` (at most `cap`) or a wait of 10 s
   finds nothing; returns how many were read. */
static size_t feed_collect(ledger_feed *f, ledger_feed_record *out, size_t cap, size_t want) {
    size_t got = 0;
    while (got < want && got < cap) {
        size_t n = 0;
        if (!CHECK_OK(ledger_feed_next(f, out + got, cap - got, &n, 10000)) || n == 0) {
            break;
        }
        got += n;
    }
    return got;
}

/* Every committed record once, in seq order, as it was right after its commit; the
   batch close with the summary ledger_batch_close returned. */
static void test_feed_returns_committed_records_in_order(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_feed *f = NULL;
    if (!CHECK_OK(ledger_feed_open(l, 0, 0, &f)) || !CHECK(f != NULL)) {
        ledger_close(l);
        return;
    }
    ledger_feed_record recs[16];
    size_t n = 99;
    CHECK_OK(ledger_feed_next(f, recs, 16, &n, 0));
    CHECK_EQ_U(n, 0); /* nothing committed yet, and no wait */

    ledger_id s = nid(), a = nid(), c = nid(), r = nid(), bad = nid();
    EXPECT_TX(l, sale(s, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a, MERCHANT, 500), LEDGER_TX_OK);
    EXPECT_TX(l, capture(c, a, MERCHANT, 300), LEDGER_TX_OK);
    EXPECT_TX(l, refund(r, s, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, refund(bad, s, MERCHANT, 1), LEDGER_TX_EXCEEDS_REF_AMOUNT); /* no record */
    ledger_batch_summary closed;
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", &closed));

    if (!CHECK_EQ_U(feed_collect(f, recs, 16, 5), 5)) {
        ledger_feed_close(f);
        ledger_close(l);
        return;
    }
    for (size_t i = 0; i < 5; i++) {
        CHECK_EQ_U(recs[i].seq, i + 1);
    }
    for (size_t i = 0; i < 4; i++) {
        CHECK_EQ_U(recs[i].kind, LEDGER_FEED_TRANSACTION);
        CHECK_EQ_U(recs[i].tx.seq, i + 1);
    }
    CHECK(id_eq(recs[0].tx.tx.id, s));
    /* As committed: a sale captured in full, not yet refunded (it is refunded now). */
    CHECK_STATE(recs[0].tx.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(recs[0].tx.captured, 1000);
    CHECK_EQ_I(recs[0].tx.refunded, 0);
    CHECK_STATE(LOOKUP(l, s).state, LEDGER_STATE_REFUNDED);
    CHECK_STATE(recs[1].tx.state, LEDGER_STATE_AUTHORIZED);
    CHECK(id_eq(recs[2].tx.tx.ref, a));
    CHECK_STATE(recs[2].tx.state, LEDGER_STATE_APPLIED);
    CHECK_EQ_I(recs[3].tx.tx.amount, 1000);
    CHECK_EQ_U(recs[4].kind, LEDGER_FEED_BATCH_CLOSE);
    CHECK_BATCH_EQ(recs[4].batch, closed);
    CHECK_EQ_U(recs[4].tx.seq, 0); /* the other member is zero */

    /* A wait with nothing new times out with 0 records. */
    uint64_t t0 = wall_ns();
    CHECK_OK(ledger_feed_next(f, recs, 16, &n, 50));
    CHECK_EQ_U(n, 0);
    CHECK(wall_ns() - t0 >= 40u * 1000000u);
    ledger_feed_close(f);

    /* Any position resumes there; beyond the next record, bad flags, nulls: refused. */
    f = NULL;
    CHECK_OK(ledger_feed_open(l, 4, 0, &f));
    CHECK_EQ_U(feed_collect(f, recs, 16, 2), 2);
    CHECK_EQ_U(recs[0].seq, 4);
    ledger_feed_close(f);
    ledger_feed *none = (ledger_feed *)&n;
    CHECK_STATUS(ledger_feed_open(l, 7, 0, &none), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK(none == NULL);
    CHECK(strstr(ledger_last_error(), "ahead") != NULL);
    CHECK_STATUS(ledger_feed_open(l, 1, 2, &none), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_feed_open(NULL, 1, 0, &none), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_feed_open(l, 1, 0, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_feed_next(NULL, recs, 16, &n, 0), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_feed_confirm(NULL, 1), LEDGER_ERR_INVALID_ARGUMENT);
    ledger_feed_close(NULL); /* a no-op */

    /* After the ledger is closed a feed returns what was committed, then says closed. */
    CHECK_OK(ledger_feed_open(l, 5, 0, &f));
    ledger_close(l);
    CHECK_OK(ledger_feed_next(f, recs, 16, &n, 1000));
    CHECK_EQ_U(n, 1);
    CHECK_STATUS(ledger_feed_next(f, recs, 16, &n, 1000), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK(strstr(ledger_last_error(), "closed") != NULL);
    CHECK_STATUS(ledger_feed_next(f, recs, 16, &n, 0), LEDGER_ERR_INVALID_ARGUMENT);
    ledger_feed_close(f);
}

typedef struct {
    ledger *l;
    uint64_t first_lo;
    int calls;
} feed_writer_args;

static void *feed_writer_thread(void *p) {
    feed_writer_args *a = p;
    for (int c = 0; c < a->calls; c++) {
        ledger_tx txs[20];
        uint32_t results[20];
        for (int i = 0; i < 20; i++) {
            txs[i] = sale(mkid(7, a->first_lo + (uint64_t)(c * 20 + i)), MERCHANT, 100 + i);
        }
        if (ledger_submit(a->l, txs, 20, results) != LEDGER_OK) {
            return (void *)1;
        }
    }
    return NULL;
}

/* A reader blocked in ledger_feed_next sees every commit of a concurrent writer, once. */
static void test_feed_follows_a_concurrent_writer(const char *dir) {
    ledger *l = open_checkpointing(dir, 256 * 1024, 0, 0);
    if (!l) {
        return;
    }
    ledger_feed *f = NULL;
    if (!CHECK_OK(ledger_feed_open(l, 1, 0, &f))) {
        ledger_close(l);
        return;
    }
    feed_writer_args args = {l, 1, 100};
    pthread_t writer;
    if (!CHECK(pthread_create(&writer, NULL, feed_writer_thread, &args) == 0)) {
        ledger_feed_close(f);
        ledger_close(l);
        return;
    }
    enum { TOTAL = 2000 };
    static ledger_feed_record recs[TOTAL];
    size_t got = feed_collect(f, recs, TOTAL, TOTAL);
    void *failed = NULL;
    pthread_join(writer, &failed);
    CHECK(failed == NULL);
    CHECK_EQ_U(got, TOTAL);
    bool ordered = true;
    for (size_t i = 0; i < got; i++) {
        ordered = ordered && recs[i].seq == i + 1 && recs[i].tx.tx.id.lo == i + 1 && recs[i].tx.tx.id.hi == 7;
    }
    CHECK(ordered);
    ledger_feed_close(f);
    ledger_close(l);
}

/* A holding feed keeps the log from its last confirmed seq through checkpoints; once it
   is gone, retention removes the log's start, and a feed from seq 1 reads those records
   back from the cold tier's runs, the same as they were read from the log. */
static void test_feed_holding_and_cold_history(const char *dir) {
    ledger *l = open_checkpointing(dir, 64 * 1024, 500, 0);
    if (!l) {
        return;
    }
    enum { TOTAL = 6000 };
    static ledger_feed_record first[TOTAL], again[TOTAL];
    ledger_feed *hold = NULL;
    CHECK_OK(ledger_feed_open(l, 1, LEDGER_FEED_HOLD, &hold));
    uint64_t lo = 1;
    for (int k = 0; k < TOTAL / 50; k++) {
        ledger_tx txs[50];
        uint32_t results[50];
        for (int i = 0; i < 50; i++) {
            txs[i] = sale(mkid(9, lo++), MERCHANT, 10 + i);
        }
        CHECK_OK(ledger_submit(l, txs, 50, results));
    }
    ledger_stats st;
    CHECK_OK(ledger_stats_get(l, &st));
    CHECK(st.checkpoints >= 3);
    size_t got = feed_collect(hold, first, TOTAL, TOTAL);
    CHECK_EQ_U(got, TOTAL);
    CHECK_OK(ledger_feed_confirm(hold, TOTAL));
    ledger_feed_close(hold);

    /* More checkpoints, now without a hold: the log's start goes. Seq 1 still reads. */
    for (int k = 0; k < 40; k++) {
        ledger_tx txs[50];
        uint32_t results[50];
        for (int i = 0; i < 50; i++) {
            txs[i] = sale(mkid(9, lo++), MERCHANT, 10);
        }
        CHECK_OK(ledger_submit(l, txs, 50, results));
    }
    ledger_feed *f = NULL;
    if (CHECK_OK(ledger_feed_open(l, 1, 0, &f))) {
        CHECK_EQ_U(feed_collect(f, again, TOTAL, TOTAL), TOTAL);
        bool same = true;
        for (size_t i = 0; i < TOTAL; i++) {
            same = same && memcmp(&first[i], &again[i], sizeof first[i]) == 0;
        }
        CHECK(same);
        ledger_feed_close(f);
    }
    CHECK_EQ_U(LOOKUP(l, mkid(9, 1)).seq, 1);
    ledger_close(l);
}

/* A tiny memory budget: thousands of transactions go through checkpoints into the cold
   tier; after a reopen the very first payment is still EXISTS and still refundable. */
static void test_tiny_hot_budget_keeps_old_payments_exact(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger_options o = test_options();
    o.sync = LEDGER_SYNC_NONE;
    o.hot_bytes_max = 64 * 1024;
    o.checkpoint_every_records = 100;
    ledger *l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    enum { N = 4000, CALL = 50 };
    ledger_tx txs[CALL];
    uint32_t results[CALL];
    for (uint64_t i = 0; i < N; i += CALL) {
        for (uint64_t j = 0; j < CALL; j++) {
            txs[j] = sale(mkid(7, i + j + 1), 1 + (i + j) % 3, 100 + (int64_t)(i + j));
        }
        if (!CHECK_OK(ledger_submit(l, txs, CALL, results))) {
            ledger_close(l);
            return;
        }
        for (uint64_t j = 0; j < CALL; j++) {
            CHECK_EQ_U(results[j], LEDGER_TX_OK);
        }
    }
    ledger_stats st;
    if (CHECK_OK(ledger_stats_get(l, &st))) {
        CHECK_EQ_U(st.transactions, N);
        CHECK(st.checkpoints >= 1 && st.cold_runs >= 1);
        CHECK(st.cold_entries + st.frozen_transactions + st.hot_transactions >= N);
        CHECK(st.hot_bytes <= o.hot_bytes_max + 64 * 1024); /* at most the budget and one call */
        CHECK_EQ_U(st.checkpoint_failures, 0);
    }
    CHECK_STATUS(ledger_stats_get(l, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    ledger_close(l);
    l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    ledger_tx first = sale(mkid(7, 1), 1 + 0 % 3, 100);
    EXPECT_TX(l, first, LEDGER_TX_EXISTS);
    EXPECT_TX(l, refund(mkid(8, 1), mkid(7, 1), 1, 60), LEDGER_TX_OK);
    EXPECT_TX(l, refund(mkid(8, 2), mkid(7, 1), 1, 41), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    ledger_tx_record r = LOOKUP(l, mkid(7, 1));
    CHECK_EQ_U(r.state, LEDGER_STATE_PARTIALLY_REFUNDED);
    CHECK_EQ_I(r.refunded, 60);
    ledger_close(l);
}

static void test_sync_none_persists_after_close(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger_options o = test_options();
    o.sync = LEDGER_SYNC_NONE;
    ledger *l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    ledger_id ids[20];
    for (int i = 0; i < 20; i++) {
        ids[i] = nid();
        EXPECT_TX(l, sale(ids[i], MERCHANT, 100 + i), LEDGER_TX_OK);
    }
    ledger_close(l); /* flushes */
    if (!(l = OPEN(path))) {
        return;
    }
    for (int i = 0; i < 20; i++) {
        CHECK_EQ_I(LOOKUP(l, ids[i]).tx.amount, 100 + i);
    }
    CHECK_EQ_I(BALANCE(l, MERCHANT, "USD").net, 20 * 100 + 190);
    ledger_close(l);
}

/* ----- statuses ---------------------------------------------------------------------- */

static void test_status_invalid_argument_null_pointers(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = NULL;
    CHECK_STATUS(ledger_open(NULL, NULL, &l), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_open(path, NULL, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    if (!(l = OPEN(path))) {
        return;
    }
    ledger_id id = nid();
    ledger_tx tx = sale(id, MERCHANT, 500);
    uint32_t result = 0;
    ledger_tx_record rec;
    ledger_tx_record recs[4];
    size_t written = 0;
    ledger_batch_summary summary;
    ledger_balance bal;

    CHECK_STATUS(ledger_submit(NULL, &tx, 1, &result), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_submit(l, NULL, 1, &result), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_submit(l, &tx, 1, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    EXPECT_ABSENT(l, id); /* a call that failed as a whole commits nothing */
    CHECK_OK(ledger_submit(l, NULL, 0, NULL)); /* nothing to do */

    EXPECT_TX(l, tx, LEDGER_TX_OK); /* now there is something to find */
    CHECK_STATUS(ledger_lookup(NULL, id, &rec), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_lookup(l, id, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_list(NULL, MERCHANT, 0, recs, 4, &written), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_list(l, MERCHANT, 0, NULL, 4, &written), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_list(l, MERCHANT, 0, recs, 4, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_balance_get(NULL, MERCHANT, "USD", &bal), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_balance_get(l, MERCHANT, NULL, &bal), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_balance_get(l, MERCHANT, "USD", NULL), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_balance_get(l, MERCHANT, "usd", &bal), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_batch_close(NULL, MERCHANT, "USD", &summary), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, NULL, &summary), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, "ABC", &summary), LEDGER_ERR_INVALID_ARGUMENT);
    uint64_t batch = LOOKUP(l, id).batch_id;
    CHECK(batch != 0);
    CHECK_STATUS(ledger_batch_get(NULL, batch, &summary), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK_STATUS(ledger_batch_get(l, batch, NULL), LEDGER_ERR_INVALID_ARGUMENT);
    /* None of the refused calls changed anything. */
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 500, 0, 0, 500, 0, 500);
    CHECK_OK(ledger_batch_get(l, batch, &summary));
    CHECK_EQ_U(summary.closed_ns, 0);
    ledger_close(l);
}

static void test_status_invalid_argument_options(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = NULL;
    ledger_options o = test_options();
    o.sync = 7;
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_INVALID_ARGUMENT);
    o = test_options();
    o.reserved = 1;
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_INVALID_ARGUMENT);
    o = test_options();
    o.segment_bytes = 12345;
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_INVALID_ARGUMENT);
    o.segment_bytes = UINT64_MAX;
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_INVALID_ARGUMENT);
    /* A path that is not UTF-8. */
    char bad[PATH_MAX];
    join_path(bad, sizeof bad, dir, "bad-\xff\xfe-utf8");
    CHECK_STATUS(ledger_open(bad, NULL, &l), LEDGER_ERR_INVALID_ARGUMENT);
    CHECK(ledger_open("", NULL, &l) != LEDGER_OK); /* an empty path is no directory */
    /* None of the refused opens holds the directory. */
    if ((l = OPEN(path))) {
        ledger_close(l);
    }
}

static void test_status_io_path_is_regular_file(const char *dir) {
    char file[PATH_MAX], below[PATH_MAX];
    join_path(file, sizeof file, dir, "plain-file");
    join_path(below, sizeof below, dir, "plain-file/ledger");
    FILE *f = fopen(file, "w");
    if (!CHECK(f != NULL)) {
        return;
    }
    fputs("not a ledger\n", f);
    fclose(f);
    ledger *l = NULL;
    CHECK_STATUS(ledger_open(file, NULL, &l), LEDGER_ERR_IO);
    CHECK_STATUS(ledger_open(below, NULL, &l), LEDGER_ERR_IO);
}

static uint64_t le_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}
static uint32_t le_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Writes four sales, one per ledger_submit call (each call is its own synced group), then
 * returns the byte offsets of the four frames in the first segment file (FORMAT.md of
 * ledger-store: a 64-byte segment header, then frames of a 32-byte header [seq u64,
 * synced_seq u64, payload_len u32, kind u16, ...] and a payload, 16-byte aligned). */
static bool four_frames(const char *dir, char *segment, size_t cap, ledger_id ids[4], long offsets[4],
                        uint32_t lengths[4]) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return false;
    }
    for (int i = 0; i < 4; i++) {
        ids[i] = nid();
        EXPECT_TX(l, sale(ids[i], MERCHANT, 1000 * (i + 1)), LEDGER_TX_OK);
    }
    ledger_close(l);
    join_path(segment, cap, path, "00000000000000000001.seg");
    int fd = open(segment, O_RDONLY);
    if (!CHECK(fd >= 0)) {
        return false;
    }
    bool ok = true;
    long off = 64;
    for (int i = 0; i < 4 && ok; i++) {
        unsigned char h[32];
        ok = CHECK(pread(fd, h, sizeof h, off) == (ssize_t)sizeof h);
        ok = ok && CHECK_EQ_U(le_u64(h), (uint64_t)i + 1); /* seq */
        if (ok && i > 0) {
            ok = CHECK(le_u64(h + 8) >= (uint64_t)i); /* synced_seq: the frames before were durable */
        }
        offsets[i] = off;
        lengths[i] = le_u32(h + 16);
        ok = ok && CHECK(lengths[i] > 0 && lengths[i] < 4096);
        off += (32 + (long)lengths[i] + 15) / 16 * 16;
    }
    close(fd);
    return ok;
}

static bool flip_byte(const char *file, long at) {
    int fd = open(file, O_RDWR);
    if (!CHECK(fd >= 0)) {
        return false;
    }
    unsigned char b;
    bool ok = CHECK(pread(fd, &b, 1, at) == 1);
    b ^= 0x5a;
    ok = ok && CHECK(pwrite(fd, &b, 1, at) == 1);
    ok = ok && CHECK(fsync(fd) == 0);
    close(fd);
    return ok;
}

static void test_status_corrupt_durable_frame_damaged(const char *dir) {
    char segment[PATH_MAX], path[PATH_MAX];
    ledger_id ids[4];
    long offsets[4];
    uint32_t lengths[4];
    if (!four_frames(dir, segment, sizeof segment, ids, offsets, lengths)) {
        return;
    }
    join_path(path, sizeof path, dir, "ledger");
    /* A byte in the middle of the first frame's payload: frames 2-4 prove it was durable. */
    long at = offsets[0] + 32 + lengths[0] / 2;
    if (!flip_byte(segment, at)) {
        return;
    }
    ledger *l = NULL;
    ledger_options o = test_options();
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_CORRUPT);
    CHECK(l == NULL);
    /* Refusing changed nothing: still refused, and whole again once the byte is back. */
    CHECK_STATUS(ledger_open(path, &o, &l), LEDGER_ERR_CORRUPT);
    if (!flip_byte(segment, at)) {
        return;
    }
    if (!(l = OPEN(path))) {
        return;
    }
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_I(LOOKUP(l, ids[i]).tx.amount, 1000 * (i + 1));
    }
    ledger_close(l);
}

static void test_torn_final_frame_is_cut_not_refused(const char *dir) {
    char segment[PATH_MAX], path[PATH_MAX];
    ledger_id ids[4];
    long offsets[4];
    uint32_t lengths[4];
    if (!four_frames(dir, segment, sizeof segment, ids, offsets, lengths)) {
        return;
    }
    join_path(path, sizeof path, dir, "ledger");
    /* Damage to the last frame, with nothing written after it: a torn tail. */
    if (!flip_byte(segment, offsets[3] + 32 + lengths[3] / 2)) {
        return;
    }
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_I(LOOKUP(l, ids[i]).tx.amount, 1000 * (i + 1));
    }
    EXPECT_ABSENT(l, ids[3]); /* a frame that does not verify is never returned */
    EXPECT_TX(l, sale(ids[3], MERCHANT, 4000), LEDGER_TX_OK); /* and writing resumes */
    ledger_close(l);
    if ((l = OPEN(path))) {
        CHECK_EQ_I(BALANCE(l, MERCHANT, "USD").net, 10000);
        ledger_close(l);
    }
}

static void test_status_not_found(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_tx_record rec;
    ledger_batch_summary summary;
    CHECK_STATUS(ledger_lookup(l, nid(), &rec), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_lookup(l, NO_REF, &rec), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_batch_get(l, 0, &summary), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_batch_get(l, 1, &summary), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, "USD", &summary), LEDGER_ERR_NOT_FOUND);
    /* An authorization counts in no batch: still nothing to close. */
    ledger_id a = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 700), LEDGER_TX_OK);
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, "USD", &summary), LEDGER_ERR_NOT_FOUND);
    EXPECT_TX(l, sale(nid(), MERCHANT, 100), LEDGER_TX_OK);
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, "EUR", &summary), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_batch_close(l, OTHER_MERCHANT, "USD", &summary), LEDGER_ERR_NOT_FOUND);
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", &summary));
    CHECK_STATUS(ledger_batch_close(l, MERCHANT, "USD", &summary), LEDGER_ERR_NOT_FOUND); /* closed: empty */
    CHECK_STATUS(ledger_batch_get(l, summary.batch_id + 1, &summary), LEDGER_ERR_NOT_FOUND);
    CHECK_STATUS(ledger_batch_get(l, UINT64_MAX, &summary), LEDGER_ERR_NOT_FOUND);
    ledger_close(l);
}

static void test_status_locked_same_process(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger *second = NULL;
    ledger_options o = test_options();
    CHECK_STATUS(ledger_open(path, &o, &second), LEDGER_ERR_LOCKED);
    CHECK(second == NULL);
    CHECK_STATUS(ledger_open(path, NULL, &second), LEDGER_ERR_LOCKED);
    ledger_id id = nid();
    EXPECT_TX(l, sale(id, MERCHANT, 10), LEDGER_TX_OK); /* the first handle is unaffected */
    ledger_close(l);
    if ((second = OPEN(path))) { /* released by close */
        CHECK_EQ_I(LOOKUP(second, id).tx.amount, 10);
        ledger_close(second);
    }
}

/* Exit code of a child: the status of its ledger_open, or 100 when that failed with an
 * empty ledger_last_error(), or 101 when its submit failed. */
static pid_t fork_opener(const char *path, bool submit, ledger_id id) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) {
        alarm(20); /* never hang the suite */
        ledger *h = NULL;
        ledger_options o = test_options();
        int rc = ledger_open(path, &o, &h);
        if (rc != LEDGER_OK) {
            const char *m = ledger_last_error();
            _exit(m == NULL || m[0] == '\0' ? 100 : rc);
        }
        if (submit) {
            ledger_tx tx = sale(id, MERCHANT, 77);
            uint32_t r = UINT32_MAX;
            if (ledger_submit(h, &tx, 1, &r) != LEDGER_OK || r != LEDGER_TX_OK) {
                _exit(101);
            }
        }
        _exit(0); /* without ledger_close: the lock must die with the process */
    }
    return pid;
}

static int wait_exit_code(pid_t pid) {
    int st = 0;
    if (!CHECK(pid > 0) || !CHECK(waitpid(pid, &st, 0) == pid)) {
        return -1;
    }
    if (!CHECK(WIFEXITED(st))) {
        fprintf(stderr, "    child ended by signal %d\n", WIFSIGNALED(st) ? WTERMSIG(st) : -1);
        return -1;
    }
    return WEXITSTATUS(st);
}

static void test_status_locked_forked_child(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id mine = nid(), childs = nid();
    CHECK_EQ_I(wait_exit_code(fork_opener(path, false, childs)), LEDGER_ERR_LOCKED);
    EXPECT_TX(l, sale(mine, MERCHANT, 10), LEDGER_TX_OK); /* still ours */
    ledger_close(l);
    /* Released: a child opens it, commits and dies without closing... */
    CHECK_EQ_I(wait_exit_code(fork_opener(path, true, childs)), 0);
    /* ...and its lock died with it. */
    if ((l = OPEN(path))) {
        CHECK_EQ_I(LOOKUP(l, mine).tx.amount, 10);
        CHECK_EQ_I(LOOKUP(l, childs).tx.amount, 77);
        ledger_close(l);
    }
}

typedef struct {
    ledger *l;
    char before[256];
    char after[256];
    int status;
} last_error_arg;

static void *last_error_thread(void *p) {
    last_error_arg *a = p;
    const char *m = ledger_last_error();
    snprintf(a->before, sizeof a->before, "%s", m ? m : "(null)");
    ledger_tx_record rec;
    a->status = ledger_lookup(a->l, nid(), &rec);
    m = ledger_last_error();
    snprintf(a->after, sizeof a->after, "%s", m ? m : "(null)");
    return NULL;
}

static void test_last_error_per_thread(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_tx_record rec;
    CHECK_STATUS(ledger_lookup(NULL, nid(), &rec), LEDGER_ERR_INVALID_ARGUMENT);
    char mine[256];
    snprintf(mine, sizeof mine, "%s", ledger_last_error());
    CHECK(mine[0] != '\0');
    last_error_arg a;
    memset(&a, 0, sizeof a);
    a.l = l;
    pthread_t t;
    if (CHECK(pthread_create(&t, NULL, last_error_thread, &a) == 0)) {
        pthread_join(t, NULL);
        CHECK_STR(a.before, ""); /* "" before any failure on that thread */
        CHECK_EQ_I(a.status, LEDGER_ERR_NOT_FOUND);
        CHECK(a.after[0] != '\0');
        CHECK(strcmp(a.after, mine) != 0);
        CHECK_STR(ledger_last_error(), mine); /* another thread's failure leaves ours alone */
    }
    ledger_close(l);
}

/* ----- results of a submitted transaction ------------------------------------------- */

static void test_tx_ok_and_exists(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id id = nid();
    ledger_tx s = sale(id, MERCHANT, 1234);
    s.device_id = 9;
    s.user_data = 0xfeedface;
    EXPECT_TX(l, s, LEDGER_TX_OK);
    ledger_tx_record first = LOOKUP(l, id);
    EXPECT_TX(l, s, LEDGER_TX_EXISTS);
    ledger_tx_record again = LOOKUP(l, id);
    CHECK_RECORD_EQ(again, first); /* nothing changed */
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1234, 0, 0, 1234, 0, 1234);

    /* The same id twice in one call. */
    ledger_id twice = nid();
    ledger_tx pair[] = {sale(twice, MERCHANT, 5), sale(twice, MERCHANT, 5)};
    uint32_t want_pair[] = {LEDGER_TX_OK, LEDGER_TX_EXISTS};
    SUBMIT_N(l, pair, want_pair);

    /* Ids are 128 bits: a high half alone is a valid id, distinct from the low half. */
    EXPECT_TX(l, sale(mkid(1, 0), MERCHANT, 1), LEDGER_TX_OK);
    EXPECT_TX(l, sale(mkid(0, 1), MERCHANT, 2), LEDGER_TX_OK);
    CHECK_EQ_I(LOOKUP(l, mkid(1, 0)).tx.amount, 1);
    CHECK_EQ_I(LOOKUP(l, mkid(0, 1)).tx.amount, 2);

    /* Retrying a whole flow after the payment changed state: still EXISTS, not judged
     * again (a retried capture or refund is not a second one). */
    ledger_id a = nid(), c = nid(), r = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 900), LEDGER_TX_OK);
    EXPECT_TX(l, capture(c, a, MERCHANT, 900), LEDGER_TX_OK);
    EXPECT_TX(l, refund(r, a, MERCHANT, 100), LEDGER_TX_OK);
    ledger_tx flow[] = {auth(a, MERCHANT, 900), capture(c, a, MERCHANT, 900), refund(r, a, MERCHANT, 100)};
    uint32_t want_flow[] = {LEDGER_TX_EXISTS, LEDGER_TX_EXISTS, LEDGER_TX_EXISTS};
    SUBMIT_N(l, flow, want_flow);
    ledger_tx_record ar = LOOKUP(l, a);
    CHECK_EQ_I(ar.captured, 900);
    CHECK_EQ_I(ar.refunded, 100);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1234 + 5 + 3 + 900, 100, 0, 1234 + 5 + 3 + 800, 0,
                  1234 + 5 + 3 + 800);
    ledger_close(l);
}

static void test_tx_exists_different(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id id = nid();
    ledger_tx s = sale(id, MERCHANT, 1000);
    EXPECT_TX(l, s, LEDGER_TX_OK);
    ledger_tx_record before = LOOKUP(l, id);
    ledger_tx d = s;
    d.amount = 1001;
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    d = s;
    d.user_data = 1;
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    d = s;
    d.device_id = 3;
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    d = s;
    d.client_id = OTHER_MERCHANT;
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    d = in(s, "EUR");
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    d = s;
    d.flags = LEDGER_FLAG_AUTH_ONLY;
    EXPECT_TX(l, d, LEDGER_TX_EXISTS_DIFFERENT);
    EXPECT_TX(l, adjust(id, MERCHANT, 1000), LEDGER_TX_EXISTS_DIFFERENT);
    ledger_tx_record after = LOOKUP(l, id);
    CHECK_RECORD_EQ(after, before);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1000, 0, 0, 1000, 0, 1000);
    CHECK_BALANCE(BALANCE(l, OTHER_MERCHANT, "USD"), 0, 0, 0, 0, 0, 0);
    ledger_close(l);
}

static void test_tx_invalid_amount(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id s = nid(), a = nid();
    EXPECT_TX(l, sale(s, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    ledger_id bad[11];
    for (int i = 0; i < 11; i++) {
        bad[i] = nid();
    }
    EXPECT_TX(l, sale(bad[0], MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, sale(bad[1], MERCHANT, -1), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, sale(bad[2], MERCHANT, INT64_MIN), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, auth(bad[3], MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, capture(bad[4], a, MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, capture(bad[5], a, MERCHANT, -5), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, refund(bad[6], s, MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, refund(bad[7], s, MERCHANT, -100), LEDGER_TX_INVALID_AMOUNT);
    ledger_tx v = void_tx(bad[8], a, MERCHANT);
    v.amount = 1;
    EXPECT_TX(l, v, LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, adjust(bad[9], MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    for (int i = 0; i < 10; i++) {
        EXPECT_ABSENT(l, bad[i]);
    }
    CHECK_STATE(LOOKUP(l, a).state, LEDGER_STATE_AUTHORIZED);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1000, 0, 0, 1000, 0, 1000);
    EXPECT_TX(l, adjust(bad[10], MERCHANT, -1), LEDGER_TX_OK); /* either sign */
    ledger_close(l);
}

static void test_tx_invalid_currency(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    const char *bad[] = {"usd", "Usd", "ABC", "US", "", "U$D", "123"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ledger_id id = nid();
        if (!EXPECT_TX(l, in(sale(id, MERCHANT, 100), bad[i]), LEDGER_TX_INVALID_CURRENCY)) {
            fprintf(stderr, "    (currency \"%s\")\n", bad[i]);
        }
        EXPECT_ABSENT(l, id);
    }
    ledger_tx unterminated = sale(nid(), MERCHANT, 100);
    memcpy(unterminated.currency, "USDX", 4); /* no NUL */
    EXPECT_TX(l, unterminated, LEDGER_TX_INVALID_CURRENCY);
    /* Known codes are accepted, each its own balance. */
    EXPECT_TX(l, in(sale(nid(), MERCHANT, 100), "EUR"), LEDGER_TX_OK);
    EXPECT_TX(l, in(sale(nid(), MERCHANT, 300), "JPY"), LEDGER_TX_OK);
    CHECK_EQ_I(BALANCE(l, MERCHANT, "EUR").net, 100);
    CHECK_EQ_I(BALANCE(l, MERCHANT, "JPY").net, 300);
    CHECK_EQ_I(BALANCE(l, MERCHANT, "USD").net, 0);
    ledger_close(l);
}

static void test_tx_invalid_kind(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id s = nid(), a = nid();
    EXPECT_TX(l, sale(s, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    ledger_id ids[12];
    for (int i = 0; i < 12; i++) {
        ids[i] = nid();
    }
    /* Unknown kinds. */
    EXPECT_TX(l, mktx(0, 0, ids[0], NO_REF, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(6, 0, ids[1], NO_REF, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(UINT32_MAX, 0, ids[2], NO_REF, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    /* Unknown flags, and AUTH_ONLY where it means nothing. */
    EXPECT_TX(l, mktx(LEDGER_KIND_PAYMENT, 2, ids[3], NO_REF, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(LEDGER_KIND_PAYMENT, 0x80000001u, ids[4], NO_REF, MERCHANT, 100, "USD"),
              LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(LEDGER_KIND_ADJUSTMENT, LEDGER_FLAG_AUTH_ONLY, ids[5], NO_REF, MERCHANT, 100, "USD"),
              LEDGER_TX_INVALID_KIND);
    /* Zero id, zero client. */
    EXPECT_TX(l, sale(NO_REF, MERCHANT, 100), LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, sale(ids[6], 0, 100), LEDGER_TX_INVALID_KIND);
    /* A ref where none belongs. */
    EXPECT_TX(l, mktx(LEDGER_KIND_PAYMENT, 0, ids[7], s, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(LEDGER_KIND_PAYMENT, LEDGER_FLAG_AUTH_ONLY, ids[8], s, MERCHANT, 100, "USD"),
              LEDGER_TX_INVALID_KIND);
    EXPECT_TX(l, mktx(LEDGER_KIND_ADJUSTMENT, 0, ids[9], s, MERCHANT, 100, "USD"), LEDGER_TX_INVALID_KIND);
    /* A non-zero reserved field. */
    ledger_tx r = sale(ids[10], MERCHANT, 100);
    r.reserved = 1;
    EXPECT_TX(l, r, LEDGER_TX_INVALID_KIND);
    for (int i = 0; i < 11; i++) {
        EXPECT_ABSENT(l, ids[i]);
    }
    /* A capture that names no payment is refused, not stored. */
    uint32_t res = SUBMIT1(l, capture(ids[11], NO_REF, MERCHANT, 100));
    CHECK(res != LEDGER_TX_OK && res != LEDGER_TX_EXISTS);
    EXPECT_ABSENT(l, ids[11]);
    CHECK_STATE(LOOKUP(l, a).state, LEDGER_STATE_AUTHORIZED);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1000, 0, 0, 1000, 0, 1000);
    CHECK_BALANCE(BALANCE(l, 0, "USD"), 0, 0, 0, 0, 0, 0);
    ledger_close(l);
}

static void test_tx_reserved_nonzero_in_a_mixed_call(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), bad = nid(), c = nid(), s = nid(), bad2 = nid();
    ledger_tx reserved = sale(bad, MERCHANT, 50);
    reserved.reserved = 0xdead;
    ledger_tx reserved2 = refund(bad2, s, MERCHANT, 10);
    reserved2.reserved = 1;
    /* The refused entry keeps its place: results stay aligned with the entries. */
    ledger_tx txs[] = {reserved2, auth(a, MERCHANT, 800), reserved, capture(c, a, MERCHANT, 800),
                       sale(s, MERCHANT, 30)};
    uint32_t want[] = {LEDGER_TX_INVALID_KIND, LEDGER_TX_OK, LEDGER_TX_INVALID_KIND, LEDGER_TX_OK, LEDGER_TX_OK};
    SUBMIT_N(l, txs, want);
    EXPECT_ABSENT(l, bad);
    EXPECT_ABSENT(l, bad2);
    ledger_tx_record ar = LOOKUP(l, a);
    CHECK_STATE(ar.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(ar.captured, 800);
    CHECK_EQ_I(LOOKUP(l, s).tx.amount, 30);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 830, 0, 0, 830, 0, 830);
    ledger_close(l);
}

static void test_rejected_id_is_judged_afresh(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id id = nid(), a = nid();
    EXPECT_TX(l, sale(id, MERCHANT, -5), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, in(sale(id, MERCHANT, 5), "usd"), LEDGER_TX_INVALID_CURRENCY);
    EXPECT_TX(l, sale(id, MERCHANT, 5), LEDGER_TX_OK); /* not EXISTS_DIFFERENT: nothing was stored */
    /* A capture refused for its state, then accepted once the state allows it. */
    ledger_id c = nid();
    EXPECT_TX(l, capture(c, a, MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    EXPECT_TX(l, auth(a, MERCHANT, 10), LEDGER_TX_OK);
    EXPECT_TX(l, capture(c, a, MERCHANT, 10), LEDGER_TX_OK);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 15, 0, 0, 15, 0, 15);
    ledger_close(l);
}

static void test_tx_ref_not_found(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id theirs_sale = nid(), theirs_auth = nid(), rejected = nid();
    EXPECT_TX(l, sale(theirs_sale, OTHER_MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(theirs_auth, OTHER_MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, sale(rejected, MERCHANT, 0), LEDGER_TX_INVALID_AMOUNT);
    ledger_id ids[7];
    for (int i = 0; i < 7; i++) {
        ids[i] = nid();
    }
    EXPECT_TX(l, refund(ids[0], nid(), MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    EXPECT_TX(l, capture(ids[1], nid(), MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    EXPECT_TX(l, void_tx(ids[2], nid(), MERCHANT), LEDGER_TX_REF_NOT_FOUND);
    /* Another client's payments do not exist for this one. */
    EXPECT_TX(l, refund(ids[3], theirs_sale, MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    EXPECT_TX(l, capture(ids[4], theirs_auth, MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    EXPECT_TX(l, void_tx(ids[5], theirs_auth, MERCHANT), LEDGER_TX_REF_NOT_FOUND);
    /* Nor does a rejected transaction. */
    EXPECT_TX(l, refund(ids[6], rejected, MERCHANT, 10), LEDGER_TX_REF_NOT_FOUND);
    for (int i = 0; i < 7; i++) {
        EXPECT_ABSENT(l, ids[i]);
    }
    ledger_tx_record ts = LOOKUP(l, theirs_sale), ta = LOOKUP(l, theirs_auth);
    CHECK_STATE(ts.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(ts.refunded, 0);
    CHECK_STATE(ta.state, LEDGER_STATE_AUTHORIZED);
    CHECK_EQ_I(ta.captured, 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 0, 0, 0, 0, 0, 0);
    CHECK_BALANCE(BALANCE(l, OTHER_MERCHANT, "USD"), 1000, 0, 0, 1000, 0, 1000);
    ledger_close(l);
}

static void test_tx_ref_wrong_state(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), b = nid(), v = nid(), s = nid(), c = nid(), r = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(b, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, sale(s, MERCHANT, 1000), LEDGER_TX_OK);
    /* Refund of an authorization not captured. */
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    /* A second capture. */
    EXPECT_TX(l, capture(c, a, MERCHANT, 400), LEDGER_TX_OK);
    EXPECT_TX(l, capture(nid(), a, MERCHANT, 100), LEDGER_TX_REF_WRONG_STATE);
    /* A void of a captured payment, of a sale. */
    EXPECT_TX(l, void_tx(nid(), a, MERCHANT), LEDGER_TX_REF_WRONG_STATE);
    EXPECT_TX(l, void_tx(nid(), s, MERCHANT), LEDGER_TX_REF_WRONG_STATE);
    /* Capture of a sale (captured at once). */
    EXPECT_TX(l, capture(nid(), s, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    /* Capture, void, refund of a voided authorization. */
    EXPECT_TX(l, void_tx(v, b, MERCHANT), LEDGER_TX_OK);
    EXPECT_TX(l, capture(nid(), b, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    EXPECT_TX(l, void_tx(nid(), b, MERCHANT), LEDGER_TX_REF_WRONG_STATE);
    EXPECT_TX(l, refund(nid(), b, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    /* Refs to something that is not a payment. */
    EXPECT_TX(l, refund(r, s, MERCHANT, 100), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), r, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    EXPECT_TX(l, capture(nid(), c, MERCHANT, 10), LEDGER_TX_REF_WRONG_STATE);
    ledger_tx_record ar = LOOKUP(l, a), br = LOOKUP(l, b), sr = LOOKUP(l, s);
    CHECK_STATE(ar.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(ar.captured, 400);
    CHECK_STATE(br.state, LEDGER_STATE_VOIDED);
    CHECK_EQ_I(br.captured, 0);
    CHECK_STATE(sr.state, LEDGER_STATE_PARTIALLY_REFUNDED);
    CHECK_EQ_I(sr.refunded, 100);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1400, 100, 0, 1300, 0, 1300);
    ledger_close(l);
}

static void test_tx_exceeds_ref_amount(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), b = nid(), c = nid(), cb = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, capture(nid(), a, MERCHANT, 1001), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    EXPECT_TX(l, capture(c, a, MERCHANT, 1000), LEDGER_TX_OK); /* the refusal changed nothing */
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 1001), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 600), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 401), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 400), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), a, MERCHANT, 1), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    ledger_tx_record ar = LOOKUP(l, a);
    CHECK_STATE(ar.state, LEDGER_STATE_REFUNDED);
    CHECK_EQ_I(ar.refunded, 1000);
    /* Refunds are bounded by the captured amount, not the authorized one. */
    EXPECT_TX(l, auth(b, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, capture(cb, b, MERCHANT, 600), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), b, MERCHANT, 700), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    EXPECT_TX(l, refund(nid(), b, MERCHANT, 600), LEDGER_TX_OK);
    ledger_tx_record brec = LOOKUP(l, b);
    CHECK_STATE(brec.state, LEDGER_STATE_REFUNDED);
    CHECK_EQ_I(brec.captured, 600);
    CHECK_EQ_I(brec.refunded, 600);
    /* A sale. */
    ledger_id s = nid();
    EXPECT_TX(l, sale(s, MERCHANT, 50), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), s, MERCHANT, 51), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    EXPECT_TX(l, refund(nid(), s, MERCHANT, INT64_MAX), LEDGER_TX_EXCEEDS_REF_AMOUNT);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1650, 1600, 0, 50, 0, 50);
    ledger_close(l);
}

static void test_tx_currency_mismatch(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), s = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, sale(s, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, in(capture(nid(), a, MERCHANT, 500), "EUR"), LEDGER_TX_CURRENCY_MISMATCH);
    EXPECT_TX(l, in(void_tx(nid(), a, MERCHANT), "EUR"), LEDGER_TX_CURRENCY_MISMATCH);
    EXPECT_TX(l, in(refund(nid(), s, MERCHANT, 500), "GBP"), LEDGER_TX_CURRENCY_MISMATCH);
    CHECK_STATE(LOOKUP(l, a).state, LEDGER_STATE_AUTHORIZED);
    CHECK_EQ_I(LOOKUP(l, s).refunded, 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "EUR"), 0, 0, 0, 0, 0, 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "GBP"), 0, 0, 0, 0, 0, 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1000, 0, 0, 1000, 0, 1000);
    ledger_close(l);
}

/* ----- what lookup returns ----------------------------------------------------------- */

static void test_states_and_amounts_via_lookup(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), c = nid(), r1 = nid(), r2 = nid(), b = nid(), v = nid(), s = nid(), rs = nid(),
              j = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 1000), LEDGER_TX_OK);
    ledger_tx_record rec = LOOKUP(l, a);
    CHECK_STATE(rec.state, LEDGER_STATE_AUTHORIZED);
    CHECK_EQ_I(rec.captured, 0);
    CHECK_EQ_I(rec.refunded, 0);
    CHECK_EQ_U(rec.batch_id, 0); /* only authorized: in no batch */

    EXPECT_TX(l, capture(c, a, MERCHANT, 600), LEDGER_TX_OK);
    ledger_tx_record cr = LOOKUP(l, c);
    CHECK_STATE(cr.state, LEDGER_STATE_APPLIED);
    CHECK(id_eq(cr.tx.ref, a));
    CHECK(cr.batch_id != 0);
    rec = LOOKUP(l, a);
    CHECK_STATE(rec.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(rec.captured, 600);
    CHECK_EQ_I(rec.refunded, 0);
    CHECK_EQ_I(rec.tx.amount, 1000); /* the authorized amount, as submitted */
    CHECK_EQ_U(rec.batch_id, cr.batch_id); /* it counts through its capture */

    EXPECT_TX(l, refund(r1, a, MERCHANT, 100), LEDGER_TX_OK);
    rec = LOOKUP(l, a);
    CHECK_STATE(rec.state, LEDGER_STATE_PARTIALLY_REFUNDED);
    CHECK_EQ_I(rec.captured, 600);
    CHECK_EQ_I(rec.refunded, 100);
    CHECK_STATE(LOOKUP(l, r1).state, LEDGER_STATE_APPLIED);

    EXPECT_TX(l, refund(r2, a, MERCHANT, 500), LEDGER_TX_OK);
    rec = LOOKUP(l, a);
    CHECK_STATE(rec.state, LEDGER_STATE_REFUNDED);
    CHECK_EQ_I(rec.refunded, 600);

    EXPECT_TX(l, auth(b, MERCHANT, 300), LEDGER_TX_OK);
    EXPECT_TX(l, void_tx(v, b, MERCHANT), LEDGER_TX_OK);
    rec = LOOKUP(l, b);
    CHECK_STATE(rec.state, LEDGER_STATE_VOIDED);
    CHECK_EQ_I(rec.captured, 0);
    CHECK_EQ_U(rec.batch_id, 0);
    ledger_tx_record vr = LOOKUP(l, v);
    CHECK_STATE(vr.state, LEDGER_STATE_APPLIED);
    CHECK_EQ_U(vr.batch_id, 0); /* a void counts in no batch */

    EXPECT_TX(l, sale(s, MERCHANT, 800), LEDGER_TX_OK);
    rec = LOOKUP(l, s);
    CHECK_STATE(rec.state, LEDGER_STATE_CAPTURED);
    CHECK_EQ_I(rec.captured, 800);
    CHECK(rec.batch_id != 0);
    EXPECT_TX(l, refund(rs, s, MERCHANT, 800), LEDGER_TX_OK);
    rec = LOOKUP(l, s);
    CHECK_STATE(rec.state, LEDGER_STATE_REFUNDED);
    CHECK_EQ_I(rec.refunded, 800);

    EXPECT_TX(l, adjust(j, MERCHANT, -5), LEDGER_TX_OK);
    rec = LOOKUP(l, j);
    CHECK_STATE(rec.state, LEDGER_STATE_APPLIED);
    CHECK_EQ_I(rec.tx.amount, -5);
    CHECK(rec.batch_id != 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1400, 1400, -5, -5, 0, -5);
    ledger_close(l);
}

static void test_record_fields_round_trip(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_tx txs[6];
    ledger_id p = mkid(UINT64_MAX, UINT64_MAX);
    txs[0] = in(sale(p, MERCHANT, 4200), "EUR");
    txs[0].device_id = UINT64_MAX;
    txs[0].user_data = 0x0123456789abcdefull;
    txs[1] = in(refund(mkid(7, 0), p, MERCHANT, 200), "EUR");
    txs[1].device_id = 5;
    txs[1].user_data = 1;
    txs[2] = in(auth(nid(), MERCHANT, 99), "JPY");
    txs[3] = in(capture(nid(), txs[2].id, MERCHANT, 99), "JPY");
    txs[3].user_data = UINT64_MAX;
    txs[4] = in(adjust(nid(), MERCHANT, INT64_MIN + 1), "GBP");
    txs[5] = sale(nid(), MERCHANT, 1);
    uint64_t prev_seq = 0, prev_ts = 0;
    for (int i = 0; i < 6; i++) {
        uint64_t t0 = wall_ns();
        EXPECT_TX(l, txs[i], LEDGER_TX_OK);
        uint64_t t1 = wall_ns();
        ledger_tx_record r = LOOKUP(l, txs[i].id);
        CHECK_TX_FIELDS(r.tx, txs[i]);
        CHECK_EQ_U(r.reserved, 0);
        CHECK(r.seq > prev_seq);         /* strictly increasing in commit order */
        CHECK(r.timestamp_ns > prev_ts); /* and so is the commit time */
        /* Unix ns of the commit, give or take a second of clock disagreement. */
        CHECK(r.timestamp_ns + 1000000000u >= t0 && r.timestamp_ns <= t1 + 1000000000u);
        prev_seq = r.seq;
        prev_ts = r.timestamp_ns;
    }
    ledger_close(l);
}

static void test_same_call_references(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id a = nid(), b = nid();
    ledger_tx flow[] = {auth(a, MERCHANT, 1000), capture(nid(), a, MERCHANT, 1000), refund(nid(), a, MERCHANT, 250),
                        sale(b, MERCHANT, 400), refund(nid(), b, MERCHANT, 400)};
    uint32_t want_flow[] = {LEDGER_TX_OK, LEDGER_TX_OK, LEDGER_TX_OK, LEDGER_TX_OK, LEDGER_TX_OK};
    SUBMIT_N(l, flow, want_flow);
    ledger_tx_record ar = LOOKUP(l, a), br = LOOKUP(l, b);
    CHECK_STATE(ar.state, LEDGER_STATE_PARTIALLY_REFUNDED);
    CHECK_EQ_I(ar.captured, 1000);
    CHECK_EQ_I(ar.refunded, 250);
    CHECK_STATE(br.state, LEDGER_STATE_REFUNDED);
    /* Seqs follow the order of the call. */
    uint64_t prev = 0;
    for (size_t i = 0; i < 5; i++) {
        uint64_t seq = LOOKUP(l, flow[i].id).seq;
        CHECK(seq > prev);
        prev = seq;
    }

    ledger_id x = nid();
    ledger_tx voided[] = {auth(x, MERCHANT, 100), void_tx(nid(), x, MERCHANT), capture(nid(), x, MERCHANT, 100)};
    uint32_t want_voided[] = {LEDGER_TX_OK, LEDGER_TX_OK, LEDGER_TX_REF_WRONG_STATE};
    SUBMIT_N(l, voided, want_voided);
    CHECK_STATE(LOOKUP(l, x).state, LEDGER_STATE_VOIDED);

    ledger_id y = nid(), early = nid();
    ledger_tx backwards[] = {refund(early, y, MERCHANT, 10), sale(y, MERCHANT, 100)}; /* only earlier ones */
    uint32_t want_backwards[] = {LEDGER_TX_REF_NOT_FOUND, LEDGER_TX_OK};
    SUBMIT_N(l, backwards, want_backwards);
    EXPECT_ABSENT(l, early);

    ledger_id z = nid();
    ledger_tx over[] = {sale(z, MERCHANT, 100), refund(nid(), z, MERCHANT, 60), refund(nid(), z, MERCHANT, 60)};
    uint32_t want_over[] = {LEDGER_TX_OK, LEDGER_TX_OK, LEDGER_TX_EXCEEDS_REF_AMOUNT};
    SUBMIT_N(l, over, want_over);
    CHECK_EQ_I(LOOKUP(l, z).refunded, 60);

    ledger_id q = nid(), qc = nid();
    ledger_tx rejected_first[] = {auth(q, MERCHANT, 0), capture(qc, q, MERCHANT, 10)};
    uint32_t want_rejected_first[] = {LEDGER_TX_INVALID_AMOUNT, LEDGER_TX_REF_NOT_FOUND};
    SUBMIT_N(l, rejected_first, want_rejected_first);

    ledger_id w = nid();
    ledger_tx differ[] = {sale(w, MERCHANT, 10), sale(w, MERCHANT, 11)};
    uint32_t want_differ[] = {LEDGER_TX_OK, LEDGER_TX_EXISTS_DIFFERENT};
    SUBMIT_N(l, differ, want_differ);
    CHECK_EQ_I(LOOKUP(l, w).tx.amount, 10);

    /* 1000 + 400 + 100 + 100 + 10 captured; 250 + 400 + 60 refunded. */
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 1610, 710, 0, 900, 0, 900);
    ledger_close(l);
}

/* ----- list, batches, balances -------------------------------------------------------- */

static void test_list_pagination(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id mine[25];
    for (int i = 0; i < 24; i++) {
        mine[i] = nid();
        EXPECT_TX(l, sale(mine[i], MERCHANT, 100 + i), LEDGER_TX_OK);
        if (i % 3 == 0) {
            EXPECT_TX(l, sale(nid(), OTHER_MERCHANT, 1), LEDGER_TX_OK); /* interleaved */
        }
        if (i == 10) {
            CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", NULL)); /* takes a seq too */
        }
    }
    mine[24] = nid();
    EXPECT_TX(l, refund(mine[24], mine[0], MERCHANT, 40), LEDGER_TX_OK);

    ledger_tx_record buf[10];
    size_t written = 999;
    CHECK_OK(ledger_list(l, MERCHANT, 0, NULL, 0, &written));
    CHECK_EQ_U(written, 0);
    written = 999;
    CHECK_OK(ledger_list(l, MERCHANT, 0, buf, 0, &written));
    CHECK_EQ_U(written, 0);

    size_t pages[] = {10, 10, 5, 0};
    uint64_t after = 0;
    size_t seen = 0;
    for (int p = 0; p < 4; p++) {
        written = 999;
        if (!CHECK_OK(ledger_list(l, MERCHANT, after, buf, 10, &written)) || !CHECK_EQ_U(written, pages[p])) {
            break;
        }
        for (size_t i = 0; i < written; i++) {
            CHECK_EQ_U(buf[i].tx.client_id, MERCHANT);
            CHECK(buf[i].seq > after); /* oldest first, after the cursor */
            CHECK(id_eq(buf[i].tx.id, mine[seen]));
            after = buf[i].seq;
            seen++;
        }
    }
    CHECK_EQ_U(seen, 25);
    /* Records as they stand now: the first sale has since been partly refunded. */
    written = 0;
    if (CHECK_OK(ledger_list(l, MERCHANT, 0, buf, 1, &written)) && CHECK_EQ_U(written, 1)) {
        CHECK_STATE(buf[0].state, LEDGER_STATE_PARTIALLY_REFUNDED);
        CHECK_EQ_I(buf[0].refunded, 40);
    }
    /* From the middle: after the 12th record, 13 remain. */
    ledger_tx_record twelfth = LOOKUP(l, mine[11]);
    ledger_tx_record many[40];
    CHECK_OK(ledger_list(l, MERCHANT, twelfth.seq, many, 40, &written));
    if (CHECK_EQ_U(written, 13)) {
        CHECK(id_eq(many[0].tx.id, mine[12]));
        CHECK(id_eq(many[12].tx.id, mine[24]));
    }
    CHECK_OK(ledger_list(l, MERCHANT, UINT64_MAX, many, 40, &written));
    CHECK_EQ_U(written, 0);
    written = 999;
    CHECK_OK(ledger_list(l, 777, 0, many, 40, &written)); /* no such client */
    CHECK_EQ_U(written, 0);
    CHECK_OK(ledger_list(l, OTHER_MERCHANT, 0, many, 40, &written));
    CHECK_EQ_U(written, 8);
    ledger_close(l);
}

static void test_batch_close_and_get(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    ledger_id s1 = nid(), a1 = nid(), c1 = nid(), s2 = nid(), r1 = nid(), j1 = nid(), j2 = nid(), a2 = nid(),
              v2 = nid(), a3 = nid(), e1 = nid(), o1 = nid();
    EXPECT_TX(l, sale(s1, MERCHANT, 1000), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a1, MERCHANT, 500), LEDGER_TX_OK);
    EXPECT_TX(l, capture(c1, a1, MERCHANT, 300), LEDGER_TX_OK);
    EXPECT_TX(l, sale(s2, MERCHANT, 2000), LEDGER_TX_OK);
    EXPECT_TX(l, refund(r1, s2, MERCHANT, 200), LEDGER_TX_OK);
    EXPECT_TX(l, adjust(j1, MERCHANT, 50), LEDGER_TX_OK);
    EXPECT_TX(l, adjust(j2, MERCHANT, -20), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a2, MERCHANT, 700), LEDGER_TX_OK);
    EXPECT_TX(l, void_tx(v2, a2, MERCHANT), LEDGER_TX_OK);
    EXPECT_TX(l, auth(a3, MERCHANT, 900), LEDGER_TX_OK);
    EXPECT_TX(l, in(sale(e1, MERCHANT, 777), "EUR"), LEDGER_TX_OK);
    EXPECT_TX(l, sale(o1, OTHER_MERCHANT, 5000), LEDGER_TX_OK);

    ledger_tx_record rs1 = LOOKUP(l, s1), rj2 = LOOKUP(l, j2);
    uint64_t b1 = rs1.batch_id;
    CHECK(b1 != 0);
    ledger_id counted[] = {s1, a1, c1, s2, r1, j1, j2};
    for (size_t i = 0; i < 7; i++) {
        CHECK_EQ_U(LOOKUP(l, counted[i]).batch_id, b1);
    }
    CHECK_EQ_U(LOOKUP(l, a2).batch_id, 0);
    CHECK_EQ_U(LOOKUP(l, v2).batch_id, 0);
    CHECK_EQ_U(LOOKUP(l, a3).batch_id, 0);
    uint64_t b_eur = LOOKUP(l, e1).batch_id, b_other = LOOKUP(l, o1).batch_id;
    CHECK(b_eur != 0 && b_eur != b1);
    CHECK(b_other != 0 && b_other != b1 && b_other != b_eur);

    ledger_batch_summary open1;
    if (CHECK_OK(ledger_batch_get(l, b1, &open1))) {
        CHECK_EQ_U(open1.closed_ns, 0); /* still open */
        CHECK_EQ_I(open1.net, 3130);
    }
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 3300, 200, 30, 3130, 0, 3130);

    ledger_batch_summary closed;
    memset(&closed, 0, sizeof closed);
    uint64_t before_close = wall_ns();
    if (!CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", &closed))) {
        ledger_close(l);
        return;
    }
    CHECK_EQ_U(closed.batch_id, b1);
    CHECK_EQ_U(closed.client_id, MERCHANT);
    CHECK(memcmp(closed.currency, "USD", 4) == 0);
    CHECK_EQ_U(closed.reserved, 0);
    CHECK_EQ_U(closed.first_seq, rs1.seq);
    CHECK_EQ_U(closed.last_seq, rj2.seq);
    CHECK_EQ_U(closed.opened_ns, rs1.timestamp_ns);
    CHECK(closed.closed_ns > rj2.timestamp_ns);
    CHECK(closed.closed_ns + 1000000000u >= before_close);
    CHECK_EQ_U(closed.payment_count, 3); /* two sales and one capture, at captured amounts */
    CHECK_EQ_I(closed.payment_total, 3300);
    CHECK_EQ_U(closed.refund_count, 1);
    CHECK_EQ_I(closed.refund_total, 200);
    CHECK_EQ_U(closed.adjustment_count, 2);
    CHECK_EQ_I(closed.adjustment_total, 30);
    CHECK_EQ_I(closed.net, 3300 - 200 + 30);
    ledger_batch_summary got;
    if (CHECK_OK(ledger_batch_get(l, b1, &got))) {
        CHECK_BATCH_EQ(got, closed);
    }
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 3300, 200, 30, 3130, 3130, 0);

    /* Later transactions count in a new batch; a capture counts where it is committed,
     * and so does a refund of a payment settled in an earlier batch. */
    ledger_id c3 = nid(), r2 = nid();
    EXPECT_TX(l, capture(c3, a3, MERCHANT, 600), LEDGER_TX_OK);
    EXPECT_TX(l, refund(r2, s1, MERCHANT, 100), LEDGER_TX_OK);
    ledger_tx_record rc3 = LOOKUP(l, c3), rr2 = LOOKUP(l, r2);
    uint64_t b2 = rc3.batch_id;
    CHECK(b2 != 0 && b2 != b1 && b2 != b_eur && b2 != b_other);
    CHECK_EQ_U(LOOKUP(l, a3).batch_id, b2);
    CHECK_EQ_U(rr2.batch_id, b2);
    CHECK_EQ_U(LOOKUP(l, s1).batch_id, b1); /* the sale stays in its batch */
    ledger_batch_summary second;
    if (CHECK_OK(ledger_batch_get(l, b2, &second))) {
        CHECK_EQ_U(second.closed_ns, 0);
        CHECK_EQ_U(second.first_seq, rc3.seq);
        CHECK_EQ_U(second.last_seq, rr2.seq);
        CHECK_EQ_U(second.payment_count, 1);
        CHECK_EQ_I(second.payment_total, 600);
        CHECK_EQ_U(second.refund_count, 1);
        CHECK_EQ_I(second.refund_total, 100);
        CHECK_EQ_U(second.adjustment_count, 0);
        CHECK_EQ_I(second.net, 500);
    }
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 3900, 300, 30, 3630, 3130, 500);
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", NULL)); /* the summary is optional */
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 3900, 300, 30, 3630, 3630, 0);
    if (CHECK_OK(ledger_batch_get(l, b2, &second))) {
        CHECK(second.closed_ns != 0);
        CHECK_EQ_I(second.net, 500);
    }
    /* The first batch did not move. */
    if (CHECK_OK(ledger_batch_get(l, b1, &got))) {
        CHECK_BATCH_EQ(got, closed);
    }
    /* Other currencies and clients have their own batches. */
    ledger_batch_summary eur;
    if (CHECK_OK(ledger_batch_get(l, b_eur, &eur))) {
        CHECK(memcmp(eur.currency, "EUR", 4) == 0);
        CHECK_EQ_U(eur.client_id, MERCHANT);
        CHECK_EQ_U(eur.payment_count, 1);
        CHECK_EQ_I(eur.net, 777);
        CHECK_EQ_U(eur.closed_ns, 0);
    }
    CHECK_OK(ledger_batch_close(l, OTHER_MERCHANT, "USD", &got));
    CHECK_EQ_U(got.batch_id, b_other);
    CHECK_EQ_I(got.net, 5000);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "EUR"), 777, 0, 0, 777, 0, 777);
    ledger_close(l);
}

static void test_balance_fields(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 0, 0, 0, 0, 0, 0); /* before anything */
    ledger_id a = nid(), s = nid();
    EXPECT_TX(l, auth(a, MERCHANT, 10000), LEDGER_TX_OK);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 0, 0, 0, 0, 0, 0); /* an authorization moves no money */
    EXPECT_TX(l, sale(s, MERCHANT, 5000), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), s, MERCHANT, 1500), LEDGER_TX_OK);
    EXPECT_TX(l, adjust(nid(), MERCHANT, -250), LEDGER_TX_OK);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 5000, 1500, -250, 3250, 0, 3250);
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", NULL));
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 5000, 1500, -250, 3250, 3250, 0);
    EXPECT_TX(l, capture(nid(), a, MERCHANT, 4000), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), s, MERCHANT, 500), LEDGER_TX_OK);
    EXPECT_TX(l, adjust(nid(), MERCHANT, 100), LEDGER_TX_OK);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 9000, 2000, -150, 6850, 3250, 3600);
    EXPECT_TX(l, in(adjust(nid(), MERCHANT, 9), "EUR"), LEDGER_TX_OK);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "EUR"), 0, 0, 9, 9, 0, 9);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "GBP"), 0, 0, 0, 0, 0, 0);
    CHECK_BALANCE(BALANCE(l, OTHER_MERCHANT, "USD"), 0, 0, 0, 0, 0, 0);
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", NULL));
    CHECK_BALANCE(BALANCE(l, MERCHANT, "USD"), 9000, 2000, -150, 6850, 6850, 0);
    CHECK_BALANCE(BALANCE(l, MERCHANT, "EUR"), 0, 0, 9, 9, 0, 9); /* its own batch, still open */
    ledger_close(l);
}

static void test_int64_overflow_is_invalid_amount(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    enum { C1 = 50, C2 = 51, C3 = 52 };
    ledger_id over[6];
    for (int i = 0; i < 6; i++) {
        over[i] = nid();
    }
    /* Sums in one open batch. */
    EXPECT_TX(l, sale(nid(), C1, INT64_MAX), LEDGER_TX_OK);
    EXPECT_TX(l, sale(over[0], C1, 1), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, adjust(over[1], C1, 1), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, adjust(nid(), C1, -1), LEDGER_TX_OK);
    EXPECT_TX(l, sale(over[2], C1, 1), LEDGER_TX_INVALID_AMOUNT); /* `captured` would leave int64 */
    CHECK_BALANCE(BALANCE(l, C1, "USD"), INT64_MAX, 0, -1, INT64_MAX - 1, 0, INT64_MAX - 1);
    /* Downwards. */
    EXPECT_TX(l, adjust(nid(), C2, INT64_MIN), LEDGER_TX_OK);
    EXPECT_TX(l, adjust(over[3], C2, -1), LEDGER_TX_INVALID_AMOUNT);
    CHECK_BALANCE(BALANCE(l, C2, "USD"), 0, 0, INT64_MIN, INT64_MIN, 0, INT64_MIN);
    /* Across batches: the batch is fresh, the balance's sums are not. */
    ledger_id a = nid();
    EXPECT_TX(l, auth(a, C3, INT64_MAX), LEDGER_TX_OK);
    EXPECT_TX(l, capture(nid(), a, C3, INT64_MAX), LEDGER_TX_OK);
    EXPECT_TX(l, refund(nid(), a, C3, INT64_MAX), LEDGER_TX_OK);
    CHECK_OK(ledger_batch_close(l, C3, "USD", NULL));
    EXPECT_TX(l, sale(over[4], C3, 1), LEDGER_TX_INVALID_AMOUNT);
    EXPECT_TX(l, adjust(nid(), C3, 5), LEDGER_TX_OK); /* net is 0: there is room there */
    CHECK_BALANCE(BALANCE(l, C3, "USD"), INT64_MAX, INT64_MAX, 5, 5, 0, 5);
    /* Same call: the second sale of the call overflows the first. */
    ledger_id ok_id = nid();
    ledger_tx pair[] = {sale(ok_id, C3 + 1, INT64_MAX - 10), sale(over[5], C3 + 1, 11)};
    uint32_t want[] = {LEDGER_TX_OK, LEDGER_TX_INVALID_AMOUNT};
    SUBMIT_N(l, pair, want);
    for (int i = 0; i < 6; i++) {
        EXPECT_ABSENT(l, over[i]);
    }
    ledger_close(l);
}

/* ----- threads ------------------------------------------------------------------------- */

enum { TH_WRITERS = 8, TH_ITERS = 200, TH_SHARED = 64, TH_CLIENT = 99 };

typedef struct {
    ledger *l;
    int t;
    int shared_ok[TH_SHARED];       /* how often this thread got OK for each shared id */
    int shared_submitted[TH_SHARED];
    int64_t distinct_sum;
} writer_arg;

static atomic_int closer_stop;
static atomic_int closes_done;

static ledger_id shared_id(int k) {
    return mkid(0x5aa5ed, (uint64_t)k + 1);
}
static int64_t shared_amount(int k) {
    return 1000 + k;
}
static ledger_id distinct_id(int t, int i) {
    return mkid(0xd15, (uint64_t)t * 100000 + (uint64_t)i + 1);
}

static void *writer_thread(void *p) {
    writer_arg *a = p;
    int64_t last_net = 0;
    for (int i = 0; i < TH_ITERS; i++) {
        int k = (i * 7 + a->t * 3) % TH_SHARED;
        ledger_tx txs[2];
        txs[0] = sale(distinct_id(a->t, i), TH_CLIENT, a->t * 100 + i + 1);
        txs[0].device_id = (uint64_t)a->t + 1;
        txs[1] = sale(shared_id(k), TH_CLIENT, shared_amount(k)); /* identical in every thread */
        if (i % 2) { /* vary the order inside calls */
            ledger_tx tmp = txs[0];
            txs[0] = txs[1];
            txs[1] = tmp;
        }
        uint32_t res[2] = {UINT32_MAX, UINT32_MAX};
        if (!CHECK_OK(ledger_submit(a->l, txs, 2, res))) {
            continue;
        }
        for (int j = 0; j < 2; j++) {
            if (txs[j].id.hi == 0x5aa5ed) {
                CHECK(res[j] == LEDGER_TX_OK || res[j] == LEDGER_TX_EXISTS);
                a->shared_submitted[k]++;
                if (res[j] == LEDGER_TX_OK) {
                    a->shared_ok[k]++;
                }
            } else {
                CHECK_TX(res[j], LEDGER_TX_OK);
                a->distinct_sum += txs[j].amount;
            }
            /* Read your writes: an acknowledged transaction is visible at once. */
            ledger_tx_record r;
            if (CHECK_OK(ledger_lookup(a->l, txs[j].id, &r))) {
                CHECK_EQ_I(r.tx.amount, txs[j].amount);
            }
        }
        ledger_balance b;
        if (CHECK_OK(ledger_balance_get(a->l, TH_CLIENT, "USD", &b))) {
            CHECK(b.net >= last_net); /* only sales: never goes down */
            CHECK_EQ_I(b.settled_net + b.open_net, b.net);
            last_net = b.net;
        }
    }
    return NULL;
}

static void *closer_thread(void *p) {
    ledger *l = p;
    while (!atomic_load(&closer_stop)) {
        ledger_batch_summary s;
        int rc = ledger_batch_close(l, TH_CLIENT, "USD", &s);
        if (rc == LEDGER_OK) {
            atomic_fetch_add(&closes_done, 1);
        } else {
            CHECK_EQ_I(rc, LEDGER_ERR_NOT_FOUND);
        }
        sleep_ms(3);
    }
    return NULL;
}

static void test_threads_share_one_handle(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    static writer_arg args[TH_WRITERS];
    pthread_t writers[TH_WRITERS], closer;
    memset(args, 0, sizeof args);
    atomic_store(&closer_stop, 0);
    atomic_store(&closes_done, 0);
    bool closer_started = CHECK(pthread_create(&closer, NULL, closer_thread, l) == 0);
    int started = 0;
    for (int t = 0; t < TH_WRITERS; t++) {
        args[t].l = l;
        args[t].t = t;
        if (CHECK(pthread_create(&writers[t], NULL, writer_thread, &args[t]) == 0)) {
            started++;
        }
    }
    for (int t = 0; t < started; t++) {
        pthread_join(writers[t], NULL);
    }
    atomic_store(&closer_stop, 1);
    if (closer_started) {
        pthread_join(closer, NULL);
    }
    if (started != TH_WRITERS) {
        ledger_close(l);
        return;
    }

    int64_t expected_net = 0;
    size_t expected_count = (size_t)TH_WRITERS * TH_ITERS;
    for (int t = 0; t < TH_WRITERS; t++) {
        expected_net += args[t].distinct_sum;
    }
    for (int k = 0; k < TH_SHARED; k++) {
        int ok = 0, submitted = 0;
        for (int t = 0; t < TH_WRITERS; t++) {
            ok += args[t].shared_ok[k];
            submitted += args[t].shared_submitted[k];
        }
        if (submitted > 0) {
            if (!CHECK_EQ_I(ok, 1)) { /* committed exactly once */
                fprintf(stderr, "    (shared id %d: %d OK out of %d submissions)\n", k, ok, submitted);
            }
            expected_net += shared_amount(k);
            expected_count++;
        }
    }
    for (int t = 0; t < TH_WRITERS; t++) {
        for (int i = 0; i < TH_ITERS; i++) {
            ledger_tx_record r = LOOKUP(l, distinct_id(t, i));
            CHECK_EQ_U(r.tx.device_id, (uint64_t)t + 1);
        }
    }
    ledger_tx_record *all = NULL;
    size_t n = list_all(l, TH_CLIENT, 64, &all);
    CHECK_EQ_U(n, expected_count);
    int64_t listed = 0;
    for (size_t i = 0; i < n; i++) {
        listed += all[i].tx.amount;
        if (i > 0) {
            CHECK(all[i].seq > all[i - 1].seq);
            CHECK(all[i].timestamp_ns > all[i - 1].timestamp_ns);
        }
    }
    CHECK_EQ_I(listed, expected_net);
    ledger_balance b = BALANCE(l, TH_CLIENT, "USD");
    CHECK_EQ_I(b.net, expected_net);
    CHECK_EQ_I(b.captured, expected_net);
    CHECK_EQ_I(b.settled_net + b.open_net, b.net);
    /* Every sale counts in exactly one batch: the batches add up to the balance. */
    uint64_t batch_payments = 0;
    int64_t batch_net = 0, settled = 0;
    for (uint64_t id = 1;; id++) {
        ledger_batch_summary s;
        int rc = ledger_batch_get(l, id, &s);
        if (rc == LEDGER_ERR_NOT_FOUND) {
            break;
        }
        if (!CHECK_OK(rc)) {
            break;
        }
        CHECK_EQ_U(s.client_id, TH_CLIENT);
        batch_payments += s.payment_count;
        batch_net += s.net;
        if (s.closed_ns != 0) {
            settled += s.net;
        }
    }
    for (size_t i = 0; i < n; i++) {
        CHECK(all[i].batch_id != 0);
    }
    free(all);
    CHECK_EQ_U(batch_payments, expected_count);
    CHECK_EQ_I(batch_net, expected_net);
    CHECK_EQ_I(settled, b.settled_net);
    ledger_close(l);
}

/* ----- persistence ---------------------------------------------------------------------- */

static void test_reopen_persistence(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger *l = OPEN(path);
    if (!l) {
        return;
    }
    enum { N = 60 };
    ledger_tx txs[N];
    size_t n = 0;
    /* Two clients, two currencies, every kind and state, batch closes, authorizations
     * captured in a later batch. */
    ledger_id carry[2] = {{0, 0}, {0, 0}};
    for (int round = 0; round < 3; round++) {
        for (uint64_t client = MERCHANT; client <= OTHER_MERCHANT; client++) {
            const char *cur = client == MERCHANT ? "USD" : "EUR";
            ledger_id s = nid(), a = nid(), b = nid(), later = nid();
            ledger_tx ninth = round == 0 ? in(adjust(nid(), client, 3), cur)
                                         : in(capture(nid(), carry[client - MERCHANT], client, 50), cur);
            carry[client - MERCHANT] = later;
            ledger_tx batch[] = {in(sale(s, client, 1000 + round), cur),
                                 in(auth(a, client, 700), cur),
                                 in(capture(nid(), a, client, 650), cur),
                                 in(refund(nid(), s, client, 100), cur),
                                 in(auth(b, client, 300), cur),
                                 in(void_tx(nid(), b, client), cur),
                                 in(adjust(nid(), client, -7), cur),
                                 in(auth(later, client, 55), cur),
                                 ninth};
            uint32_t want[9] = {0};
            SUBMIT_N(l, batch, want);
            for (size_t i = 0; i < 9; i++) {
                txs[n++] = batch[i];
            }
            if (round < 2) {
                CHECK_OK(ledger_batch_close(l, client, cur, NULL));
            }
        }
    }
    ledger_tx_record before[N];
    uint64_t max_seq = 0, max_ts = 0;
    for (size_t i = 0; i < n; i++) {
        before[i] = LOOKUP(l, txs[i].id);
        if (before[i].seq > max_seq) {
            max_seq = before[i].seq;
            max_ts = before[i].timestamp_ns;
        }
    }
    ledger_balance bal_before[2] = {BALANCE(l, MERCHANT, "USD"), BALANCE(l, OTHER_MERCHANT, "EUR")};
    ledger_batch_summary batches_before[16];
    uint64_t batch_count = 0;
    while (batch_count < 16 && ledger_batch_get(l, batch_count + 1, &batches_before[batch_count]) == LEDGER_OK) {
        batch_count++;
    }
    CHECK_EQ_U(batch_count, 6);
    ledger_tx_record *list_before = NULL;
    size_t listed_before = list_all(l, MERCHANT, 7, &list_before);
    ledger_close(l);

    if (!(l = OPEN(path))) {
        free(list_before);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        ledger_tx_record after = LOOKUP(l, txs[i].id);
        CHECK_RECORD_EQ(after, before[i]);
    }
    ledger_balance bal_after[2] = {BALANCE(l, MERCHANT, "USD"), BALANCE(l, OTHER_MERCHANT, "EUR")};
    for (int i = 0; i < 2; i++) {
        CHECK_BALANCE(bal_after[i], bal_before[i].captured, bal_before[i].refunded, bal_before[i].adjusted,
                      bal_before[i].net, bal_before[i].settled_net, bal_before[i].open_net);
    }
    for (uint64_t i = 0; i < batch_count; i++) {
        ledger_batch_summary s;
        if (CHECK_OK(ledger_batch_get(l, i + 1, &s))) {
            CHECK_BATCH_EQ(s, batches_before[i]);
        }
    }
    ledger_tx_record *list_after = NULL;
    size_t listed_after = list_all(l, MERCHANT, 5, &list_after);
    if (CHECK_EQ_U(listed_after, listed_before)) {
        for (size_t i = 0; i < listed_after; i++) {
            CHECK_RECORD_EQ(list_after[i], list_before[i]);
        }
    }
    free(list_before);
    free(list_after);
    /* Retries after the reopen are recognized... */
    for (size_t i = 0; i < n; i++) {
        EXPECT_TX(l, txs[i], LEDGER_TX_EXISTS);
    }
    /* ...and new commits continue after the old ones. */
    ledger_id fresh = nid();
    EXPECT_TX(l, sale(fresh, MERCHANT, 1), LEDGER_TX_OK);
    ledger_tx_record fr = LOOKUP(l, fresh);
    CHECK(fr.seq > max_seq);
    CHECK(fr.timestamp_ns > max_ts);
    CHECK(fr.batch_id == batches_before[4].batch_id || fr.batch_id == batches_before[5].batch_id);
    ledger_batch_summary s;
    CHECK_OK(ledger_batch_close(l, MERCHANT, "USD", &s));
    CHECK_EQ_I(s.net, bal_before[0].open_net + 1);
    CHECK_STATUS(ledger_batch_get(l, batch_count + 1, &s), LEDGER_ERR_NOT_FOUND);
    ledger_close(l);
}

static void test_many_segments_reopen(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger_options o = test_options();
    o.segment_bytes = 64 * 1024; /* a few hundred frames per segment */
    ledger *l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    enum { CALLS = 32, PER_CALL = 64 };
    int64_t sum = 0;
    for (int c = 0; c < CALLS; c++) {
        ledger_tx txs[PER_CALL];
        uint32_t res[PER_CALL];
        for (int i = 0; i < PER_CALL; i++) {
            txs[i] = sale(mkid(0x5e6, (uint64_t)(c * PER_CALL + i) + 1), MERCHANT, c * PER_CALL + i + 1);
            txs[i].user_data = (uint64_t)c;
            sum += txs[i].amount;
        }
        if (CHECK_OK(ledger_submit(l, txs, PER_CALL, res))) {
            for (int i = 0; i < PER_CALL; i++) {
                CHECK_TX(res[i], LEDGER_TX_OK);
            }
        }
    }
    ledger_close(l);
    int segments = 0;
    DIR *d = opendir(path);
    if (CHECK(d != NULL)) {
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            size_t len = strlen(ent->d_name);
            segments += len > 4 && strcmp(ent->d_name + len - 4, ".seg") == 0;
        }
        closedir(d);
    }
    CHECK(segments > 1); /* the log rolled over */
    l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    for (int i = 0; i < CALLS * PER_CALL; i++) {
        ledger_tx_record r = LOOKUP(l, mkid(0x5e6, (uint64_t)i + 1));
        CHECK_EQ_I(r.tx.amount, i + 1);
        CHECK_EQ_U(r.tx.user_data, (uint64_t)(i / PER_CALL));
    }
    CHECK_EQ_I(BALANCE(l, MERCHANT, "USD").net, sum);
    ledger_close(l);
}

/* More than 2^20 records: enough for the engine to write a snapshot of its state (its
 * default interval) and, on reopen, load it and replay the log after it. Whatever the
 * reopen does inside, what the ABI returns must be what it returned before. */
enum { MR_CALLS = 134, MR_PER_CALL = 8000, MR_CLIENTS = 4, MR_SAMPLE_EVERY = 101 };

static ledger_id mr_id(int call, int i) {
    return mkid(0x111, (uint64_t)call * MR_PER_CALL + (uint64_t)i + 1);
}

static void test_reopen_after_a_million_records(const char *dir) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    ledger_options o = test_options();
    o.sync = LEDGER_SYNC_NONE; /* speed; close makes it durable */
    o.segment_bytes = 16 << 20;
    ledger *l = NULL;
    if (!CHECK_OK(ledger_open(path, &o, &l))) {
        return;
    }
    ledger_tx *txs = malloc(MR_PER_CALL * sizeof *txs);
    uint32_t *res = malloc(MR_PER_CALL * sizeof *res);
    bool ok = true;
    for (int c = 0; c < MR_CALLS && ok; c++) {
        for (int i = 0; i < MR_PER_CALL; i++) {
            uint64_t client = 1 + (uint64_t)(i / 10) % MR_CLIENTS; /* a block of 10 shares a client */
            ledger_id id = mr_id(c, i);
            switch (i % 10) {
            case 6:
                txs[i] = auth(id, client, 500);
                break;
            case 7: /* the authorization just before: captured, or voided */
                txs[i] = c % 3 == 1 ? void_tx(id, mr_id(c, i - 1), client) : capture(id, mr_id(c, i - 1), client, 300);
                break;
            case 8: /* the sale of this block, or of the same block one call earlier */
                txs[i] = refund(id, mr_id(c % 2 == 0 && c > 0 ? c - 1 : c, i - 8), client, 1);
                break;
            case 9:
                txs[i] = adjust(id, client, -(int64_t)(i % 5 + 1));
                break;
            default:
                txs[i] = sale(id, client, (int64_t)(i % 97) + 2);
            }
            txs[i].user_data = (uint64_t)c;
        }
        ok = CHECK_OK(ledger_submit(l, txs, MR_PER_CALL, res));
        for (int i = 0; i < MR_PER_CALL && ok; i++) {
            ok = CHECK_TX(res[i], LEDGER_TX_OK);
        }
        if (ok && c % 5 == 4) {
            CHECK_OK(ledger_batch_close(l, 1, "USD", NULL));
            CHECK_OK(ledger_batch_close(l, 2, "USD", NULL));
        }
    }
    if (!ok) {
        free(txs);
        free(res);
        ledger_close(l);
        return;
    }
    size_t samples = (size_t)MR_CALLS * MR_PER_CALL / MR_SAMPLE_EVERY + 1, ns = 0;
    ledger_tx_record *before = malloc(samples * sizeof *before);
    for (size_t k = 0; k < (size_t)MR_CALLS * MR_PER_CALL; k += MR_SAMPLE_EVERY) {
        before[ns++] = LOOKUP(l, mkid(0x111, k + 1));
    }
    ledger_balance bal[MR_CLIENTS];
    for (int c = 0; c < MR_CLIENTS; c++) {
        bal[c] = BALANCE(l, (uint64_t)c + 1, "USD");
        CHECK_EQ_I(bal[c].settled_net + bal[c].open_net, bal[c].net);
    }
    size_t nb = 0;
    ledger_batch_summary *batches = malloc(256 * sizeof *batches);
    while (nb < 256 && ledger_batch_get(l, nb + 1, &batches[nb]) == LEDGER_OK) {
        nb++;
    }
    CHECK_EQ_U(nb, 2 * (MR_CALLS / 5) + MR_CLIENTS);
    /* A page from the middle of a client's history. */
    ledger_tx_record *page_before = malloc(1000 * sizeof *page_before), *page_after = malloc(1000 * sizeof *page_after);
    size_t np_before = 0, np_after = 0;
    uint64_t mid_seq = before[ns / 2].seq;
    CHECK_OK(ledger_list(l, 3, mid_seq, page_before, 1000, &np_before));
    CHECK_EQ_U(np_before, 1000);
    ledger_close(l);

    l = NULL;
    o.sync = LEDGER_SYNC_ALWAYS;
    if (CHECK_OK(ledger_open(path, &o, &l))) {
        size_t mismatched = 0;
        for (size_t k = 0; k < ns; k++) {
            ledger_tx_record after = LOOKUP(l, before[k].tx.id);
            if (memcmp(&after, &before[k], sizeof after) != 0 && mismatched++ < 3) {
                CHECK_RECORD_EQ(after, before[k]);
            }
        }
        CHECK_EQ_U(mismatched, 0);
        for (int c = 0; c < MR_CLIENTS; c++) {
            ledger_balance b = BALANCE(l, (uint64_t)c + 1, "USD");
            CHECK_BALANCE(b, bal[c].captured, bal[c].refunded, bal[c].adjusted, bal[c].net, bal[c].settled_net,
                          bal[c].open_net);
        }
        for (size_t b = 0; b < nb; b++) {
            ledger_batch_summary got;
            if (CHECK_OK(ledger_batch_get(l, b + 1, &got))) {
                CHECK_BATCH_EQ(got, batches[b]);
            }
        }
        ledger_batch_summary none;
        CHECK_STATUS(ledger_batch_get(l, nb + 1, &none), LEDGER_ERR_NOT_FOUND);
        CHECK_OK(ledger_list(l, 3, mid_seq, page_after, 1000, &np_after));
        if (CHECK_EQ_U(np_after, np_before)) {
            CHECK(memcmp(page_after, page_before, np_after * sizeof *page_after) == 0);
        }
        /* The last call again: all there. Then one more, after everything. */
        if (CHECK_OK(ledger_submit(l, txs, MR_PER_CALL, res))) {
            size_t exists = 0;
            for (int i = 0; i < MR_PER_CALL; i++) {
                exists += res[i] == LEDGER_TX_EXISTS;
            }
            CHECK_EQ_U(exists, MR_PER_CALL);
        }
        ledger_id fresh = nid();
        EXPECT_TX(l, sale(fresh, 1, 5), LEDGER_TX_OK);
        ledger_tx_record fr = LOOKUP(l, fresh), last = LOOKUP(l, mr_id(MR_CALLS - 1, MR_PER_CALL - 1));
        CHECK(fr.seq > last.seq);
        CHECK_EQ_I(BALANCE(l, 1, "USD").net, bal[0].net + 5);
        ledger_close(l);
    }
    free(page_before);
    free(page_after);
    free(batches);
    free(before);
    free(txs);
    free(res);
}

/* ----- kill -9 ------------------------------------------------------------------------- */

enum { KILL_CLIENT = 7, KILL_CYCLES = 7 };
enum { KM_OPENED = 1, KM_ATTEMPT = 2, KM_ACK = 3, KM_ERROR = 4 };

/* One message from the child; 88 bytes, written whole (below PIPE_BUF: atomic). */
typedef struct {
    uint32_t tag;
    uint32_t call;
    ledger_tx tx;
} kill_msg;

static void send_msg(int fd, uint32_t tag, uint32_t call, const ledger_tx *tx) {
    kill_msg m;
    memset(&m, 0, sizeof m);
    m.tag = tag;
    m.call = call;
    if (tx) {
        m.tx = *tx;
    }
    if (write(fd, &m, sizeof m) != (ssize_t)sizeof m) {
        _exit(9);
    }
}

/* The child: opens the ledger and commits calls of one or two transactions as fast as
 * it can, telling the parent about each call before it is submitted and after it is
 * acknowledged, until it is killed. */
static void kill_child(const char *path, int fd, uint32_t sync, uint32_t cycle, uint64_t seed) {
    alarm(30);
    rng_state = seed | 1;
    ledger_options o = test_options();
    o.sync = sync;
    o.segment_bytes = 64 * 1024; /* roll-overs happen under the knife too */
    ledger *l = NULL;
    if (ledger_open(path, &o, &l) != LEDGER_OK) {
        send_msg(fd, KM_ERROR, 0, NULL);
        _exit(2);
    }
    send_msg(fd, KM_OPENED, 0, NULL);
    struct {
        ledger_id id;
        int64_t left;
    } sales[4096];
    size_t nsales = 0;
    uint64_t n = 0;
    for (uint32_t call = 1;; call++) {
        ledger_tx txs[2];
        size_t k = 1;
        int pattern = (int)(rnd() % 4);
        ledger_id id = mkid(0x9000 + cycle, ++n), id2 = mkid(0x9000 + cycle, ++n);
        int64_t amount = (int64_t)rnd_in(2, 10000), part = (int64_t)rnd_in(1, (uint64_t)amount - 1);
        size_t pick = 0;
        if (pattern == 3 && nsales > 0) {
            pick = (size_t)(rnd() % nsales);
            if (sales[pick].left == 0) {
                pattern = 4;
            }
        } else if (pattern == 3) {
            pattern = 0;
        }
        switch (pattern) {
        case 0:
            txs[0] = sale(id, KILL_CLIENT, amount);
            break;
        case 1:
            txs[0] = auth(id, KILL_CLIENT, amount);
            txs[1] = capture(id2, id, KILL_CLIENT, part);
            k = 2;
            break;
        case 2:
            txs[0] = sale(id, KILL_CLIENT, amount);
            txs[1] = refund(id2, id, KILL_CLIENT, part);
            k = 2;
            break;
        case 3:
            part = rnd() % 2 ? sales[pick].left : (int64_t)rnd_in(1, (uint64_t)sales[pick].left);
            txs[0] = refund(id, sales[pick].id, KILL_CLIENT, part);
            break;
        default:
            txs[0] = adjust(id, KILL_CLIENT, rnd() % 2 ? -part : part);
            break;
        }
        for (size_t i = 0; i < k; i++) {
            txs[i].device_id = cycle + 1;
            txs[i].user_data = n;
            send_msg(fd, KM_ATTEMPT, call, &txs[i]);
        }
        uint32_t res[2] = {UINT32_MAX, UINT32_MAX};
        if (ledger_submit(l, txs, k, res) != LEDGER_OK) {
            send_msg(fd, KM_ERROR, call, NULL);
            _exit(3);
        }
        for (size_t i = 0; i < k; i++) {
            if (res[i] != LEDGER_TX_OK) {
                send_msg(fd, KM_ERROR, call, &txs[i]);
                _exit(4);
            }
        }
        for (size_t i = 0; i < k; i++) {
            send_msg(fd, KM_ACK, call, &txs[i]);
        }
        if (rnd() % 16 == 0) { /* batch closes are records too, replayed after the crash */
            int rc = ledger_batch_close(l, KILL_CLIENT, "USD", NULL);
            if (rc != LEDGER_OK && rc != LEDGER_ERR_NOT_FOUND) {
                send_msg(fd, KM_ERROR, call, NULL);
                _exit(5);
            }
        }
        if (nsales < sizeof sales / sizeof sales[0]) {
            if (pattern == 0) {
                sales[nsales].id = id;
                sales[nsales++].left = amount;
            } else if (pattern == 2) {
                sales[nsales].id = id;
                sales[nsales++].left = amount - part;
            }
        }
        if (pattern == 3) {
            sales[pick].left -= part;
        }
    }
}

typedef struct {
    ledger_tx tx;
    uint64_t call; /* cycle << 32 | call */
    bool acked;
    bool seen; /* listed after the reopen */
} kill_entry;

typedef struct {
    kill_entry *e;
    size_t n, cap;
    id_map index;
} kill_log;

static kill_entry *kill_find(kill_log *log, ledger_id id) {
    size_t i = map_get(&log->index, id);
    return i == SIZE_MAX ? NULL : &log->e[i];
}

/* Everything acknowledged is there with its fields; everything there was submitted;
 * payments, refunds and the balance agree with each other. */
static void kill_verify(ledger *l, kill_log *log) {
    size_t acked = 0;
    for (size_t i = 0; i < log->n; i++) {
        log->e[i].seen = false;
        if (log->e[i].acked) {
            acked++;
            ledger_tx_record r;
            if (CHECK_OK(ledger_lookup(l, log->e[i].tx.id, &r))) {
                CHECK_TX_FIELDS(r.tx, log->e[i].tx);
            } else {
                fprintf(stderr, "    acknowledged id {%" PRIu64 ", %" PRIu64 "} lost\n", log->e[i].tx.id.hi,
                        log->e[i].tx.id.lo);
            }
        }
    }
    ledger_tx_record *all = NULL;
    size_t n = list_all(l, KILL_CLIENT, 1024, &all);
    /* What the listed captures and refunds say about each listed payment. */
    id_map pos = {NULL, 0, 0};
    int64_t *cap_sum = calloc(n + 1, sizeof *cap_sum), *ref_sum = calloc(n + 1, sizeof *ref_sum);
    int *captures = calloc(n + 1, sizeof *captures);
    uint64_t *capture_batch = calloc(n + 1, sizeof *capture_batch);
    for (size_t i = 0; i < n; i++) {
        map_put(&pos, all[i].tx.id, i);
        if (all[i].tx.kind == LEDGER_KIND_CAPTURE || all[i].tx.kind == LEDGER_KIND_REFUND) {
            size_t p = map_get(&pos, all[i].tx.ref);
            if (!CHECK(p != SIZE_MAX && p < i)) { /* refs point backwards, to listed payments */
                continue;
            }
            if (all[i].tx.kind == LEDGER_KIND_CAPTURE) {
                captures[p]++;
                cap_sum[p] += all[i].tx.amount;
                capture_batch[p] = all[i].batch_id;
            } else {
                ref_sum[p] += all[i].tx.amount;
            }
        }
    }
    map_free(&pos);
    int64_t captured = 0, refunded = 0, adjusted = 0;
    size_t seen_acked = 0;
    for (size_t i = 0; i < n; i++) {
        kill_entry *e = kill_find(log, all[i].tx.id);
        if (!CHECK(e != NULL)) { /* never submitted: must not exist */
            continue;
        }
        CHECK(!e->seen);
        e->seen = true;
        seen_acked += e->acked;
        CHECK_TX_FIELDS(all[i].tx, e->tx);
        if (i > 0) {
            CHECK(all[i].seq > all[i - 1].seq);
            CHECK(all[i].timestamp_ns > all[i - 1].timestamp_ns);
        }
        const ledger_tx *t = &all[i].tx;
        switch (t->kind) {
        case LEDGER_KIND_PAYMENT: {
            CHECK(captures[i] <= 1);
            if (t->flags & LEDGER_FLAG_AUTH_ONLY) {
                CHECK_EQ_I(all[i].captured, cap_sum[i]);
                CHECK_EQ_U(all[i].batch_id, capture_batch[i]); /* 0 while only authorized */
            } else {
                CHECK_EQ_I(captures[i], 0);
                CHECK_EQ_I(all[i].captured, t->amount);
                captured += t->amount;
            }
            CHECK_EQ_I(all[i].refunded, ref_sum[i]);
            uint32_t state = all[i].captured == 0         ? LEDGER_STATE_AUTHORIZED
                             : ref_sum[i] == 0            ? LEDGER_STATE_CAPTURED
                             : ref_sum[i] < all[i].captured ? LEDGER_STATE_PARTIALLY_REFUNDED
                                                            : LEDGER_STATE_REFUNDED;
            CHECK_STATE(all[i].state, state);
            break;
        }
        case LEDGER_KIND_CAPTURE:
            captured += t->amount;
            CHECK_STATE(all[i].state, LEDGER_STATE_APPLIED);
            break;
        case LEDGER_KIND_REFUND:
            refunded += t->amount;
            CHECK_STATE(all[i].state, LEDGER_STATE_APPLIED);
            break;
        case LEDGER_KIND_ADJUSTMENT:
            adjusted += t->amount;
            CHECK_STATE(all[i].state, LEDGER_STATE_APPLIED);
            break;
        default:
            CHECK(false);
        }
    }
    /* Batches: every sale, capture, refund and adjustment counts in exactly one, and the
     * totals of each are the sums of what counts in it. */
    size_t nb = 0, capb = 64;
    ledger_batch_summary *bs = malloc(capb * sizeof *bs);
    for (;;) {
        if (nb == capb) {
            capb *= 2;
            bs = realloc(bs, capb * sizeof *bs);
        }
        int rc = ledger_batch_get(l, nb + 1, &bs[nb]);
        if (rc == LEDGER_ERR_NOT_FOUND || !CHECK_OK(rc)) {
            break;
        }
        nb++;
    }
    ledger_batch_summary *tally = calloc(nb + 1, sizeof *tally);
    for (size_t i = 0; i < n; i++) {
        const ledger_tx *t = &all[i].tx;
        bool counts = t->kind != LEDGER_KIND_VOID && !(t->kind == LEDGER_KIND_PAYMENT && (t->flags & LEDGER_FLAG_AUTH_ONLY));
        if (!counts) {
            continue;
        }
        uint64_t b = all[i].batch_id;
        if (!CHECK(b >= 1 && b <= nb)) {
            continue;
        }
        ledger_batch_summary *y = &tally[b - 1];
        CHECK(all[i].seq >= bs[b - 1].first_seq && all[i].seq <= bs[b - 1].last_seq);
        if (t->kind == LEDGER_KIND_PAYMENT || t->kind == LEDGER_KIND_CAPTURE) {
            y->payment_count++;
            y->payment_total += t->amount;
        } else if (t->kind == LEDGER_KIND_REFUND) {
            y->refund_count++;
            y->refund_total += t->amount;
        } else {
            y->adjustment_count++;
            y->adjustment_total += t->amount;
        }
    }
    int64_t settled = 0, open = 0;
    int open_batches = 0;
    for (size_t b = 0; b < nb; b++) {
        CHECK_EQ_U(bs[b].client_id, KILL_CLIENT);
        CHECK_EQ_U(bs[b].payment_count, tally[b].payment_count);
        CHECK_EQ_I(bs[b].payment_total, tally[b].payment_total);
        CHECK_EQ_U(bs[b].refund_count, tally[b].refund_count);
        CHECK_EQ_I(bs[b].refund_total, tally[b].refund_total);
        CHECK_EQ_U(bs[b].adjustment_count, tally[b].adjustment_count);
        CHECK_EQ_I(bs[b].adjustment_total, tally[b].adjustment_total);
        CHECK_EQ_I(bs[b].net, tally[b].payment_total - tally[b].refund_total + tally[b].adjustment_total);
        if (bs[b].closed_ns != 0) {
            settled += bs[b].net;
        } else {
            open += bs[b].net;
            open_batches++;
        }
    }
    CHECK(open_batches <= 1);
    free(bs);
    free(tally);
    free(cap_sum);
    free(ref_sum);
    free(captures);
    free(capture_batch);
    free(all);
    CHECK_EQ_U(seen_acked, acked);
    CHECK_BALANCE(BALANCE(l, KILL_CLIENT, "USD"), captured, refunded, adjusted, captured - refunded + adjusted,
                  settled, open);
}

static void kill9_cycles(const char *dir, uint32_t sync, uint32_t cycles) {
    char path[PATH_MAX];
    join_path(path, sizeof path, dir, "ledger");
    kill_log log = {NULL, 0, 0, {NULL, 0, 0}};
    size_t total_acked = 0;
    int opened_cycles = 0;
    for (uint32_t cycle = 0; cycle < cycles; cycle++) {
        int p[2];
        if (!CHECK(pipe(p) == 0)) {
            break;
        }
        uint64_t seed = rnd();
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            close(p[0]);
            kill_child(path, p[1], sync, cycle, seed);
            _exit(0);
        }
        close(p[1]);
        if (!CHECK(pid > 0)) {
            close(p[0]);
            break;
        }
        /* Collect the child's messages for a random while, then kill it mid-flight. */
        /* The first cycle dies young: during the open, or the creation of the first segment. */
        long lifetime_ms = cycle == 0 ? (long)rnd_in(0, 4) : (long)rnd_in(40, 250);
        size_t have = 0, cap = 1 << 16;
        unsigned char *buf = malloc(cap);
        struct timespec start, now;
        clock_gettime(CLOCK_MONOTONIC, &start);
        bool eof = false;
        for (;;) {
            clock_gettime(CLOCK_MONOTONIC, &now);
            long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
            if (elapsed >= lifetime_ms || eof) {
                break;
            }
            struct pollfd pfd = {p[0], POLLIN, 0};
            if (poll(&pfd, 1, (int)(lifetime_ms - elapsed)) <= 0) {
                continue;
            }
            if (cap - have < 4096) {
                cap *= 2;
                buf = realloc(buf, cap);
            }
            ssize_t got = read(p[0], buf + have, cap - have);
            if (got <= 0) {
                eof = true; /* the child ended by itself: an error, reported below */
            } else {
                have += (size_t)got;
            }
        }
        kill(pid, SIGKILL);
        int st = 0;
        waitpid(pid, &st, 0);
        for (;;) { /* what it wrote before it died */
            if (cap - have < 4096) {
                cap *= 2;
                buf = realloc(buf, cap);
            }
            ssize_t got = read(p[0], buf + have, cap - have);
            if (got <= 0) {
                break;
            }
            have += (size_t)got;
        }
        close(p[0]);
        if (!CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL)) {
            fprintf(stderr, "    cycle %u: the child ended by itself (status %d)\n", cycle, st);
        }
        size_t acked_now = 0;
        for (size_t off = 0; off + sizeof(kill_msg) <= have; off += sizeof(kill_msg)) {
            kill_msg m;
            memcpy(&m, buf + off, sizeof m);
            if (m.tag == KM_OPENED) {
                opened_cycles++;
            } else if (m.tag == KM_ERROR) {
                CHECK(m.tag != KM_ERROR);
                fprintf(stderr, "    cycle %u: the child failed at call %u (id lo %" PRIu64 ")\n", cycle, m.call,
                        m.tx.id.lo);
            } else if (m.tag == KM_ATTEMPT) {
                if (log.n == log.cap) {
                    log.cap = log.cap ? 2 * log.cap : 1024;
                    log.e = realloc(log.e, log.cap * sizeof *log.e);
                }
                kill_entry e = {m.tx, (uint64_t)cycle << 32 | m.call, false, false};
                CHECK(kill_find(&log, m.tx.id) == NULL);
                map_put(&log.index, m.tx.id, log.n);
                log.e[log.n++] = e;
            } else if (m.tag == KM_ACK) {
                kill_entry *e = kill_find(&log, m.tx.id);
                if (CHECK(e != NULL)) {
                    e->acked = true;
                    acked_now++;
                }
            }
        }
        free(buf);
        total_acked += acked_now;

        /* Reopen: recovery after the crash, then everything acknowledged is there. */
        ledger *l = OPEN(path);
        if (!l) {
            break;
        }
        kill_verify(l, &log);
        /* Retry the call that was in flight (ids make it safe): each entry is either
         * already there (a prefix of the call may have been written) or committed now. */
        uint64_t last_call = log.n ? log.e[log.n - 1].call : 0;
        int retried = 0, were_there = 0;
        for (size_t i = 0; i < log.n; i++) {
            if (log.e[i].call == last_call && (last_call >> 32) == cycle && !log.e[i].acked) {
                uint32_t r = SUBMIT1(l, log.e[i].tx);
                retried++;
                were_there += r == LEDGER_TX_EXISTS;
                if (CHECK(r == LEDGER_TX_OK || r == LEDGER_TX_EXISTS)) {
                    log.e[i].acked = true;
                } else {
                    fprintf(stderr, "    retry of an in-flight transaction: %s\n", tx_result_name(r));
                }
            }
        }
        kill_verify(l, &log);
        ledger_close(l);
        printf("     %s cycle %u: killed after %3ld ms, %5zu acknowledged (%zu in all), %d in flight (%d of "
               "them committed)\n",
               sync == LEDGER_SYNC_ALWAYS ? "sync=always" : "sync=none", cycle, lifetime_ms, acked_now, total_acked,
               retried, were_there);
    }
    CHECK(opened_cycles > 0);
    CHECK(total_acked > 0);
    free(log.e);
    map_free(&log.index);
}

static void test_kill9_cycles(const char *dir) {
    kill9_cycles(dir, LEDGER_SYNC_ALWAYS, KILL_CYCLES);
}

/* The header: with LEDGER_SYNC_NONE "a crash of the machine may lose the tail"; a
 * process killed outright loses nothing acknowledged (it is in the page cache). */
static void test_kill9_cycles_sync_none(const char *dir) {
    kill9_cycles(dir, LEDGER_SYNC_NONE, 3);
}

/* ----- main -------------------------------------------------------------------------------- */

static const test_case CASES[] = {
    {"abi_constants_and_version", test_abi_constants_and_version},
    {"open_defaults_creates_parents", test_open_defaults_creates_parents},
    {"sync_none_persists_after_close", test_sync_none_persists_after_close},
    {"tiny_hot_budget_keeps_old_payments_exact", test_tiny_hot_budget_keeps_old_payments_exact},
    {"status_invalid_argument_null_pointers", test_status_invalid_argument_null_pointers},
    {"status_invalid_argument_options", test_status_invalid_argument_options},
    {"status_io_path_is_regular_file", test_status_io_path_is_regular_file},
    {"status_corrupt_durable_frame_damaged", test_status_corrupt_durable_frame_damaged},
    {"torn_final_frame_is_cut_not_refused", test_torn_final_frame_is_cut_not_refused},
    {"status_not_found", test_status_not_found},
    {"status_locked_same_process", test_status_locked_same_process},
    {"status_locked_forked_child", test_status_locked_forked_child},
    {"last_error_per_thread", test_last_error_per_thread},
    {"tx_ok_and_exists", test_tx_ok_and_exists},
    {"tx_exists_different", test_tx_exists_different},
    {"tx_invalid_amount", test_tx_invalid_amount},
    {"tx_invalid_currency", test_tx_invalid_currency},
    {"tx_invalid_kind", test_tx_invalid_kind},
    {"tx_reserved_nonzero_in_a_mixed_call", test_tx_reserved_nonzero_in_a_mixed_call},
    {"rejected_id_is_judged_afresh", test_rejected_id_is_judged_afresh},
    {"tx_ref_not_found", test_tx_ref_not_found},
    {"tx_ref_wrong_state", test_tx_ref_wrong_state},
    {"tx_exceeds_ref_amount", test_tx_exceeds_ref_amount},
    {"tx_currency_mismatch", test_tx_currency_mismatch},
    {"states_and_amounts_via_lookup", test_states_and_amounts_via_lookup},
    {"record_fields_round_trip", test_record_fields_round_trip},
    {"same_call_references", test_same_call_references},
    {"list_pagination", test_list_pagination},
    {"batch_close_and_get", test_batch_close_and_get},
    {"feed_returns_committed_records_in_order", test_feed_returns_committed_records_in_order},
    {"feed_follows_a_concurrent_writer", test_feed_follows_a_concurrent_writer},
    {"feed_holding_and_cold_history", test_feed_holding_and_cold_history},
    {"balance_fields", test_balance_fields},
    {"int64_overflow_is_invalid_amount", test_int64_overflow_is_invalid_amount},
    {"threads_share_one_handle", test_threads_share_one_handle},
    {"reopen_persistence", test_reopen_persistence},
    {"many_segments_reopen", test_many_segments_reopen},
    {"reopen_after_a_million_records", test_reopen_after_a_million_records},
    {"kill9_cycles", test_kill9_cycles},
    {"kill9_cycles_sync_none", test_kill9_cycles_sync_none},
};

int main(int argc, char **argv) {
    const char *label = "test_ledger";
    const char *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--label") == 0 && i + 1 < argc) {
            label = argv[++i];
        } else {
            filter = argv[i];
        }
    }
    const char *env_seed = getenv("LEDGER_CTEST_SEED");
    uint64_t seed = env_seed ? strtoull(env_seed, NULL, 0) : (uint64_t)wall_ns() ^ ((uint64_t)getpid() << 32);
    rng_state = seed ? seed : 1;
    printf("%s: %s, seed LEDGER_CTEST_SEED=%" PRIu64 "\n", label, ledger_version(), seed);
    int failed = run_tests(CASES, sizeof CASES / sizeof CASES[0], filter, label);
    return failed == 0 ? 0 : 1;
}
