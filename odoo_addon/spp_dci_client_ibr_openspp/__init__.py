# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
from . import models, wizards
from .hooks import post_init_hook, pre_init_hook, uninstall_hook
