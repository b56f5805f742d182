# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""End to end through Odoo's real HTTP server, against the embedded sandbox (no fake): the
buttons a user presses go through the web client's RPC, and the registry's signed callback
comes back to the callback endpoint over HTTP."""

from odoo.tests import HttpCase, tagged

from .common import FAULTS, LiveHttpMixin, SandboxMixin, UsersMixin


@tagged("post_install", "-at_install")
class TestEndToEnd(LiveHttpMixin, SandboxMixin, UsersMixin, HttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.setup_users()
        cls.setup_sandbox()
        cls.data_source.our_callback_uri = f"{cls.base_url()}/dci_ibr/registry/on-search"
        cls.commit_like_production()

    def setUp(self):
        super().setUp()
        self.authenticate(self.officer.login, self.officer.login)
        self.watch_filed_callbacks()

    def press(self, checks, button):
        """The web client's call of a form or list button, as the officer."""
        self.make_jsonrpc_request(
            f"/web/dataset/call_button/{checks._name}/{button}",
            {"model": checks._name, "method": button, "args": [checks.ids], "kwargs": {}},
        )
        checks.invalidate_recordset()

    def test_sync_check(self):
        check = self.new_check(self.identifier("active"))
        self.press(check, "action_run_check")
        self.assertEqual((check.state, check.result), ("completed", "confirmed_match"))
        self.assertTrue(check.matched_programs)

    def test_async_check_completed_by_the_callback_through_odoo_http(self):
        check = self.new_check(self.identifier("active"))
        self.sandbox.reset_stats()
        self.press(check, "action_run_check_async")
        # The registry calls back on its own: let Odoo serve it, then wait until it is filed.
        with self.allow_requests():
            self.assertTrue(self.callbacks_filed.wait(timeout=30), "no callback was filed")
        check.invalidate_recordset()
        self.assertEqual((check.state, check.result), ("completed", "confirmed_match"))
        self.assertEqual(check.callback_log_ids.state, "matched")
        stats = self.sandbox.stats()
        self.assertEqual(stats["requests"]["/registry/search"], 1)
        self.assertEqual(stats["callbacks_sent"], 1)

    def test_registry_faults_end_in_failed_checks_never_no_match(self):
        self.addCleanup(self.sandbox.set_faults, None)
        for name, faults in FAULTS.items():
            with self.subTest(fault=name):
                self.sandbox.set_faults(faults)
                checks = self.env["spp.dci.duplication.check"]
                for pair in self.identifiers("unknown", 2):
                    checks |= self.new_check(pair)
                self.press(checks, "action_run_check")
                for check in checks:
                    self.assertEqual(check.state, "failed", (name, check.result))
                    self.assertFalse(check.result)
                    self.assertTrue(check.error_message)
