# dask-rs: build and install every program.
#
#   make install PREFIX=$HOME/.local   # into $HOME/.local/bin
#   make uninstall PREFIX=$HOME/.local
#
# Installs dask-rs (the command line: run, submit, info), dask-scheduler,
# dask-worker and dask-conformance (the conformance runner for workers
# written elsewhere), built with `cargo build --release`, without debug
# info (`make install STRIP=true` keeps it). The C SDK (libdask, headers,
# pkg-config files) installs with `make -C sdk-c install`.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
CARGO ?= cargo
STRIP ?= strip --strip-debug
CARGO_TARGET_DIR ?= $(abspath $(CURDIR)/target)
export CARGO_TARGET_DIR
RELEASE := $(CARGO_TARGET_DIR)/release
BINARIES := dask-rs dask-scheduler dask-worker dask-conformance

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --release --locked $(addprefix --bin ,$(BINARIES))

install: build
	install -d $(DESTDIR)$(BINDIR)
	for b in $(BINARIES); do \
	  install -m 755 $(RELEASE)/$$b $(DESTDIR)$(BINDIR)/ && $(STRIP) $(DESTDIR)$(BINDIR)/$$b || exit 1; \
	done

uninstall:
	for b in $(BINARIES); do rm -f $(DESTDIR)$(BINDIR)/$$b; done
