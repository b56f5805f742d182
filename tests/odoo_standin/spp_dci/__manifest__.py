# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
# TEST-ONLY stand-in of OpenSPP's `spp_dci` (OpenSPP/OpenSPP2), written for this repository from the
# published model, field and method names; see tests/odoo_standin/OPENSPP_MODELS.md.
# Never shipped (the wheel ships odoo/addons/** only). The real module also depends on spp_registry.
{
    "name": "OpenSPP DCI Core (test stand-in)",
    "summary": "Stand-in of OpenSPP's spp_dci: the spp.dci.signing.key model and DCI constants",
    "version": "19.0.2.0.0",
    "category": "Hidden/Tests",
    "license": "LGPL-3",
    "author": "spp-dci-client-ibr contributors",
    "depends": ["base"],
    "data": ["security/ir.model.access.csv"],
}
