# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
# TEST-ONLY: installs the OpenSPP stand-in and our addon in one database and runs the stand-in's
# baseline tests there: OpenSPP's fields and methods must survive our addon. Never shipped.
{
    "name": "DCI IBR on the OpenSPP stand-in (tests)",
    "summary": "Our IBR addon installed on top of the OpenSPP DCI stand-in",
    "version": "19.0.1.0.0",
    "category": "Hidden/Tests",
    "license": "LGPL-3",
    "author": "spp-dci-client-ibr contributors",
    "depends": ["spp_dci_client", "spp_dci_client_ibr"],
}
