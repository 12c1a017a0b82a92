# pymultipathd: developer and CI entry points. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PREFIX ?= /usr/local
DESTDIR ?=
# Debian packages the host needs: systemd-python builds against libsystemd; the VM tier needs QEMU and mmdebstrap;
# `pymultipath verify` and its tests read zstd- and lz4-compressed initramfs images with those tools; the
# initramfs hook's tests run initramfs-tools' hook functions and dracut's tools (dracut-core, not `dracut`,
# which would replace initramfs-tools) and check the boot scripts with shellcheck.
HOST_DEBS := libsystemd-dev pkg-config gcc qemu-system-x86 qemu-utils mmdebstrap e2fsprogs man-db groff-base \
	zstd lz4 initramfs-tools-core dracut-core shellcheck

# The compiled front udev runs per disk event (udev/pymultipath-udev.c); it execs PREFIX/bin/pymultipath when
# no daemon answers, so it is rebuilt for every install (PREFIX may differ). Debian's gcc pulls in libc6-dev.
CC ?= cc
HELPER := build/pymultipath-udev
HELPER_CFLAGS := -O2 -Wall -Wextra -std=gnu11

.PHONY: help setup check check-fast check-vm lint demo bench vm-shell install uninstall-compat clean helper

help:
	@echo "make demo        boot the test VM and show pymultipathd at work on two-path iSCSI storage"
	@echo "make check       every test tier: lint, host unit tests, the VM integration suite"
	@echo "make check-fast  lint and host-only unit tests (seconds)"
	@echo "make check-vm    the VM integration suite only (T=<pytest -k expression> to select)"
	@echo "make bench       benchmarks against upstream multipath-tools in the VM (docs/benchmarks.md)"
	@echo "make vm-shell    interactive root shell in the test VM"
	@echo "make setup       host packages, .venv and an editable install (run by the others)"
	@echo "make install     install package, units, udev rules, example config (DESTDIR, PREFIX)"
	@echo "make helper      build the compiled udev front $(HELPER) (make install does)"
	@echo "make clean       remove build outputs (the cached VM image stays: see tests/vm/README.md)"

setup: $(VENV)/.stamp

