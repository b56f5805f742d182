# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
"""The IBR callback app of OCA ``fastapi``."""

from odoo import fields, models

from ..routers import jwks_router, make_callback_router

APP_NAME = "spp_dci_ibr"


class FastapiEndpoint(models.Model):
    _inherit = "fastapi.endpoint"

    app = fields.Selection(
        selection_add=[(APP_NAME, "DCI IBR Callbacks")], ondelete={APP_NAME: "cascade"}
    )

    def _get_fastapi_routers(self):
        if self.app == APP_NAME:
            return [make_callback_router(), jwks_router]
        return super()._get_fastapi_routers()

    def _prepare_fastapi_app_params(self):
        params = super()._prepare_fastapi_app_params()
        if self.app == APP_NAME:
            # Registries need no interactive documentation of our callback endpoints.
            params.update(docs_url=None, redoc_url=None, openapi_url=None)
        return params
