"""Batch duplication checks inside a real Odoo 19: ours against the OpenSPP-style path.

Not part of ``make test`` or ``make bench``: it needs the Odoo 19 kit (../shared/odoo19) and
several minutes. Run it with the kit's Python once the wheel is in the kit's venv (``make
wheel`` then ``.ci/odoo-test`` or ``$ODOO_KIT_HOME/venv/bin/pip install --no-deps
target/wheels/*.whl``), with the kit's variables::

    ODOO_KIT_HOME=/var/tmp/kit-ui PG_PORT=5435 HTTP_PORT=8370 \\
        /var/tmp/kit-ui/venv/bin/python bench/odoo_batch.py --sizes 1000,10000 --workers 2

What it does, on a fresh database ``bench_odoo_batch`` (dropped first) with
``spp_dci_client_ibr_queue`` (and so ``queue_job``) installed:

* starts the embedded IBR sandbox in this process (signatures and OAuth2 required, as a real
  registry), configures a signing key, the registry sender (keys fetched from its JWKS) and a
  data source, as the configuration forms do;
* for each size N: creates N registrants, each with one UIN (a tenth of them enrolled in the
  sandbox), committed;
* **ours**: starts Odoo's server in prefork mode (``--workers W``) with ``queue_job`` loaded
  server-wide and its job runner on ``root:W`` channels, runs the batch wizard
  ("Check IBR duplicates") on the N registrants, and times from the wizard's button until every
  check is completed (after a warm-up batch of a few registrants: the job runner listening, each
  worker with its client built, as in production). The wizard reads which registrants have an
  identifier and cuts them into chunks (``--chunk-size``, the system parameter
  ``spp_dci_client_ibr.batch_chunk_size``, default 500), each a queue job that asks the registry
  with the native ``check_many`` (``batch_size`` identifiers per envelope, ``batch_concurrency``
  in flight) and then creates its checks with their results. Also printed: how long the wizard
  took (the user's wait) and the CPU time of the Odoo workers, PostgreSQL and this process
  (the sandbox) during the batch. Peak RSS: the high-water mark (``VmHWM``) of each Odoo worker process when the batch
  is done, the largest reported;
* **OpenSPP-style** (the baseline, written here): the path of OpenSPP's IBR service, one check
  after the other in one Odoo process, each check a record created, one synchronous signed
  search request per identifier, the result written and committed. Twice, on ``--baseline``
  registrants each (default: all of the largest size), against the same sandbox: with a Python
  client written as OpenSPP's is (``bench_client.PythonClient``: the envelope signed with
  ``cryptography``, POSTed with ``httpx``, the answer's signature verified), and, stricter,
  with our native client in the loop. Both are generous to the baseline: one token and one
  keep-alive connection for all checks, where OpenSPP's service builds its HTTP client per
  check.

Prints checks/s of all three, the ratio to each baseline (target: ours at least 20 times) and the peak
RSS of the Odoo workers per size (target: flat in N).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

KIT_HOME = Path(os.environ.get("ODOO_KIT_HOME", "/var/tmp/spp-odoo19-kit"))
HTTP_PORT = int(os.environ.get("HTTP_PORT", "8070"))
ODOO_SRC = KIT_HOME / "odoo19"
ODOO_BIN = ODOO_SRC / "odoo-bin"
ODOO_CONF = KIT_HOME / "odoo.conf"
DB = "bench_odoo_batch"
OUR_SENDER_ID = "openspp.bench"
CHECK = "spp.dci.duplication.check"

sys.path.insert(0, str(ODOO_SRC))

import httpx  # noqa: E402
from odoo.modules.registry import Registry  # noqa: E402
from odoo.tools import config  # noqa: E402
from spp_dci_ibr import DCIClient, SigningKey, jwk_to_pem  # noqa: E402
from spp_dci_ibr.sandbox import IBRSandbox  # noqa: E402

import odoo  # noqa: E402  (the kit's Odoo, put on the path above)


def odoo_cmd(*args: str) -> list[str]:
    return [sys.executable, str(ODOO_BIN), "-c", str(ODOO_CONF), *args]


def fresh_database(log: Path) -> None:
    subprocess.run(
        [sys.executable, str(ODOO_BIN), "db", "-c", str(ODOO_CONF), "drop", DB],
        capture_output=True,
        check=False,
    )
    with log.open("w") as out:
        subprocess.run(
            odoo_cmd("-d", DB, "-i", "spp_dci_client_ibr_queue", "--stop-after-init", "--no-http"),
            stdout=out,
            stderr=subprocess.STDOUT,
            check=True,
        )


def environment(cr):
    return odoo.api.Environment(cr, odoo.SUPERUSER_ID, {"tracking_disable": True})


def configure(registry, sandbox, chunk_size: int) -> int:
    """Signing key, registry sender and data source, as the forms' buttons do, and the batch
    chunk size; returns the data source id (the model is the one the checks point at)."""
    with registry.cursor() as cr:
        env = environment(cr)
        env["ir.config_parameter"].set_param("spp_dci_client_ibr.batch_chunk_size", chunk_size)
        source_model = env[CHECK]._fields["data_source_id"].comodel_name
        key_model = env[source_model]._fields["signing_key_id"].comodel_name
        key = env[key_model].create(
            {"name": "Bench key", "key_id": "bench-key", "sender_id": OUR_SENDER_ID}
        )
        key.action_generate_key()
        key.action_activate()
        sandbox.register_client_key(OUR_SENDER_ID, json.loads(key.public_jwk))
        sender = env["spp.dci.ibr.sender"].create(
            {
                "name": "Sandbox IBR",
                "sender_id": sandbox.sender_id,
                "jwks_url": sandbox.jwks_url,
                "allow_insecure_jwks": True,
            }
        )
        sender.fetch_public_key()
        source = env[source_model].create(
            {
                "name": "Sandbox IBR",
                "code": "sandbox_bench",
                "registry_type": "ibr",
                "base_url": sandbox.url.rstrip("/"),
                "auth_type": "oauth2",
                "oauth2_token_url": sandbox.token_url,
                "oauth2_client_id": sandbox.client_id,
                "oauth2_client_secret": sandbox.client_secret,
                "our_sender_id": OUR_SENDER_ID,
                "signing_key_id": key.id,
                "registry_sender_id": sender.id,
                "max_retries": 1,
            }
        )
        source.action_test_connection()
        assert source.state == "active", source.last_error
        return source.id


def registrants(registry, sandbox, size: int, tag: str) -> list[int]:
    """``size`` partners with one UIN each: a tenth enrolled in the sandbox, the rest not."""
    enrolled = [value for _type, value in sandbox.sample_identifiers(status="active", n=size // 10)]
    values = enrolled + [f"UIN-{tag}-{index:08d}" for index in range(size - len(enrolled))]
    with registry.cursor() as cr:
        env = environment(cr)
        partners = env["res.partner"].create([{"name": f"Registrant {value}"} for value in values])
        env["spp.dci.partner.identifier"].create(
            [
                {"partner_id": partner.id, "id_type": "UIN", "value": value}
                for partner, value in zip(partners, values, strict=True)
            ]
        )
        return partners.ids


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        path = task / "children"
        if path.exists():
            found += [int(child) for child in path.read_text().split()]
    return found


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes (and their reaped children)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
    return total / tick


def postgres_pids() -> list[int]:
    found = []
    for path in Path("/proc").iterdir():
        try:
            if path.name.isdigit() and (path / "comm").read_text().startswith("postgres"):
                found.append(int(path.name))
        except OSError:
            continue
    return found


class OdooServer:
    """Odoo in prefork mode with queue_job's job runner on ``root:workers``."""

    def __init__(self, workers: int, log: Path):
        env = dict(os.environ, ODOO_QUEUE_JOB_CHANNELS=f"root:{workers}")
        self.log = log.open("w")
        self.proc = subprocess.Popen(
            odoo_cmd(
                "-d",
                DB,
                f"--db-filter=^{DB}$",
                "--http-port",
                str(HTTP_PORT),
                "--workers",
                str(workers),
                "--max-cron-threads",
                "0",
                "--load",
                "base,web,queue_job",
                "--limit-time-real",
                "3600",
                "--limit-time-cpu",
                "3600",
                "--limit-memory-soft",
                str(8 << 30),
                "--limit-memory-hard",
                str(16 << 30),
                "--log-level",
                "warn",
            ),
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.workers: set[int] = set()

    def sample_workers(self) -> None:
        """Remember the HTTP workers (children of the master; the job runner is one too)."""
        self.workers.update(children(self.proc.pid))

    def peak_rss_mib(self) -> float:
        return max((vm_hwm_kib(pid) for pid in self.workers), default=0) / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def run_batch(registry, source_id: int, partner_ids: list[int], server: OdooServer):
    """The wizard's button on these registrants, then wait until every check is done.
    Returns the states, the wizard's message, how long the user waited for the wizard and
    how long the batch took (from the button until the last check is done).

    The batch's checks are the ones created after the button (nothing else creates checks
    meanwhile): polling counts those by id, cheap next to the work measured."""
    with registry.cursor() as cr:
        cr.execute("SELECT COALESCE(max(id), 0) FROM spp_dci_duplication_check")
        (last_id,) = cr.fetchone()
    start = time.perf_counter()
    with registry.cursor() as cr:
        env = environment(cr)
        wizard = env["spp.dci.ibr.batch.check.wizard"].create(
            {"data_source_id": source_id, "partner_ids": [(6, 0, partner_ids)]}
        )
        message = wizard.action_run()["params"]["message"]
    waited = time.perf_counter() - start
    done_sql = (
        "SELECT count(*) FROM spp_dci_duplication_check "
        "WHERE id > %s AND state IN ('completed', 'failed')"
    )
    while True:
        time.sleep(0.05)
        server.sample_workers()
        with registry.cursor() as cr:
            cr.execute(done_sql, [last_id])
            (done,) = cr.fetchone()
        if done >= len(partner_ids):
            elapsed = time.perf_counter() - start
            break
        if server.proc.poll() is not None:
            raise RuntimeError(f"the Odoo server stopped; see {server.log.name}")
    with registry.cursor() as cr:
        cr.execute(
            "SELECT state, count(*) FROM spp_dci_duplication_check "
            "WHERE partner_id = ANY(%s) GROUP BY state",
            [partner_ids],
        )
        return dict(cr.fetchall()), message, waited, elapsed


def run_ours(
    registry, source_id: int, partner_ids: list[int], warm_ids: list[int], workers: int, logs: Path
):
    server = OdooServer(workers, logs / f"bench-server-{len(partner_ids)}.log")
    try:
        # Steady state, as in production: the job runner listening, the workers up, each
        # with its client (token, keys) built, before the timed batch.
        time.sleep(5)
        run_batch(registry, source_id, warm_ids, server)
        server.sample_workers()
        cpu_before = (
            cpu_seconds(server.workers),
            sum(os.times()[:2]),
            cpu_seconds(postgres_pids()),
        )
        states, message, waited, elapsed = run_batch(registry, source_id, partner_ids, server)
        server.sample_workers()
        cpu_after = (cpu_seconds(server.workers), sum(os.times()[:2]), cpu_seconds(postgres_pids()))
        odoo_cpu, own_cpu, pg_cpu = (
            after - before for after, before in zip(cpu_after, cpu_before, strict=True)
        )
        return (
            elapsed,
            states,
            server.peak_rss_mib(),
            f"{message} The wizard took {waited:.2f} s. CPU: Odoo workers {odoo_cpu:.1f} s, "
            f"PostgreSQL {pg_cpu:.1f} s, this process (sandbox, wizard) {own_cpu:.1f} s",
        )
    finally:
        server.stop()


def native_search(source):
    """The baseline's request through our native client (one token, one connection pool)."""
    client = DCIClient(
        **dict(
            source._spp_client_config(),
            signing_key=SigningKey.from_pem(source.signing_key_id.private_key),
        )
    )

    def search(id_type: str, id_value: str) -> list:
        return client.search_by_id(id_type, id_value, transaction_id=str(uuid.uuid4()))["records"]

    return search


def python_search(sandbox):
    """The baseline's request through a Python client as OpenSPP's is written (bench_client's
    ``PythonClient``: the envelope built and signed with ``cryptography``, POSTed with
    ``httpx``, the answer's signature verified), generous still: one keep-alive connection and
    one OAuth2 token for every check."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_client import KEY_ID, SENDER, PythonClient, Target

    key = SigningKey.generate()
    sandbox.register_client_key(SENDER, key.public_jwk(SENDER, KEY_ID))
    (jwk,) = sandbox.public_jwks()["keys"]
    client = PythonClient(Target("sandbox", sandbox.url, jwk_to_pem(jwk)), key)
    client.receiver = sandbox.sender_id
    token = httpx.post(
        sandbox.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": sandbox.client_id,
            "client_secret": sandbox.client_secret,
        },
    ).json()["access_token"]
    client.http.headers["Authorization"] = f"Bearer {token}"

    def search(id_type: str, id_value: str) -> list:
        return client.search_by_id(id_type, id_value)["records"]

    return search


def run_openspp_style(registry, source_id: int, partner_ids: list[int], search):
    """OpenSPP's path: per check a record, one synchronous request per identifier, a commit."""
    results = {}
    start = time.perf_counter()
    for partner_id in partner_ids:
        with registry.cursor() as cr:
            env = environment(cr)
            partner = env["res.partner"].browse(partner_id)
            pairs = partner._spp_dci_ibr_partner_pairs()
            check = env[CHECK].create(
                {
                    "partner_id": partner_id,
                    "data_source_id": source_id,
                    "identifier_type": pairs[0][0],
                    "identifier_value": pairs[0][1],
                    "mode": "sync",
                }
            )
            matched = False
            for id_type, id_value in pairs:
                matched = bool(search(id_type, id_value)) or matched
            result = "confirmed_match" if matched else "no_match"
            check.write({"state": "completed", "result": result, "is_duplicate": matched})
            results[result] = results.get(result, 0) + 1
    return time.perf_counter() - start, results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1000,10000", help="batch sizes (registrants)")
    parser.add_argument("--workers", type=int, default=2, help="Odoo workers = queue_job channels")
    parser.add_argument(
        "--chunk-size", type=int, default=500, help="registrants per queue job (the default)"
    )
    parser.add_argument(
        "--baseline", type=int, default=0, help="registrants for the baseline (0: largest size)"
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    logs = KIT_HOME / "logs"
    logs.mkdir(exist_ok=True)

    print(f"fresh database {DB} (log {logs}/bench-install.log)", flush=True)
    fresh_database(logs / "bench-install.log")
    config.parse_config(["-c", str(ODOO_CONF), "-d", DB, "--no-http"])
    registry = Registry(DB)

    with IBRSandbox(synthetic=max(sizes) + 100, seed=3, max_batch_items=5000) as sandbox:
        source_id = configure(registry, sandbox, args.chunk_size)
        ours = {}
        for size in sizes:
            partner_ids = registrants(registry, sandbox, size, f"ours{size}")
            warm_ids = registrants(registry, sandbox, 4 * args.workers, f"warm{size}")
            elapsed, states, rss, message = run_ours(
                registry, source_id, partner_ids, warm_ids, args.workers, logs
            )
            ours[size] = (elapsed, rss)
            print(
                f"ours      N={size:>6}: {elapsed:8.2f} s  {size / elapsed:9.1f} checks/s  "
                f"peak worker RSS {rss:7.1f} MiB  {states}  ({message})",
                flush=True,
            )
        baseline_n = args.baseline or max(sizes)
        with registry.cursor() as cr:
            env = environment(cr)
            sources = env[env[CHECK]._fields["data_source_id"].comodel_name]
            native = native_search(sources.browse(source_id))
        baselines = {}
        for name, search in (
            ("Python client, as OpenSPP's", python_search(sandbox)),
            ("our native client", native),
        ):
            partner_ids = registrants(registry, sandbox, baseline_n, f"openspp{len(baselines)}")
            elapsed, results = run_openspp_style(registry, source_id, partner_ids, search)
            baselines[name] = baseline_n / elapsed
            print(
                f"OpenSPP   N={baseline_n:>6}: {elapsed:8.2f} s  {baselines[name]:9.1f} checks/s  "
                f"(one process, one sync request per identifier; {name})  {results}",
                flush=True,
            )
    largest = max(sizes)
    rate = largest / ours[largest][0]
    for name, baseline_rate in baselines.items():
        print(
            f"\nratio at N={largest}: {rate / baseline_rate:.1f}x the OpenSPP-style path with "
            f"{name} (target >= 20x), {args.workers} Odoo workers / queue_job channels"
        )
    print(
        "peak worker RSS: "
        + ", ".join(f"N={size}: {rss:.0f} MiB" for size, (_elapsed, rss) in sorted(ours.items()))
        + " (target: flat)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
