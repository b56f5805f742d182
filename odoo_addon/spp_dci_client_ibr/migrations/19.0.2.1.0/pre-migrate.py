# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""0.1.0 (19.0.1.0.0) named our models ``spp.dci.data.source`` / ``spp.dci.signing.key``,
OpenSPP's names. Since 19.0.2.1.0 they are ``spp.dci.ibr.data.source`` /
``spp.dci.ibr.signing.key`` (OpenSPP's models are extended by the bridge instead): rename
them in place, records kept, as openupgradelib's ``rename_models``/``rename_tables`` do, in
plain SQL (openupgradelib is not a dependency of ours)."""

from odoo.addons.spp_dci_client_ibr.hooks import rename_own_models


def migrate(cr, version):
    if version:
        rename_own_models(cr)
