# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import (
    fastapi_endpoint,
    res_partner,
    spp_dci_callback_log,
    spp_dci_callback_replay,
    spp_dci_data_source,
    spp_dci_duplication_check,
    spp_dci_ibr_sender,
    spp_dci_ibr_service,
    spp_dci_partner_identifier,
    spp_dci_signing_key,
)
