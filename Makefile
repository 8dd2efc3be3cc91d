# make dev   — run the whole platform locally (API on 127.0.0.1:3000, AWS stand-in on 4599)
# make invoke FN=api EVENT=events/api-health.json — one function, one event, through cargo lambda
# make test  — every check CI runs: format, lint, template lint, all tests
# make sim   — simulate one tenant's renewals on AWS: time per stage and cost per million
# make docs  — regenerate the README's event-type and error-code tables and the OpenAPI document from the code
# make size  — build every function's release bootstrap; fail when one is over its budget
SHELL := /bin/bash
VENV := .venv
VENV_STAMP := $(VENV)/.installed
FUNCTION_PACKAGES := -p api -p billing-worker -p billing-run -p payment-worker -p stripe-webhook -p webhook-fanout -p document-renderer
PYTHON ?= python3
export SAM_CLI_TELEMETRY := 0

.PHONY: sim dev dev-reset invoke docs test fmt-check lint template-lint unit bench release size venv clean-local poppler browser

$(VENV_STAMP): infra/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
	touch $(VENV_STAMP)

venv: $(VENV_STAMP)

dev: $(VENV_STAMP)
	cargo run --quiet -p billing-infra --bin billing-local -- $(ARGS)

dev-reset: $(VENV_STAMP)
	cargo run --quiet -p billing-infra --bin billing-local -- --reset $(ARGS)

# Against the running `make dev` stack, or one started for the invocation.
invoke: $(VENV_STAMP)
	@if [ -z "$(FN)" ] || [ -z "$(EVENT)" ]; then echo "usage: make invoke FN=<function> EVENT=<file>"; exit 2; fi
	cargo build --quiet -p billing-infra --bin billing-local --bin billing-invoke
	cargo run --quiet -p billing-infra --bin billing-invoke -- $(FN) $(EVENT) $(ARGS)

docs:
	cargo run --quiet -p billing-infra --bin billing-admin -- docs

fmt-check:
	cargo fmt --all -- --check

lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings
	@if [ -n "$$(cargo tree --workspace -i openssl-sys 2>/dev/null)" ]; then echo "openssl-sys is in the dependency tree: use rustls"; exit 1; fi
	@if [ -n "$$(cargo tree $(FUNCTION_PACKAGES) -e normal,no-proc-macro -i regex-automata 2>/dev/null)" ]; then echo "regex-automata is linked into a function (tracing-subscriber's env-filter?): see shared/aws/src/logging.rs"; exit 1; fi

template-lint: $(VENV_STAMP)
	$(VENV)/bin/cfn-lint template.yaml
	$(VENV)/bin/sam validate --lint --region us-east-1 --template-file template.yaml

# pdftotext and pdftoppm (Debian's poppler-utils) read the rendered invoice PDFs back in tests.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
poppler:
	@command -v pdftotext >/dev/null || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq poppler-utils; }

# Debian's Chromium and its WebDriver, for the hosted page's browser test (tests/tests/browser.rs).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium chromium-driver)

unit: $(VENV_STAMP) poppler browser
	cargo test --workspace --locked

test: fmt-check lint template-lint unit

bench:
	cargo bench -p billing-domain
	cargo bench -p billing-documents --bench render
	cargo bench -p billing-http --bench get_account

SIM_SUBSCRIPTIONS ?= 5000,10000
SIM_CONCURRENCY ?= 10,50,100,200
sim:
	cargo run --release -p billing-infra --bin billing-sim -- --subscriptions $(SIM_SUBSCRIPTIONS) --concurrency $(SIM_CONCURRENCY)

release:
	cargo build --release -p api

# Not part of `make test`: see the README's "Bootstrap size" for the time it takes.
size:
	infra/bootstrap-size.sh $(CARGO_ARGS)

clean-local:
	rm -rf .local
