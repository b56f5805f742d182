# Every command of the project, written once. `make demo` runs the main job, `make test` every test and lint.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WHEELS := target/wheels

.PHONY: demo test venv wheel dev rust-test rust-lint py-test py-lint bench fuzz-smoke clean

$(VENV)/.ready: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

venv: $(VENV)/.ready

# Build the release wheel (abi3) and install it into the venv, as a user would get it from pip.
wheel: venv
	rm -rf $(WHEELS)
	$(VENV)/bin/maturin build --release --quiet --out $(WHEELS)
	$(PY) -m pip install --quiet --force-reinstall --no-deps $(WHEELS)/*.whl

dev: wheel

demo: wheel
	$(VENV)/bin/spp-dci-ibr demo

rust-lint:
	cargo fmt --check
	cargo clippy --all-targets --all-features -- -D warnings

rust-test:
	cargo test --quiet

py-lint: venv
	$(VENV)/bin/ruff check python tests bench odoo_addon
	$(VENV)/bin/ruff format --check python tests bench odoo_addon
	$(VENV)/bin/mypy
	$(PY) -m mypy.stubtest spp_dci_ibr --allowlist .stubtest-allowlist
	$(VENV)/bin/pylint --rcfile=odoo_addon/.pylintrc odoo_addon/spp_dci_client_ibr odoo_addon/spp_dci_client_ibr_queue

py-test: venv
	$(PY) -m pytest -q tests

test: rust-lint rust-test wheel py-lint py-test

bench: wheel
	$(PY) bench/run_all.py

clean:
	rm -rf $(VENV) target
