"""README's session, and more, through a client generated from the service's own
OpenAPI document (openapi-python-client), with typed results.

Usage: session.py BASE_URL ADMIN_EMAIL ADMIN_PASSWORD  (the generated package
`portal_client` on PYTHONPATH; scripts/python-client.sh sets all of it up).

Every call goes through the generated functions and models: if the document did not
describe a request or an answer as the service makes it, the call would not build or
the answer would not parse into its model, and this script fails.
"""

import sys

from portal_client import AuthenticatedClient, Client
from portal_client.api.auth import post_v1authlogin
from portal_client.api.balance import get_v1balance
from portal_client.api.batches import get_v1batchesidreconciliation, post_v1batchesclose
from portal_client.api.clients import post_v1clients, post_v1clientsidapplications
from portal_client.api.reports import get_v1reportstransactions
from portal_client.api.transactions import (
    get_v1transactionsid,
    get_v1transactionsidhistory,
    post_v1transactions,
    post_v1transactionsidcapture,
    post_v1transactionsidrefunds,
    post_v1transactionsidvoid,
)
from portal_client.models import (
    AmountBody,
    Balance,
    Batch,
    CloseRequest,
    CloseRequestCurrency,
    Error,
    LoginAnswer,
    LoginRequest,
    NewApplication,
    NewApplicationAnswer,
    NewClient,
    NewTransaction,
    NewTransactionCurrency,
    NewTransactionKind,
    Reconciliation,
    Transaction,
    TransactionHistory,
    TransactionReport,
    TransactionStatus,
)
from portal_client.models import Client as ClientModel


def typed(answer, model):
    """The answer, which must have parsed into `model` (not an Error, not None)."""
    if not isinstance(answer, model):
        raise AssertionError(f"expected a {model.__name__}, got {answer!r}")
    return answer


def main():
    base, email, password = sys.argv[1:4]
    anonymous = Client(base_url=base, raise_on_unexpected_status=True)
    login = typed(post_v1authlogin.sync(client=anonymous, body=LoginRequest(email=email, password=password)), LoginAnswer)
    admin = AuthenticatedClient(base_url=base, token=login.token, raise_on_unexpected_status=True)

    # README's session: a client, an application key, a payment with an
    # Idempotency-Key, a partial refund, the batch closed, the balance.
    client = typed(post_v1clients.sync(client=admin, body=NewClient(name="Corner Cafe")), ClientModel)
    app = typed(post_v1clientsidapplications.sync(client.id, client=admin, body=NewApplication(name="till")), NewApplicationAnswer)
    till = AuthenticatedClient(base_url=base, token=app.api_key, raise_on_unexpected_status=True)
    payment = NewTransaction(kind=NewTransactionKind.PAYMENT, amount="12.50", currency=NewTransactionCurrency.USD)
    tx = typed(post_v1transactions.sync(client=till, body=payment, idempotency_key="order-1001"), Transaction)
    assert tx.status == TransactionStatus.CAPTURED and tx.amount == "12.50", tx
    again = typed(post_v1transactions.sync(client=till, body=payment, idempotency_key="order-1001"), Transaction)
    assert again.id == tx.id, "the same Idempotency-Key answers the same payment"
    refund = typed(post_v1transactionsidrefunds.sync(tx.id, client=till, body=AmountBody(amount="2.50")), Transaction)
    assert refund.ref_id == tx.id and refund.amount == "2.50", refund

    # An authorization captured in part, another voided, a refund too large refused.
    held = NewTransaction(kind=NewTransactionKind.PAYMENT, amount="40.00", currency=NewTransactionCurrency.USD, capture=False)
    auth = typed(post_v1transactions.sync(client=till, body=held), Transaction)
    assert auth.status == TransactionStatus.AUTHORIZED, auth
    capture = typed(post_v1transactionsidcapture.sync(auth.id, client=till, body=AmountBody(amount="30.00")), Transaction)
    assert capture.ref_id == auth.id, capture
    other = typed(post_v1transactions.sync(client=till, body=held), Transaction)
    typed(post_v1transactionsidvoid.sync(other.id, client=till), Transaction)
    voided = typed(get_v1transactionsid.sync(other.id, client=till), Transaction)
    assert voided.status == TransactionStatus.VOIDED, voided
    too_much = post_v1transactionsidrefunds.sync_detailed(tx.id, client=till, body=AmountBody(amount="50.00"))
    assert too_much.status_code == 422, too_much
    error = typed(too_much.parsed, Error)
    assert error.error.code == "refund_exceeds_captured", error
    history = typed(get_v1transactionsidhistory.sync(tx.id, client=till), TransactionHistory)
    assert refund.id in [t.id for t in history.events], history

    # The batch closed, reconciled against its transactions, and the balance settled.
    batch = typed(post_v1batchesclose.sync(client=till, body=CloseRequest(currency=CloseRequestCurrency.USD)), Batch)
    assert batch.net == "40.00", f"12.50 - 2.50 + 30.00 captured: {batch}"
    reconciliation = typed(get_v1batchesidreconciliation.sync(batch.id, client=till), Reconciliation)
    assert reconciliation.matches and reconciliation.transactions.net == batch.net, reconciliation
    balance = typed(get_v1balance.sync(client=till), Balance)
    usd = next(b for b in balance.data if b.currency == "USD")
    assert usd.settled_net == "40.00", usd

    # A report of the period, its totals typed.
    report = typed(get_v1reportstransactions.sync(client=till), TransactionReport)
    print(f"python client: session ok (payment {tx.id}, batch {batch.id} net {batch.net}, report {report.object_})")


if __name__ == "__main__":
    main()
