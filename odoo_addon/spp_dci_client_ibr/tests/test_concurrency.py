# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""Two Odoo workers at once: two real database connections in two threads, each with its
own committed transaction, retried on serialization failures the way Odoo retries a
request. The data is committed (a test cursor would serialise everything) and removed
afterwards."""

import json
import logging
import threading
import uuid
from datetime import timedelta
from unittest.mock import patch

from psycopg2 import OperationalError, errorcodes

from odoo import SUPERUSER_ID, api, fields
from odoo.modules.registry import DummyRLock, Registry
from odoo.tests import tagged
from odoo.tests.common import BaseCase, get_db_name

from .common import (
    DciSigner,
    callback_header,
    data_sources,
    envelope,
    event_from,
    now_ts,
    search_message,
)

RETRYABLE = frozenset(
    {
        errorcodes.SERIALIZATION_FAILURE,
        errorcodes.DEADLOCK_DETECTED,
        errorcodes.LOCK_NOT_AVAILABLE,
    }
)


@tagged("post_install", "-at_install")
class TestConcurrentWorkers(BaseCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.registry = Registry(get_db_name())
        # The test runner holds Registry._lock for the whole run; a worker thread building
        # an Environment on a new cursor would wait on it forever (Odoo's own HttpCase
        # lifts it the same way). Cursors stay real: each worker commits its own transaction.
        cls.startClassPatcher(patch.object(Registry, "_lock", DummyRLock()))

    def setUp(self):
        super().setUp()
        tag = uuid.uuid4().hex[:10]
        self.signer = DciSigner(f"race{tag}.registry", "k1")
        self.check_ids = []
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            self.sender_id = (
                env["spp.dci.ibr.sender"]
                .create(
                    {
                        "name": "Race registry",
                        "sender_id": self.signer.sender_id,
                        "key_ids": [
                            (
                                0,
                                0,
                                {
                                    "kid": self.signer.kid,
                                    "jwk": json.dumps(self.signer.public_jwk()),
                                },
                            )
                        ],
                    }
                )
                .id
            )
            self.source_id = (
                data_sources(env)
                .create(
                    {
                        "name": "Race registry",
                        "code": f"race_{tag}",
                        "base_url": "https://race.invalid",
                        "auth_type": "none",
                        "allow_unsigned": True,
                        "our_sender_id": "openspp.test",
                        "registry_sender_id": self.sender_id,
                    }
                )
                .id
            )
            self.partner_id = env["res.partner"].create({"name": f"Race {tag}"}).id
            self.callback_uid = env.ref("spp_dci_client_ibr.user_dci_ibr_callback").id
        self.addCleanup(self.cleanup)

    def cleanup(self):
        with self.registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            sender = self.signer.sender_id
            env["spp.dci.callback.log"].search([("sender_id", "=", sender)]).unlink()
            env["spp.dci.callback.replay"].search([("sender_id", "=", sender)]).unlink()
            env["spp.dci.duplication.check"].browse(self.check_ids).exists().unlink()
            data_sources(env).browse(self.source_id).unlink()
            env["spp.dci.ibr.sender"].browse(self.sender_id).unlink()
            env["res.partner"].browse(self.partner_id).unlink()

    # ----------------------------------------------------------- helpers

    def transaction(self, uid, func, attempts=10):
        """Run ``func(env)`` in its own committed transaction, retrying like Odoo."""
        for attempt in range(attempts):
            try:
                with self.registry.cursor() as cr:
                    return func(api.Environment(cr, uid, {}))
            except OperationalError as exc:
                if exc.pgcode not in RETRYABLE or attempt == attempts - 1:
                    raise
        return None

    def race(self, *funcs):
        """Run ``funcs`` at once in threads. The races are expected and handled: none of them
        may show up as an error in Odoo's log (PostgreSQL's "could not serialize access")."""
        errors_logged = []
        handler = logging.Handler(logging.ERROR)
        handler.emit = errors_logged.append
        logging.getLogger("odoo").addHandler(handler)
        try:
            results = self._race(*funcs)
        finally:
            logging.getLogger("odoo").removeHandler(handler)
        self.assertFalse([record.getMessage() for record in errors_logged])
        return results

    def _race(self, *funcs):
        barrier = threading.Barrier(len(funcs))
        results, errors = [None] * len(funcs), []

        def run(index, func):
            try:
                barrier.wait(timeout=30)
                results[index] = func()
            except Exception as exc:  # reported below, in the test thread
                errors.append(exc)

        threads = [
            threading.Thread(target=run, args=(index, func)) for index, func in enumerate(funcs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            self.assertFalse(thread.is_alive(), "a worker hung")
        if errors:
            raise errors[0]
        return results

    def pending_check(self, transaction_id, reference_id, sent_at=None, acked=True):
        """A check sent asynchronously; ``acked=False``: its ACK (and so its line's
        reference id) is not stored yet."""

        def create(env):
            check = env["spp.dci.duplication.check"].create(
                {
                    "partner_id": self.partner_id,
                    "identifier_type": "UIN",
                    "identifier_value": f"UIN-{reference_id}",
                    "data_source_id": self.source_id,
                }
            )
            check.write(
                {
                    "state": "checking",
                    "mode": "async",
                    "transaction_id": transaction_id,
                    "expected_sender_id": self.signer.sender_id,
                    "sent_at": sent_at or fields.Datetime.now(),
                }
            )
            env["spp.dci.duplication.check.detail"].create(
                {
                    "check_id": check.id,
                    "id_type": "UIN",
                    "id_value": f"UIN-{reference_id}",
                    "reference_id": reference_id if acked else False,
                    "status": "pending",
                }
            )
            return check.id

        check_id = self.transaction(SUPERUSER_ID, create)
        self.check_ids.append(check_id)
        return check_id

    def callback_event(self, transaction_id, reference_id):
        header = callback_header(self.signer.sender_id)
        return event_from(
            envelope(self.signer, header, search_message(transaction_id, reference_id))
        )

    def deliver(self, event):
        """What the router does after verifying the signature: replay guard, then sink."""

        def work(env):
            replays = env["spp.dci.callback.replay"]
            if not replays.remember(event.sender_id, event.message_id, now_ts() + 300):
                return "replay"
            env["spp.dci.callback.log"]._spp_sink(event)
            return "filed"

        return self.transaction(self.callback_uid, work)

    def read_outcome(self, check_id, message_id):
        def read(env):
            check = env["spp.dci.duplication.check"].browse(check_id)
            logs = env["spp.dci.callback.log"].search([("message_id", "=", message_id)])
            return {
                "state": check.state,
                "result": check.result,
                "failure_kind": check.failure_kind,
                "error_message": check.error_message,
                "lines": check.detail_ids.mapped("status"),
                "logs": logs.mapped("state"),
            }

        return self.transaction(SUPERUSER_ID, read)

    # ------------------------------------------------------------- tests

    def test_duplicate_delivery_in_two_workers_is_filed_once(self):
        check_id = self.pending_check("txn-dup", "ref-dup")
        event = self.callback_event("txn-dup", "ref-dup")
        results = self.race(lambda: self.deliver(event), lambda: self.deliver(event))
        self.assertEqual(sorted(results), ["filed", "replay"])
        outcome = self.read_outcome(check_id, event.message_id)
        self.assertEqual(outcome["logs"], ["matched"])
        self.assertEqual((outcome["state"], outcome["result"]), ("completed", "no_match"))
        self.assertEqual(outcome["lines"], ["no_records"])

    def test_callback_racing_the_stuck_check_cron_ends_consistent(self):
        old = fields.Datetime.now() - timedelta(hours=3)
        for round_ in range(5):
            with self.subTest(round=round_):
                transaction_id, reference_id = f"txn-race-{round_}", f"ref-race-{round_}"
                check_id = self.pending_check(transaction_id, reference_id, sent_at=old)
                event = self.callback_event(transaction_id, reference_id)
                self.race(
                    lambda: self.transaction(
                        SUPERUSER_ID,
                        lambda env: env["spp.dci.duplication.check"]._spp_fail_stuck_checks().ids,
                    ),
                    lambda event=event: self.deliver(event),
                )
                outcome = self.read_outcome(check_id, event.message_id)
                # Whichever worker went first, the check is in one of two consistent states:
                # completed by the callback, or still timed out with the callback kept
                # (deferred) for the maintenance cron. Never a failed check with a result.
                if outcome["state"] == "completed":
                    self.assert_completed(outcome)
                else:
                    self.assertEqual(outcome["state"], "failed", outcome)
                    self.assertEqual(outcome["failure_kind"], "timeout", outcome)
                    self.assertFalse(outcome["result"], outcome)
                    self.assertEqual(outcome["logs"], ["unmatched"], outcome)
                    self.transaction(
                        SUPERUSER_ID,
                        lambda env: env[
                            "spp.dci.duplication.check"
                        ]._cron_spp_callback_maintenance(),
                    )
                    self.assert_completed(self.read_outcome(check_id, event.message_id))

    def test_callback_racing_its_ack_ends_consistent(self):
        """A registry that calls back at once: its callback and the storing of its ACK run
        at the same time, in either order."""
        for round_ in range(5):
            with self.subTest(round=round_):
                transaction_id, reference_id = f"txn-ack-{round_}", f"ref-ack-{round_}"
                check_id = self.pending_check(transaction_id, reference_id, acked=False)
                event = self.callback_event(transaction_id, reference_id)
                ack = {"ack_status": "ACK", "reference_ids": [reference_id], "correlation_id": "c"}
                self.race(
                    lambda check_id=check_id, ack=ack: self.transaction(
                        SUPERUSER_ID,
                        lambda env: (
                            env["spp.dci.duplication.check"].browse(check_id)._spp_store_ack(ack)
                        ),
                    ),
                    lambda event=event: self.deliver(event),
                )
                outcome = self.read_outcome(check_id, event.message_id)
                if outcome["logs"] == ["unmatched"]:  # deferred: filed by the maintenance cron
                    self.transaction(
                        SUPERUSER_ID,
                        lambda env: env[
                            "spp.dci.duplication.check"
                        ]._cron_spp_callback_maintenance(),
                    )
                    outcome = self.read_outcome(check_id, event.message_id)
                self.assert_completed(outcome)

    def assert_completed(self, outcome):
        self.assertEqual(outcome["state"], "completed", outcome)
        self.assertEqual(outcome["result"], "no_match", outcome)
        self.assertFalse(outcome["failure_kind"], outcome)
        self.assertFalse(outcome["error_message"], outcome)
        self.assertEqual(outcome["lines"], ["no_records"], outcome)
        self.assertEqual(outcome["logs"], ["matched"], outcome)