$(VENV)/.stamp: pyproject.toml
	@missing=""; for p in $(HOST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "setup: installing Debian packages:$$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

check: check-fast check-vm

check-fast: setup lint
	$(PY) -m pytest -q tests/unit

lint: setup
	$(VENV)/bin/ruff check pymultipathd tests
	$(VENV)/bin/mypy

check-vm: setup
	$(PY) -m tests.vm.harness test $(if $(T),-k "$(T)",--shell-check)

demo: setup
	$(PY) -m tests.vm.harness demo

bench: setup
	$(PY) -m tests.vm.harness bench
	$(PY) -m tests.vm.bench_report out/vm/bench/bench.json docs/benchmarks.md

vm-shell: setup
	$(PY) -m tests.vm.harness shell

helper:
	@mkdir -p $(dir $(HELPER))
	$(CC) $(HELPER_CFLAGS) $(CFLAGS) -DPYMULTIPATH='"$(PREFIX)/bin/pymultipath"' -o $(HELPER) \
		udev/pymultipath-udev.c

# pip's own scripts start python with site.py (~60 ms a call); udev runs pymultipath per disk event, so the
# launcher rewrites both scripts to start with -IS and an explicit sys.path (pymultipathd/cli/launcher.py).
# COMPAT=1: also `multipath`/`multipathd` in PREFIX/sbin as links to ours (docs/cli.md, "Drop-in names"),
# checked before anything is installed: a name a Debian package owns is refused.
COMPAT_INSTALL = $(PYTHON) -m pymultipathd.cli.compat_install --root "$(DESTDIR)" --prefix "$(PREFIX)"
# The initramfs integration (initramfs/, docs/classification.md "Building the image"): initramfs-tools' and
# dracut's directories are fixed, whatever PREFIX; the files name this PREFIX's programs, the interpreter
# and the package directory (the shell variables python and site of the recipe line that uses this).
INITRAMFS_TOOLS := $(DESTDIR)/usr/share/initramfs-tools
DRACUT_MODULE := $(DESTDIR)/usr/lib/dracut/modules.d/90pymultipathd
INITRAMFS_SUBST = sed -e 's|@BINDIR@|$(PREFIX)/bin|g' -e 's|@LIBEXECDIR@|$(PREFIX)/libexec|g' \
	-e "s|@PYTHON@|$$python|g" -e "s|@SITE@|$$site|g"
install:
	$(if $(filter 1 yes,$(COMPAT)),$(COMPAT_INSTALL) --check)
	# into a staging DESTDIR pip must not touch the copy its PYTHON's environment has (an editable
	# install in a venv would be uninstalled): --ignore-installed there; a real install replaces the old
	$(PYTHON) -m pip install --no-deps $(if $(DESTDIR),--ignore-installed) --root "$(or $(DESTDIR),/)" \
		--prefix "$(PREFIX)" .
	site=$$($(PYTHON) -c 'import sysconfig, sys; print(sysconfig.get_path("purelib", "posix_prefix", \
		vars={"base": sys.argv[1], "platbase": sys.argv[1]}))' "$(PREFIX)") && \
	$(PYTHON) -m pymultipathd.cli.launcher --root "$(DESTDIR)" --bindir "$(PREFIX)/bin" \
		--python "$$($(PYTHON) -c 'import sys; print(sys.executable)')" --site "$$site"
	install -d "$(DESTDIR)/lib/systemd/system" "$(DESTDIR)/lib/udev/rules.d" "$(DESTDIR)/etc/multipath"
	# systemd runs programs by absolute path too: the units name this PREFIX's programs and documents
	for f in units/*; do [ -e "$$f" ] && sed -e 's|/usr/local/bin/|$(PREFIX)/bin/|g' \
		-e 's|/usr/local/share/doc/|$(PREFIX)/share/doc/|g' "$$f" > "$(DESTDIR)/lib/systemd/system/$$(basename $$f)" \
		&& chmod 0644 "$(DESTDIR)/lib/systemd/system/$$(basename $$f)"; done; true
	# udev runs programs by absolute path: point the rules at this PREFIX's front, or at pymultipath itself
	# (same answers, a Python start per disk event) where no C compiler is at hand
	if $(MAKE) -s helper; then \
		install -D -m 0755 $(HELPER) "$(DESTDIR)$(PREFIX)/libexec/pymultipath-udev"; \
		front="$(PREFIX)/libexec/pymultipath-udev"; \
	else \
		echo "install: cannot build $(HELPER) (no C compiler?): udev rules call $(PREFIX)/bin/pymultipath"; \
		front="$(PREFIX)/bin/pymultipath"; \
	fi; \
	for f in udev/*.rules; do [ -e "$$f" ] && sed -e "s|/usr/local/libexec/pymultipath-udev|$$front|g" \
		-e 's|/usr/local/bin/pymultipath|$(PREFIX)/bin/pymultipath|g' \
		"$$f" > "$(DESTDIR)/lib/udev/rules.d/$$(basename $$f)"; done; true
	install -d "$(INITRAMFS_TOOLS)/hooks" "$(INITRAMFS_TOOLS)/scripts/local-top" \
		"$(INITRAMFS_TOOLS)/scripts/init-bottom" "$(DRACUT_MODULE)"
	site=$$($(PYTHON) -c 'import sysconfig, sys; print(sysconfig.get_path("purelib", "posix_prefix", \
		vars={"base": sys.argv[1], "platbase": sys.argv[1]}))' "$(PREFIX)") && \
	python=$$($(PYTHON) -c 'import sys; print(sys.executable)') && \
	for f in hooks/pymultipathd scripts/local-top/pymultipathd scripts/init-bottom/pymultipathd; do \
		$(INITRAMFS_SUBST) "initramfs/initramfs-tools/$$f" > "$(INITRAMFS_TOOLS)/$$f" || exit 1; \
		chmod 0755 "$(INITRAMFS_TOOLS)/$$f"; done && \
	$(INITRAMFS_SUBST) initramfs/pymultipathd-boot > "$(INITRAMFS_TOOLS)/scripts/pymultipathd-boot" && \
	chmod 0755 "$(INITRAMFS_TOOLS)/scripts/pymultipathd-boot" && \
	for f in initramfs/dracut/90pymultipathd/* initramfs/pymultipathd-boot; do \
		$(INITRAMFS_SUBST) "$$f" > "$(DRACUT_MODULE)/$$(basename "$$f")" || exit 1; \
		chmod 0755 "$(DRACUT_MODULE)/$$(basename "$$f")"; done && \
	chmod 0644 "$(DRACUT_MODULE)/initrd.conf"
	$(PYTHON) -m pymultipathd.cli.manpages "$(DESTDIR)$(PREFIX)/share/man" >/dev/null
	install -d "$(DESTDIR)$(PREFIX)/share/doc/pymultipathd"
	install -m 0644 conf/multipath.conf "$(DESTDIR)$(PREFIX)/share/doc/pymultipathd/multipath.conf.example"
	install -m 0644 README.md docs/*.md "$(DESTDIR)$(PREFIX)/share/doc/pymultipathd/"
	$(if $(filter 1 yes,$(COMPAT)),$(COMPAT_INSTALL))

uninstall-compat:
	$(COMPAT_INSTALL) --remove

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis out
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
