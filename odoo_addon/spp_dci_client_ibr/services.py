# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""OpenSPP's documented Python API, on top of the native IBR service.

    from odoo.addons.spp_dci_client_ibr.services import IBRService

    service = IBRService(data_source, env)
    outcome = service.check_duplication(partner)   # {"is_duplicate", "matched_programs", ...}

Unlike the service it replaces, a registry that could not be asked never looks like "no
duplicate": ``check_duplication`` raises ``UserError`` when the native result failed
(PROTOCOL §7), so a caller reading ``is_duplicate`` cannot mistake an outage for a
clean answer.
"""

import logging

from spp_dci_ibr import IBRService as NativeIBRService

from odoo.exceptions import UserError

from .models.errors import dci_user_errors

_logger = logging.getLogger(__name__)


class IBRService:
    """Duplication checks, beneficiary search and enrolment status for one IBR."""

    def __init__(self, data_source, env):
        if not data_source:
            raise ValueError("data_source is required")
        self.data_source = data_source
        self.env = env
        if not data_source._spp_is_ibr():
            _logger.warning(
                "Data source %s is not an IBR (registry_type %s)",
                data_source.code,
                data_source.registry_type,
            )
        self.client = data_source._spp_dci_client()
        # The native ``spp_dci_ibr.IBRService``: classification is its job, not ours.
        self.native = NativeIBRService(self.client)

    def check_duplication(self, partner) -> dict:
        """Check ``partner`` (its OpenSPP ``reg_ids``, else its latest check's identifier).

        Returns ``is_duplicate``, ``matched_programs``, ``raw_response`` (OpenSPP's keys)
        plus ``result``, ``state``, ``reasons``, ``transaction_id`` and ``outcomes``.
        Raises ``UserError`` when the registrant has no identifier or the check failed.
        """
        if not partner:
            raise ValueError("partner is required")
        identifiers = partner._spp_dci_ibr_identifiers()
        if not identifiers:
            raise UserError(
                self.env._(
                    "Registrant %(name)s has no identifier to check.", name=partner.display_name
                )
            )
        with dci_user_errors(self.env, self.env._("The IBR check failed")):
            result = self.native.check_duplication(identifiers)
        if result.state != "completed":
            raise UserError(
                self.env._(
                    "The IBR check failed: %(reasons)s",
                    reasons="; ".join(result.reasons) or "-",
                )
            )
        return {
            "is_duplicate": bool(result.is_duplicate),
            "matched_programs": list(result.matched_programs),
            "raw_response": list(result.raw_responses),
            "result": result.result,
            "state": result.state,
            "reasons": list(result.reasons),
            "transaction_id": result.transaction_id,
            "outcomes": [
                {
                    "id_type": outcome.id_type,
                    "id_value": outcome.id_value,
                    "status": outcome.status,
                    "reason": outcome.reason,
                    "record_count": outcome.record_count,
                }
                for outcome in result.outcomes
            ],
        }

    def search_beneficiary(self, identifier_type: str, identifier_value: str) -> list[dict]:
        """Records of the registry for one identifier, as dictionaries."""
        with dci_user_errors(self.env, self.env._("The IBR search failed")):
            beneficiaries = self.native.search_beneficiary(identifier_type, identifier_value)
        return [beneficiary.to_dict() for beneficiary in beneficiaries]

    def get_enrollment_status(self, identifier_type: str, identifier_value: str) -> dict:
        """``{"enrolled": bool, "programs": [...], "beneficiary_info": [...]}``."""
        with dci_user_errors(self.env, self.env._("The IBR enrolment query failed")):
            return self.native.get_enrollment_status(identifier_type, identifier_value)
