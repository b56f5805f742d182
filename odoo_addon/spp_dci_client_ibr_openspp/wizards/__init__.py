# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import spp_dci_ibr_batch_check_wizard
