# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
{
    "name": "DCI Client: IBR on OpenSPP's DCI base",
    "summary": "Runs spp_dci_client_ibr's checks on OpenSPP's data sources and signing keys "
    "(installs itself when OpenSPP's spp_dci_client is present)",
    "version": "19.0.1.0.0",
    "category": "Technical",
    "license": "LGPL-3",
    "author": "spp-dci-client-ibr contributors",
    # spp_dci (OpenSPP's signing keys) comes with spp_dci_client.
    "depends": ["spp_dci_client_ibr", "spp_dci_client"],
    "auto_install": True,
    "data": [
        "security/ir.model.access.csv",
        "security/ir_rules.xml",
        "views/spp_dci_data_source_views.xml",
        "views/spp_dci_signing_key_views.xml",
        "data/menus.xml",
    ],
    "pre_init_hook": "pre_init_hook",
    "post_init_hook": "post_init_hook",
    "uninstall_hook": "uninstall_hook",
    "development_status": "Beta",
}
