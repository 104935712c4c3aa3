# Quick start: `scripts/backupctl preview` (offline preview) and `make test` (everything the CI runs).
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.requirements.sha256
# Debian packages the tests start for real: a MariaDB server, its client tools and zstd.
SYSTEM_PACKAGES := mariadb-server mariadb-client zstd

.PHONY: test lint venv system-deps preview bench clean

test: system-deps venv lint
	$(PY) -m pytest

# ruff (lint + import order) and mypy, configured in pyproject.toml: a finding fails `make test`.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

preview: venv
	$(PY) scripts/backupctl preview

venv: $(STAMP)

$(STAMP): requirements.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	sha256sum requirements.txt | cut -d' ' -f1 > $(STAMP)

system-deps:
	@missing=""; \
	command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd || missing="$$missing mariadb-server"; \
	command -v mariadb-dump >/dev/null 2>&1 || missing="$$missing mariadb-client"; \
	command -v zstd >/dev/null 2>&1 || missing="$$missing zstd"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "missing:$$missing; run: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .pytest_cache
