# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The stand-in's baseline, run with our addon installed on top of it (issue 12)."""

from odoo.tests import tagged

from odoo.addons.spp_dci_client.tests.test_standin import TestOpenSPPStandin


@tagged("post_install", "-at_install")
class TestOpenSPPSurvivesOurAddon(TestOpenSPPStandin):
    """Every field and method of OpenSPP's data source and signing key is still there, with
    OpenSPP's behaviour, once spp_dci_client_ibr is installed."""

    allow_inherited_tests_method = True  # Odoo's loader runs the baseline's tests here too
