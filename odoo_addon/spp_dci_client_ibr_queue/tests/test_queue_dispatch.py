# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from unittest import mock

from odoo.tests import tagged
from odoo.tests.common import TransactionCase

from odoo.addons.queue_job.tests.common import trap_jobs
from odoo.addons.spp_dci_client_ibr.tests.common import (
    FAULTS,
    SandboxMixin,
    UsersMixin,
    data_sources,
)


@tagged("post_install", "-at_install")
class TestQueueDispatch(TransactionCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["ir.config_parameter"].sudo().set_param("spp_dci_client_ibr.batch_chunk_size", "2")
        cls.source = data_sources(cls.env).create(
            {
                "name": "Queue IBR",
                "code": "queue_ibr",
                "base_url": "https://ibr.invalid",
                "auth_type": "none",
                "allow_unsigned": True,
                "our_sender_id": "openspp.test",
            }
        )
        partners = cls.env["res.partner"].create([{"name": f"Queued {i}"} for i in range(5)])
        cls.checks = cls.env["spp.dci.duplication.check"].create(
            [
                {
                    "partner_id": partner.id,
                    "identifier_type": "UIN",
                    "identifier_value": f"Q-{i}",
                    "data_source_id": cls.source.id,
                }
                for i, partner in enumerate(partners)
            ]
        )

    def test_one_job_per_chunk_and_nothing_runs_inline(self):
        checks_model = type(self.env["spp.dci.duplication.check"])
        with (
            trap_jobs() as trap,
            mock.patch.object(checks_model, "_spp_run_chunk_on", autospec=True) as run,
        ):
            self.checks.action_run_batch()
            run.assert_not_called()
            trap.assert_jobs_count(3)
            self.assertEqual(sorted(len(job.recordset) for job in trap.enqueued_jobs), [1, 2, 2])
            self.assertTrue(all(self.checks.mapped("queued")))
            # The checks belong to their jobs: the base addon's batch cron leaves them alone.
            self.env["spp.dci.duplication.check"]._cron_run_queued_checks()
            run.assert_not_called()
            trap.perform_enqueued_jobs()
        ran = self.env["spp.dci.duplication.check"].browse()
        for call in run.call_args_list:
            ran |= call.args[0]
        self.assertEqual(ran, self.checks)


@tagged("post_install", "-at_install")
class TestQueuedBatchAgainstTheSandbox(SandboxMixin, UsersMixin, TransactionCase):
    """The contacts-list wizard, its chunks run by queue_job's own job runner for tests,
    against the embedded sandbox: the real chunk runner, the real registry protocol."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.setup_sandbox()
        cls.env["ir.config_parameter"].sudo().set_param("spp_dci_client_ibr.batch_chunk_size", "2")

    def test_wizard_batch_runs_as_queue_jobs(self):
        expected = {}
        partners = self.env["res.partner"]
        for status, result in (("active", "confirmed_match"), ("unknown", "no_match")):
            for pair in self.identifiers(status, 3):
                partner = self.new_partner(pair)
                partners |= partner
                expected[partner] = result
        action = partners.with_user(self.officer).action_spp_dci_check_ibr_duplicates()
        wizard = (
            self.env["spp.dci.ibr.batch.check.wizard"]
            .with_user(self.officer)
            .with_context(**action["context"])
            .create({"data_source_id": self.data_source.id})
        )
        checks_model = self.env["spp.dci.duplication.check"]
        with trap_jobs() as trap:
            message = wizard.action_run()["params"]["message"]
            self.assertIn("6 check(s) submitted in 3 chunk(s)", message)
            trap.assert_jobs_count(3)
            # The user's request created nothing: each job creates its chunk's checks.
            self.assertFalse(checks_model.search([("partner_id", "in", partners.ids)]))
            self.assertEqual(sorted(len(job.args[1]) for job in trap.enqueued_jobs), [2, 2, 2])
            trap.perform_enqueued_jobs()
        checks = checks_model.search([("partner_id", "in", partners.ids)])
        self.assertEqual(len(checks), 6)
        self.assertEqual(set(checks.mapped("create_uid")), {self.officer})
        self.assertEqual(
            {check.partner_id: check.result for check in checks},
            expected,
            checks.mapped("error_message"),
        )
        self.assertEqual(set(checks.mapped("state")), {"completed"})
        self.assertFalse(any(checks.mapped("queued")))

    def test_registry_faults_fail_the_new_checks_never_no_match(self):
        """Each job asks the registry before it creates its checks: a faulting registry
        still gives every registrant a check, failed with the reason, never "no match"."""
        self.addCleanup(self.sandbox.set_faults, None)
        checks_model = self.env["spp.dci.duplication.check"]
        for name, faults in FAULTS.items():
            with self.subTest(fault=name):
                self.sandbox.set_faults(faults)
                partners = self.env["res.partner"]
                for pair in self.identifiers("unknown", 3):
                    partners |= self.new_partner(pair)
                wizard = (
                    self.env["spp.dci.ibr.batch.check.wizard"]
                    .with_user(self.officer)
                    .create({"data_source_id": self.data_source.id, "partner_ids": partners.ids})
                )
                with trap_jobs() as trap:
                    wizard.action_run()
                    trap.perform_enqueued_jobs()
                checks = checks_model.search([("partner_id", "in", partners.ids)])
                self.assertEqual(checks.partner_id, partners)
                for check in checks:
                    self.assertEqual(check.state, "failed", (name, check.result))
                    self.assertFalse(check.result)
                    self.assertFalse(check.is_duplicate)
                    self.assertTrue(check.error_message)
                    self.assertNotIn("pending", check.detail_ids.mapped("status"))
