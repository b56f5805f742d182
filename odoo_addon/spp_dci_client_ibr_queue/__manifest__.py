# License LGPL-3.0 or later (https://www.gnu.org/licenses/lgpl-3.0.html).
{
    "name": "DCI Client: IBR batches as queue jobs",
    "summary": "Run IBR duplication-check batches as OCA queue jobs, spread over workers",
    "version": "19.0.1.0.0",
    "category": "Technical",
    "license": "LGPL-3",
    "author": "spp-dci-client-ibr contributors",
    "depends": ["spp_dci_client_ibr", "queue_job"],
    "data": ["data/queue_job_data.xml"],
    "auto_install": True,
    "development_status": "Beta",
}
