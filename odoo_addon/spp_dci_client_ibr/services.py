# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""OpenSPP's documented Python API, kept for its callers: the service itself is the model
``spp.dci.ibr.service``.

    from odoo.addons.spp_dci_client_ibr.services import IBRService

    service = IBRService(data_source, env)
    outcome = service.check_duplication(partner)   # {"is_duplicate", "matched_programs", ...}
"""


class IBRService:
    """``env["spp.dci.ibr.service"]`` bound to one data source."""

    def __init__(self, data_source, env):
        if not data_source:
            raise ValueError("data_source is required")
        self.data_source = data_source
        self.service = env["spp.dci.ibr.service"]

    def check_duplication(self, partner) -> dict:
        return self.service.check_duplication(self.data_source, partner)

    def search_beneficiary(self, identifier_type: str, identifier_value: str) -> list[dict]:
        return self.service.search_beneficiary(self.data_source, identifier_type, identifier_value)

    def get_enrollment_status(self, identifier_type: str, identifier_value: str) -> dict:
        return self.service.get_enrollment_status(
            self.data_source, identifier_type, identifier_value
        )
