# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import spp_dci_data_source, spp_dci_duplication_check, spp_dci_signing_key
