# SPDX-License-Identifier: MIT
# keyhold top-level build. Plain GNU make: each part adds its rules in a
# fragment (engine/engine.mk, provision/provision.mk, tests/**/*.mk, ...).

PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
SYSCONFDIR ?= /etc
MANDIR ?= $(PREFIX)/share/man
DESTDIR ?=
PKG_CONFIG ?= pkg-config
MODULESDIR ?= $(shell $(PKG_CONFIG) --variable=modulesdir libcrypto 2>/dev/null)
SYSTEMDUNITDIR ?= $(shell $(PKG_CONFIG) --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
HOOKSDIR ?= $(LIBDIR)/keyhold/hooks

VERSION := 0.1.0
BUILD ?= build
CC ?= cc
CFLAGS ?= -O2 -g
SAN_FLAGS ?=

PKGS := libcrypto libssl p11-kit-1
DEP_CFLAGS := $(shell $(PKG_CONFIG) --cflags $(PKGS) 2>/dev/null)
DEP_LIBS := $(shell $(PKG_CONFIG) --libs libcrypto libssl 2>/dev/null)
TSS_CFLAGS := $(shell $(PKG_CONFIG) --cflags tss2-esys tss2-mu tss2-tctildr tss2-rc 2>/dev/null)
TSS_LIBS := $(shell $(PKG_CONFIG) --libs tss2-esys tss2-mu tss2-tctildr tss2-rc 2>/dev/null)
CURL_CFLAGS := $(shell $(PKG_CONFIG) --cflags libcurl 2>/dev/null)
CURL_LIBS := $(shell $(PKG_CONFIG) --libs libcurl 2>/dev/null)

KH_CFLAGS := -std=gnu11 -Wall -Wextra -Wno-unused-parameter -fPIC -MMD -MP \
	-D_GNU_SOURCE -DKH_VERSION='"$(VERSION)"' -DKH_BUILD_EPOCH=$(shell date -d 2026-11-01 +%s) \
	-Iengine -Iengine/common $(DEP_CFLAGS) $(TSS_CFLAGS) $(SAN_FLAGS)
KH_LDFLAGS := $(SAN_FLAGS) $(LDFLAGS)

ifeq ($(V),1)
Q :=
E := @:
else
Q := @
E := @echo
endif

.PHONY: all install check check-asan check-targets deps-if-missing demo demo-vms bench fuzz deps clean
.DEFAULT_GOAL := all

# Object rule shared by every fragment: build/<path>.o from <path>.c
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(E) "  CC      $<"
	$(Q)$(CC) $(CFLAGS) $(KH_CFLAGS) $(EXTRA_CFLAGS_$(firstword $(subst /, ,$<))) -c -o $@ $<

include $(sort $(wildcard engine/*.mk provision/*.mk provision/*/*.mk firmware-hooks/*.mk tests/*.mk tests/*/*.mk))

all: $(ALL_TARGETS)

deps:
	@scripts/deps.sh

# 'make check' installs what is missing, builds, and runs every test.
check: deps-if-missing
	$(Q)$(MAKE) --no-print-directory all check-targets
	$(Q)BUILD=$(abspath $(BUILD)) tests/run $(TESTS)

# The whole suite once more with AddressSanitizer and UBSan in every keyhold
# binary (the provider, the CLI, the test helpers).
check-asan: deps-if-missing
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan \
	    SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    all check-targets
	$(Q)BUILD=$(abspath build-asan) KH_ASAN=1 tests/run $(TESTS)

# Test programs, the fault shim, fuzzers: expanded by the make that builds
# them, so that each BUILD directory gets its own.
check-targets: $(CHECK_TARGETS)

deps-if-missing:
	@scripts/deps.sh --if-missing

demo: deps-if-missing all
	$(Q)BUILD=$(abspath $(BUILD)) tests/demo.sh

# The whole video-management deployment, narrated (tests/vms_deployment.sh).
demo-vms: deps-if-missing all
	$(Q)BUILD=$(abspath $(BUILD)) KH_TOP=$(CURDIR) tests/demo-vms.sh

install: all $(INSTALL_TARGETS)

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
