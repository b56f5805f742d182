# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The IBR service: duplication checks, beneficiary search and enrolment status for Python
callers, on top of the native ``spp_dci_ibr.IBRService``::

    service = env["spp.dci.ibr.service"]
    outcome = service.check_duplication(data_source, partner)  # {"is_duplicate", ...}

A registry that could not be asked never looks like "no duplicate": ``check_duplication``
raises ``UserError`` when the native result failed (PROTOCOL §7), so a caller reading
``is_duplicate`` cannot mistake an outage for a clean answer. Not callable over RPC.
"""

import logging

from odoo import api, models
from odoo.exceptions import UserError

from .errors import dci_user_errors

_logger = logging.getLogger(__name__)


class SppDciIbrService(models.AbstractModel):
    _name = "spp.dci.ibr.service"
    _description = "IBR Service"

    @api.model
    def _spp_native(self, data_source):
        """The native service on the data source's client (reused per configuration)."""
        if not data_source:
            raise ValueError("data_source is required")
        if not data_source._spp_is_ibr():
            _logger.warning(
                "Data source %s is not an IBR (registry_type %s)",
                data_source.code,
                data_source.registry_type,
            )
        return data_source._spp_ibr_service()

    @api.private
    @api.model
    def check_duplication(self, data_source, partner):
        """Check ``partner`` (its identifiers, else its latest check's identifier).

        Returns ``is_duplicate``, ``matched_programs``, ``raw_response`` (OpenSPP's keys)
        plus ``result``, ``state``, ``reasons``, ``transaction_id`` and ``outcomes``.
        Raises ``UserError`` when the registrant has no identifier or the check failed.
        """
        if not partner:
            raise ValueError("partner is required")
        service = self._spp_native(data_source)
        identifiers = partner._spp_dci_ibr_identifiers()
        if not identifiers:
            raise UserError(
                self.env._(
                    "Registrant %(name)s has no identifier to check.", name=partner.display_name
                )
            )
        with dci_user_errors(self.env, self.env._("The IBR check failed")):
            result = service.check_duplication(identifiers)
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
            "outcomes": [outcome.to_dict() for outcome in result.outcomes],
        }

    @api.private
    @api.model
    def search_beneficiary(self, data_source, identifier_type, identifier_value):
        """Records of the registry for one identifier, as dictionaries."""
        service = self._spp_native(data_source)
        with dci_user_errors(self.env, self.env._("The IBR search failed")):
            beneficiaries = service.search_beneficiary(identifier_type, identifier_value)
        return [beneficiary.to_dict() for beneficiary in beneficiaries]

    @api.private
    @api.model
    def get_enrollment_status(self, data_source, identifier_type, identifier_value):
        """``{"enrolled": bool, "programs": [...], "beneficiary_info": [...]}``."""
        service = self._spp_native(data_source)
        with dci_user_errors(self.env, self.env._("The IBR enrolment query failed")):
            return service.get_enrollment_status(identifier_type, identifier_value)
