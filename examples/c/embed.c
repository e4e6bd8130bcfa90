/* embed.c: embedding the ledger in a C program through its C ABI (ledger-ffi).
 *
 * Opens a ledger, takes a sale, an authorization and its capture (one call: the capture
 * refers to the authorization before it), refunds part of the sale, retries the sale
 * (idempotent), closes the day's batch, prints the batch summary and the balance, and
 * closes the ledger.
 *
 *   make -C examples/c run        (builds libledger with cargo, then this program)
 *   embed [DIR]                   (DIR: where the ledger lives; default: a fresh
 *                                  temporary directory, removed at the end)
 */
#define _GNU_SOURCE
#include <ftw.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ledger.h"

#define MERCHANT 42u

/* Stops with the library's message when a call fails. */
static void must(int status, const char *what) {
    if (status != LEDGER_OK) {
        fprintf(stderr, "%s failed: status %d: %s\n", what, status, ledger_last_error());
        exit(1);
    }
}

static ledger_tx make_tx(uint32_t kind, uint32_t flags, ledger_id id, ledger_id ref, int64_t amount) {
    ledger_tx t;
    memset(&t, 0, sizeof t); /* reserved fields must be 0 */
    t.id = id;
    t.ref = ref;
    t.client_id = MERCHANT;
    t.device_id = 7; /* the terminal */
    t.amount = amount; /* minor units: cents */
    t.kind = kind;
    t.flags = flags;
    memcpy(t.currency, "USD", 4);
    return t;
}

/* Submits the transactions in one call (committed in order) and reports each result. */
static void submit(ledger *l, const ledger_tx *txs, size_t n, const char *const *labels) {
    uint32_t results[8];
    must(ledger_submit(l, txs, n, results), "ledger_submit");
    for (size_t i = 0; i < n; i++) {
        const char *name = results[i] == LEDGER_TX_OK       ? "committed"
                           : results[i] == LEDGER_TX_EXISTS ? "already committed, nothing changed"
                                                            : "REJECTED";
        printf("  %-36s %s (LEDGER_TX_* %u)\n", labels[i], name, results[i]);
        if (results[i] != LEDGER_TX_OK && results[i] != LEDGER_TX_EXISTS) {
            exit(1);
        }
    }
}

static const char *state_name(uint32_t state) {
    switch (state) {
    case LEDGER_STATE_AUTHORIZED: return "authorized";
    case LEDGER_STATE_CAPTURED: return "captured";
    case LEDGER_STATE_PARTIALLY_REFUNDED: return "partially refunded";
    case LEDGER_STATE_REFUNDED: return "refunded";
    case LEDGER_STATE_VOIDED: return "voided";
    case LEDGER_STATE_APPLIED: return "applied";
    default: return "?";
    }
}

static void print_money(const char *label, int64_t cents) {
    const char *sign = cents < 0 ? "-" : "";
    uint64_t abs = cents < 0 ? (uint64_t)0 - (uint64_t)cents : (uint64_t)cents;
    printf("  %-22s %s%" PRIu64 ".%02" PRIu64 " USD\n", label, sign, abs / 100, abs % 100);
}

static int remove_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv) {
    char temp[] = "/tmp/ledger-embed-XXXXXX";
    const char *dir = argc > 1 ? argv[1] : mkdtemp(temp);
    if (dir == NULL) {
        perror("mkdtemp");
        return 1;
    }
    printf("%s, ledger in %s\n", ledger_version(), dir);

    ledger *l = NULL;
    must(ledger_open(dir, NULL /* defaults: every submit durable before it returns */, &l), "ledger_open");

    /* Ids are chosen by the caller and are the idempotency keys (a retry with the same
     * id commits nothing twice). Here: {n, time of this run}, so that running again over
     * the same DIR makes new transactions. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t run = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
    ledger_id none = {0, 0};
    ledger_id sale_id = {1, run}, auth_id = {2, run}, capture_id = {3, run}, refund_id = {4, run};

    ledger_tx sale = make_tx(LEDGER_KIND_PAYMENT, 0, sale_id, none, 2500);
    const char *sale_label[] = {"sale of 25.00"};
    submit(l, &sale, 1, sale_label);

    ledger_tx auth_and_capture[2] = {
        make_tx(LEDGER_KIND_PAYMENT, LEDGER_FLAG_AUTH_ONLY, auth_id, none, 8000),
        make_tx(LEDGER_KIND_CAPTURE, 0, capture_id, auth_id, 6450), /* refers to the one before */
    };
    const char *auth_labels[] = {"authorization of 80.00", "  capture of 64.50, same call"};
    submit(l, auth_and_capture, 2, auth_labels);

    ledger_tx refund = make_tx(LEDGER_KIND_REFUND, 0, refund_id, sale_id, 500);
    const char *refund_label[] = {"refund of 5.00 on the sale"};
    submit(l, &refund, 1, refund_label);

    const char *retry_label[] = {"the sale again (a retry)"};
    submit(l, &sale, 1, retry_label);

    ledger_tx_record rec;
    must(ledger_lookup(l, auth_id, &rec), "ledger_lookup");
    printf("  the authorization is %s: %" PRId64 " of %" PRId64 " cents captured, in batch %" PRIu64 "\n",
           state_name(rec.state), rec.captured, rec.tx.amount, rec.batch_id);
    must(ledger_lookup(l, sale_id, &rec), "ledger_lookup");
    printf("  the sale is %s: %" PRId64 " of %" PRId64 " cents refunded\n", state_name(rec.state), rec.refunded,
           rec.captured);

    ledger_batch_summary batch;
    must(ledger_batch_close(l, MERCHANT, "USD", &batch), "ledger_batch_close");
    printf("closed batch %" PRIu64 " of client %" PRIu64 " (%s), seq %" PRIu64 "..%" PRIu64 ":\n", batch.batch_id,
           batch.client_id, batch.currency, batch.first_seq, batch.last_seq);
    printf("  %" PRIu64 " payments, %" PRIu64 " refunds, %" PRIu64 " adjustments\n", batch.payment_count,
           batch.refund_count, batch.adjustment_count);
    print_money("payments", batch.payment_total);
    print_money("refunds", batch.refund_total);
    print_money("adjustments", batch.adjustment_total);
    print_money("net", batch.net);

    ledger_balance balance;
    must(ledger_balance_get(l, MERCHANT, "USD", &balance), "ledger_balance_get");
    printf("balance of client %u:\n", MERCHANT);
    print_money("captured", balance.captured);
    print_money("refunded", balance.refunded);
    print_money("adjusted", balance.adjusted);
    print_money("net", balance.net);
    print_money("settled (closed)", balance.settled_net);
    print_money("open batch", balance.open_net);

    ledger_close(l);

    /* This run's batch holds exactly this run's money. */
    int ok = batch.payment_count == 2 && batch.payment_total == 2500 + 6450 && batch.refund_count == 1 &&
             batch.refund_total == 500 && batch.net == 2500 + 6450 - 500 && balance.open_net == 0;
    if (argc <= 1) {
        nftw(dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
    }
    if (!ok) {
        fprintf(stderr, "unexpected totals\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
