# Every command of the project, written once. `make demo` runs the main job, `make test` every test and lint.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
WHEELS := target/wheels

.PHONY: demo test venv wheel dev rust-test rust-lint py-test py-lint odoo-test odoo-test-openspp bench fuzz-smoke spec-json clean

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
	$(VENV)/bin/pylint --rcfile=odoo_addon/.pylintrc odoo_addon/spp_dci_client_ibr odoo_addon/spp_dci_client_ibr_queue odoo_addon/spp_dci_client_ibr_openspp

py-test: venv
	$(PY) -m pytest -q tests

test: rust-lint rust-test wheel py-lint py-test fuzz-smoke

# The addons' Odoo tests on the wheel: against the Odoo 19 in ODOO_BIN / ODOO_PYTHON / ODOO_CONF,
# else the kit in ODOO_KIT (../shared/odoo19) once set up; without an Odoo it says so and skips,
# except under CI=true (see .ci/odoo-test).
odoo-test: wheel
	.ci/odoo-test

# The same addons with test-only stand-ins of OpenSPP's DCI base (issue 12), in the kit only.
odoo-test-openspp: wheel
	tests/odoo_standin/run.sh

bench: wheel
	$(PY) bench/run_all.py

# Fuzzing (cargo-fuzz, libFuzzer; fuzz/ is its own workspace with its own target dir). cargo-fuzz
# needs nightly flags: `+nightly` when that toolchain is installed, else stable with RUSTC_BOOTSTRAP=1.
# Each target runs briefly from its seeds (fuzz/seeds/<target>, committed, never written to);
# what it learns goes to fuzz/corpus/<target> (ignored by git). Every target runs; any crash fails
# the run and leaves its input in fuzz/artifacts/<target>/.
FUZZ_TARGETS   := envelope_canonical signature_params jwk responses pem_keys callback http1_framing
FUZZ_TOOLCHAIN ?= $(shell rustup toolchain list 2>/dev/null | grep -q '^nightly' && echo +nightly)
FUZZ_CARGO     := $(if $(FUZZ_TOOLCHAIN),cargo $(FUZZ_TOOLCHAIN),RUSTC_BOOTSTRAP=1 cargo)
FUZZ_ARGS      ?= -runs=50000 -max_total_time=30 -timeout=10 -max_len=8192

fuzz-smoke:
	cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
	cp Cargo.lock fuzz/Cargo.lock  # fuzz the dependency versions that ship
	$(FUZZ_CARGO) fuzz build
	failed=""; for t in $(FUZZ_TARGETS); do \
		mkdir -p fuzz/corpus/$$t; \
		$(FUZZ_CARGO) fuzz run $$t fuzz/corpus/$$t fuzz/seeds/$$t -- $(FUZZ_ARGS) || failed="$$failed $$t"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz-smoke: crashes in:$$failed (inputs in fuzz/artifacts/)"; exit 1; fi

# The JSON copy of the IBR spec that the sandbox embeds (spec/README.md); tests check it agrees with
# the YAML, the source. Run after changing spec/ibr_api_v1.0.0.yaml.
spec-json: venv
	$(PY) -c 'import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1], encoding="utf-8")), open(sys.argv[2], "w", encoding="utf-8"), ensure_ascii=False, separators=(",", ":"))' \
		spec/ibr_api_v1.0.0.yaml spec/ibr_api_v1.0.0.json

clean:
	rm -rf $(VENV) target
